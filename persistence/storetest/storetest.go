package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/internal/testutil"
)

// NewStore returns an empty store for one test and registers its cleanup
// with t.
type NewStore func(t *testing.T) couponmesh.Store

// Run runs the conformance suite, one parallel subtest per part of the
// contract.
func Run(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		fn   func(*testing.T, couponmesh.Store)
	}{
		{"AppendRoundTrip", testAppendRoundTrip},
		{"AppendDuplicate", testAppendDuplicate},
		{"AppendRace", testAppendRace},
		{"AppendOrdered", testAppendOrdered},
		{"AppendOrderedRace", testAppendOrderedRace},
		{"Entries", testEntries},
		{"Snapshots", testSnapshots},
		{"Browse", testBrowse},
		{"BrowseLimits", testBrowseLimits},
		{"BrowseExpiry", testBrowseExpiry},
		{"Followers", testFollowers},
		{"Reminders", testReminders},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStore(t))
		})
	}
}

// base is a fixed instant with sub-millisecond digits.
var base = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustAppend(t *testing.T, s couponmesh.Store, es ...couponmesh.Entry) {
	t.Helper()
	for _, e := range es {
		if err := s.Append(ctx(t), e); err != nil {
			t.Fatalf("append %s: %v", e.Key(), err)
		}
	}
}

// diffEntry describes how got differs from want, or returns "".
func diffEntry(got, want couponmesh.Entry) string {
	type fields struct {
		Entity, Type, Unique, User string
		Seq                        int64
	}
	g := fields{got.Entity, got.Type, got.Unique, got.User, got.Seq}
	w := fields{want.Entity, want.Type, want.Unique, want.User, want.Seq}
	switch {
	case g != w:
		return fmt.Sprintf("got %+v, want %+v", g, w)
	case !got.At.Equal(want.At):
		return fmt.Sprintf("%s: At %v, want %v", want.Key(), got.At, want.At)
	case !bytes.Equal(got.Data, want.Data):
		return fmt.Sprintf("%s: Data %q, want %q", want.Key(), got.Data, want.Data)
	}
	return ""
}

func checkEntries(t *testing.T, got, want []couponmesh.Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d entries %v, want %d %v", len(got), keys(got), len(want), keys(want))
	}
	for i := range got {
		if d := diffEntry(got[i], want[i]); d != "" {
			t.Errorf("entry %d: %s", i, d)
		}
	}
}

func keys(es []couponmesh.Entry) []string {
	ks := make([]string, len(es))
	for i, e := range es {
		ks[i] = e.Key()
	}
	return ks
}

func testAppendRoundTrip(t *testing.T, s couponmesh.Store) {
	tests := []struct {
		name string
		e    couponmesh.Entry
	}{
		{"plain", couponmesh.Entry{Entity: "coupon/c1", Seq: 1, Type: "created", At: base, Data: []byte(`{"title":"10% off"}`)}},
		{"unique and user", couponmesh.Entry{Entity: "coupon/c1", Seq: 2, Type: "claimed", Unique: "claim/c1/alice", User: "alice", At: base.Add(time.Nanosecond), Data: []byte(`{"n":1}`)}},
		{"bytes that are not text", couponmesh.Entry{Entity: "user/alice", Seq: 1, Type: "raw", At: base, Data: []byte{0, 0xff, 0xfe, '"', '\\', 0x80}}},
		{"unicode", couponmesh.Entry{Entity: "user/zoë", Seq: 7, Type: "note", At: base, Data: []byte(`{"t":"ünïcødé ✓ 🎟"}`)}},
		{"no data", couponmesh.Entry{Entity: "user/bob", Seq: 1, Type: "empty", At: base}},
		{"other time zone", couponmesh.Entry{Entity: "user/carol", Seq: 1, Type: "tz", At: base.In(time.FixedZone("X", 5*3600+1800)), Data: []byte(`1`)}},
		{"large seq", couponmesh.Entry{Entity: "coupon/big", Seq: 1 << 53, Type: "big", At: base, Data: bytes.Repeat([]byte("x"), 64<<10)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustAppend(t, s, tt.e)
			got, err := s.Entries(ctx(t), tt.e.Entity, tt.e.Seq-1, 0)
			if err != nil {
				t.Fatal(err)
			}
			checkEntries(t, got, []couponmesh.Entry{tt.e})
		})
	}
}

