package protocol_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/protocol"
	"github.com/couponmesh/couponmesh/protocol/protocoltest"
)

var update = flag.Bool("update", false, "rewrite testdata/ from the encoders")

// The values of the golden frames: one example of every field.
var (
	gCoupon = couponmesh.Coupon{
		ID: "c42", Merchant: "acme", Title: "20% off winter boots", Description: "All winter boots, in store and online.",
		Discount: "20%", Quantity: 100, Claimed: 18, Remaining: 82,
		StartsAt:  time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC),
		ExpiresAt: time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC),
		Status:    couponmesh.StatusActive, Version: 19,
		CreatedAt: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC),
		UpdatedAt: time.Date(2026, 12, 1, 10, 0, 0, 123000000, time.UTC),
	}
	gClaim = couponmesh.Claim{Coupon: "c42", User: "alice", N: 17, Code: "c42-0017", At: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	gRid   = "5b0e6c1e-2f4a-4c1b-9a51-0d3c5e7f8a9b"
)

func watched(c couponmesh.Coupon, n int) couponmesh.Coupon {
	c.Watching = n
	return c
}

// goldenID is the request id of each op's golden request and reply.
var goldenID = map[string]int64{
	protocol.OpAuth: 1, protocol.OpPing: 2, protocol.OpSubscribe: 3, protocol.OpUnsubscribe: 4, protocol.OpGet: 5,
	protocol.OpClaim: 6, protocol.OpFollow: 7, protocol.OpUnfollow: 8, protocol.OpWallet: 9, protocol.OpFeed: 10,
	protocol.OpDrained: 11,
}

// goldenRequests holds each op's fields (nil: none).
var goldenRequests = map[string]any{
	protocol.OpAuth: protocol.AuthParams{Token: "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"},
	protocol.OpPing: nil,
	protocol.OpSubscribe: protocol.SubscribeParams{Coupons: []protocol.Sub{
		{ID: "c42", Version: 17}, {ID: "c7", Version: 0}, {ID: "gone", Version: 0},
	}},
	protocol.OpUnsubscribe: protocol.UnsubscribeParams{Coupons: []string{"c7", "gone"}},
	protocol.OpGet:         protocol.CouponParams{Coupon: "c42"},
	protocol.OpClaim:       protocol.ClaimParams{Coupon: "c42", Rid: gRid},
	protocol.OpFollow:      protocol.CouponParams{Coupon: "c42"},
	protocol.OpUnfollow:    protocol.CouponParams{Coupon: "c42"},
	protocol.OpWallet:      nil,
	protocol.OpFeed:        protocol.FeedParams{After: 87, Limit: 100},
	protocol.OpDrained:     nil,
}

func goldenReplies() map[string]any {
	c7 := gCoupon
	c7.ID, c7.Title, c7.Description, c7.Discount = "c7", "Free coffee", "One coffee, any size, with any breakfast.", "100%"
	c7.Version, c7.Claimed, c7.Remaining, c7.StartsAt = 4, 3, 97, time.Time{}
	changed := gCoupon
	changed.Title, changed.Version = "25% off winter boots", 20
	return map[string]any{
		protocol.OpAuth: protocol.AuthReply{User: "alice", Role: couponmesh.RoleShopper, ExpiresAt: time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC)},
		protocol.OpPing: protocol.Empty{},
		protocol.OpSubscribe: protocol.SubscribeReply[couponmesh.Coupon]{
			Coupons: []couponmesh.Coupon{watched(c7, 3)}, Missing: []string{"gone"}, Watching: map[string]int{"c42": 1233},
		},
		protocol.OpUnsubscribe: protocol.Empty{},
		protocol.OpGet:         protocol.CouponReply{Coupon: watched(gCoupon, 31)},
		protocol.OpClaim:       protocol.ClaimReply{Claim: gClaim},
		protocol.OpFollow:      protocol.CouponReply{Coupon: gCoupon},
		protocol.OpUnfollow:    protocol.Empty{},
		protocol.OpWallet:      protocol.WalletReply{Claims: []couponmesh.Claim{gClaim}},
		protocol.OpFeed: protocol.FeedReply{Entries: []couponmesh.FeedEntry{
			{Seq: 88, Type: couponmesh.FeedClaimed, Coupon: "c42", At: gClaim.At, Claim: &gClaim},
			{Seq: 89, Type: couponmesh.FeedCouponChanged, Coupon: "c42", At: time.Date(2026, 12, 1, 10, 5, 0, 0, time.UTC), Change: &changed},
		}},
		protocol.OpDrained: protocol.Empty{},
	}
}

