package cache_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/internal/testutil"
	"github.com/couponmesh/couponmesh/persistence/cache"
	"github.com/couponmesh/couponmesh/persistence/devdb"
	"github.com/couponmesh/couponmesh/persistence/devdb/devdbtest"
	"github.com/couponmesh/couponmesh/persistence/faultproxy"
	"github.com/couponmesh/couponmesh/persistence/mongodb"
	"github.com/couponmesh/couponmesh/persistence/storetest"
)

var testDB *devdb.DB

func TestMain(m *testing.M) { os.Exit(devdbtest.Main(m, &testDB)) }

var dbSeq atomic.Int64

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// openDB opens a MongoDB store on database name (new name if empty) at uri.
func openDB(t testing.TB, uri, name string, mod func(*mongodb.Config)) *mongodb.Store {
	t.Helper()
	cfg := mongodb.DefaultConfig()
	cfg.URI, cfg.Database, cfg.MaxPoolSize = uri, name, 20
	if name == "" {
		cfg.Database = fmt.Sprintf("cache%d", dbSeq.Add(1))
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := mongodb.Open(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func newCache(t testing.TB, inner couponmesh.Store, cfg cache.Config) *cache.Store {
	t.Helper()
	c, err := cache.New(inner, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) couponmesh.Store {
		return newCache(t, openDB(t, testDB.URI(), "", nil), cache.Config{})
	})
}

func entry(entity string, seq int64) couponmesh.Entry {
	return couponmesh.Entry{Entity: entity, Seq: seq, Type: "t", At: time.Now().UTC(), Data: []byte(fmt.Sprint(seq))}
}

// TestStaleSnapshotNeverServed: this node caches a snapshot at seq 3; a
// second activation elsewhere (a store without this cache, on the same
// database) appends seqs 4 and 5 and snapshots them. The cached snapshot
// must not be served; loading through the cache ends at seq 5.
func TestStaleSnapshotNeverServed(t *testing.T) {
	a := openDB(t, testDB.URI(), "", nil)
	c := newCache(t, a, cache.Config{})
	b := openDB(t, testDB.URI(), a.Database(), nil) // the other node
	ctx := t.Context()
	const ent = "coupon/s1"
	for seq := int64(1); seq <= 3; seq++ {
		if err := c.Append(ctx, entry(ent, seq)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.PutSnapshot(ctx, couponmesh.Snapshot{Entity: ent, Seq: 3, Data: []byte(`"at 3"`)}); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(ctx); err != nil { // written behind: make it land now
		t.Fatal(err)
	}
	if s, err := c.Snapshot(ctx, ent); err != nil || s.Seq != 3 {
		t.Fatalf("cached snapshot: %+v %v", s, err)
	}
	if st := c.Stats(); st.SnapshotHits != 1 {
		t.Fatalf("stats %+v: want a hit", st)
	}

	// Behind the cache's back: entries 4 and 5, but the snapshot at 5 only
	// for the second case.
	for seq := int64(4); seq <= 5; seq++ {
		if err := b.Append(ctx, entry(ent, seq)); err != nil {
			t.Fatal(err)
		}
	}
	s, err := c.Snapshot(ctx, ent)
	if err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Stale != 1 {
		t.Fatalf("stats %+v: want the cached snapshot dropped as stale", st)
	}
	// The database's snapshot (seq 3, put through) plus the journal is the
	// truth; the point is that the answer came from the database.
	if s.Seq != 3 || string(s.Data) != `"at 3"` {
		t.Fatalf("snapshot %+v", s)
	}
	if err := b.PutSnapshot(ctx, couponmesh.Snapshot{Entity: ent, Seq: 5, Data: []byte(`"at 5"`)}); err != nil {
		t.Fatal(err)
	}
	// The database answer was cached at seq 3 again: still stale.
	s, err = c.Snapshot(ctx, ent)
	if err != nil || s.Seq != 5 || string(s.Data) != `"at 5"` {
		t.Fatalf("snapshot after the other node's: %+v %v, want seq 5", s, err)
	}
	// And now the cache holds seq 5, valid.
	hits := c.Stats().SnapshotHits
	if s, err := c.Snapshot(ctx, ent); err != nil || s.Seq != 5 || c.Stats().SnapshotHits != hits+1 {
		t.Fatalf("snapshot: %+v %v, stats %+v", s, err, c.Stats())
	}
}

func coupon(id, merchant string, created time.Time) couponmesh.Snapshot {
	c := &couponmesh.Coupon{ID: id, Merchant: merchant, Title: "t " + id, Quantity: 5, Version: 1, CreatedAt: created}
	c.Refresh(time.Now())
	return couponmesh.Snapshot{Entity: "coupon/" + id, Seq: 1, Data: []byte(`{}`), Coupon: c}
}

// TestBrowseInvalidation: a coupon written through this node shows in the
// next browse at once; one written through another node shows within the
// TTL.
func TestBrowseInvalidation(t *testing.T) {
	a := openDB(t, testDB.URI(), "", nil)
	c := newCache(t, a, cache.Config{BrowseTTL: 300 * time.Millisecond})
	b := openDB(t, testDB.URI(), a.Database(), nil)
	ctx := t.Context()
	now := time.Now().UTC().Truncate(time.Millisecond)
	if err := c.PutSnapshot(ctx, coupon("b1", "m", now)); err != nil {
		t.Fatal(err)
	}
	browse := func() []string {
		p, err := c.BrowseCoupons(ctx, couponmesh.BrowseQuery{Merchant: "m"})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, c := range p.Coupons {
			ids = append(ids, c.ID)
		}
		return ids
	}
	if got := browse(); len(got) != 1 {
		t.Fatalf("browse %v", got)
	}
	before := c.Stats()
	if got := browse(); len(got) != 1 || c.Stats().BrowseHits != before.BrowseHits+1 {
		t.Fatalf("second browse %v, stats %+v: want a hit", got, c.Stats())
	}
	if err := c.PutSnapshot(ctx, coupon("b2", "m", now.Add(time.Second))); err != nil {
		t.Fatal(err)
	}
	if got := browse(); len(got) != 2 {
		t.Fatalf("browse after a write through this node: %v", got)
	}
	if err := b.PutSnapshot(ctx, coupon("b3", "m", now.Add(2*time.Second))); err != nil {
		t.Fatal(err)
	}
	testutil.Until(t, 5*time.Second, "write through another node visible after the TTL", func() bool { return len(browse()) == 3 })
}

// TestDatabaseDown: with the database gone (every connection closed at
// once), browse pages cached within their TTL are still served, fast;
// snapshot reads fail as unavailable rather than serve an unvalidated
// snapshot; all recovers. (A black-holed database is the node's test,
// cmd/couponmesh TestDatabaseBlackHoled; see faultproxy.Down for why not
// here.)
func TestDatabaseDown(t *testing.T) {
	p, err := faultproxy.Start(testDB.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a := openDB(t, "mongodb://"+p.Addr()+"/", "", func(c *mongodb.Config) {
		c.OpTimeout, c.HeartbeatInterval = 300*time.Millisecond, 500*time.Millisecond
	})
	c := newCache(t, a, cache.Config{BrowseTTL: time.Second, FlushMaxAge: time.Second})
	ctx := t.Context()
	if err := c.PutSnapshot(ctx, coupon("d1", "m", time.Now().UTC())); err != nil {
		t.Fatal(err)
	}
	q := couponmesh.BrowseQuery{Merchant: "m", Limit: 10}
	if _, err := c.BrowseCoupons(ctx, q); err != nil {
		t.Fatal(err)
	}
	p.SetMode(faultproxy.Down)
	start := time.Now()
	page, err := c.BrowseCoupons(ctx, q)
	if err != nil || len(page.Coupons) != 1 || page.Coupons[0].ID != "d1" {
		t.Fatalf("browse with the database down: %+v %v", page, err)
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("cached browse took %v", d)
	}
	if _, err := c.Snapshot(ctx, "coupon/d1"); !errors.Is(err, couponmesh.ErrUnavailable) {
		t.Fatalf("snapshot with the database down: %v, want unavailable", err)
	}
	// Past its TTL, the page is still served while the database is down
	// (StaleIfDown), but not a page of another query.
	time.Sleep(time.Until(start.Add(1100 * time.Millisecond)))
	page, err = c.BrowseCoupons(ctx, q)
	if err != nil || len(page.Coupons) != 1 {
		t.Fatalf("browse past its TTL with the database down: %+v %v", page, err)
	}
	if _, err := c.BrowseCoupons(ctx, couponmesh.BrowseQuery{Merchant: "other"}); !errors.Is(err, couponmesh.ErrUnavailable) {
		t.Fatalf("uncached browse with the database down: %v, want unavailable", err)
	}
	// Snapshots are written behind: putting one does not wait for the
	// database, and it lands once the database is back.
	start = time.Now()
	if err := c.PutSnapshot(ctx, coupon("d2", "m", time.Now().UTC())); err != nil || time.Since(start) > 50*time.Millisecond {
		t.Fatalf("put snapshot with the database down: %v after %v", err, time.Since(start))
	}
	p.SetMode(faultproxy.Forward)
	deadline0 := time.Now().Add(10 * time.Second)
	for {
		if s, err := a.Snapshot(ctx, "coupon/d2"); err == nil && s.Seq == 1 {
			break
		}
		if time.Now().After(deadline0) {
			t.Fatal("snapshot written behind did not reach the database")
		}
		time.Sleep(50 * time.Millisecond)
	}
	testutil.CheckFor(t, 10*time.Second, "snapshot after recovery", func() error {
		s, err := c.Snapshot(ctx, "coupon/d1")
		if err == nil && s.Seq != 1 {
			err = fmt.Errorf("seq %d, want 1", s.Seq)
		}
		return err
	})
}

// TestWriteBehindPolicy: a dirty snapshot reaches the database once its
// entity moved FlushEntries journal entries, after FlushMaxAge, or when half
// of MaxDirty are waiting; a browse writes the dirty coupons first.
func TestWriteBehindPolicy(t *testing.T) {
	ctx := t.Context()
	a := openDB(t, testDB.URI(), "", nil)
	c := newCache(t, a, cache.Config{FlushInterval: 20 * time.Millisecond, FlushEntries: 10, FlushMaxAge: time.Hour})
	user := func(id string, seq int64) couponmesh.Snapshot {
		return couponmesh.Snapshot{Entity: "user/" + id, Seq: seq, Data: []byte(`{}`)}
	}
	inDB := func(entity string) int64 {
		s, err := a.Snapshot(ctx, entity)
		if errors.Is(err, couponmesh.ErrNotFound) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return s.Seq
	}
	waitInDB := func(entity string, seq int64) {
		t.Helper()
		testutil.CheckFor(t, 5*time.Second, entity+" in the database", func() error {
			if got := inDB(entity); got != seq {
				return fmt.Errorf("seq %d, want %d", got, seq)
			}
			return nil
		})
	}
	for _, seq := range []int64{1, 5} {
		if err := c.PutSnapshot(ctx, user("u1", seq)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // ten rounds
	if got := inDB("user/u1"); got != 0 {
		t.Fatalf("4 entries after it became dirty: seq %d in the database, want none yet", got)
	}
	if err := c.PutSnapshot(ctx, user("u1", 11)); err != nil {
		t.Fatal(err)
	}
	waitInDB("user/u1", 11)

	if err := c.PutSnapshot(ctx, coupon("b1", "m", time.Now().UTC())); err != nil {
		t.Fatal(err)
	}
	page, err := c.BrowseCoupons(ctx, couponmesh.BrowseQuery{Merchant: "m"})
	if err != nil || len(page.Coupons) != 1 || page.Coupons[0].ID != "b1" {
		t.Fatalf("browse: %+v %v", page, err)
	}
	if got := inDB("coupon/b1"); got != 1 {
		t.Fatalf("coupon after a browse: seq %d in the database, want 1", got)
	}

	aged := newCache(t, a, cache.Config{FlushInterval: 20 * time.Millisecond, FlushEntries: 10, FlushMaxAge: 100 * time.Millisecond})
	if err := aged.PutSnapshot(ctx, user("u2", 1)); err != nil {
		t.Fatal(err)
	}
	waitInDB("user/u2", 1)

	// Half of MaxDirty waiting: every dirty one is written.
	full := newCache(t, a, cache.Config{FlushInterval: 20 * time.Millisecond, FlushEntries: 10, FlushMaxAge: time.Hour, MaxDirty: 4})
	for _, id := range []string{"u3", "u4"} {
		if err := full.PutSnapshot(ctx, user(id, 1)); err != nil {
			t.Fatal(err)
		}
	}
	waitInDB("user/u3", 1)
	waitInDB("user/u4", 1)
}