func testAppendDuplicate(t *testing.T, s couponmesh.Store) {
	tests := []struct {
		name          string
		first, second couponmesh.Entry
		wantDuplicate bool
	}{
		{"same key",
			couponmesh.Entry{Entity: "coupon/a", Seq: 1, Type: "x", At: base, Data: []byte(`1`)},
			couponmesh.Entry{Entity: "coupon/a", Seq: 1, Type: "x", At: base, Data: []byte(`2`)}, true},
		{"same key, other unique",
			couponmesh.Entry{Entity: "coupon/b", Seq: 1, Type: "x", Unique: "u/b1", At: base, Data: []byte(`1`)},
			couponmesh.Entry{Entity: "coupon/b", Seq: 1, Type: "x", Unique: "u/b2", At: base, Data: []byte(`2`)}, true},
		{"same unique, other key",
			couponmesh.Entry{Entity: "coupon/c", Seq: 1, Type: "claimed", Unique: "claim/c/alice", At: base, Data: []byte(`1`)},
			couponmesh.Entry{Entity: "coupon/c", Seq: 2, Type: "claimed", Unique: "claim/c/alice", At: base, Data: []byte(`2`)}, true},
		{"same unique, other entity",
			couponmesh.Entry{Entity: "coupon/d", Seq: 1, Type: "x", Unique: "once", At: base, Data: []byte(`1`)},
			couponmesh.Entry{Entity: "coupon/e", Seq: 1, Type: "x", Unique: "once", At: base, Data: []byte(`2`)}, true},
		{"other key, other unique",
			couponmesh.Entry{Entity: "coupon/f", Seq: 1, Type: "claimed", Unique: "claim/f/alice", At: base, Data: []byte(`1`)},
			couponmesh.Entry{Entity: "coupon/f", Seq: 2, Type: "claimed", Unique: "claim/f/bob", At: base, Data: []byte(`2`)}, false},
		{"no uniques, next seq",
			couponmesh.Entry{Entity: "coupon/g", Seq: 1, Type: "x", At: base, Data: []byte(`1`)},
			couponmesh.Entry{Entity: "coupon/g", Seq: 2, Type: "x", At: base, Data: []byte(`2`)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustAppend(t, s, tt.first)
			err := s.Append(ctx(t), tt.second)
			if tt.wantDuplicate != errors.Is(err, couponmesh.ErrDuplicate) {
				t.Fatalf("second append: %v, want duplicate %v", err, tt.wantDuplicate)
			}
			if !tt.wantDuplicate && err != nil {
				t.Fatalf("second append: %v", err)
			}
			if errors.Is(err, couponmesh.ErrUnavailable) {
				t.Fatalf("duplicate reported as unavailable too: %v", err)
			}
			want := []couponmesh.Entry{tt.first}
			if !tt.wantDuplicate {
				want = append(want, tt.second)
			}
			var got []couponmesh.Entry
			for _, ent := range []string{tt.first.Entity, tt.second.Entity} {
				es, err := s.Entries(ctx(t), ent, 0, 0)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, es...)
				if tt.first.Entity == tt.second.Entity {
					break
				}
			}
			checkEntries(t, got, want)
		})
	}
}

