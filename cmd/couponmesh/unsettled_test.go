package main

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors/coupon"
	"github.com/couponmesh/couponmesh/client"
)

// A write of another activation that lands after this node's grain read its
// journal during churn (a dead member's last write, still queued in the
// database) reaches the grain and its subscribers once the cluster settles,
// with no further request. Without the recheck the grain would serve the
// state without it until its next write collided with it.
func TestLateWriteAfterChurnReachesSubscribers(t *testing.T) {
	a := startApp(t, nil)
	ctx := t.Context()
	cp := createCoupon(t, a, "acme", couponmesh.CouponSpec{Title: ptr("Late"), Quantity: ptr(5)})
	var seen latest
	w := dial(t, a, "watcher", client.Options{OnCoupon: seen.on, HTTPHeader: http.Header{"Origin": {"http://localhost"}}})
	if _, err := w.Subscribe(ctx, []client.Sub{{ID: cp.ID}}); err != nil {
		t.Fatal(err)
	}
	a.churn.Changed(false) // what memberlist reports when a member dies
	if c, err := a.svc.Coupon(ctx, cp.ID); err != nil || c.Claimed != 0 {
		t.Fatalf("read during the churn: claimed %d, %v", c.Claimed, err) // the grain validates here
	}
	// The dead member's write lands after that validation.
	late, err := coupon.Load(ctx, a.mongo, cp.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := late.Claim(ctx, "ghost", "late-rid"); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 15*time.Second, "the late claim at the watcher", func() error {
		if got := seen.get(cp.ID); got.Claimed != 1 {
			return fmt.Errorf("watcher has claimed %d version %d", got.Claimed, got.Version)
		}
		return nil
	})
	if c, err := a.svc.Coupon(ctx, cp.ID); err != nil || c.Claimed != 1 {
		t.Fatalf("read after the recheck: claimed %d, %v", c.Claimed, err)
	}
}
