package coupon_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors"
	"github.com/couponmesh/couponmesh/actors/coupon"
	dto "github.com/prometheus/client_model/go"
)

// Validate brings an activation that another activation wrote past up to
// the journal, and finds nothing the second time: what a grain does after
// cluster churn before it answers.
func TestValidateCatchesUpWithAnotherActivation(t *testing.T) {
	ctx := context.Background()
	id := uniq("validate")
	a := newCoupon(t, id, 10)
	b, err := coupon.Load(ctx, store, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := a.Claim(ctx, fmt.Sprintf("u%d", i), fmt.Sprintf("r%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.Coupon().Claimed; got != 0 {
		t.Fatalf("b sees %d claims before validating; the test needs it behind", got)
	}
	n, err := b.Validate(ctx)
	if err != nil || n != 3 {
		t.Fatalf("Validate: %d entries, %v; want 3", n, err)
	}
	if got, want := b.Coupon(), a.Coupon(); got.Claimed != 3 || got.Version != want.Version {
		t.Fatalf("after Validate b has claimed %d version %d; a has %d version %d", got.Claimed, got.Version, want.Claimed, want.Version)
	}
	if n, err := b.Validate(ctx); err != nil || n != 0 {
		t.Fatalf("second Validate: %d entries, %v; want 0", n, err)
	}
	// b decides on the caught-up state: u0 has claimed already.
	if _, err := b.Claim(ctx, "u0", "other-rid"); err == nil {
		t.Fatal("b granted u0 a second claim after validating")
	}
}

// A wake-up on a state not validated since churn appends without reading
// the journal first: the append is fenced by its key, so on a state that
// another activation wrote past it fails, catches up and is decided again.
// A decision to do nothing is not taken on such a state (ErrUnchecked):
// here the other activation moved the expiry, and the stale state, which
// still has the old time, would have dropped the new time's reminder.
func TestUncheckedWakeIsFencedByTheJournal(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	id := uniq("unchecked")
	a, err := coupon.Load(ctx, store, id, clock)
	if err != nil {
		t.Fatal(err)
	}
	t1 := now.Add(time.Hour).Truncate(time.Millisecond)
	if _, err := a.Create(ctx, merchant, couponmesh.CouponSpec{Title: ptr("Ends"), Quantity: ptr(3), ExpiresAt: &t1}, "r1"); err != nil {
		t.Fatal(err)
	}
	stale, err := coupon.Load(ctx, store, id, clock) // an activation that misses what follows
	if err != nil {
		t.Fatal(err)
	}
	t2 := t1.Add(time.Minute)
	if _, err := a.Update(ctx, merchant, couponmesh.CouponSpec{ExpiresAt: &t2}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = t2.Add(time.Millisecond)
	mu.Unlock()
	r1 := coupon.Reminders(id, couponmesh.CouponSpec{ExpiresAt: &t1})[0]
	r2 := coupon.Reminders(id, couponmesh.CouponSpec{ExpiresAt: &t2})[0]

	// The new time's reminder: the stale state has the old time.
	if err := stale.WakeUnchecked(ctx, r2); !errors.Is(err, coupon.ErrUnchecked) {
		t.Fatalf("wake-up of the moved expiry on a stale state: %v, want ErrUnchecked (nothing must be decided on it)", err)
	}
	// The old time's reminder on the stale state: its expired entry would
	// follow the created entry, where the update is: refused by the key,
	// caught up, nothing to do.
	if err := stale.WakeUnchecked(ctx, r1); err != nil && !errors.Is(err, coupon.ErrUnchecked) {
		t.Fatalf("wake-up of the old expiry on a stale state: %v", err)
	}
	// Validated (as the grain does on ErrUnchecked), the new time expires it.
	if _, err := stale.Validate(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 { // fired twice: one entry
		if err := stale.Wake(ctx, r2); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := store.Entries(ctx, coupon.Entity(id), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range entries {
		types = append(types, e.Type)
	}
	if len(entries) != 3 || entries[1].Type == coupon.EntryExpired || entries[2].Type != coupon.EntryExpired {
		t.Fatalf("journal %v: want created, updated, expired (one expiry, at the new time)", types)
	}
}

// After cluster churn a reminder's wake-up appends without reading the
// journal first (the append is fenced by its key: Machine.StartWake), and
// so does a known hub's renewal inside the unsettled window (no state in
// its answer; after the window it validates, TestLateWriteAfterChurnReachesSubscribers
// in cmd/couponmesh); a read of the coupon still validates. At a node's death every coupon on the members
// that stayed used to read its journal before its expiry and before each
// renewal the membership change set off, a point read per coupon on the
// database while the expiries waited (`bench timers`, three nodes, one
// killed).
func TestWakeAfterChurnReadsNoJournal(t *testing.T) {
	n, err := benchNode()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	cfg := actors.DefaultCallConfig()
	id := uniq("churnwake")
	exp := time.Now().Add(time.Second).Truncate(time.Millisecond)
	spec := couponmesh.CouponSpec{ID: id, Title: ptr("Ends"), Quantity: ptr(3), ExpiresAt: &exp}
	if err := actors.Call(ctx, n.Cluster, cfg, actors.KindCoupon, id, actors.CouponCreate,
		actors.CreateCoupon{Principal: merchant, Spec: spec, RID: "create"}, nil); err != nil {
		t.Fatal(err)
	}
	hub := actors.HubRef{Address: "127.0.0.1:1", Refresh: true} // a hub of another node (pushes to it go nowhere)
	if err := actors.Call(ctx, n.Cluster, cfg, actors.KindCoupon, id, actors.CouponSubscribe, hub, nil); err != nil {
		t.Fatal(err)
	}
	validations := func() float64 {
		sum := 0.0
		for _, r := range []string{"current", "caught_up", "failed"} {
			var m dto.Metric
			if err := nodeMetrics.Validations.WithLabelValues(actors.KindCoupon, r).Write(&m); err != nil {
				t.Fatal(err)
			}
			sum += m.GetCounter().GetValue()
		}
		return sum
	}
	time.Sleep(time.Until(exp.Add(10 * time.Millisecond)))
	nodeChurn.Changed(false) // a member came or went: the grain's state may miss writes
	before := validations()
	if err := actors.Call(ctx, n.Cluster, cfg, actors.KindCoupon, id, actors.CouponSubscribe, hub, nil); err != nil {
		t.Fatalf("the known hub's renewal after churn: %v", err)
	}
	if err := actors.Call(ctx, n.Cluster, cfg, actors.KindCoupon, id, actors.RemindMethod, coupon.Reminders(id, spec)[0], nil); err != nil {
		t.Fatalf("wake-up after churn: %v", err)
	}
	if got := validations() - before; got != 0 {
		t.Fatalf("the renewal and the wake-up after churn read the journal first (%v validations), want none", got)
	}
	var c couponmesh.Coupon
	if err := actors.Call(ctx, n.Cluster, cfg, actors.KindCoupon, id, actors.CouponGet, actors.Empty{}, &c); err != nil {
		t.Fatal(err)
	}
	if got := validations() - before; got != 1 || c.Status != couponmesh.StatusExpired {
		t.Fatalf("a read after churn: %v validations, status %s; want 1 and expired", got, c.Status)
	}
	entries, err := store.Entries(ctx, coupon.Entity(id), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[1].Type != coupon.EntryExpired {
		t.Fatalf("journal of %d entries, want created and expired", len(entries))
	}
}
