package protocol

import (
	"encoding/json"

	"github.com/couponmesh/couponmesh"
)

// The push frames: no id, Push names the kind.
type (
	// CouponPushFrame is the state of a coupon after a change.
	CouponPushFrame struct {
		Push   string            `json:"push"` // PushCoupon
		Coupon couponmesh.Coupon `json:"coupon"`
	}
	// FeedPushFrame is a new entry of the user's feed.
	FeedPushFrame struct {
		Push  string               `json:"push"` // PushFeed
		Entry couponmesh.FeedEntry `json:"entry"`
	}
	// PresencePushFrame is how many signed-in shoppers watch a coupon; its
	// Coupon is the coupon's id.
	PresencePushFrame struct {
		Push     string `json:"push"` // PushPresence
		Coupon   string `json:"coupon"`
		Watching int    `json:"watching"`
	}
)

// DrainingPushFrame announces a drain: the nodes to go to instead (an
// empty list when no other node is known).
type DrainingPushFrame struct {
	Push      string   `json:"push"` // PushDraining
	Addresses []string `json:"addresses"`
}

// DrainingPush encodes the draining push naming others.
func DrainingPush(others []string) []byte {
	b, _ := json.Marshal(DrainingPushFrame{PushDraining, append([]string{}, others...)}) // strings only: cannot fail
	return b
}

// CouponPush encodes the push frame of a coupon change:
// {"push":"coupon","coupon":{…}}. Encode it once per change and share it.
func CouponPush(c couponmesh.Coupon) []byte {
	b, _ := json.Marshal(CouponPushFrame{PushCoupon, c})
	return b
}

// FeedPush encodes the push frame of a new feed entry:
// {"push":"feed","entry":{…}}.
func FeedPush(e couponmesh.FeedEntry) []byte {
	b, _ := json.Marshal(FeedPushFrame{PushFeed, e})
	return b
}

// PresencePush encodes the push frame of a coupon's presence count:
// {"push":"presence","coupon":"c42","watching":1234}.
func PresencePush(coupon string, watching int) []byte {
	b, _ := json.Marshal(PresencePushFrame{PushPresence, coupon, watching})
	return b
}
