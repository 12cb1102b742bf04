package mongodb_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/internal/testutil"
	"github.com/couponmesh/couponmesh/persistence/faultproxy"
	"github.com/couponmesh/couponmesh/persistence/mongodb"
)

// TestGroupCommitConcurrent: 1,000 concurrent appends, half of them racing
// another append for the same key. Every caller gets its own op's answer,
// exactly one of each racing pair wins, and the appends share far fewer
// BulkWrite calls than there are appends.
func TestGroupCommitConcurrent(t *testing.T) {
	// Correctness and batching are under test, not latency: on a loaded
	// machine under -race a batch can take seconds.
	s := openStore(t, func(c *mongodb.Config) { c.OpTimeout = time.Minute })
	const n = 1000
	entry := func(i int) couponmesh.Entry {
		k := i
		if i >= n/2 && i < 3*n/4 {
			k = i - n/4 // i and i-n/4 race for one key (both in [n/4, 3n/4))
		}
		return couponmesh.Entry{Entity: fmt.Sprintf("coupon/g%d", k%100), Seq: int64(k/100 + 1), Type: "claimed",
			Unique: "claim/" + strconv.Itoa(k), At: time.Now().UTC(), Data: []byte(strconv.Itoa(i))}
	}
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = s.Append(t.Context(), entry(i))
		})
	}
	before := s.CommitStats()
	t0 := time.Now()
	close(start)
	wg.Wait()
	t.Logf("appends took %v", time.Since(t0))
	st := s.CommitStats()
	bulk := st.BulkWrites - before.BulkWrites
	t.Logf("%d concurrent appends: %d BulkWrite calls (%.1f appends per call)", n, bulk, float64(n)/float64(bulk))
	fmt.Printf("group commit: %d appends, %d BulkWrite calls\n", n, bulk)
	if bulk > n/5 {
		t.Errorf("%d BulkWrite calls for %d appends, want far fewer", bulk, n)
	}
	// Read the whole journal back in one query (n point reads are slow
	// under the race detector).
	stored := readJournal(t, s)
	for i := range n {
		e := entry(i)
		racing := (i >= n/4 && i < 3*n/4)
		if !racing && errs[i] != nil {
			t.Fatalf("append %d: %v", i, errs[i])
		}
		if racing && errs[i] != nil && !errors.Is(errs[i], couponmesh.ErrDuplicate) {
			t.Fatalf("append %d: %v, want nil or duplicate", i, errs[i])
		}
		got, ok := stored[e.Key()]
		if !ok {
			t.Fatalf("%s missing", e.Key())
		}
		if errs[i] == nil && got != strconv.Itoa(i) {
			t.Fatalf("%s holds %s, but append %d was told it won", e.Key(), got, i)
		}
		if errs[i] != nil && got == strconv.Itoa(i) {
			t.Fatalf("%s holds append %d, which was told duplicate", e.Key(), i)
		}
	}
	if len(stored) != 3*n/4 {
		t.Fatalf("%d journal documents, want %d", len(stored), 3*n/4)
	}
	for i := n / 4; i < n/2; i++ {
		if (errs[i] == nil) == (errs[i+n/4] == nil) {
			t.Fatalf("racing appends %d and %d: %v, %v; want exactly one winner", i, i+n/4, errs[i], errs[i+n/4])
		}
	}
}

