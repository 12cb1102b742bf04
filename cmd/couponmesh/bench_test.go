package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors/coupon"
	"github.com/couponmesh/couponmesh/bench"
	"github.com/couponmesh/couponmesh/internal/benchutil"
)

// BenchmarkCouponRead: reads of an active coupon through the node's
// Service (a cluster request answered from the grain's memory) against a
// read of its state from the database (the snapshot document by _id), from
// 8 goroutines. Run with -benchtime 1x.
func BenchmarkCouponRead(b *testing.B) {
	a := startApp(b, nil)
	c := createCoupon(b, a, "acme", couponmesh.CouponSpec{ID: "hot", Title: ptr("Hot"), Quantity: ptr(100)})
	ctx := context.Background()
	if err := a.store.Flush(ctx); err != nil { // snapshots are written behind
		b.Fatal(err)
	}
	for b.Loop() {
		for _, s := range []struct {
			key, name string
			read      func() error
		}{
			{"grain", "coupon read, active grain (memory)", func() error {
				got, err := a.svc.Coupon(ctx, c.ID)
				if err == nil && got.ID != c.ID {
					err = fmt.Errorf("got %q", got.ID)
				}
				return err
			}},
			{"db", "coupon read, database (snapshot by _id)", func() error {
				_, err := a.mongo.Snapshot(ctx, coupon.Entity(c.ID))
				return err
			}},
		} {
			r := benchutil.Measure(b, 8, 2*time.Second, func(int) error { return s.read() })
			b.ReportMetric(r.Rate, s.key+"_reads/s")
			b.ReportMetric(float64(r.P99.Microseconds()), s.key+"_p99_µs")
			fmt.Printf("%-44s %9.0f reads/s  p50 %8v  p99 %8v\n", s.name, r.Rate, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond))
		}
	}
}

// BenchmarkDurableClaims: claims through the node (each one a durable
// append to the coupon's journal, then one to the shopper's, both through
// the group commit) from 400 concurrent requests over 100 coupons and 100
// shoppers, against the raw insert rate of unordered BulkWrites of 256
// documents into the same embedded database in the same run. Run with
// -benchtime 1x.
func BenchmarkDurableClaims(b *testing.B) {
	a := startApp(b, nil)
	const coupons, users, n, workers, batch = 100, 100, 6000, 400, 256
	for i := range coupons {
		createCoupon(b, a, "acme", couponmesh.CouponSpec{ID: fmt.Sprintf("d%03d", i), Title: ptr("Bench"), Quantity: ptr(1000)})
	}
	client, err := mongo.Connect(options.Client().ApplyURI(a.db.URI()))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	raw, err := bench.RawCollection(context.Background(), client)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	round := 0
	for b.Loop() {
		round++
		rawRate, err := bench.RawBulkRate(ctx, raw, strconv.Itoa(round), n, batch)
		if err != nil {
			b.Fatal(err)
		}

		before := a.mongo.CommitStats()
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range workers {
			wg.Go(func() {
				for {
					k := next.Add(1) - 1
					if k >= n {
						return
					}
					u := k % users
					cp := (u + k/users + int64(round)*7) % coupons
					if _, err := a.svc.Claim(ctx, fmt.Sprintf("r%d-u%03d", round, u), fmt.Sprintf("d%03d", cp), fmt.Sprintf("k%d", k)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		took := time.Since(start)
		st := a.mongo.CommitStats()
		appends := st.Ops - before.Ops
		claimRate, appendRate := float64(n)/took.Seconds(), float64(appends)/took.Seconds()
		b.ReportMetric(claimRate, "claims/s")
		b.ReportMetric(appendRate, "appends/s")
		b.ReportMetric(rawRate, "raw_inserts/s")
		b.ReportMetric(100*appendRate/rawRate, "%_of_raw")
		fmt.Printf("durable claims through the node: %.0f claims/s = %.0f journal appends/s (%d BulkWrite calls, %.0f appends per call); raw BulkWrite %.0f inserts/s; appends at %.0f%% of raw\n",
			claimRate, appendRate, st.BulkWrites-before.BulkWrites, float64(appends)/float64(st.BulkWrites-before.BulkWrites), rawRate, 100*appendRate/rawRate)
	}
}
