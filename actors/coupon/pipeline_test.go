package coupon_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors"
	"github.com/couponmesh/couponmesh/actors/coupon"
)

// activation runs a Machine as its grain does: one goroutine owns it,
// requests and write outcomes arrive as messages in its inbox, and the
// journal's writes run off it (actors.WriteBatch), one at a time, while
// new requests keep being decided.
type activation struct {
	m       *coupon.Machine
	inbox   chan func()
	batches int // writes started (owned by the loop)
}

func startActivation(t *testing.T, id string) *activation {
	t.Helper()
	m, err := coupon.Load(t.Context(), store, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Small batches, so that the two activations' writes interleave many
	// times.
	m.Journal().MaxBatch = 7
	a := &activation{m: m, inbox: make(chan func(), 4096)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for {
			select {
			case f := <-a.inbox:
				f()
				a.flush(ctx)
			case <-ctx.Done():
				return
			}
		}
	}()
	return a
}

func (a *activation) flush(ctx context.Context) {
	j := a.m.Journal()
	es := j.Next()
	if es == nil {
		return
	}
	a.batches++
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		r := actors.WriteBatch(wctx, store, es)
		cancel()
		select {
		case a.inbox <- func() { j.Settle(ctx, r) }:
		case <-ctx.Done():
		}
	}()
}

func (a *activation) claim(user, rid string) (couponmesh.Claim, error) {
	type result struct {
		c   couponmesh.Claim
		err error
	}
	done := make(chan result, 1)
	a.inbox <- func() {
		a.m.StartClaim(context.Background(), user, rid, func(c couponmesh.Claim, err error) { done <- result{c, err} })
	}
	r := <-done
	return r.c, r.err
}