// proxied opens a store that reaches the shared server through a fault
// proxy.
func proxied(t *testing.T, mod func(*mongodb.Config)) (*mongodb.Store, *faultproxy.Proxy, string) {
	t.Helper()
	p, err := faultproxy.Start(testDB.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	cfg := mongodb.DefaultConfig()
	cfg.URI = "mongodb://" + p.Addr() + "/"
	cfg.Database = fmt.Sprintf("proxied%d", dbSeq.Add(1))
	cfg.HeartbeatInterval = 500 * time.Millisecond
	if mod != nil {
		mod(&cfg)
	}
	s, err := mongodb.Open(t.Context(), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s, p, cfg.Database
}

// TestUnknownOutcomeResolved: the server applies a batch but the
// connection is lost before its reply arrives (the database itself stays
// up). The retry meets a duplicate key; reading the document back tells the
// caller's own write (success) from another writer's (duplicate). The other
// writer's coupon/v#1 is there before the batch (as if it had won), so the
// outcome does not depend on when the retry runs.
func TestUnknownOutcomeResolved(t *testing.T) {
	s, p, dbName := proxied(t, func(c *mongodb.Config) {
		c.OpTimeout, c.WriteTimeout, c.RetryBackoff = 2*time.Second, 20*time.Second, time.Second
		c.Flushers, c.BatchMaxDelay = 1, 100*time.Millisecond // both appends in one batch
	})
	direct, err := mongo.Connect(options.Client().ApplyURI(testDB.URI()))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Disconnect(context.Background())
	journal := direct.Database(dbName).Collection("journal")

	ours := couponmesh.Entry{Entity: "coupon/u", Seq: 1, Type: "claimed", At: time.Now().UTC(), Data: []byte(`"ours"`)}
	theirs := couponmesh.Entry{Entity: "coupon/v", Seq: 1, Type: "claimed", At: time.Now().UTC(), Data: []byte(`"ours too"`)}
	if _, err := journal.InsertOne(t.Context(), bson.D{{Key: "_id", Value: theirs.Key()}, {Key: "uk", Value: theirs.Key()},
		{Key: "e", Value: theirs.Entity}, {Key: "seq", Value: int64(1)}, {Key: "t", Value: "claimed"}, {Key: "tk", Value: int64(7)}}); err != nil {
		t.Fatal(err)
	}
	p.CutReplyTo([]byte("insert\x00")) // the batch's command, not a heartbeat
	errc := make(chan error, 2)
	go func() { errc <- s.Append(t.Context(), ours) }()
	go func() { errc <- s.Append(t.Context(), theirs) }()
	var gotOK, gotDup int
	for range 2 {
		err := <-errc
		switch {
		case err == nil:
			gotOK++
		case errors.Is(err, couponmesh.ErrDuplicate):
			gotDup++
		default:
			t.Errorf("append: %v", err)
		}
	}
	if gotOK != 1 || gotDup != 1 {
		t.Fatalf("%d ok, %d duplicate; want 1 and 1", gotOK, gotDup)
	}
	if st := s.CommitStats(); st.ReadBacks < 2 || st.Retries < 1 {
		t.Fatalf("stats %+v: want read-backs and retries", st)
	}
}

// TestBackpressure: with the database black-holed, appends fill the bounded
// queue, then wait, and every one is answered unavailable by its deadline;
// none is answered ok.
func TestBackpressure(t *testing.T) {
	s, p, _ := proxied(t, func(c *mongodb.Config) {
		c.OpTimeout, c.QueueSize, c.Flushers, c.BatchMaxOps = 300*time.Millisecond, 8, 1, 4
	})
	p.SetMode(faultproxy.BlackHole)
	const n = 50
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			errs[i] = s.Append(t.Context(), couponmesh.Entry{Entity: "coupon/bp", Seq: int64(i + 1), Type: "x", At: time.Now()})
		})
	}
	wg.Wait()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("appends answered after %v, want about the 300ms deadline", d)
	}
	for i, err := range errs {
		if !errors.Is(err, couponmesh.ErrUnavailable) || couponmesh.ErrorCode(err) != couponmesh.CodeUnavailable {
			t.Fatalf("append %d: %v, want unavailable", i, err)
		}
	}
	// The database is now known to be down: appends fail fast.
	testutil.CheckFor(t, 5*time.Second, "the store knows the database is down", func() error {
		if !s.Down() {
			return errors.New("store does not know the database is down")
		}
		return nil
	})
	probe := make(chan error, 1)
	go func() {
		probe <- s.Append(t.Context(), couponmesh.Entry{Entity: "coupon/probe", Seq: 1, Type: "x", At: time.Now()})
	}()
	time.Sleep(50 * time.Millisecond)
	t0 := time.Now()
	err := s.Append(t.Context(), couponmesh.Entry{Entity: "coupon/fast", Seq: 1, Type: "x", At: time.Now()})
	if !errors.Is(err, couponmesh.ErrUnavailable) || time.Since(t0) > 50*time.Millisecond {
		t.Errorf("append while down: %v after %v, want unavailable at once", err, time.Since(t0))
	}
	if err := <-probe; !errors.Is(err, couponmesh.ErrUnavailable) {
		t.Errorf("probe while down: %v", err)
	}
	// And it recovers by itself.
	p.SetMode(faultproxy.Forward)
	testutil.CheckFor(t, 10*time.Second, "an append once the database is back", func() error {
		return s.Append(t.Context(), couponmesh.Entry{Entity: "coupon/bp2", Seq: 1, Type: "x", At: time.Now()})
	})
}

// readJournal returns the data of every journal document of s's database by
// _id.
func readJournal(t *testing.T, s *mongodb.Store) map[string]string {
	t.Helper()
	client, err := mongo.Connect(options.Client().ApplyURI(testDB.URI()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	cur, err := client.Database(s.Database()).Collection("journal").Find(t.Context(), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var docs []struct {
		ID string      `bson:"_id"`
		D  bson.Binary `bson:"d"`
	}
	if err := cur.All(t.Context(), &docs); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string, len(docs))
	for _, d := range docs {
		out[d.ID] = string(d.D.Data)
	}
	return out
}

// TestAppendSurvivesADatabaseRestart: an append whose write meets a
// database that is gone (every connection closed, new ones too) and back
// within the write's timeout is written, not answered unavailable. The
// check of whether the database is down pings through the client that
// failed (the group commit's own): the reads' client still held the
// connections the database had closed, and a ping on one failed at once,
// declared the database down and failed the retry fast (421 unavailable
// claims in the chaos suite's database kill -9, against 0 before).
func TestAppendSurvivesADatabaseRestart(t *testing.T) {
	s, p, _ := proxied(t, func(c *mongodb.Config) {
		c.OpTimeout, c.WriteTimeout, c.RetryBackoff = 3*time.Second, 15*time.Second, 100*time.Millisecond
	})
	ctx := t.Context()
	// Both clients hold open connections.
	if err := s.Append(ctx, couponmesh.Entry{Entity: "coupon/restart", Seq: 1, Type: "x", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Entries(ctx, "coupon/restart", 0, 0); err != nil {
		t.Fatal(err)
	}
	p.SetMode(faultproxy.Down)
	done := make(chan error, 1)
	go func() {
		done <- s.Append(ctx, couponmesh.Entry{Entity: "coupon/restart", Seq: 2, Type: "x", At: time.Now()})
	}()
	time.Sleep(time.Second) // how long the database is gone
	p.SetMode(faultproxy.Forward)
	if err := <-done; err != nil {
		t.Fatalf("append across the restart: %v", err)
	}
	es, err := s.Entries(ctx, "coupon/restart", 0, 0)
	if err != nil || len(es) != 2 {
		t.Fatalf("journal %d entries (%v), want 2", len(es), err)
	}
}
