package main

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/cluster/clustertest"
)

// TestGroupCommitUnderConcurrentClaims: 1,000 claims at once: 100 shoppers
// each claim 10 coupons, ten claims per coupon of 100 coupons of quantity 5. Every answer is right (5 ok and
// 5 sold out per coupon, the journal agrees), and the appends of all the
// grains share far fewer BulkWrite calls than there are claims. The
// database runs as its own process (as in production, and outside the race
// detector, which slows an in-process FerretDB tenfold).
func TestGroupCommitUnderConcurrentClaims(t *testing.T) {
	db := clustertest.StartDB(t, nil, testAddr(t), t.TempDir())
	a := startApp(t, func(c *Config) {
		c.MongoURI = db.URI()
		// Claims of one coupon queue in its grain; under the race detector
		// the tenth waits several seconds. This test is about batching and
		// correctness, not latency.
		c.Actors.RequestTimeout = Duration(time.Minute)
		c.Mongo.OpTimeout, c.Mongo.WriteTimeout = 30*time.Second, 30*time.Second
	})
	const coupons, perCoupon, quantity = 100, 10, 5
	ids := make([]string, coupons)
	for i := range ids {
		ids[i] = createCoupon(t, a, "acme", couponmesh.CouponSpec{ID: fmt.Sprintf("g%03d", i), Title: ptr("Group"), Quantity: ptr(quantity)}).ID
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	codes := make([]couponmesh.Code, coupons*perCoupon)
	before := a.mongo.CommitStats()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range codes {
		wg.Go(func() {
			<-start
			// Claim i: coupon i%100 by shopper i/10, so that each coupon
			// sees 10 distinct shoppers and each shopper 10 coupons.
			_, err := a.svc.Claim(ctx, fmt.Sprintf("s%03d", i/perCoupon), ids[i%coupons], fmt.Sprintf("r%d", i))
			codes[i] = couponmesh.ErrorCode(err)
		})
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	took := time.Since(t0)
	after := a.mongo.CommitStats()
	bulk, ops := after.BulkWrites-before.BulkWrites, after.Ops-before.Ops
	fmt.Printf("group commit: %d concurrent claims, %d journal appends, %d BulkWrite calls, %v\n", len(codes), ops, bulk, took.Round(time.Millisecond))
	t.Logf("%d claims: %d appends in %d BulkWrite calls (%.1f appends per call) in %v", len(codes), ops, bulk, float64(ops)/float64(bulk), took)

	ok := make([]int, coupons)
	for i, c := range codes {
		switch c {
		case "":
			ok[i%coupons]++
		case couponmesh.CodeSoldOut:
		default:
			t.Fatalf("claim %d: %s", i, c)
		}
	}
	for i, n := range ok {
		if n != quantity {
			t.Fatalf("coupon %s: %d claims ok, want %d", ids[i], n, quantity)
		}
	}
	if bulk > int64(len(codes))/4 {
		t.Errorf("%d BulkWrite calls for %d claims, want far fewer", bulk, len(codes))
	}
	for _, id := range ids[:10] {
		if n := journalClaims(t, ctx, a.mongo, id); n != quantity {
			t.Fatalf("journal of %s holds %d claims, want %d", id, n, quantity)
		}
	}
}
