package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors"
	"github.com/couponmesh/couponmesh/actors/coupon"
	"github.com/couponmesh/couponmesh/actors/hub"
	"github.com/couponmesh/couponmesh/actors/user"
	"github.com/couponmesh/couponmesh/cluster/membership"
	"github.com/couponmesh/couponmesh/cluster/node"
	"github.com/couponmesh/couponmesh/internal/testutil"
	"github.com/couponmesh/couponmesh/persistence/devdb"
	"github.com/couponmesh/couponmesh/persistence/devdb/devdbtest"
	"github.com/couponmesh/couponmesh/persistence/mongodb"
)

var testDB *devdb.DB

func TestMain(m *testing.M) { os.Exit(devdbtest.Main(m, &testDB)) }

// sink records the pushes the hub hands it, decoded.
type sink struct {
	mu      sync.Mutex
	coupons []couponmesh.Coupon
	feed    []couponmesh.FeedEntry
}

func (s *sink) Send(frame []byte) bool {
	var p struct {
		Push   string               `json:"push"`
		Coupon couponmesh.Coupon    `json:"coupon"`
		Entry  couponmesh.FeedEntry `json:"entry"`
	}
	if err := json.Unmarshal(frame, &p); err != nil {
		panic(fmt.Sprintf("bad frame %s: %v", frame, err))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch p.Push {
	case "coupon":
		s.coupons = append(s.coupons, p.Coupon)
	case "feed":
		s.feed = append(s.feed, p.Entry)
	}
	return true
}

// versions returns the versions of the coupon pushes of id received.
func (s *sink) versions(id string) []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int64
	for _, c := range s.coupons {
		if c.ID == id {
			out = append(out, c.Version)
		}
	}
	return out
}

func (s *sink) feedSeqs() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int64
	for _, e := range s.feed {
		out = append(out, e.Seq)
	}
	return out
}

// hasVersion waits until s got a push of coupon id at version v.
func hasVersion(t *testing.T, s *sink, id string, v int64) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, fmt.Sprintf("push of %s v%d", id, v), func() error {
		vs := s.versions(id)
		if len(vs) == 0 || vs[len(vs)-1] != v {
			return fmt.Errorf("versions %v", vs)
		}
		return nil
	})
}

