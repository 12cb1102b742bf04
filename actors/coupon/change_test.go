package coupon_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors/coupon"
)

// The machine reports what each write changed (TakeChange), which the grain
// publishes: claims alone are a push and a deferred snapshot; a creation,
// the claim that sells out, a real update and a withdrawal are more (a
// snapshot now, notices to followers); an update that changes nothing is
// like a claim, and a reload is no change.
func TestMachineReportsWhatChanged(t *testing.T) {
	ctx := context.Background()
	id := uniq("change")
	m, err := coupon.Load(ctx, store, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ch := m.TakeChange(); ch.Applied() {
		t.Fatalf("a new machine reports %+v", ch)
	}
	want := func(step string, created, terms bool) {
		t.Helper()
		ch := m.TakeChange()
		if !ch.Applied() || ch.Version != m.Seq() || ch.Created != created || ch.Terms != terms || ch.OnlyClaims() != (!created && !terms) {
			t.Fatalf("%s: change %+v (only claims %v), want version %d created %v terms %v", step, ch, ch.OnlyClaims(), m.Seq(), created, terms)
		}
		if again := m.TakeChange(); again.Applied() {
			t.Fatalf("%s: taken twice: %+v", step, again)
		}
	}
	if _, err := m.Create(ctx, merchant, couponmesh.CouponSpec{Title: ptr("Half off"), Quantity: ptr(2)}, "r1"); err != nil {
		t.Fatal(err)
	}
	want("create", true, true)
	if _, err := m.Claim(ctx, "ann", "a1"); err != nil {
		t.Fatal(err)
	}
	want("a claim", false, false)
	if _, err := m.Claim(ctx, "bob", "b1"); err != nil {
		t.Fatal(err)
	}
	want("the last unit (sold out)", false, true)
	if _, err := m.Update(ctx, merchant, couponmesh.CouponSpec{Title: ptr("Half off")}); err != nil {
		t.Fatal(err)
	}
	want("an update to the same title", false, false)
	if _, err := m.Update(ctx, merchant, couponmesh.CouponSpec{Title: ptr("Two for one")}); err != nil {
		t.Fatal(err)
	}
	want("a new title", false, true)
	// The state a Load starts from is no change; another activation's
	// entries, applied on validation, are.
	other, err := coupon.Load(ctx, store, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ch := other.TakeChange(); ch.Applied() {
		t.Fatalf("load reports %+v", ch)
	}
	if _, err := m.Withdraw(ctx, merchant); err != nil {
		t.Fatal(err)
	}
	want("withdraw", false, true)
	if n, err := other.Validate(ctx); n != 1 || err != nil {
		t.Fatalf("validate: %d %v", n, err)
	}
	if ch := other.TakeChange(); ch.Version != m.Seq() || !ch.Terms {
		t.Fatalf("validation reports %+v, want the withdrawal", ch)
	}
}

// A machine applies its own created and updated entries from the values it
// encoded (no second decode of their bytes); the state it reaches must be
// the one an activation loading the same journal reads back, field by field
// and as the JSON clients get.
func TestOwnEntriesApplyAsTheJournalReadsBack(t *testing.T) {
	ctx := context.Background()
	id := uniq("own")
	m, err := coupon.Load(ctx, store, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	expires := time.Now().Add(48 * time.Hour)
	if _, err := m.Create(ctx, merchant, couponmesh.CouponSpec{Title: ptr("Half off"), Quantity: ptr(3), ExpiresAt: &expires}, "r1"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Claim(ctx, "ann", "a1"); err != nil {
		t.Fatal(err)
	}
	starts := time.Now().Add(-time.Hour)
	for i, spec := range []couponmesh.CouponSpec{
		{Title: ptr("Two for one"), Description: ptr("d"), Discount: ptr("50%")},
		{Quantity: ptr(5), StartsAt: &starts},
		{Title: ptr("Three for two")},
	} {
		if _, err := m.Update(ctx, merchant, spec); err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
		other, err := coupon.Load(ctx, store, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, want := m.Coupon(), other.Coupon()
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(want)
		if string(gj) != string(wj) || got.Claimed != want.Claimed || !got.ExpiresAt.Equal(want.ExpiresAt) || !got.StartsAt.Equal(want.StartsAt) || !got.CreatedAt.Equal(want.CreatedAt) {
			t.Fatalf("update %d: applied %s, the journal reads back %s", i, gj, wj)
		}
		if got.Version != m.Seq() || got.Title == "Half off" {
			t.Fatalf("update %d: applied %+v at seq %d", i, got, m.Seq())
		}
	}
}