// testAppendRace: 50 activations append the same fact at once; the database
// must let exactly one through (invariants 1 and 2 rest on this).
func testAppendRace(t *testing.T, s couponmesh.Store) {
	const n = 50
	tests := []struct {
		name  string
		entry func(i int) couponmesh.Entry
	}{
		{"same seq", func(i int) couponmesh.Entry {
			return couponmesh.Entry{Entity: "coupon/race", Seq: 1, Type: "claimed", At: base, Data: []byte(strconv.Itoa(i))}
		}},
		{"same unique", func(i int) couponmesh.Entry {
			return couponmesh.Entry{Entity: "coupon/race2", Seq: int64(i + 1), Type: "claimed", Unique: "claim/race2/alice", User: "alice", At: base, Data: []byte(strconv.Itoa(i))}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := make([]error, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					<-start
					errs[i] = s.Append(ctx(t), tt.entry(i))
				})
			}
			close(start)
			wg.Wait()
			winner := -1
			for i, err := range errs {
				switch {
				case err == nil && winner >= 0:
					t.Errorf("appends %d and %d both succeeded", winner, i)
				case err == nil:
					winner = i
				case !errors.Is(err, couponmesh.ErrDuplicate):
					t.Errorf("append %d: %v, want duplicate", i, err)
				}
			}
			if winner < 0 {
				t.Fatal("no append succeeded")
			}
			want := tt.entry(winner)
			got, err := s.Entries(ctx(t), want.Entity, want.Seq-1, 0)
			if err != nil {
				t.Fatal(err)
			}
			checkEntries(t, got, []couponmesh.Entry{want})
		})
	}
}

// run returns entries seq from..to of entity, tagged tag in Data.
func run(entity string, from, to int64, tag string) []couponmesh.Entry {
	var es []couponmesh.Entry
	for seq := from; seq <= to; seq++ {
		es = append(es, couponmesh.Entry{Entity: entity, Seq: seq, Type: "claimed", Unique: fmt.Sprintf("%s/%s/%d", entity, tag, seq),
			At: base.Add(time.Duration(seq) * time.Millisecond), Data: []byte(tag)})
	}
	return es
}

// testAppendOrdered: a run of entries is written in order and stops at the
// first that fails; nothing after it is written.
func testAppendOrdered(t *testing.T, s couponmesh.Store) {
	tests := []struct {
		name    string
		before  []couponmesh.Entry // appended first
		entries []couponmesh.Entry
		wantN   int
		wantDup bool
	}{
		{"all written", nil, run("coupon/o1", 1, 5, "a"), 5, false},
		{"empty", nil, nil, 0, false},
		{"first seq taken", run("coupon/o2", 1, 1, "x"), run("coupon/o2", 1, 4, "a"), 0, true},
		{"middle seq taken", run("coupon/o3", 3, 3, "x"), run("coupon/o3", 1, 5, "a"), 2, true},
		{"middle unique taken", []couponmesh.Entry{{Entity: "coupon/other", Seq: 1, Type: "x", Unique: "coupon/o4/a/2", At: base}},
			run("coupon/o4", 1, 4, "a"), 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustAppend(t, s, tt.before...)
			n, err := s.AppendOrdered(ctx(t), tt.entries)
			if n != tt.wantN || tt.wantDup != errors.Is(err, couponmesh.ErrDuplicate) || (!tt.wantDup && err != nil) {
				t.Fatalf("AppendOrdered = %d, %v; want %d, duplicate %v", n, err, tt.wantN, tt.wantDup)
			}
			if errors.Is(err, couponmesh.ErrUnavailable) {
				t.Fatalf("duplicate reported as unavailable too: %v", err)
			}
			if len(tt.entries) == 0 {
				return
			}
			// The journal holds the written prefix, then what was there.
			ent := tt.entries[0].Entity
			got, err := s.Entries(ctx(t), ent, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			want := slices.Clone(tt.entries[:n])
			for _, b := range tt.before {
				if b.Entity == ent && b.Seq == int64(n+1) {
					want = append(want, b)
				}
			}
			checkEntries(t, got, want)
			// Nothing after the failed entry was written, not even past a gap.
			for _, e := range tt.entries[n:] {
				es, err := s.Entries(ctx(t), ent, e.Seq-1, 1)
				if err != nil {
					t.Fatal(err)
				}
				if len(es) == 1 && string(es[0].Data) == "a" {
					t.Fatalf("%s written after the run stopped", e.Key())
				}
			}
		})
	}
}

