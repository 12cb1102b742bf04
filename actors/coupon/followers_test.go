package coupon

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

func TestFollowersLoadOnceAndKeepFollowsToldDuringALoad(t *testing.T) {
	var f followers
	var loads atomic.Int32
	release := make(chan struct{})
	load := func(context.Context) ([]string, error) {
		loads.Add(1)
		<-release
		return []string{"ann"}, nil // read before bob's follow was written
	}
	var wg sync.WaitGroup
	results := make([][]string, 4)
	for i := range results {
		wg.Go(func() {
			var err error
			if results[i], err = f.list(t.Context(), load); err != nil {
				t.Error(err)
			}
		})
	}
	for { // wait until the load runs
		f.mu.Lock()
		running := f.loading != nil
		f.mu.Unlock()
		if running {
			break
		}
		runtime.Gosched()
	}
	f.follow("bob")
	close(release)
	wg.Wait()
	if n := loads.Load(); n != 1 {
		t.Fatalf("%d loads, want 1", n)
	}
	for i, r := range results {
		slices.Sort(r)
		if !slices.Equal(r, []string{"ann", "bob"}) {
			t.Fatalf("list %d: %v, want [ann bob]", i, r)
		}
	}

	f.unfollow("ann")
	f.follow("cy")
	got, err := f.list(t.Context(), func(context.Context) ([]string, error) {
		t.Fatal("loaded again within the TTL")
		return nil, nil
	})
	slices.Sort(got)
	if err != nil || !slices.Equal(got, []string{"bob", "cy"}) {
		t.Fatalf("after unfollow ann, follow cy: %v %v", got, err)
	}
}

func TestFollowersFailedLoadIsNotKept(t *testing.T) {
	var f followers
	down := errors.New("database down")
	if _, err := f.list(t.Context(), func(context.Context) ([]string, error) { return nil, down }); !errors.Is(err, down) {
		t.Fatalf("list: %v, want %v", err, down)
	}
	f.follow("ann") // no set loaded: the next load reads it from the database
	got, err := f.list(t.Context(), func(context.Context) ([]string, error) { return []string{"ann"}, nil })
	if err != nil || !slices.Equal(got, []string{"ann"}) {
		t.Fatalf("list after a failed load: %v %v", got, err)
	}
}

func TestFollowersOfANewCouponNeedNoLoad(t *testing.T) {
	var f followers
	f.none()
	f.follow("ann")
	got, err := f.list(t.Context(), func(context.Context) ([]string, error) {
		t.Fatal("loaded the followers of a coupon just created")
		return nil, nil
	})
	if err != nil || !slices.Equal(got, []string{"ann"}) {
		t.Fatalf("list: %v %v, want [ann]", got, err)
	}
}
