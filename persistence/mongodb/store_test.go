package mongodb_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/persistence/devdb"
	"github.com/couponmesh/couponmesh/persistence/mongodb"
	"github.com/couponmesh/couponmesh/persistence/storetest"
)

func TestConformance(t *testing.T) {
	// The conformance cases check outcomes, not latency: twelve of them run
	// in parallel, and on a busy machine the default 5 s OpTimeout turned a
	// racing AppendOrdered into unavailable (seen at load 28).
	storetest.Run(t, func(t *testing.T) couponmesh.Store {
		return openStore(t, func(c *mongodb.Config) { c.OpTimeout = 30 * time.Second })
	})
}

// calls exercises every Store method once.
var calls = []struct {
	name string
	call func(context.Context, couponmesh.Store) error
}{
	{"Append", func(ctx context.Context, s couponmesh.Store) error {
		return s.Append(ctx, couponmesh.Entry{Entity: "coupon/x", Seq: 1, Type: "t", At: time.Now(), Data: []byte(`{}`)})
	}},
	{"Entries", func(ctx context.Context, s couponmesh.Store) error {
		_, err := s.Entries(ctx, "coupon/x", 0, 0)
		return err
	}},
	{"Snapshot", func(ctx context.Context, s couponmesh.Store) error { _, err := s.Snapshot(ctx, "coupon/x"); return err }},
	{"PutSnapshot", func(ctx context.Context, s couponmesh.Store) error {
		return s.PutSnapshot(ctx, couponmesh.Snapshot{Entity: "coupon/x", Seq: 1, Data: []byte(`{}`), Coupon: &couponmesh.Coupon{ID: "x"}})
	}},
	{"BrowseCoupons", func(ctx context.Context, s couponmesh.Store) error {
		_, err := s.BrowseCoupons(ctx, couponmesh.BrowseQuery{})
		return err
	}},
	{"AddFollower", func(ctx context.Context, s couponmesh.Store) error { return s.AddFollower(ctx, "x", "alice") }},
	{"RemoveFollower", func(ctx context.Context, s couponmesh.Store) error { return s.RemoveFollower(ctx, "x", "alice") }},
	{"Followers", func(ctx context.Context, s couponmesh.Store) error { _, err := s.Followers(ctx, "x"); return err }},
	{"FollowersOf", func(ctx context.Context, s couponmesh.Store) error {
		_, err := s.FollowersOf(ctx, []string{"x", "y"})
		return err
	}},
	{"Ping", func(ctx context.Context, s couponmesh.Store) error { return s.Ping(ctx) }},
}

func checkUnavailable(t *testing.T, s couponmesh.Store, within time.Duration) {
	t.Helper()
	for _, c := range calls {
		start := time.Now()
		err := c.call(t.Context(), s)
		if !errors.Is(err, couponmesh.ErrUnavailable) {
			t.Errorf("%s: %v, want unavailable", c.name, err)
		}
		if couponmesh.ErrorCode(err) != couponmesh.CodeUnavailable {
			t.Errorf("%s: code %s, want unavailable", c.name, couponmesh.ErrorCode(err))
		}
		if d := time.Since(start); d > within {
			t.Errorf("%s took %v, want at most %v", c.name, d, within)
		}
	}
}

func TestUnavailableAfterClose(t *testing.T) {
	s := openStore(t)
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkUnavailable(t, s, time.Second)
}

