package user

import (
	"slices"
	"testing"

	"github.com/couponmesh/couponmesh/actors"
)

// The user grain answers every user method of actors/messages.go, under the
// names other nodes send.
func TestUserMethods(t *testing.T) {
	want := []string{actors.UserAdmit, actors.UserAttach, actors.UserClaim, actors.UserCouponChanged, actors.UserDetach, actors.UserFeed,
		actors.UserFollow, actors.UserFollowing, actors.UserRecordClaim, actors.UserUnfollow, actors.UserWallet}
	slices.Sort(want)
	if got := methods.Names(); !slices.Equal(got, want) {
		t.Fatalf("methods %v, want %v", got, want)
	}
}
