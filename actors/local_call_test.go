package actors

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"

	"github.com/couponmesh/couponmesh"
)

// localGrain serves an update method like the coupon grain's, through a
// Methods table, for requests in both forms: the JSON envelope and a
// localRequest. It keeps the title pointer each request carried.
type localGrain struct{ titles []*string }

var localMethods = NewMethods[*localGrain](nil,
	Handle(CouponUpdate, func(g *localGrain, _ actor.Context, r UpdateCoupon) (couponmesh.Coupon, error) {
		g.titles = append(g.titles, r.Spec.Title)
		return couponmesh.Coupon{ID: "c1", Title: *r.Spec.Title, Version: 7, UpdatedAt: time.Unix(1700000000, 0).UTC()}, nil
	}),
	Handle("t.wallet", func(_ *localGrain, _ actor.Context, _ Empty) (map[string]int, error) {
		return map[string]int{"a": 1}, nil
	}),
)

func (g *localGrain) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *cluster.GrainRequest:
		localMethods.Serve(g, ctx, m)
	case *localRequest:
		localMethods.Serve(g, ctx, m.req)
	}
}

// Within one node a coupon write travels as the Go value both ways (the
// grain reads the caller's very payload, the caller gets the grain's
// value); to another node's PID, or with a payload or answer that may not
// travel as a value, it is the JSON envelope; and both forms decode to the
// same answer.
func TestLocalCallsSkipJSON(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	c := &cluster.Cluster{ActorSystem: sys}
	g := &localGrain{}
	pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return g }))
	title := "Two for one"
	payload := UpdateCoupon{Principal: couponmesh.Principal{User: "shop", Role: couponmesh.RoleMerchant}, Spec: couponmesh.CouponSpec{Title: &title}}
	encodes := 0
	encoded := func() *cluster.GrainRequest { encodes++; return Request(CouponUpdate, payload) }

	local := message(c, pid, CouponUpdate, payload, encoded)
	lr, ok := local.(*localRequest)
	if !ok || encodes != 0 || lr.req.MessageTypeName != CouponUpdate || len(lr.req.MessageData) != 0 {
		t.Fatalf("to a PID of this node: %T %+v (%d encodes), want a localRequest without JSON", local, local, encodes)
	}
	remote := message(c, actor.NewPID("10.0.0.9:4000", pid.Id), CouponUpdate, payload, encoded)
	if gr, ok := remote.(*cluster.GrainRequest); !ok || encodes != 1 || gr.MessageTypeName != CouponUpdate || len(gr.MessageData) == 0 {
		t.Fatalf("to another node: %T, %d encodes; want the JSON envelope", remote, encodes)
	}
	if m := message(c, pid, "t.wallet", Empty{}, func() *cluster.GrainRequest { return Request("t.wallet", Empty{}) }); func() bool { _, ok := m.(*cluster.GrainRequest); return !ok }() {
		t.Fatalf("a payload that may not travel as a value went as %T", m)
	}

	call := func(msg any, out any) any {
		t.Helper()
		res, err := sys.Root.RequestFuture(pid, msg, 5*time.Second).Result()
		if err != nil {
			t.Fatal(err)
		}
		if err := Decode(res, out); err != nil {
			t.Fatal(err)
		}
		return res
	}
	var viaValue, viaJSON couponmesh.Coupon
	res := call(local, &viaValue)
	if _, ok := res.(*localResponse); !ok {
		t.Fatalf("answer to a caller of this node: %T, want a localResponse", res)
	}
	call(remote, &viaJSON)
	if len(g.titles) != 2 || g.titles[0] != &title || g.titles[1] == &title {
		t.Fatalf("the grain read titles %v: want the caller's pointer %p first, a decoded copy second", g.titles, &title)
	}
	vj, _ := json.Marshal(viaValue)
	jj, _ := json.Marshal(viaJSON)
	if string(vj) != string(jj) || viaValue.Title != title || viaValue.Version != 7 {
		t.Fatalf("answers differ: value %s, JSON %s", vj, jj)
	}
	// An answer that may not travel as a value is JSON, even within the node.
	var wallet map[string]int
	if res := call(Request("t.wallet", Empty{}), &wallet); func() bool { _, ok := res.(*cluster.GrainResponse); return !ok }() || wallet["a"] != 1 {
		t.Fatalf("wallet answer %T %v", res, wallet)
	}
	// A local answer decodes into another type through its JSON.
	var partial struct {
		Title string `json:"title"`
	}
	if err := Decode(&localResponse{v: viaValue}, &partial); err != nil || partial.Title != title {
		t.Fatalf("into another type: %+v %v", partial, err)
	}
	// A local request whose payload is of another type decodes through its JSON.
	var got UpdateCoupon
	if err := unpackLocal(map[string]any{"spec": map[string]any{"title": "x"}}, &got); err != nil || got.Spec.Title == nil || *got.Spec.Title != "x" {
		t.Fatalf("unpackLocal of another type: %+v %v", got, err)
	}
}
