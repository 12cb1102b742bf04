package ws

import (
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/protocol"
	"github.com/couponmesh/couponmesh/transport/auth"
	"github.com/couponmesh/couponmesh/transport/transporttest"
)

// benchCoupon is a coupon as pushes and replies carry it.
func benchCoupon() couponmesh.Coupon {
	now := time.Date(2026, 11, 29, 4, 0, 0, 0, time.UTC)
	return couponmesh.Coupon{
		ID: "c42", Merchant: "acme", Title: "20% off winter boots", Description: "All winter boots, in store and online.",
		Discount: "20%", Quantity: 500, Claimed: 117, Remaining: 383, ExpiresAt: now.Add(72 * time.Hour),
		Status: couponmesh.StatusActive, Version: 118, CreatedAt: now,
	}
}

// BenchmarkDecodeRequest decodes typical client frames (the auth frame with
// a real token of transport/auth).
func BenchmarkDecodeRequest(b *testing.B) {
	tokens, err := auth.New(auth.LocalConfig("bench"))
	if err != nil {
		b.Fatal(err)
	}
	tok, _, err := tokens.Issue(couponmesh.Principal{User: "shopper-00042", Role: couponmesh.RoleShopper})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, frame string }{
		{"auth", `{"id":1,"op":"auth","token":"` + tok + `"}`},
		{"get", `{"id":7,"op":"get","coupon":"c42"}`},
		{"claim", `{"id":8,"op":"claim","coupon":"c42","rid":"9f2c1e7a-3b4d-4c8e-a1f0-5d6e7f8a9b0c"}`},
		{"subscribe", `{"id":9,"op":"subscribe","coupons":[{"id":"c42","version":118},{"id":"c43","version":7},{"id":"c44","version":0}]}`},
	} {
		frame := []byte(c.frame)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				if _, err := decodeRequest(frame); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncodeReply encodes the reply frames of typical requests.
func BenchmarkEncodeReply(b *testing.B) {
	c := benchCoupon()
	claim := couponmesh.Claim{Coupon: "c42", User: "shopper-00042", N: 118, Code: "c42-0118", At: c.CreatedAt}
	for _, p := range []struct {
		name    string
		payload any
	}{
		{"ok-ping", nil},
		{"ok-get", protocol.CouponReply{Coupon: c}},
		{"ok-claim", protocol.ClaimReply{Claim: claim}},
	} {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := okFrame(8, p.payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	e := couponmesh.Errorf(couponmesh.CodeSoldOut, "coupon c42 is sold out (500 of 500 claimed)")
	b.Run("error-sold_out", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			errorFrame(8, e)
		}
	})
}

// BenchmarkSessionSend measures session.Send alone (lock, append to the
// queue) on a session without a connection whose writer turn is already
// scheduled (so Send schedules none): the queue is emptied every 512
// frames, under the lock, as the writer would take it. This is the per-session cost the hub pays per
// delivery before the writer goroutine and the socket.
func BenchmarkSessionSend(b *testing.B) {
	hub := transporttest.NewHub()
	h := NewHandler(LocalConfig(), transporttest.NewService(hub), hub, nil, nil, nil)
	s := newSession(h, nil, 1)
	s.writing = true
	frame := protocol.CouponPush(benchCoupon())
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if !s.Send(frame) {
			b.Fatal("Send refused")
		}
		if n++; n%512 == 0 {
			s.mu.Lock()
			s.queue = s.queue[:0]
			s.mu.Unlock()
		}
	}
}
