package devdb_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
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
