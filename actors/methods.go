package actors

import (
	"fmt"
	"slices"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/couponmesh/couponmesh"
)

// Methods is a grain kind's table of request handlers, one per method name:
// each decodes the request's payload into its request type, runs the
// grain's handler and encodes its answer (Respond). A kind builds its table
// once, as a package variable (NewMethods), and its grain hands every
// request Activation.Receive returns to Serve.
//
// The wire format is the envelope's (Request, Reply): the method name in
// MessageTypeName, the request and the answer as JSON. A table changes
// neither, so nodes of the same build interoperate whatever the order of
// its entries. Read-only once built: safe for concurrent use.
type Methods[G any] struct {
	byName map[string]serveFunc[G]
	before func(G)
}

type serveFunc[G any] func(g G, ctx actor.Context, req *cluster.GrainRequest, before func(G))

// Method is one entry of a Methods table; Handle and HandleLater make them.
type Method[G any] struct {
	name  string
	serve serveFunc[G]
}

// NewMethods returns the table of ms. before, when set, runs before every
// answer the table's handlers give (e.g. to publish the state that a read
// following the answer must see). It panics when two entries share a name:
// a kind's table is a package variable, so that is a bug found at start.
func NewMethods[G any](before func(G), ms ...Method[G]) *Methods[G] {
	t := &Methods[G]{byName: make(map[string]serveFunc[G], len(ms)), before: before}
	for _, m := range ms {
		if _, dup := t.byName[m.name]; dup {
			panic(fmt.Sprintf("actors: method %q registered twice", m.name))
		}
		t.byName[m.name] = m.serve
	}
	return t
}

// Handle is a method answered when fn returns: its payload decodes into Req
// (an undecodable one is answered bad_request without calling fn), and fn's
// Resp or error is the answer. Req Empty reads no payload.
func Handle[G, Req, Resp any](name string, fn func(g G, ctx actor.Context, req Req) (Resp, error)) Method[G] {
	return Method[G]{name: name, serve: func(g G, ctx actor.Context, req *cluster.GrainRequest, before func(G)) {
		r, ok := decodeRequest[Req](ctx, req)
		if !ok {
			return
		}
		v, err := fn(g, ctx, r)
		if before != nil {
			before(g)
		}
		Respond(ctx, v, err)
	}}
}

// HandleLater is a method whose answer may come after the message that
// carried it, e.g. once its journal entry is durable: fn answers through
// reply, exactly once, during the call or in a later message of the grain
// (see Answerer). Its payload decodes as with Handle.
func HandleLater[G, Req, Resp any](name string, fn func(g G, ctx actor.Context, req Req, reply func(Resp, error))) Method[G] {
	return Method[G]{name: name, serve: func(g G, ctx actor.Context, req *cluster.GrainRequest, before func(G)) {
		r, ok := decodeRequest[Req](ctx, req)
		if !ok {
			return
		}
		var pre func()
		if before != nil {
			pre = func() { before(g) }
		}
		answer, handled := Answerer(ctx, pre)
		fn(g, ctx, r, func(v Resp, err error) { answer(v, err) })
		handled()
	}}
}

// decodeRequest unpacks req's payload into a Req, answering bad_request
// when it does not decode (ok false). An Empty request reads nothing.
func decodeRequest[Req any](ctx actor.Context, req *cluster.GrainRequest) (r Req, ok bool) {
	if _, none := any(&r).(*Empty); none {
		return r, true
	}
	if payload, data := requestData(ctx, req); data == nil && payload != nil {
		if err := unpackLocal(payload, &r); err != nil {
			Respond(ctx, nil, couponmesh.Errorf(couponmesh.CodeBadRequest, "bad %s payload", req.MessageTypeName))
			return r, false
		}
		return r, true
	}
	return r, Unpack(ctx, req, &r)
}

// Serve runs the handler of req's method for grain g; a method the table
// does not have is answered bad_request (Unknown).
func (t *Methods[G]) Serve(g G, ctx actor.Context, req *cluster.GrainRequest) {
	serve, ok := t.byName[req.MessageTypeName]
	if !ok {
		Unknown(ctx, req)
		return
	}
	serve(g, ctx, req, t.before)
}

// Has reports whether the table has method name.
func (t *Methods[G]) Has(name string) bool {
	_, ok := t.byName[name]
	return ok
}

// Names returns the table's method names, sorted.
func (t *Methods[G]) Names() []string {
	names := make([]string, 0, len(t.byName))
	for n := range t.byName {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
