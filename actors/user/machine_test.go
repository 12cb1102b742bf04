package user_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors/user"
	"github.com/couponmesh/couponmesh/persistence/devdb"
	"github.com/couponmesh/couponmesh/persistence/devdb/devdbtest"
	"github.com/couponmesh/couponmesh/persistence/mongodb"
)

var testDB *devdb.DB

func TestMain(m *testing.M) { os.Exit(devdbtest.Main(m, &testDB)) }

var dbSeq atomic.Int64

// openStore opens a store on a fresh database of the shared server.
func openStore(t *testing.T) *mongodb.Store {
	t.Helper()
	cfg := mongodb.DefaultConfig()
	cfg.URI, cfg.Database = testDB.URI(), fmt.Sprintf("user%d", dbSeq.Add(1))
	s, err := mongodb.Open(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func load(t *testing.T, s couponmesh.Store, id string) *user.Machine {
	t.Helper()
	m, err := user.Load(t.Context(), s, id)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// recordClaim records c and reports whether it added an entry to the feed.
func recordClaim(t *testing.T, m *user.Machine, c couponmesh.Claim) (bool, error) {
	before := m.Seq()
	err := m.RecordClaim(t.Context(), c)
	return m.Seq() > before, err
}

func claimOf(coupon string, n int) couponmesh.Claim {
	return couponmesh.Claim{Coupon: coupon, User: "alice", N: n, Code: "code-" + coupon, At: time.Now().UTC().Truncate(time.Millisecond)}
}

// seqs returns the seqs of entries.
func seqs(entries []couponmesh.FeedEntry) []int64 {
	out := make([]int64, len(entries))
	for i, e := range entries {
		out[i] = e.Seq
	}
	return out
}

// wantFeed checks that the feed after seq after holds exactly the seqs
// want, in order.
func wantFeed(t *testing.T, m *user.Machine, after int64, limit int, want []int64) []couponmesh.FeedEntry {
	t.Helper()
	got, err := m.Feed(t.Context(), after, limit)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seqs(got), want) {
		t.Fatalf("feed after %d (limit %d): seqs %v, want %v", after, limit, seqs(got), want)
	}
	return got
}

// record_claim: a claim enters the wallet and the feed once per coupon;
// its second delivery (a retried claim) changes nothing; both survive a
// reload from the journal alone and from a snapshot plus the journal.
func TestRecordClaimOncePerCoupon(t *testing.T) {
	s := openStore(t)
	m := load(t, s, "alice")
	var published []couponmesh.FeedEntry
	m.OnEntry = func(e couponmesh.FeedEntry) { published = append(published, e) }

	c1, c2 := claimOf("c1", 3), claimOf("c2", 1)
	for i, c := range []couponmesh.Claim{c1, c1, c2, c1} {
		added, err := recordClaim(t, m, c)
		if err != nil {
			t.Fatal(err)
		}
		if want := i == 0 || i == 2; added != want {
			t.Errorf("record %d (%s): added %v, want %v", i, c.Coupon, added, want)
		}
	}
	if w := m.Wallet(); len(w) != 2 || w[0].Coupon != "c1" || w[0].N != 3 || w[0].Code != c1.Code || w[1].Coupon != "c2" {
		t.Fatalf("wallet %+v", w)
	}
	if len(published) != 2 || published[0].Seq != 1 || published[1].Seq != 2 || published[0].Type != couponmesh.FeedClaimed || published[0].Claim.N != 3 {
		t.Fatalf("published %+v", published)
	}
	feed := wantFeed(t, m, 0, 0, []int64{1, 2})
	if feed[1].Claim == nil || feed[1].Claim.Coupon != "c2" {
		t.Fatalf("feed %+v", feed)
	}

	// From the journal alone, then from a snapshot and a later entry.
	again := load(t, s, "alice")
	if !slices.Equal(again.Wallet(), m.Wallet()) || again.Seq() != 2 {
		t.Fatalf("reloaded: wallet %+v seq %d, want %+v seq 2", again.Wallet(), again.Seq(), m.Wallet())
	}
	if added, err := recordClaim(t, again, c1); added || err != nil {
		t.Fatalf("reloaded activation records c1 again: %v %v", added, err)
	}
	if err := m.WriteSnapshot(t.Context()); err != nil {
		t.Fatal(err)
	}
	if m.SnapshotDue() {
		t.Fatal("snapshot due right after one was written")
	}
	c3 := claimOf("c3", 7)
	if _, err := recordClaim(t, m, c3); err != nil {
		t.Fatal(err)
	}
	if !m.SnapshotDue() {
		t.Fatal("no snapshot due after a new entry")
	}
	third := load(t, s, "alice")
	if w := third.Wallet(); len(w) != 3 || w[2] != c3 || third.Seq() != 3 {
		t.Fatalf("reloaded from the snapshot: wallet %+v seq %d", w, third.Seq())
	}
}

// Two activations of one user (churn) record the same claim: the journal's
// unique key keeps it to one wallet entry, and the loser is not told an
// error (the entry exists: the claim is recorded).
func TestRecordClaimTwoActivations(t *testing.T) {
	s := openStore(t)
	a, b := load(t, s, "alice"), load(t, s, "alice")
	c := claimOf("c1", 1)
	if added, err := recordClaim(t, a, c); !added || err != nil {
		t.Fatalf("first activation: %v %v", added, err)
	}
	if _, err := recordClaim(t, b, c); err != nil {
		t.Fatalf("second activation, same claim: %v", err)
	}
	if w := b.Wallet(); len(w) != 1 || w[0] != c {
		t.Fatalf("second activation's wallet %+v, want the one claim", w)
	}
	if w := load(t, s, "alice").Wallet(); len(w) != 1 {
		t.Fatalf("journal holds %d wallet entries, want 1", len(w))
	}
	// The stale activation catches up before its next write.
	if err := b.Follow(t.Context(), "c9"); err != nil {
		t.Fatal(err)
	}
	wantFeed(t, load(t, s, "alice"), 0, 0, []int64{1, 2})
}

// The feed is the journal: contiguous seqs from 1, follow and unfollow
// once each, coupon_changed only for followed coupons and once per version;
// reads come from memory for recent entries and from the database for
// older ones, with limits applied.
func TestFeed(t *testing.T) {
	s := openStore(t)
	m := load(t, s, "alice")
	ctx := t.Context()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(m.Follow(ctx, "c1"))
	must(m.Follow(ctx, "c1")) // no second entry
	must(m.CouponChanged(ctx, couponmesh.Coupon{ID: "c1", Version: 2}))
	must(m.CouponChanged(ctx, couponmesh.Coupon{ID: "c1", Version: 2})) // the same notice again
	must(m.CouponChanged(ctx, couponmesh.Coupon{ID: "c2", Version: 5})) // not followed
	must(m.Unfollow(ctx, "c1"))
	must(m.Unfollow(ctx, "c1"))
	must(m.CouponChanged(ctx, couponmesh.Coupon{ID: "c1", Version: 3})) // no longer followed
	feed := wantFeed(t, m, 0, 0, []int64{1, 2, 3})
	types := []string{feed[0].Type, feed[1].Type, feed[2].Type}
	if !slices.Equal(types, []string{couponmesh.FeedFollowed, couponmesh.FeedCouponChanged, couponmesh.FeedUnfollowed}) || feed[1].Change.Version != 2 {
		t.Fatalf("feed %+v", feed)
	}
	if f := m.Following(); len(f) != 0 {
		t.Fatalf("following %v after unfollow", f)
	}
	if fs, err := s.Followers(ctx, "c1"); err != nil || len(fs) != 0 {
		t.Fatalf("followers index of c1: %v %v", fs, err)
	}
	wantFeed(t, m, 3, 0, []int64{})
	wantFeed(t, m, 99, 0, []int64{})

	// More entries than an activation keeps in memory (256): old ones come
	// from the database, with the same content.
	must(m.Follow(ctx, "hot"))
	for v := range 300 {
		must(m.CouponChanged(ctx, couponmesh.Coupon{ID: "hot", Version: int64(v + 1)}))
	}
	last := m.Seq()
	if last != 304 {
		t.Fatalf("seq %d after 304 entries", last)
	}
	span := func(from, to int64) []int64 {
		var out []int64
		for s := from; s <= to; s++ {
			out = append(out, s)
		}
		return out
	}
	old := wantFeed(t, m, 10, 5, span(11, 15))                                   // from the database
	recent := wantFeed(t, m, last-3, 0, span(last-2, last))                      // from memory
	wantFeed(t, m, 0, 0, span(1, couponmesh.DefaultFeedLimit))                   // default limit
	wantFeed(t, m, 0, couponmesh.MaxFeedLimit+100, span(1, 304))                 // capped at 500: all 304
	fromDB := wantFeed(t, load(t, s, "alice"), last-3, 0, span(last-2, last))[0] // decoded by a new activation
	if fromDB.Type != recent[0].Type || fromDB.Change.Version != recent[0].Change.Version || fromDB.Coupon != recent[0].Coupon {
		t.Fatalf("entry %d from memory %+v, from a reload %+v", last-2, recent[0], fromDB)
	}
	if old[0].Type != couponmesh.FeedCouponChanged || old[0].Change.Version != 7 {
		t.Fatalf("entry 11: %+v, want the change to version 7", old[0])
	}
}

// Follows persist the coupon → followers index, and survive a reload.
func TestFollowKeepsTheIndex(t *testing.T) {
	s := openStore(t)
	m := load(t, s, "alice")
	ctx := t.Context()
	for _, c := range []string{"a", "b", "c"} {
		if err := m.Follow(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Unfollow(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if f := load(t, s, "alice").Following(); !slices.Equal(f, []string{"a", "c"}) {
		t.Fatalf("following after reload %v, want [a c]", f)
	}
	for c, want := range map[string]int{"a": 1, "b": 0, "c": 1} {
		fs, err := s.Followers(ctx, c)
		if err != nil || len(fs) != want {
			t.Errorf("followers of %s: %v %v, want %d", c, fs, err, want)
		}
	}
}
