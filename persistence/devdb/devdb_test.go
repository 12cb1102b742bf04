package devdb_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/couponmesh/couponmesh/persistence/devdb"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// TestStartPortZeroParallel starts two databases at once on port 0: each gets
// its own port and serves a round trip through the official driver.
func TestStartPortZeroParallel(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	dbs := make([]*devdb.DB, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range dbs {
		dir := t.TempDir()
		wg.Go(func() {
			dbs[i], errs[i] = devdb.Start(ctx, devdb.Config{Addr: "127.0.0.1:0", Dir: dir}, testLogger(t))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
		t.Cleanup(func() { _ = dbs[i].Close() })
	}
	if dbs[0].Addr() == dbs[1].Addr() {
		t.Fatalf("both databases on %s", dbs[0].Addr())
	}
	for i, db := range dbs {
		if _, port, _ := net.SplitHostPort(db.Addr()); port == "0" || port == "" {
			t.Fatalf("db %d: Addr %q has no bound port", i, db.Addr())
		}
		roundTrip(ctx, t, db.URI(), i)
	}
}

func roundTrip(ctx context.Context, t *testing.T, uri string, n int) {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Disconnect(context.Background()) }()
	coll := c.Database("devdbtest").Collection("t")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "x"}, {Key: "n", Value: n}}); err != nil {
		t.Fatalf("%s: insert: %v", uri, err)
	}
	var got struct{ N int }
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "x"}}).Decode(&got); err != nil {
		t.Fatalf("%s: find: %v", uri, err)
	}
	if got.N != n {
		t.Fatalf("%s: n = %d, want %d", uri, got.N, n)
	}
}

// TestClose checks that Close stops the listener and is idempotent.
func TestClose(t *testing.T) {
	db, err := devdb.Start(t.Context(), devdb.Config{Dir: t.TempDir()}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	c, err := net.DialTimeout("tcp", db.Addr(), time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("dial %s after Close succeeded", db.Addr())
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s after Close: %v, want connection refused", db.Addr(), err)
	}
}

// TestStartAddrInUse checks that a taken address is an error, not a hang.
func TestStartAddrInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	db, err := devdb.Start(t.Context(), devdb.Config{Addr: l.Addr().String(), Dir: t.TempDir()}, testLogger(t))
	if err == nil {
		db.Close()
		t.Fatalf("Start on taken %s succeeded", l.Addr())
	}
}

func TestStartNeedsDir(t *testing.T) {
	if _, err := devdb.Start(t.Context(), devdb.Config{}, testLogger(t)); err == nil {
		t.Fatal("Start without Dir succeeded")
	}
}

// TestLookupsByIDUseAnIndex: FerretDB filters {_id: <string>} in SQL as
// _ferretdb_sjson->'$._id' = ?, which its own _id index (on another
// expression) does not serve; the devdb indexes that expression in every
// collection table, also in a database dropped and created again.
func TestLookupsByIDUseAnIndex(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	db, err := devdb.Start(ctx, devdb.Config{Dir: dir}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c, err := mongo.Connect(options.Client().ApplyURI(db.URI()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Disconnect(context.Background()) }()

	for round := range 2 {
		coll := c.Database("idx").Collection("journal")
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "a|1"}}); err != nil {
			t.Fatal(err)
		}
		var plan string
		for deadline := time.Now().Add(5 * time.Second); ; {
			// A fresh connection each time: one that prepared a statement
			// before the index existed may keep planning without it.
			plan = lookupPlan(ctx, t, filepath.Join(dir, "idx.sqlite"), "journal")
			if strings.Contains(plan, "USING INDEX") || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !strings.Contains(plan, "USING INDEX") {
			t.Fatalf("round %d: lookup by _id: %q, want an index search", round, plan)
		}
		if err := c.Database("idx").Drop(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// lookupPlan returns SQLite's plan for FerretDB's lookup by _id in the table
// of collection coll.
func lookupPlan(ctx context.Context, t *testing.T, file, coll string) string {
	t.Helper()
	sq, err := sql.Open("sqlite", "file:"+file)
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	var table string
	if err := sq.QueryRowContext(ctx, `SELECT table_name FROM _ferretdb_collections WHERE name = ?`, coll).Scan(&table); err != nil {
		t.Fatal(err)
	}
	q := fmt.Sprintf(`EXPLAIN QUERY PLAN SELECT _ferretdb_sjson FROM %q WHERE _ferretdb_sjson->'$._id' = ?`, table)
	var id, parent, unused int
	var plan string
	if err := sq.QueryRowContext(ctx, q, `"a|1"`).Scan(&id, &parent, &unused, &plan); err != nil {
		t.Fatal(err)
	}
	return plan
}

// Config.Pragmas reach FerretDB's SQLite connections: auto_vacuum, which
// FerretDB sets to none unless told otherwise and which SQLite keeps in
// the file, is full in a database created with auto_vacuum(full). A pragma
// not in the driver's NAME(VALUE) form is refused.
func TestPragmas(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := devdb.Start(ctx, devdb.Config{Dir: t.TempDir(), Pragmas: []string{"cache_size=1; DROP"}}, testLogger(t)); err == nil || !strings.Contains(err.Error(), "NAME(VALUE)") {
		t.Fatalf("a malformed pragma: %v", err)
	}
	for _, tc := range []struct {
		pragmas []string
		want    int
	}{{nil, 0}, {[]string{"auto_vacuum(full)", "cache_size(-8192)"}, 1}} {
		dir := t.TempDir()
		db, err := devdb.Start(ctx, devdb.Config{Addr: "127.0.0.1:0", Dir: dir, Pragmas: tc.pragmas}, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(ctx, t, db.URI(), 1)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		sq, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "devdbtest.sqlite"))
		if err != nil {
			t.Fatal(err)
		}
		var got int
		err = sq.QueryRowContext(ctx, `PRAGMA auto_vacuum`).Scan(&got)
		sq.Close()
		if err != nil || got != tc.want {
			t.Fatalf("pragmas %q: auto_vacuum %d (%v), want %d", tc.pragmas, got, err, tc.want)
		}
	}
}
