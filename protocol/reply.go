package protocol

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/couponmesh/couponmesh"
)

// Reply is the envelope of an answer as the server encodes it: exactly one
// of OK and Error is set; ID is omitted when zero (the request's id could
// not be read).
type Reply struct {
	ID    int64             `json:"id,omitempty"`
	OK    any               `json:"ok,omitempty"`
	Error *couponmesh.Error `json:"error,omitempty"`
}

// Message is any server message as a client decodes it: a reply (ID with
// OK or Error) or a push (Push names the kind; its fields are those of
// CouponPushFrame, FeedPushFrame, PresencePushFrame or DrainingPushFrame).
type Message struct {
	ID    int64             `json:"id"`
	OK    json.RawMessage   `json:"ok"`
	Error *couponmesh.Error `json:"error"`
	Push  string            `json:"push"`
	// Coupon is a coupon object (push coupon) or a coupon id (push presence).
	Coupon   json.RawMessage       `json:"coupon"`
	Entry    *couponmesh.FeedEntry `json:"entry"`
	Watching int                   `json:"watching"`
	// Addresses are the nodes a draining push names.
	Addresses []string `json:"addresses"`
}

// The ok payloads of the ops.
type (
	// Empty is the ok payload of ping, unsubscribe and unfollow: {}.
	Empty struct{}
	// AuthReply is auth's.
	AuthReply struct {
		User      string          `json:"user"`
		Role      couponmesh.Role `json:"role"`
		ExpiresAt time.Time       `json:"expiresAt"`
	}
	// SubscribeReply is subscribe's: the snapshots (C: a Coupon, or its
	// JSON encoding) newer than the versions given, the ids of coupons that
	// do not exist, and the presence count (> 0) of the coupons subscribed
	// whose snapshot is not sent (a snapshot carries its own).
	SubscribeReply[C any] struct {
		Coupons  []C            `json:"coupons"`
		Missing  []string       `json:"missing,omitempty"`
		Watching map[string]int `json:"watching,omitempty"`
	}
	// CouponReply is the ok payload of get and follow.
	CouponReply struct {
		Coupon couponmesh.Coupon `json:"coupon"`
	}
	// ClaimReply is claim's.
	ClaimReply struct {
		Claim couponmesh.Claim `json:"claim"`
	}
	// WalletReply is wallet's (oldest first, never null).
	WalletReply struct {
		Claims []couponmesh.Claim `json:"claims"`
	}
	// FeedReply is feed's (seq order, never null).
	FeedReply struct {
		Entries []couponmesh.FeedEntry `json:"entries"`
	}
)

// OKFrame encodes {"id":N,"ok":payload} (nil payload: {}). It fails only
// when payload does not encode.
func OKFrame(id int64, payload any) ([]byte, error) {
	if payload == nil {
		payload = Empty{}
	}
	b, err := json.Marshal(Reply{ID: id, OK: payload})
	if err != nil {
		return nil, fmt.Errorf("encode reply to request %d: %w", id, err)
	}
	return b, nil
}

// ErrorFrame encodes {"id":N,"error":{"code":…,"message":…}}; the id is
// omitted when zero (it could not be read from the request).
func ErrorFrame(id int64, e *couponmesh.Error) []byte {
	b, err := json.Marshal(Reply{ID: id, Error: e})
	if err != nil {
		// An *Error is two strings: this cannot fail.
		panic(err)
	}
	return b
}