// testAppendOrderedRace: activations write runs of the same seqs at once;
// exactly one run is written whole, every other writes nothing (no entry
// of a loser after a winner's: DESIGN's fencing for pipelined commits).
func testAppendOrderedRace(t *testing.T, s couponmesh.Store) {
	const racers, length = 8, 10
	ns := make([]int, racers)
	errs := make([]error, racers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			<-start
			ns[i], errs[i] = s.AppendOrdered(ctx(t), run("coupon/orace", 1, length, strconv.Itoa(i)))
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i := range racers {
		switch {
		case errs[i] == nil && ns[i] == length && winner < 0:
			winner = i
		case errs[i] == nil:
			t.Errorf("racer %d wrote %d entries, and racer %d won too", i, ns[i], winner)
		case ns[i] != 0 || !errors.Is(errs[i], couponmesh.ErrDuplicate):
			t.Errorf("racer %d: %d, %v; want 0 and duplicate", i, ns[i], errs[i])
		}
	}
	if winner < 0 {
		t.Fatal("no run was written")
	}
	got, err := s.Entries(ctx(t), "coupon/orace", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkEntries(t, got, run("coupon/orace", 1, length, strconv.Itoa(winner)))
}

func testEntries(t *testing.T, s couponmesh.Store) {
	entry := func(ent string, seq int64) couponmesh.Entry {
		return couponmesh.Entry{Entity: ent, Seq: seq, Type: "t", At: base.Add(time.Duration(seq) * time.Second), Data: []byte(strconv.FormatInt(seq, 10))}
	}
	var c1 []couponmesh.Entry
	for seq := int64(1); seq <= 12; seq++ {
		c1 = append(c1, entry("coupon/c1", seq))
	}
	// Appended out of order, next to entities whose names share a prefix.
	for _, i := range []int{4, 0, 11, 9, 1, 2, 10, 3, 7, 5, 8, 6} {
		mustAppend(t, s, c1[i])
	}
	mustAppend(t, s, entry("coupon/c10", 1), entry("coupon/c1x", 1), entry("coupon/c", 13))

	tests := []struct {
		name   string
		entity string
		after  int64
		limit  int
		want   []couponmesh.Entry
	}{
		{"all", "coupon/c1", 0, 0, c1},
		{"negative limit is all", "coupon/c1", 0, -1, c1},
		{"after", "coupon/c1", 3, 0, c1[3:]},
		{"after and limit", "coupon/c1", 3, 4, c1[3:7]},
		{"limit 1", "coupon/c1", 0, 1, c1[:1]},
		{"limit beyond end", "coupon/c1", 10, 5, c1[10:]},
		{"after last", "coupon/c1", 12, 0, nil},
		{"unknown entity", "coupon/nope", 0, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Entries(ctx(t), tt.entity, tt.after, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			checkEntries(t, got, tt.want)
		})
	}
}

func diffCoupon(got, want couponmesh.Coupon) string {
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if !bytes.Equal(g, w) || got.Withdrawn != want.Withdrawn {
		return fmt.Sprintf("got %s (withdrawn %v), want %s (withdrawn %v)", g, got.Withdrawn, w, want.Withdrawn)
	}
	return ""
}

func diffSnapshot(got, want couponmesh.Snapshot) string {
	switch {
	case got.Entity != want.Entity || got.Seq != want.Seq:
		return fmt.Sprintf("got %s@%d, want %s@%d", got.Entity, got.Seq, want.Entity, want.Seq)
	case !bytes.Equal(got.Data, want.Data):
		return fmt.Sprintf("%s: Data %q, want %q", want.Entity, got.Data, want.Data)
	case (got.Coupon == nil) != (want.Coupon == nil):
		return fmt.Sprintf("%s: Coupon %v, want %v", want.Entity, got.Coupon, want.Coupon)
	case got.Coupon != nil:
		return diffCoupon(*got.Coupon, *want.Coupon)
	}
	return ""
}

func testSnapshots(t *testing.T, s couponmesh.Store) {
	c := couponmesh.Coupon{ID: "c1", Merchant: "m1", Title: "Half price", Description: "all day", Discount: "50%",
		Quantity: 10, Claimed: 3, Remaining: 7, ExpiresAt: base.Add(time.Hour), Status: couponmesh.StatusActive,
		Version: 4, CreatedAt: base}
	withdrawn := c
	withdrawn.Withdrawn, withdrawn.Status, withdrawn.Version = true, couponmesh.StatusWithdrawn, 5

	if _, err := s.Snapshot(ctx(t), "coupon/none"); !errors.Is(err, couponmesh.ErrNotFound) {
		t.Fatalf("missing snapshot: %v, want not found", err)
	}
	// Each step puts a snapshot, then the entity must read back as want.
	steps := []struct {
		name string
		put  couponmesh.Snapshot
	}{
		{"user", couponmesh.Snapshot{Entity: "user/alice", Seq: 3, Data: []byte(`{"following":["c1"]}`)}},
		{"user overwritten", couponmesh.Snapshot{Entity: "user/alice", Seq: 9, Data: []byte(`{"following":[]}`)}},
		{"older overwrites too", couponmesh.Snapshot{Entity: "user/alice", Seq: 5, Data: []byte(`{"following":["c2"]}`)}},
		{"coupon", couponmesh.Snapshot{Entity: "coupon/c1", Seq: 4, Data: []byte(`{"c":1}`), Coupon: &c}},
		{"coupon withdrawn", couponmesh.Snapshot{Entity: "coupon/c1", Seq: 5, Data: []byte(`{"c":2}`), Coupon: &withdrawn}},
		{"coupon without expiry", couponmesh.Snapshot{Entity: "coupon/c2", Seq: 1, Data: []byte(`{}`), Coupon: &couponmesh.Coupon{ID: "c2", Merchant: "m2", Title: "t", Quantity: 1, Remaining: 1, Status: couponmesh.StatusActive, Version: 1, CreatedAt: base}}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := s.PutSnapshot(ctx(t), st.put); err != nil {
				t.Fatal(err)
			}
			got, err := s.Snapshot(ctx(t), st.put.Entity)
			if err != nil {
				t.Fatal(err)
			}
			if d := diffSnapshot(got, st.put); d != "" {
				t.Error(d)
			}
		})
	}
}

func putCoupons(t *testing.T, s couponmesh.Store, cs []couponmesh.Coupon) {
	t.Helper()
	for i := range cs {
		c := &cs[i]
		snap := couponmesh.Snapshot{Entity: "coupon/" + c.ID, Seq: c.Version, Data: []byte(`{}`), Coupon: c}
		if err := s.PutSnapshot(ctx(t), snap); err != nil {
			t.Fatal(err)
		}
	}
}

// browseAll pages through q with q.Limit and checks the paging contract.
func browseAll(t *testing.T, s couponmesh.Store, q couponmesh.BrowseQuery) []couponmesh.Coupon {
	t.Helper()
	var all []couponmesh.Coupon
	seen := map[string]bool{}
	for page := 0; ; page++ {
		if page > 1000 {
			t.Fatal("paging does not end")
		}
		p, err := s.BrowseCoupons(ctx(t), q)
		if err != nil {
			t.Fatalf("browse %+v: %v", q, err)
		}
		if q.Limit > 0 && len(p.Coupons) > q.Limit {
			t.Fatalf("page of %d coupons, limit %d", len(p.Coupons), q.Limit)
		}
		if p.Next != "" && len(p.Coupons) == 0 {
			t.Fatalf("empty page with a Next cursor")
		}
		for _, c := range p.Coupons {
			if seen[c.ID] {
				t.Fatalf("coupon %s on two pages", c.ID)
			}
			seen[c.ID] = true
		}
		all = append(all, p.Coupons...)
		if p.Next == "" {
			return all
		}
		q.After = p.Next
	}
}

func ids(cs []couponmesh.Coupon) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}

