package cache_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/internal/benchutil"
	"github.com/couponmesh/couponmesh/persistence/cache"
)

// report prints one line and reports its figures under units prefixed with
// key, so that every case shows in the benchmark line.
func report(b *testing.B, key, what string, r benchutil.Result) {
	b.ReportMetric(r.Rate, key+"_ops/s")
	b.ReportMetric(float64(r.P99.Microseconds()), key+"_p99_µs")
	fmt.Printf("%-44s %s\n", what, r)
}

// BenchmarkBrowse: one browse page (20 of 200 coupons) from the bigcache
// layer against the same query from the database (FerretDB scans and
// decodes the collection in Go for anything but an exact _id filter).
// Run with -benchtime 1x.
func BenchmarkBrowse(b *testing.B) {
	db := openDB(b, testDB.URI(), "", nil)
	c := newCache(b, db, cache.Config{BrowseTTL: time.Hour})
	now := time.Now().UTC()
	for i := range 200 {
		if err := db.PutSnapshot(context.Background(), coupon(fmt.Sprintf("c%03d", i), fmt.Sprintf("m%d", i%4), now.Add(time.Duration(i)*time.Second))); err != nil {
			b.Fatal(err)
		}
	}
	q := couponmesh.BrowseQuery{Merchant: "m1", Status: couponmesh.StatusActive, Limit: 20}
	for b.Loop() {
		for _, s := range []struct {
			key, name string
			store     couponmesh.Store
		}{{"cached", "browse, cached (bigcache)", c}, {"db", "browse, uncached (database)", db}} {
			for _, g := range []int{1, 8} {
				r := benchutil.Measure(b, g, 2*time.Second, func(int) error {
					p, err := s.store.BrowseCoupons(context.Background(), q)
					if err == nil && len(p.Coupons) != 20 {
						err = fmt.Errorf("%d coupons", len(p.Coupons))
					}
					return err
				})
				report(b, fmt.Sprintf("%s-%dg", s.key, g), fmt.Sprintf("%s, %d goroutines", s.name, g), r)
			}
		}
	}
}

// BenchmarkReactivation: what a grain's activation reads (Journal.Load:
// the snapshot, then the journal after it) for a coupon whose snapshot
// holds 500 claims (~60 KB), from bigcache (plus the validating journal
// point read) against from the database. Run with -benchtime 1x.
func BenchmarkReactivation(b *testing.B) {
	db := openDB(b, testDB.URI(), "", nil)
	c := newCache(b, db, cache.Config{})
	ctx := context.Background()
	type claim struct {
		User, RID, Code string
		N               int
	}
	claims := make([]claim, 500)
	for i := range claims {
		claims[i] = claim{User: fmt.Sprintf("shopper-%05d", i), RID: fmt.Sprintf("rid-%016d", i), Code: fmt.Sprintf("CODE-%06d", i), N: i + 1}
	}
	data, _ := json.Marshal(map[string]any{"claims": claims})
	const ent = "coupon/big"
	snap := couponmesh.Snapshot{Entity: ent, Seq: 500, Data: data}
	snap.Coupon = coupon("big", "m", time.Now()).Coupon
	if err := c.PutSnapshot(ctx, snap); err != nil {
		b.Fatal(err)
	}
	if err := c.Flush(ctx); err != nil { // written behind: into the database now
		b.Fatal(err)
	}
	b.Logf("snapshot %d bytes", len(data))
	for b.Loop() {
		for _, s := range []struct {
			key, name string
			store     couponmesh.Store
		}{{"cached", "reactivation, snapshot from bigcache", c}, {"db", "reactivation, snapshot from database", db}} {
			r := benchutil.Measure(b, 1, 2*time.Second, func(int) error {
				got, err := s.store.Snapshot(ctx, ent)
				if err != nil {
					return err
				}
				_, err = s.store.Entries(ctx, ent, got.Seq, 1000)
				return err
			})
			report(b, s.key, s.name, r)
		}
	}
}
