package actors

import (
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/couponmesh/couponmesh"
)

// A request to a grain of this node, and its answer, need not be JSON: the
// profile of a durable update (docs/BENCHMARKS.md) spent about a sixth of
// the node's CPU encoding and decoding the payload and the reply between
// two goroutines of one process. Call sends a localRequest, carrying the
// payload as the Go value, when the grain's PID is on this node and the
// payload is a localPayload; the grain answers a localResponse, carrying
// the value, when the caller is on this node and the value is a
// localReply. Everything else, and everything between nodes, stays the
// protobuf envelope with JSON (doc.go): protoactor would drop a Go struct
// sent to another node.
//
// Both sides get the other's value itself, not a copy, so only types
// without slices, maps or pointers into state that keeps changing go this
// way: a request's pointers (CouponSpec's) are the caller's, which does
// not change them after the call; a reply is a copy of the grain's state.

// localRequest is a request sent within the node: req names the method
// (MessageData is empty), payload is the value Request would encode.
type localRequest struct {
	req     *cluster.GrainRequest
	payload any
}

// localResponse is an answer within the node: the value Reply would encode.
type localResponse struct{ v any }

// localPayload reports whether a request payload may travel as a Go value
// (see above): the coupon writes and the claims.
func localPayload(p any) bool {
	switch p.(type) {
	case UpdateCoupon, CreateCoupon, WithdrawCoupon, ClaimCoupon, UserClaimCoupon:
		return true
	}
	return false
}

// localReply reports whether an answer may travel as a Go value.
func localReply(v any) bool {
	switch v.(type) {
	case couponmesh.Coupon, couponmesh.Claim, Empty:
		return true
	}
	return false
}

// message is what Call sends to pid for method with payload: a
// localRequest when pid is on this node and the payload may travel as a
// value, else the JSON envelope (built once, by encoded).
func message(c *cluster.Cluster, pid *actor.PID, method string, payload any, encoded func() *cluster.GrainRequest) any {
	if pid.Address == c.ActorSystem.Address() && localPayload(payload) {
		return &localRequest{req: &cluster.GrainRequest{MessageTypeName: method}, payload: payload}
	}
	return encoded()
}

// requestData returns the payload of req as the grain handling it gets it:
// the value of a localRequest (ok), else nil and req's JSON.
func requestData(ctx actor.Context, req *cluster.GrainRequest) (payload any, data []byte) {
	if lr, ok := ctx.Message().(*localRequest); ok && lr.req == req {
		return lr.payload, nil
	}
	return nil, req.MessageData
}

// unpackLocal sets *v from a local payload: the value itself when it is a
// V, else (a bug: the caller sent another type) through its JSON, as a
// remote request would have been decoded.
func unpackLocal[V any](payload any, v *V) error {
	if p, ok := payload.(V); ok {
		*v = p
		return nil
	}
	b, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// replyTo builds the answer for a sender: a localResponse when the sender
// is on this node and v may travel as a value, else the envelope (Reply).
func replyTo(system *actor.ActorSystem, sender *actor.PID, v any, err error) any {
	local := sender != nil && sender.Address == system.Address()
	if err == nil && local && localReply(v) {
		return &localResponse{v: v}
	}
	if !local {
		remoteReplies.Inc()
	}
	return Reply(v, err)
}

// decodeLocal sets *out (out a non-nil pointer) to a local answer's value,
// or, when the types differ, to what its JSON decodes to.
func decodeLocal(v any, out any) error {
	o := reflect.ValueOf(out)
	if o.Kind() == reflect.Pointer && !o.IsNil() {
		if rv := reflect.ValueOf(v); rv.IsValid() && rv.Type().AssignableTo(o.Elem().Type()) {
			o.Elem().Set(rv)
			return nil
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("decode reply: %w", err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode reply: %w", err)
	}
	return nil
}