// newestFirst sorts like BrowseCoupons: CreatedAt descending, then ID
// descending.
func newestFirst(a, b couponmesh.Coupon) int {
	if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
		return c
	}
	return compareStrings(b.ID, a.ID)
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func testBrowse(t *testing.T, s couponmesh.Store) {
	now := time.Now().UTC().Truncate(time.Second)
	coupon := func(id, merchant string, created time.Duration, quantity, claimed int, expires time.Duration, withdrawn bool) couponmesh.Coupon {
		c := couponmesh.Coupon{ID: id, Merchant: merchant, Title: "Coupon " + id, Description: "d " + id, Discount: "10%",
			Quantity: quantity, Claimed: claimed, Version: int64(claimed + 1), CreatedAt: now.Add(created), Withdrawn: withdrawn}
		if expires != 0 {
			c.ExpiresAt = now.Add(expires)
		}
		c.Refresh(time.Now())
		return c
	}
	cs := []couponmesh.Coupon{
		coupon("a1", "m1", -10*time.Minute, 5, 0, 0, false),
		coupon("a2", "m1", -9*time.Minute, 5, 1, time.Hour, false),
		coupon("a3", "m2", -8*time.Minute, 5, 2, 0, false),
		coupon("t1", "m1", -7*time.Minute, 5, 0, 0, false), // t1..t3 share CreatedAt: ordered by id
		coupon("t3", "m2", -7*time.Minute, 5, 0, 0, false),
		coupon("t2", "m1", -7*time.Minute, 5, 0, 0, false),
		coupon("s1", "m1", -6*time.Minute, 3, 3, 0, false),
		coupon("s2", "m2", -5*time.Minute, 3, 3, time.Hour, false),
		coupon("e1", "m1", -4*time.Minute, 5, 1, -time.Minute, false),
		coupon("e2", "m2", -3*time.Minute, 3, 3, -2*time.Minute, false),
		coupon("w1", "m1", -2*time.Minute, 5, 1, 0, true),
		coupon("w2", "m2", -time.Minute, 5, 0, -time.Minute, true),
		coupon("a4", "m1", 0, 7, 0, 0, false),
	}
	putCoupons(t, s, cs)
	if err := s.PutSnapshot(ctx(t), couponmesh.Snapshot{Entity: "user/alice", Seq: 1, Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		q    couponmesh.BrowseQuery
	}{
		{"all", couponmesh.BrowseQuery{}},
		{"merchant", couponmesh.BrowseQuery{Merchant: "m1"}},
		{"other merchant", couponmesh.BrowseQuery{Merchant: "m2"}},
		{"unknown merchant", couponmesh.BrowseQuery{Merchant: "m9"}},
		{"active", couponmesh.BrowseQuery{Status: couponmesh.StatusActive}},
		{"sold out", couponmesh.BrowseQuery{Status: couponmesh.StatusSoldOut}},
		{"expired", couponmesh.BrowseQuery{Status: couponmesh.StatusExpired}},
		{"withdrawn", couponmesh.BrowseQuery{Status: couponmesh.StatusWithdrawn}},
		{"merchant and status", couponmesh.BrowseQuery{Merchant: "m1", Status: couponmesh.StatusActive}},
		{"merchant and expired", couponmesh.BrowseQuery{Merchant: "m2", Status: couponmesh.StatusExpired}},
	}
	for _, tt := range tests {
		var want []couponmesh.Coupon
		for _, c := range cs {
			if (tt.q.Merchant == "" || c.Merchant == tt.q.Merchant) && (tt.q.Status == "" || c.Status == tt.q.Status) {
				want = append(want, c)
			}
		}
		slices.SortFunc(want, newestFirst)
		for _, limit := range []int{1, 2, 3, 0} {
			t.Run(fmt.Sprintf("%s/limit %d", tt.name, limit), func(t *testing.T) {
				q := tt.q
				q.Limit = limit
				got := browseAll(t, s, q)
				if !slices.Equal(ids(got), ids(want)) {
					t.Fatalf("got %v, want %v", ids(got), ids(want))
				}
				for i := range got {
					if d := diffCoupon(got[i], want[i]); d != "" {
						t.Error(d)
					}
				}
			})
		}
	}
}

func testBrowseLimits(t *testing.T, s couponmesh.Store) {
	now := time.Now().UTC().Truncate(time.Second)
	cs := make([]couponmesh.Coupon, couponmesh.MaxBrowseLimit+5)
	for i := range cs {
		cs[i] = couponmesh.Coupon{ID: fmt.Sprintf("c%03d", i), Merchant: "m", Title: "t", Quantity: 1,
			Version: 1, CreatedAt: now.Add(time.Duration(i) * time.Second)}
		cs[i].Refresh(now)
	}
	putCoupons(t, s, cs)
	tests := []struct {
		name     string
		limit    int
		wantSize int
	}{
		{"default", 0, couponmesh.DefaultBrowseLimit},
		{"capped", couponmesh.MaxBrowseLimit * 10, couponmesh.MaxBrowseLimit},
		{"exact", 7, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := s.BrowseCoupons(ctx(t), couponmesh.BrowseQuery{Limit: tt.limit})
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Coupons) != tt.wantSize || p.Next == "" {
				t.Fatalf("got %d coupons, next %q; want %d and a cursor", len(p.Coupons), p.Next, tt.wantSize)
			}
			if newest := fmt.Sprintf("c%03d", len(cs)-1); p.Coupons[0].ID != newest {
				t.Fatalf("first coupon %s, want %s", p.Coupons[0].ID, newest)
			}
		})
	}
	t.Run("last page exactly full", func(t *testing.T) {
		p, err := s.BrowseCoupons(ctx(t), couponmesh.BrowseQuery{Limit: len(cs)})
		if err == nil && len(cs) > couponmesh.MaxBrowseLimit {
			// capped: take the rest through the cursor
			p, err = s.BrowseCoupons(ctx(t), couponmesh.BrowseQuery{Limit: len(cs) - couponmesh.MaxBrowseLimit, After: p.Next})
		}
		if err != nil {
			t.Fatal(err)
		}
		if p.Next != "" || len(p.Coupons) != len(cs)-couponmesh.MaxBrowseLimit {
			t.Fatalf("got %d coupons, next %q; want %d and no cursor", len(p.Coupons), p.Next, len(cs)-couponmesh.MaxBrowseLimit)
		}
	})
}

