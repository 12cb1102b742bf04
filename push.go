package couponmesh

import "encoding/json"

// CouponPush encodes the push frame of a coupon change:
// {"push":"coupon","coupon":{…}}. Encode it once per change and share it.
func CouponPush(c Coupon) []byte {
	b, _ := json.Marshal(struct {
		Push   string `json:"push"`
		Coupon Coupon `json:"coupon"`
	}{"coupon", c})
	return b
}

// FeedPush encodes the push frame of a new feed entry:
// {"push":"feed","entry":{…}}.
func FeedPush(e FeedEntry) []byte {
	b, _ := json.Marshal(struct {
		Push  string    `json:"push"`
		Entry FeedEntry `json:"entry"`
	}{"feed", e})
	return b
}

// PresencePush encodes the push frame of a coupon's presence count:
// {"push":"presence","coupon":"c42","watching":1234}.
func PresencePush(coupon string, watching int) []byte {
	b, _ := json.Marshal(struct {
		Push     string `json:"push"`
		Coupon   string `json:"coupon"`
		Watching int    `json:"watching"`
	}{"presence", coupon, watching})
	return b
}
