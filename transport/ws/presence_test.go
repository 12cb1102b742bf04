package ws_test

import (
	"testing"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/transport/ws"
)

// TestSubscribeReplyCarriesWatching: a snapshot carries its coupon's
// presence count; a coupon whose snapshot is not sent (the client holds
// its version) has its count in the reply's watching map; a count of 0 is
// left out of both; get carries it too.
func TestSubscribeReplyCarriesWatching(t *testing.T) {
	e := newEnv(t, ws.LocalConfig())
	e.svc.Put(couponmesh.Coupon{ID: "c1", Merchant: "m", Title: "one", Quantity: 5, Version: 3, Watching: 12})
	e.svc.Put(couponmesh.Coupon{ID: "c2", Merchant: "m", Title: "two", Quantity: 5, Version: 7, Watching: 4})
	e.svc.Put(couponmesh.Coupon{ID: "c3", Merchant: "m", Title: "three", Quantity: 5, Version: 1})
	c := e.login("alice", client.Options{})
	res, err := c.SubscribeReport(ctxT(t), []client.Sub{{ID: "c1", Version: 3}, {ID: "c2"}, {ID: "c3", Version: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Coupons) != 1 || res.Coupons[0].ID != "c2" || res.Coupons[0].Watching != 4 {
		t.Fatalf("snapshots %+v, want c2 watching 4", res.Coupons)
	}
	if len(res.Watching) != 1 || res.Watching["c1"] != 12 {
		t.Fatalf("watching %v, want map[c1:12] (c2 is in its snapshot, c3 has 0)", res.Watching)
	}
	got, err := c.Get(ctxT(t), "c1")
	if err != nil || got.Watching != 12 {
		t.Fatalf("get: %+v %v, want watching 12", got, err)
	}
}