// testBrowseExpiry: expiry passes without a write, and the status filters
// follow it.
func testBrowseExpiry(t *testing.T, s couponmesh.Store) {
	now := time.Now().UTC()
	expires := now.Add(500 * time.Millisecond)
	active := couponmesh.Coupon{ID: "soon", Merchant: "m", Title: "t", Quantity: 2, Claimed: 1, Version: 2, CreatedAt: now.Add(-time.Hour), ExpiresAt: expires}
	soldOut := couponmesh.Coupon{ID: "soldsoon", Merchant: "m", Title: "t", Quantity: 1, Claimed: 1, Version: 2, CreatedAt: now.Add(-time.Hour), ExpiresAt: expires}
	active.Refresh(now)
	soldOut.Refresh(now)
	putCoupons(t, s, []couponmesh.Coupon{active, soldOut})

	browse := func(st couponmesh.Status) []couponmesh.Coupon {
		return browseAll(t, s, couponmesh.BrowseQuery{Status: st, Limit: 10})
	}
	// Still before expiry after the call: it must have seen "soon" active.
	if got := ids(browse(couponmesh.StatusActive)); time.Now().Before(expires) && !slices.Equal(got, []string{"soon"}) {
		t.Fatalf("active before expiry: %v", got)
	}
	testutil.CheckFor(t, 10*time.Second, "soon and soldsoon expired", func() error {
		got := browse(couponmesh.StatusExpired)
		if !slices.Equal(ids(got), []string{"soon", "soldsoon"}) {
			return fmt.Errorf("expired: %v", ids(got))
		}
		for _, c := range got {
			if c.Status != couponmesh.StatusExpired {
				return fmt.Errorf("%s has status %s", c.ID, c.Status)
			}
		}
		return nil
	})
	for _, st := range []couponmesh.Status{couponmesh.StatusActive, couponmesh.StatusSoldOut} {
		if got := browse(st); len(got) != 0 {
			t.Errorf("%s after expiry: %v", st, ids(got))
		}
	}
}

