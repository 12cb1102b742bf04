package coupon_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors/coupon"
)

// countingStore counts the batched follower reads that reach the database.
type countingStore struct {
	couponmesh.Store
	reads, coupons atomic.Int64
}

func (s *countingStore) FollowersOf(ctx context.Context, coupons []string) (map[string][]string, error) {
	s.reads.Add(1)
	s.coupons.Add(int64(len(coupons)))
	return s.Store.FollowersOf(ctx, coupons)
}

// Many grains asking for their followers at once (an expiry burst) are
// answered from a few reads, each grain with its own coupon's followers.
func TestFollowerReadsAreBatched(t *testing.T) {
	ctx := t.Context()
	const n = 300
	ids := make([]string, n)
	want := map[string][]string{}
	for i := range ids {
		ids[i] = uniq("fl" + strconv.Itoa(i))
		for u := range i % 3 { // 0, 1 or 2 followers
			user := "u" + strconv.Itoa(u)
			if err := store.AddFollower(ctx, ids[i], user); err != nil {
				t.Fatal(err)
			}
			want[ids[i]] = append(want[ids[i]], user)
		}
	}
	cs := &countingStore{Store: store}
	followers := coupon.FollowerLoads(cs, 30*time.Second)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 2 * n { // each coupon asked twice
		id := ids[i%n]
		wg.Go(func() {
			<-start
			got, err := followers(ctx, id)
			if err != nil {
				t.Errorf("%s: %v", id, err)
				return
			}
			slices.Sort(got)
			if !slices.Equal(got, want[id]) {
				t.Errorf("followers of %s: %v, want %v", id, got, want[id])
			}
		})
	}
	close(start)
	wg.Wait()
	reads := cs.reads.Load()
	t.Logf("%d lookups of %d coupons: %d reads of %d coupons in all", 2*n, n, reads, cs.coupons.Load())
	if reads > n/4 {
		t.Errorf("%d reads for %d lookups at once, want at most %d", reads, 2*n, n/4)
	}
}

// A lookup whose context ends returns at once; the read goes on for the
// others.
func TestFollowerReadGivesUpWithItsContext(t *testing.T) {
	followers := coupon.FollowerLoads(store, 30*time.Second)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := followers(ctx, uniq("gone")); err == nil {
		t.Fatal("a lookup with a cancelled context succeeded")
	}
	id := uniq("after")
	if err := store.AddFollower(t.Context(), id, "zed"); err != nil {
		t.Fatal(err)
	}
	got, err := followers(t.Context(), id)
	if err != nil || !slices.Equal(got, []string{"zed"}) {
		t.Fatalf("followers of %s: %v, %v", id, got, err)
	}
}
