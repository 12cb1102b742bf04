package protocol

import (
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
)

// BenchmarkPush encodes the push frames that grains send to the hubs: once
// per change, shared by every delivery.
func BenchmarkPush(b *testing.B) {
	now := time.Date(2026, 11, 29, 4, 0, 0, 0, time.UTC)
	c := couponmesh.Coupon{
		ID: "c42", Merchant: "acme", Title: "20% off winter boots", Description: "All winter boots, in store and online.",
		Discount: "20%", Quantity: 500, Claimed: 117, Remaining: 383, ExpiresAt: now.Add(72 * time.Hour),
		Status: couponmesh.StatusActive, Version: 118, CreatedAt: now,
	}
	b.Run("coupon", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(CouponPush(c))))
		for b.Loop() {
			CouponPush(c)
		}
	})
	claim := couponmesh.Claim{Coupon: "c42", User: "shopper-00042", N: 118, Code: "c42-0118", At: now}
	e := couponmesh.FeedEntry{Seq: 88, Type: couponmesh.FeedClaimed, Coupon: "c42", At: now, Claim: &claim}
	b.Run("feed-claimed", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(FeedPush(e))))
		for b.Loop() {
			FeedPush(e)
		}
	})
}
