package main

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors/coupon"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/internal/testutil"
)

// A write of another activation that lands after this node's grain read its
// journal during churn (a dead member's last write, still queued in the
// database) reaches the grain and its subscribers once the cluster settles,
// with no further request from a client: the epoch moves again when the
// unsettled window ends, and the hub's next lease renewal makes the grain
// validate and push. Without it the grain would serve the state without
// the write until its next write collided with it.
func TestLateWriteAfterChurnReachesSubscribers(t *testing.T) {
	a := startApp(t, func(c *Config) { c.Actors.HubConfig.Refresh = 500 * time.Millisecond })
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
	if a.churn.UnsettledFor() == 0 {
		t.Fatal("the grain validated after the unsettled window: the test needs it inside")
	}
	// The dead member's write lands after that validation: an entry in the
	// coupon's journal that this node's grain did not write.
	late, err := coupon.Load(ctx, a.mongo, cp.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := late.Claim(ctx, "ghost", "late-rid"); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 20*time.Second, "the late claim at the watcher", func() error {
		if got := seen.get(cp.ID); got.Claimed != 1 {
			return fmt.Errorf("watcher has claimed %d version %d", got.Claimed, got.Version)
		}
		return nil
	})
	if c, err := a.svc.Coupon(ctx, cp.ID); err != nil || c.Claimed != 1 {
		t.Fatalf("read after the window: claimed %d, %v", c.Claimed, err)
	}
}
