package user_test

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors"
	"github.com/couponmesh/couponmesh/actors/user"
)

var seq atomic.Int64 // unique ids across -count runs

// A busy feed: 200 coupon notices (each sent twice, as a retried notice
// is) and 50 claims reach a user grain while its first write is in flight.
// They go out in a few ordered writes, each request is answered only once
// its entry is durable, nothing is written twice, and the feed read from
// the database is 1..N without a gap, in the order the grain announced it.
func TestBusyFeedPipelines(t *testing.T) {
	ctx := t.Context()
	s := openStore(t)
	id := fmt.Sprintf("busy-%d-%d", os.Getpid(), seq.Add(1))
	m, err := user.Load(ctx, s, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Follow(ctx, "hot"); err != nil {
		t.Fatal(err)
	}
	var announced []int64
	m.OnEntry = func(e couponmesh.FeedEntry) { announced = append(announced, e.Seq) }
	j := m.Journal()
	pending := 0
	answer := func(err error) {
		if err != nil {
			t.Errorf("answer: %v", err)
		}
		pending--
	}
	const notices, claims = 200, 50
	for v := range notices {
		c := couponmesh.Coupon{ID: "hot", Title: "t", Quantity: 10, Version: int64(v + 2)}
		for range 2 {
			pending++
			m.StartCouponChanged(ctx, c, answer)
		}
		if v < claims {
			pending++
			m.StartRecordClaim(ctx, couponmesh.Claim{Coupon: fmt.Sprintf("c%d", v), User: id, N: 1, Code: "K"}, answer)
		}
		if v == 0 {
			// The first write leaves now; the rest is decided meanwhile.
			j.Settle(ctx, actors.WriteBatch(ctx, s, j.Next()))
		}
	}
	// Answered so far: the first write's two requests, and each notice's
	// duplicate (the same entry is pending). The others wait for writes.
	if pending != notices-1+claims-1 {
		t.Fatalf("%d requests wait, want %d", pending, notices-1+claims-1)
	}
	writes := 1
	for es := j.Next(); es != nil; es = j.Next() {
		writes++
		j.Settle(ctx, actors.WriteBatch(ctx, s, es))
	}
	if pending != 0 || !j.Idle() {
		t.Fatalf("%d requests unanswered, idle %v", pending, j.Idle())
	}
	t.Logf("%d requests in %d writes", 2*notices+claims, writes)
	if writes > 5 {
		t.Errorf("%d writes for %d requests: not pipelined", writes, 2*notices+claims)
	}
	entries, err := s.Entries(ctx, user.Entity(id), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := 1 + notices + claims // the follow, one entry per notice and per claim
	if len(entries) != want {
		t.Fatalf("the feed holds %d entries, want %d", len(entries), want)
	}
	for i, e := range entries {
		if e.Seq != int64(i+1) {
			t.Fatalf("entry %d has seq %d", i, e.Seq)
		}
	}
	if len(announced) != want-1 || announced[0] != 2 || announced[len(announced)-1] != int64(want) {
		t.Fatalf("announced %d entries (%v…), want seqs 2..%d", len(announced), announced[:min(3, len(announced))], want)
	}
	if w := m.Wallet(); len(w) != claims {
		t.Fatalf("wallet holds %d claims, want %d", len(w), claims)
	}
}