// TestUnavailableServerDown stops the server under an open store: every
// operation must fail as unavailable within its OpTimeout.
func TestUnavailableServerDown(t *testing.T) {
	db, err := devdb.Start(t.Context(), devdb.Config{Dir: t.TempDir()}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg := mongodb.DefaultConfig()
	cfg.URI, cfg.OpTimeout, cfg.ConnectTimeout = db.URI(), 200*time.Millisecond, 2*time.Second
	s, err := mongodb.Open(t.Context(), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	if err := s.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	checkUnavailable(t, s, time.Second)
}

func TestOpenUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := mongodb.DefaultConfig()
	cfg.URI, cfg.ConnectTimeout = "mongodb://"+addr+"/", 300*time.Millisecond
	start := time.Now()
	s, err := mongodb.Open(t.Context(), cfg, testLogger(t))
	if err == nil {
		s.Close(context.Background())
		t.Fatalf("Open on closed port %s succeeded", addr)
	}
	if !errors.Is(err, couponmesh.ErrUnavailable) {
		t.Fatalf("Open: %v, want unavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Open took %v with ConnectTimeout 300ms", d)
	}
}

func TestOpenConfig(t *testing.T) {
	if _, err := mongodb.Open(t.Context(), mongodb.Config{}, nil); err == nil {
		t.Fatal("Open without URI succeeded")
	}
	// Indexes are created idempotently: a second Open on the same
	// database works.
	cfg := mongodb.DefaultConfig()
	cfg.URI, cfg.Database = testDB.URI(), fmt.Sprintf("reopen%d", dbSeq.Add(1))
	for range 2 {
		s, err := mongodb.Open(t.Context(), cfg, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		s.Close(t.Context())
	}
}

func TestBrowseBadCursor(t *testing.T) {
	s := openStore(t)
	for _, after := range []string{"!!!", "bm9waXBl", "eHx5"} { // not base64, "nopipe", "x|y"
		_, err := s.BrowseCoupons(t.Context(), couponmesh.BrowseQuery{After: after})
		if couponmesh.ErrorCode(err) != couponmesh.CodeBadRequest {
			t.Errorf("cursor %q: %v, want bad_request", after, err)
		}
	}
}

// TestDocuments pins the stored shape that indexes and operators rely on.
func TestDocuments(t *testing.T) {
	cfg := mongodb.DefaultConfig()
	cfg.URI, cfg.Database = testDB.URI(), fmt.Sprintf("shape%d", dbSeq.Add(1))
	s, err := mongodb.Open(t.Context(), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	at := time.Date(2025, 1, 2, 3, 4, 5, 6_007_008, time.UTC)
	if err := s.Append(t.Context(), couponmesh.Entry{Entity: "coupon/c42", Seq: 17, Type: "updated", At: at, Data: []byte(`{"a":1}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(t.Context(), couponmesh.Entry{Entity: "coupon/c42", Seq: 18, Type: "claimed", Unique: "claim/c42/al", User: "al", At: at, Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	c := &couponmesh.Coupon{ID: "c42", Merchant: "m", Quantity: 1, CreatedAt: at, Withdrawn: true}
	if err := s.PutSnapshot(t.Context(), couponmesh.Snapshot{Entity: "coupon/c42", Seq: 18, Data: []byte(`{}`), Coupon: c}); err != nil {
		t.Fatal(err)
	}

	client, err := mongo.Connect(options.Client().ApplyURI(testDB.URI()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	db := client.Database(cfg.Database)
	get := func(coll, id string) bson.M {
		var m bson.M
		if err := db.Collection(coll).FindOne(t.Context(), bson.D{{Key: "_id", Value: id}}).Decode(&m); err != nil {
			t.Fatalf("%s %s: %v", coll, id, err)
		}
		return m
	}
	j := get("journal", "coupon/c42#17")
	if j["uk"] != "coupon/c42#17" || j["e"] != "coupon/c42" || j["seq"] != int64(17) || j["t"] != "updated" {
		t.Errorf("journal doc %v", j)
	}
	if _, ok := j["u"]; ok {
		t.Errorf("journal doc has u without a user: %v", j)
	}
	if j["at"] != bson.NewDateTimeFromTime(at) {
		t.Errorf("at = %#v, want a date", j["at"])
	}
	if j := get("journal", "coupon/c42#18"); j["uk"] != "claim/c42/al" || j["u"] != "al" {
		t.Errorf("journal doc %v", j)
	}
	sn := get("snapshots", "coupon/c42")
	if sn["cid"] != "c42" || sn["merchant"] != "m" || sn["status"] != "withdrawn" || sn["created"] != bson.NewDateTimeFromTime(at) {
		t.Errorf("snapshot doc %v", sn)
	}
	if _, ok := sn["expires"]; ok {
		t.Errorf("snapshot doc has expires for a coupon without expiry: %v", sn)
	}

	// The unique index on uk is what fences appends.
	cur, err := db.Collection("journal").Indexes().List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var idx []bson.M
	if err := cur.All(t.Context(), &idx); err != nil {
		t.Fatal(err)
	}
	unique := false
	for _, ix := range idx {
		if ix["name"] == "uk_1" && ix["unique"] == true {
			unique = true
		}
	}
	if !unique {
		t.Errorf("no unique index uk_1 on journal: %v", idx)
	}
}

// TestRemindersMoveToShardCollections: reminders left in the one
// collection of the stores before the split are moved into their shards'
// collections when a store opens, and fire from there.
func TestRemindersMoveToShardCollections(t *testing.T) {
	cfg := mongodb.DefaultConfig()
	cfg.URI, cfg.Database = testDB.URI(), fmt.Sprintf("legacy%d", dbSeq.Add(1))
	client, err := mongo.Connect(options.Client().ApplyURI(testDB.URI()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	legacy := client.Database(cfg.Database).Collection("reminders")
	due := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var want []couponmesh.Reminder
	for i := range 700 { // more than a page of the move
		r := couponmesh.Reminder{Target: fmt.Sprintf("coupon/c%d", i), Name: "expire", Due: due.Add(time.Duration(i) * time.Second)}
		want = append(want, r)
		doc := bson.D{{Key: "_id", Value: r.Key()}, {Key: "shard", Value: r.Shard()}, {Key: "due", Value: r.Due}, {Key: "target", Value: r.Target}, {Key: "name", Value: r.Name}}
		if _, err := legacy.InsertOne(t.Context(), doc); err != nil {
			t.Fatal(err)
		}
	}
	s, err := mongodb.Open(t.Context(), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	got := map[string]bool{}
	for n := range couponmesh.ReminderShards {
		rs, err := s.DueReminders(t.Context(), n, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Shard() != n {
				t.Errorf("reminder %s in shard %d, want %d", r.Key(), n, r.Shard())
			}
			got[r.Key()] = true
		}
	}
	for _, r := range want {
		if !got[r.Key()] {
			t.Errorf("reminder %s not moved", r.Key())
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d reminders after the move, want %d", len(got), len(want))
	}
	if n, err := legacy.CountDocuments(t.Context(), bson.D{}); err != nil || n != 0 {
		t.Errorf("old collection holds %d reminders (err %v), want 0", n, err)
	}
}