// goldenErrors holds a message of each code, as the server words it.
var goldenErrors = map[couponmesh.Code]string{
	couponmesh.CodeBadRequest:     "rid must be at most 64 characters",
	couponmesh.CodeUnauthorized:   `not authenticated: send {"op":"auth","token":…} first`,
	couponmesh.CodeForbidden:      `session is authenticated as "alice": open a new connection for another user`,
	couponmesh.CodeNotFound:       "coupon c42 not found",
	couponmesh.CodeSoldOut:        "coupon c42 is sold out (100 of 100 claimed)",
	couponmesh.CodeExpired:        "coupon c42 expired at 2026-12-31T23:59:59Z",
	couponmesh.CodeNotStarted:     "coupon c42 can be claimed from 2026-12-01T09:00:00Z",
	couponmesh.CodeAlreadyClaimed: "alice already claimed coupon c42",
	couponmesh.CodeRateLimited:    "too many requests: at most 100 per second per session (bursts of 200); slow down",
	couponmesh.CodeUnavailable:    "service temporarily unavailable, retry",
	couponmesh.CodeInternal:       "internal error",
}

// goldenFrames encodes every golden frame with the package's encoders,
// keyed kind/name.
func goldenFrames(t *testing.T) map[string][]byte {
	out := make(map[string][]byte)
	for op, params := range goldenRequests {
		body, err := protocol.RequestBody(op, params)
		if err != nil {
			t.Fatal(err)
		}
		out[protocoltest.Requests+"/"+op] = protocol.RequestFrame(goldenID[op], body)
	}
	for op, payload := range goldenReplies() {
		b, err := protocol.OKFrame(goldenID[op], payload)
		if err != nil {
			t.Fatal(err)
		}
		out[protocoltest.Replies+"/"+op] = b
	}
	out[protocoltest.Pushes+"/"+protocol.PushCoupon] = protocol.CouponPush(gCoupon)
	out[protocoltest.Pushes+"/"+protocol.PushFeed] = protocol.FeedPush(couponmesh.FeedEntry{
		Seq: 90, Type: couponmesh.FeedFollowed, Coupon: "c42", At: time.Date(2026, 12, 1, 10, 6, 0, 0, time.UTC),
	})
	out[protocoltest.Pushes+"/"+protocol.PushPresence] = protocol.PresencePush("c42", 1234)
	out[protocoltest.Pushes+"/"+protocol.PushDraining] = protocol.DrainingPush([]string{"10.0.0.2:8080", "10.0.0.3:8080"})
	for code, msg := range goldenErrors {
		out[protocoltest.Errors+"/"+string(code)] = protocol.ErrorFrame(goldenID[protocol.OpClaim], &couponmesh.Error{Code: code, Message: msg})
	}
	return out
}

