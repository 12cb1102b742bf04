package coupon_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/couponmesh/couponmesh/actors/coupon"
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