func testFollowers(t *testing.T, s couponmesh.Store) {
	type op struct {
		add          bool
		coupon, user string
	}
	steps := []struct {
		name string
		ops  []op
		want map[string][]string
	}{
		{"none", nil, map[string][]string{"c1": nil}},
		{"add", []op{{true, "c1", "alice"}, {true, "c1", "bob"}, {true, "c2", "alice"}},
			map[string][]string{"c1": {"alice", "bob"}, "c2": {"alice"}}},
		{"add again", []op{{true, "c1", "alice"}, {true, "c1", "alice"}},
			map[string][]string{"c1": {"alice", "bob"}, "c2": {"alice"}}},
		{"remove", []op{{false, "c1", "alice"}},
			map[string][]string{"c1": {"bob"}, "c2": {"alice"}}},
		{"remove again and unknown", []op{{false, "c1", "alice"}, {false, "c9", "zed"}},
			map[string][]string{"c1": {"bob"}, "c2": {"alice"}, "c9": nil}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			for _, o := range st.ops {
				f := s.RemoveFollower
				if o.add {
					f = s.AddFollower
				}
				if err := f(ctx(t), o.coupon, o.user); err != nil {
					t.Fatalf("%+v: %v", o, err)
				}
			}
			for coupon, want := range st.want {
				got, err := s.Followers(ctx(t), coupon)
				if err != nil {
					t.Fatal(err)
				}
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Errorf("followers of %s: %v, want %v", coupon, got, want)
				}
			}
			coupons := slices.Collect(maps.Keys(st.want))
			many, err := s.FollowersOf(ctx(t), append(coupons, "nobody"))
			if err != nil {
				t.Fatal(err)
			}
			for _, coupon := range append(coupons, "nobody") {
				got := slices.Sorted(slices.Values(many[coupon]))
				if want := st.want[coupon]; !slices.Equal(got, want) {
					t.Errorf("FollowersOf: followers of %s: %v, want %v", coupon, got, want)
				}
			}
		})
	}
	t.Run("concurrent adds", func(t *testing.T) {
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				if err := s.AddFollower(ctx(t), "c3", "carol"); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		got, err := s.Followers(ctx(t), "c3")
		if err != nil || !slices.Equal(got, []string{"carol"}) {
			t.Fatalf("followers of c3: %v, %v", got, err)
		}
	})
}