// TestGoldenFrames: the encoders write the golden frames byte for byte,
// and there is one for every op (request and reply), push kind and error
// code, and no other.
func TestGoldenFrames(t *testing.T) {
	frames := goldenFrames(t)
	if *update {
		for _, kind := range []string{protocoltest.Requests, protocoltest.Replies, protocoltest.Pushes, protocoltest.Errors} {
			if err := os.RemoveAll(filepath.Join(protocoltest.Dir(), kind)); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(protocoltest.Dir(), kind), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for key, b := range frames {
			if err := os.WriteFile(filepath.Join(protocoltest.Dir(), key+".json"), append(b, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	var codes []string
	for _, c := range couponmesh.Codes {
		codes = append(codes, string(c))
	}
	for kind, want := range map[string][]string{
		protocoltest.Requests: protocol.Ops, protocoltest.Replies: protocol.Ops,
		protocoltest.Pushes: protocol.Pushes, protocoltest.Errors: codes,
	} {
		if got := protocoltest.Names(t, kind); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
			t.Errorf("golden %s: %v, want one for each of %v", kind, got, want)
		}
		for _, name := range want {
			key := kind + "/" + name
			if got := protocoltest.Frame(t, kind, name); !bytes.Equal(got, frames[key]) {
				t.Errorf("%s: the encoder writes\n%s\nthe golden frame is\n%s\n(a changed wire format: update every client, then go test ./protocol -run Golden -update)", key, frames[key], got)
			}
		}
	}
}

// TestGoldenRequestsDecode: every golden request decodes as the server
// decodes it (DecodeRequest) with nothing lost, so Request and the
// ...Params types agree on every field name.
func TestGoldenRequestsDecode(t *testing.T) {
	for _, op := range protocol.Ops {
		frame := protocoltest.Frame(t, protocoltest.Requests, op)
		req, err := protocol.DecodeRequest(frame)
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		if req.Op != op || req.ID != goldenID[op] {
			t.Errorf("%s decodes as op %q id %d", frame, req.Op, req.ID)
		}
		again, err2 := json.Marshal(req)
		if err2 != nil {
			t.Fatal(err2)
		}
		if !bytes.Equal(again, frame) {
			t.Errorf("%s: decoded and encoded again as Request:\n%s\n(a field of the op's params is not in Request)", frame, again)
		}
	}
}

// TestGoldenMessagesDecode: every golden reply, push and error decodes as
// a client decodes it (Message), each payload into its type with every
// field kept.
func TestGoldenMessagesDecode(t *testing.T) {
	replies := goldenReplies()
	for _, op := range protocol.Ops {
		var m protocol.Message
		if err := json.Unmarshal(protocoltest.Frame(t, protocoltest.Replies, op), &m); err != nil {
			t.Fatal(err)
		}
		if m.ID != goldenID[op] || m.Error != nil || m.Push != "" {
			t.Errorf("reply to %s decodes as %+v", op, m)
		}
		want := replies[op]
		got := reflect.New(reflect.TypeOf(want))
		if err := json.Unmarshal(m.OK, got.Interface()); err != nil {
			t.Fatalf("reply to %s: %v", op, err)
		}
		b, _ := json.Marshal(got.Elem().Interface())
		if wantB, _ := json.Marshal(want); !bytes.Equal(b, wantB) {
			t.Errorf("reply to %s: ok decodes and encodes again as\n%s\nwant\n%s", op, b, wantB)
		}
	}
	for _, kind := range protocol.Pushes {
		var m protocol.Message
		if err := json.Unmarshal(protocoltest.Frame(t, protocoltest.Pushes, kind), &m); err != nil {
			t.Fatal(err)
		}
		if m.Push != kind || m.ID != 0 {
			t.Errorf("push %s decodes as %+v", kind, m)
		}
		var again []byte
		switch kind {
		case protocol.PushCoupon:
			var c couponmesh.Coupon
			if err := json.Unmarshal(m.Coupon, &c); err != nil {
				t.Fatal(err)
			}
			again = protocol.CouponPush(c)
		case protocol.PushFeed:
			again = protocol.FeedPush(*m.Entry)
		case protocol.PushPresence:
			var id string
			if err := json.Unmarshal(m.Coupon, &id); err != nil {
				t.Fatal(err)
			}
			again = protocol.PresencePush(id, m.Watching)
		case protocol.PushDraining:
			again = protocol.DrainingPush(m.Addresses)
		}
		if want := protocoltest.Frame(t, protocoltest.Pushes, kind); !bytes.Equal(again, want) {
			t.Errorf("push %s decoded as a Message and encoded again:\n%s\nwant\n%s", kind, again, want)
		}
	}
	for _, code := range couponmesh.Codes {
		var m protocol.Message
		if err := json.Unmarshal(protocoltest.Frame(t, protocoltest.Errors, string(code)), &m); err != nil {
			t.Fatal(err)
		}
		if m.Error == nil || m.Error.Code != code || m.Error.Message != goldenErrors[code] || m.ID == 0 || m.OK != nil {
			t.Errorf("error %s decodes as %+v", code, m)
		}
	}
}
