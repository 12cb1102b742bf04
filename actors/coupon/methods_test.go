package coupon

import (
	"slices"
	"testing"

	"github.com/couponmesh/couponmesh/actors"
)

// The coupon grain answers every coupon method of actors/messages.go and
// the reminders' wake-up, under the names other nodes send.
func TestCouponMethods(t *testing.T) {
	want := []string{actors.CouponClaim, actors.CouponCreate, actors.CouponFollower, actors.CouponGet, actors.CouponSubscribe,
		actors.CouponUnsubscribe, actors.CouponUpdate, actors.CouponWithdraw, actors.RemindMethod}
	slices.Sort(want)
	if got := methods.Names(); !slices.Equal(got, want) {
		t.Fatalf("methods %v, want %v", got, want)
	}
}