// Reminders come back per shard, earliest first, each once however often
// it was put; a deleted one is gone; the same target and name at another
// due time is another reminder.
func testReminders(t *testing.T, s couponmesh.Store) {
	base := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	target := "coupon/r1"
	shard := couponmesh.Reminder{Target: target}.Shard()
	var other string // a target in another shard
	for i := 0; other == ""; i++ {
		if id := fmt.Sprintf("coupon/o%d", i); (couponmesh.Reminder{Target: id}).Shard() != shard {
			other = id
		}
	}
	late := couponmesh.Reminder{Target: target, Name: "expire", Due: base.Add(time.Hour)}
	early := couponmesh.Reminder{Target: target, Name: "start", Due: base}
	moved := couponmesh.Reminder{Target: target, Name: "expire", Due: base.Add(30 * time.Minute)}
	elsewhere := couponmesh.Reminder{Target: other, Name: "expire", Due: base.Add(-time.Hour)}
	for _, r := range []couponmesh.Reminder{late, early, late, moved, elsewhere} {
		if err := s.PutReminder(ctx(t), r); err != nil {
			t.Fatal(err)
		}
	}
	due := func(limit int) []string {
		t.Helper()
		rs, err := s.DueReminders(ctx(t), shard, limit)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, r := range rs {
			if r.Shard() != shard {
				t.Errorf("reminder %s of shard %d listed in shard %d", r.Key(), r.Shard(), shard)
			}
			keys = append(keys, r.Key())
		}
		return keys
	}
	if got, want := due(0), []string{early.Key(), moved.Key(), late.Key()}; !slices.Equal(got, want) {
		t.Fatalf("due reminders %v, want %v", got, want)
	}
	if got, want := due(2), []string{early.Key(), moved.Key()}; !slices.Equal(got, want) {
		t.Fatalf("due reminders (limit 2) %v, want %v", got, want)
	}
	for range 2 {
		if err := s.DeleteReminders(ctx(t), early, couponmesh.Reminder{Target: target, Name: "gone", Due: base}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteReminders(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if got, want := due(0), []string{moved.Key(), late.Key()}; !slices.Equal(got, want) {
		t.Fatalf("after a delete: %v, want %v", got, want)
	}
	rs, err := s.DueReminders(ctx(t), elsewhere.Shard(), 0)
	if err != nil || len(rs) != 1 || rs[0] != elsewhere {
		t.Fatalf("shard %d: %+v, %v; want %+v", elsewhere.Shard(), rs, err, elsewhere)
	}
}
