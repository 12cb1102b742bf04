package placement

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
)

// Activations pages through the activations in identity order, whatever
// the map order, for every page size and filter.
func TestActivationsPages(t *testing.T) {
	l := New(0)
	var all []string
	for range 500 {
		kind := []string{"coupon", "user"}[rand.IntN(2)]
		id := fmt.Sprintf("x%d", rand.IntN(1_000_000))
		key := kind + "/" + id
		if _, ok := l.active[key]; ok {
			continue
		}
		l.active[key] = Activation{Kind: kind, ID: id}
		l.counts[kind]++
		all = append(all, key)
	}
	sort.Strings(all)
	for _, kind := range []string{"", "coupon", "user"} {
		var want []string
		for _, k := range all {
			if kind == "" || k[:len(kind)] == kind {
				want = append(want, k)
			}
		}
		for _, limit := range []int{1, 7, 50, 1000} {
			var got []string
			after := ""
			for {
				page := l.Activations(kind, after, limit)
				for _, a := range page {
					got = append(got, a.Kind+"/"+a.ID)
				}
				if len(page) < limit {
					break
				}
				after = got[len(got)-1]
			}
			if !slices.Equal(got, want) {
				t.Fatalf("kind %q limit %d: got %d identities, want %d (first %v vs %v)", kind, limit, len(got), len(want), got[:min(3, len(got))], want[:min(3, len(want))])
			}
		}
	}
	if n := l.Counts(); n["coupon"]+n["user"] != len(all) {
		t.Fatalf("counts %v, want %d in all", n, len(all))
	}
	if all := l.Activations("", "", 0); len(all) != len(l.active) {
		t.Fatalf("limit 0: %d of %d", len(all), len(l.active))
	}
}

// What the debug console costs a node holding 100k activations: one page
// of the actor list, the counts the member table shows every second, and
// one identity.
func BenchmarkConsoleQueries100k(b *testing.B) {
	l := New(0)
	for i := range 100_000 {
		kind := "coupon"
		if i%2 == 1 {
			kind = "user"
		}
		id := fmt.Sprintf("id%06d", i)
		l.active[kind+"/"+id] = Activation{Kind: kind, ID: id, Since: time.Now()}
		l.counts[kind]++
	}
	b.Run("Activations(page of 50)", func(b *testing.B) {
		for b.Loop() {
			if got := l.Activations("coupon", "coupon/id050000", 50); len(got) != 50 {
				b.Fatal(len(got))
			}
		}
	})
	b.Run("Counts", func(b *testing.B) {
		for b.Loop() {
			l.Counts()
		}
	})
	b.Run("Find", func(b *testing.B) {
		for b.Loop() {
			l.Find("user", "id012345")
		}
	})
}

// Moved reports, for MovedFor after a topology change, exactly the
// identities whose owner the change gave to another member: those of a
// member that died, not the others.
func TestMovedAfterAMemberDies(t *testing.T) {
	l := New(0)
	before := ring(7001, 7002, 7003)
	l.ring.Store(ring(7001, 7003)) // 7002 died
	l.swapped(before, time.Now())
	moved := 0
	for i := range 300 {
		id := fmt.Sprint("c", i)
		was := before.GetByClusterIdentity(&cluster.ClusterIdentity{Kind: "coupon", Identity: id})
		if got, want := l.Moved("coupon", id), was == "127.0.0.1:7002"; got != want {
			t.Fatalf("%s (owner %s before): Moved %v, want %v", id, was, got, want)
		}
		if l.Moved("coupon", id) {
			moved++
		}
	}
	if moved == 0 || moved == 300 {
		t.Fatalf("%d of 300 moved: the test proves nothing", moved)
	}
	l.prev.Store(nil)
	l.swapped(before, time.Now().Add(-MovedFor))
	for i := range 300 {
		if l.Moved("coupon", fmt.Sprint("c", i)) {
			t.Fatalf("c%d still moved %s after the change", i, MovedFor)
		}
	}
}

// Moved counts every change of the last MovedFor, not only the last one:
// an identity that moved to another member and back was stopped here
// meanwhile, and one moved by the first of two quick changes is still
// loading on its new owner.
func TestMovedOverSeveralChanges(t *testing.T) {
	l := New(0)
	three, two := ring(7001, 7002, 7003), ring(7001, 7003)
	// 7002 is partitioned away and back: three, two, three again.
	l.ring.Store(three)
	l.swapped(three, time.Now())
	l.swapped(two, time.Now())
	flipped := 0
	for i := range 300 {
		id := fmt.Sprint("c", i)
		ci := &cluster.ClusterIdentity{Kind: "coupon", Identity: id}
		want := two.GetByClusterIdentity(ci) != three.GetByClusterIdentity(ci)
		if got := l.Moved("coupon", id); got != want {
			t.Fatalf("%s: Moved %v, want %v (it moved away and back)", id, got, want)
		}
		if want {
			flipped++
		}
	}
	if flipped == 0 {
		t.Fatal("no identity moved: the test proves nothing")
	}
	for range 2 * maxPrev {
		l.swapped(three, time.Now())
	}
	for i := range 300 {
		if l.Moved("coupon", fmt.Sprint("c", i)) {
			t.Fatalf("c%d moved: only the last %d rings count", i, maxPrev)
		}
	}
}

// ring returns the rendezvous ring of members on 127.0.0.1 at ports.
func ring(ports ...int) *cluster.Rendezvous {
	var ms []*cluster.Member
	for _, p := range ports {
		ms = append(ms, &cluster.Member{Id: fmt.Sprint(p), Host: "127.0.0.1", Port: int32(p), Kinds: []string{"coupon"}})
	}
	r := cluster.NewRendezvous()
	r.UpdateMembers(ms)
	return r
}