// The real hub on a one-member cluster with the real coupon and user
// grains over embedded FerretDB. One node per test process (protoactor
// trips -race when members start one after another in a process), so the
// cases share it as subtests, each on coupons and users of its own.
func TestHub(t *testing.T) {
	// Not t.Output(): the store's goroutines may log after the test returns.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := mongodb.DefaultConfig()
	cfg.URI, cfg.Database = testDB.URI(), fmt.Sprintf("hub%d", time.Now().UnixNano()) // a fresh one under -count
	store, err := mongodb.Open(t.Context(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(context.Background()) })
	call := actors.DefaultCallConfig()
	metrics := actors.NewMetrics(nil)
	gcfg := actors.GrainConfig{Store: store, HubLease: 5 * time.Second, SnapshotDelay: 50 * time.Millisecond, Log: log, Metrics: metrics}
	n, err := node.Start(node.Config{
		RemoteAddr: "127.0.0.1:0", Log: log,
		Provider: membership.New(membership.Config{BindAddr: "127.0.0.1:0", Log: log}),
	}, coupon.Kind(gcfg), user.Kind(gcfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop(true) }) // the grains stop before the store closes
	reg := prometheus.NewRegistry()
	h, err := hub.Start(n.Cluster, hub.Config{Refresh: 10 * time.Second, Call: call, Log: log}, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	svc := actors.NewService(n.Cluster, store, call, log)
	ctx := t.Context()
	merchant := couponmesh.Principal{User: "acme", Role: couponmesh.RoleMerchant}
	create := func(t *testing.T, id string) couponmesh.Coupon {
		t.Helper()
		q, title := 100, "Hub "+id
		c, err := svc.CreateCoupon(ctx, merchant, couponmesh.CouponSpec{ID: id, Title: &title, Quantity: &q})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	claim := func(t *testing.T, u, id string) couponmesh.Claim {
		t.Helper()
		c, err := svc.Claim(ctx, u, id, "rid-"+u+"-"+id)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	counter := func(name string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		t.Fatalf("no metric %s", name)
		return 0
	}

	t.Run("one push per node, one delivery per sink", func(t *testing.T) {
		c := create(t, "fan")
		sinks := []*sink{{}, {}, {}}
		for _, s := range sinks {
			if err := h.Subscribe(ctx, s, c.ID); err != nil {
				t.Fatal(err)
			}
		}
		pushes, deliveries := counter("couponmesh_hub_pushes_total"), counter("couponmesh_hub_deliveries_total")
		claim(t, "u1", c.ID)
		for _, s := range sinks {
			hasVersion(t, s, c.ID, c.Version+1)
		}
		if p, d := counter("couponmesh_hub_pushes_total")-pushes, counter("couponmesh_hub_deliveries_total")-deliveries; p != 1 || d != 3 {
			t.Errorf("%v pushes, %v deliveries for one claim and three sinks; want 1 and 3", p, d)
		}
		if cs, _ := h.Counts(); cs < 1 {
			t.Errorf("Counts: %d coupons followed", cs)
		}

		// Unsubscribe stops one sink's pushes; Detach another's; the last
		// sink keeps getting them.
		h.Unsubscribe(sinks[0], c.ID)
		h.Detach(sinks[1])
		claim(t, "u2", c.ID)
		hasVersion(t, sinks[2], c.ID, c.Version+2)
		for i, s := range sinks[:2] {
			if vs := s.versions(c.ID); vs[len(vs)-1] != c.Version+1 {
				t.Errorf("sink %d got versions %v after it left", i, vs)
			}
		}
		// Once the last sink leaves, the grain forgets the node: no more
		// pushes reach the hub.
		h.Detach(sinks[2])
		testutil.CheckFor(t, 5*time.Second, "the grain drops the hub", func() error {
			before := counter("couponmesh_hub_pushes_total")
			claim(t, fmt.Sprintf("late%d", time.Now().UnixNano()), c.ID)
			time.Sleep(100 * time.Millisecond) // a push in flight would have arrived by now
			if got := counter("couponmesh_hub_pushes_total") - before; got != 0 {
				return fmt.Errorf("%v pushes for a coupon no local sink follows", got)
			}
			return nil
		})
	})

	t.Run("attach delivers the user's feed in seq order", func(t *testing.T) {
		s := &sink{}
		if err := h.Attach(ctx, "feeder", s); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			id := fmt.Sprintf("feed%d", i)
			create(t, id)
			claim(t, "feeder", id)
		}
		testutil.CheckFor(t, 5*time.Second, "three feed pushes", func() error {
			if got := s.feedSeqs(); fmt.Sprint(got) != "[1 2 3]" {
				return fmt.Errorf("feed seqs %v", got)
			}
			return nil
		})
		s.mu.Lock()
		e := s.feed[2]
		s.mu.Unlock()
		if e.Type != couponmesh.FeedClaimed || e.Claim == nil || e.Claim.Coupon != "feed2" {
			t.Errorf("third entry %+v", e)
		}
		h.Detach(s)
		if _, us := h.Counts(); us != 0 {
			t.Errorf("Counts: %d users attached after Detach", us)
		}
	})

	t.Run("a passivated grain's new activation learns of the hub", func(t *testing.T) {
		c := create(t, "moved")
		s := &sink{}
		if err := h.Subscribe(ctx, s, c.ID); err != nil {
			t.Fatal(err)
		}
		claim(t, "p1", c.ID)
		hasVersion(t, s, c.ID, c.Version+1)
		if err := actors.Call(ctx, n.Cluster, call, actors.KindCoupon, c.ID, actors.ActorPassivate, actors.Empty{}, nil); err != nil {
			t.Fatal(err)
		}
		// The passivating grain nudged the hub, which registered again with
		// a new activation (which then pushes its state): the claim reaches
		// the sink well before the periodic renewal (10 s).
		claim(t, "p2", c.ID)
		hasVersion(t, s, c.ID, c.Version+2)
	})

	t.Run("a renewal activates the grain without loading it; the load comes later and pushes the state", func(t *testing.T) {
		loads := func(cause string) float64 {
			return promtest.ToFloat64(metrics.Loads.WithLabelValues(actors.KindCoupon, cause))
		}
		c := create(t, "deferred")
		s := &sink{}
		if err := h.Subscribe(ctx, s, c.ID); err != nil {
			t.Fatal(err)
		}
		hasPushes := len(s.versions(c.ID))
		requested, deferred := loads("request"), loads("deferred")
		if err := actors.Call(ctx, n.Cluster, call, actors.KindCoupon, c.ID, actors.ActorPassivate, actors.Empty{}, nil); err != nil {
			t.Fatal(err)
		}
		// The passivating grain nudged the hub, whose renewal activated a
		// new grain: that one owes the hub its state and loads it when
		// the node's deferred loads come to it, not at the renewal.
		testutil.CheckFor(t, 10*time.Second, "the state pushed by the new activation", func() error {
			if got := len(s.versions(c.ID)); got <= hasPushes {
				return fmt.Errorf("%d pushes of %s, want more than %d", got, c.ID, hasPushes)
			}
			return nil
		})
		if r, d := loads("request")-requested, loads("deferred")-deferred; r != 0 || d != 1 {
			t.Fatalf("loads of the new activation: %v by a request, %v deferred; want 0 and 1", r, d)
		}
	})

	t.Run("a subscribe to a coupon that does not exist still registers", func(t *testing.T) {
		s := &sink{}
		if err := h.Subscribe(ctx, s, "later"); err != nil {
			t.Fatal(err)
		}
		c := create(t, "later")
		hasVersion(t, s, "later", c.Version)
	})
}