// Two activations of one coupon pipeline at once over one journal (as
// during churn), and every user claims on both at the same moment, half of
// them with the same rid (a client retrying through another node), half
// with two rids (two devices). The journal, read from the database, must
// hold exactly quantity claims with n 1..quantity and no user twice; every
// ok answer must be the journal's claim of that user; a user told sold_out
// must hold none; a user who got ok on both with one rid got the same claim.
func TestTwoActivationsPipelining(t *testing.T) {
	const quantity, users = 120, 400
	id := uniq("pipe2")
	newCoupon(t, id, quantity)
	acts := [2]*activation{startActivation(t, id), startActivation(t, id)}
	type answer struct {
		c    couponmesh.Claim
		code couponmesh.Code
	}
	answers := make([][2]answer, users)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for u := range users {
		for i, a := range acts {
			wg.Go(func() {
				<-start
				// Users arrive over 0.8 s, each on both at once: both
				// activations keep pipelining while the other writes.
				time.Sleep(time.Duration(u) * 2 * time.Millisecond)
				user, rid := fmt.Sprintf("u%03d", u), "rid"
				if u%2 == 1 {
					rid = fmt.Sprintf("rid-%d", i)
				}
				c, err := a.claim(user, rid)
				// Unavailable: lost to the other activation too often, or
				// the claim key taken by a claim not visible yet: retry,
				// as a client does.
				for retry := 0; couponmesh.ErrorCode(err) == couponmesh.CodeUnavailable && retry < 50; retry++ {
					time.Sleep(time.Duration(retry) * time.Millisecond)
					c, err = a.claim(user, rid)
				}
				answers[u][i] = answer{c, couponmesh.ErrorCode(err)}
			})
		}
	}
	close(start)
	wg.Wait()

	entries, err := store.Entries(t.Context(), coupon.Entity(id), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	journal, err := coupon.Claims(entries)
	if err != nil {
		t.Fatal(err)
	}
	n := len(journal)
	if n != quantity {
		t.Fatalf("the journal holds %d claims, want %d", n, quantity)
	}
	oks := 0
	for u, as := range answers {
		user := fmt.Sprintf("u%03d", u)
		jc, claimed := journal[user]
		gotOK := false
		for i, a := range as {
			switch a.code {
			case "":
				gotOK = true
				if !claimed || a.c.Code != jc.Code || a.c.N != jc.N {
					t.Errorf("%s told ok %s/%d by activation %d; journal: %+v (%v)", user, a.c.Code, a.c.N, i, jc, claimed)
				}
			case couponmesh.CodeSoldOut:
				if claimed {
					t.Errorf("%s told sold_out by activation %d but holds claim %+v", user, i, jc)
				}
			case couponmesh.CodeAlreadyClaimed:
				if !claimed {
					t.Errorf("%s told already_claimed by activation %d without a claim", user, i)
				}
			default:
				t.Errorf("%s on activation %d: %s", user, i, a.code)
			}
		}
		if claimed && !gotOK {
			t.Errorf("%s holds claim %+v but was never told ok", user, jc)
		}
		if gotOK {
			oks++
		}
	}
	if oks != quantity {
		t.Errorf("%d users told ok, want %d", oks, quantity)
	}
	for i, a := range acts {
		done := make(chan couponmesh.Coupon, 1)
		a.inbox <- func() { done <- a.m.Coupon() }
		c := <-done
		t.Logf("activation %d: %d writes, sees %d claimed", i, a.batches, c.Claimed)
	}
}

// CatchUp keeps its meaning on an idle journal and refuses, without
// reading, while entries are pending or in flight (they could be read back
// as another activation's and applied twice); nothing is answered before
// its entry is durable.
func TestCatchUpOnlyWhenIdle(t *testing.T) {
	ctx := t.Context()
	id := uniq("idle")
	newCoupon(t, id, 5)
	m, err := coupon.Load(ctx, store, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	j := m.Journal()
	answered := false
	m.StartClaim(ctx, "ann", "r", func(couponmesh.Claim, error) { answered = true })
	if _, err := j.CatchUp(ctx); !errors.Is(err, actors.ErrBusy) {
		t.Fatalf("CatchUp with a claim pending: %v, want ErrBusy", err)
	}
	es := j.Next()
	if len(es) != 1 || answered {
		t.Fatalf("in flight: %d entries, answered %v", len(es), answered)
	}
	if _, err := j.CatchUp(ctx); !errors.Is(err, actors.ErrBusy) {
		t.Fatalf("CatchUp with a write in flight: %v, want ErrBusy", err)
	}
	j.Settle(ctx, actors.WriteBatch(ctx, store, es))
	if !answered || !j.Idle() {
		t.Fatalf("after the write: answered %v, idle %v", answered, j.Idle())
	}
	// Another activation claims; an idle journal catches up with it.
	other, err := coupon.Load(ctx, store, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Claim(ctx, "bob", "r"); err != nil {
		t.Fatal(err)
	}
	if n, err := j.CatchUp(ctx); n != 1 || err != nil {
		t.Fatalf("CatchUp when idle: %d, %v; want 1 entry", n, err)
	}
	if c := m.Coupon(); c.Claimed != 2 {
		t.Fatalf("claimed %d after catching up, want 2", c.Claimed)
	}
}

// Answers that memory holds never wait on the database or on a write in
// flight: a same-rid retry of a durable claim, another rid of its user
// (already_claimed), and any claim of a coupon durably sold out. A claim
// while the last unit is pending waits for that write (never sold_out
// before it), and gets sold_out once it is durable.
func TestAnswersFromMemoryDoNotWait(t *testing.T) {
	ctx := t.Context()
	m := newCoupon(t, uniq("mem"), 2)
	first, err := m.Claim(ctx, "ann", "r1")
	if err != nil {
		t.Fatal(err)
	}
	j := m.Journal()
	type answer struct {
		done bool
		c    couponmesh.Claim
		err  error
	}
	start := func(user, rid string) *answer {
		a := &answer{}
		m.StartClaim(ctx, user, rid, func(c couponmesh.Claim, err error) { *a = answer{true, c, err} })
		return a
	}
	// bob takes the last unit; his write is in flight, not settled.
	bob := start("bob", "r1")
	es := j.Next()
	if bob.done || len(es) != 1 {
		t.Fatalf("bob answered %v before his write, or %d entries in flight", bob, len(es))
	}
	if a := start("ann", "r1"); !a.done || a.err != nil || a.c.Code != first.Code || a.c.N != first.N {
		t.Fatalf("same-rid retry while a write is in flight: %+v, want %+v at once", a, first)
	}
	if a := start("ann", "r2"); !a.done || couponmesh.ErrorCode(a.err) != couponmesh.CodeAlreadyClaimed {
		t.Fatalf("another rid of ann while a write is in flight: %+v, want already_claimed at once", a)
	}
	cid := start("cid", "r1")
	if cid.done {
		t.Fatalf("cid answered %+v while bob's claim of the last unit could still fail", cid)
	}
	j.Settle(ctx, actors.WriteBatch(ctx, store, es))
	if !bob.done || bob.err != nil || bob.c.N != 2 {
		t.Fatalf("bob after his write: %+v", bob)
	}
	if !cid.done || couponmesh.ErrorCode(cid.err) != couponmesh.CodeSoldOut {
		t.Fatalf("cid after bob's write: %+v, want sold_out", cid)
	}
	// Durably sold out: answered at once, nothing proposed.
	if a := start("dan", "r1"); !a.done || couponmesh.ErrorCode(a.err) != couponmesh.CodeSoldOut || !j.Idle() {
		t.Fatalf("claim of a coupon durably sold out: %+v (idle %v), want sold_out at once", a, j.Idle())
	}
}
