package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/cluster/clustertest"
	"github.com/couponmesh/couponmesh/internal/history"
	"github.com/couponmesh/couponmesh/internal/netlab"
	"github.com/couponmesh/couponmesh/internal/testutil"
)

// A real partition (issue 14, DESIGN.md invariant 8): three node processes
// and the database, each in its own network namespace; the shoppers and
// watchers are the test process, which reaches every node throughout. n1 is
// cut from n2 and n3 while the shoppers on every node claim, n1 believing
// it is alone. After the heal n1 is evicted; then every wallet, feed and
// coupon read through n2 and n3 must equal the journal read straight from
// the database, every acknowledged claim must be in it, and the watchers
// must end at the journal's last version. Shoppers only read after the
// heal: nothing but validation after churn brings the grains of n2 and n3
// up to what n1 wrote.
func TestPartitionMinorityWritesReadAfterHeal(t *testing.T) {
	const (
		coupons  = 30
		minority = 10 // the last ten: claimed during the cut by n1's shoppers only
		quantity = 4  // 12 (or 8) shoppers try every coupon: demand 2-3x the supply
	)
	t.Setenv("COUPONMESH_ADMIN_TOKEN", clustertest.AdminToken) // the nodes' admin token (procConfig), and adminCall's
	lab := netlab.New(t)
	dbHost := lab.Host("db")
	db := clustertest.StartDB(t, dbHost, dbHost.Addr(27017), t.TempDir())
	hosts := []*netlab.Host{lab.Host("n1"), lab.Host("n2"), lab.Host("n3")}
	var seeds []string
	for _, h := range hosts {
		seeds = append(seeds, h.Addr(7946))
	}
	nodes := make([]*proc, len(hosts))
	for i, h := range hosts {
		nodes[i] = startNodeOn(t, h, db.URI(), seeds)
	}
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	for _, p := range nodes {
		p.WaitAlive(t, 3, 30*time.Second)
	}

	ids := createCoupons(t, n2, "p", coupons, quantity)
	var h history.Recorder
	// Twelve shoppers, eight on n1: some of them have their user grain on
	// n2 or n3, where it stays active through the cut.
	var shoppers []*partitionShopper
	for i := range 12 {
		p := n1
		if i >= 8 {
			p = nodes[1+i%2]
		}
		s := &partitionShopper{user: fmt.Sprintf("ps%d", i), node: p}
		s.c = p.session(t, s.user)
		shoppers = append(shoppers, s)
	}
	// Watchers on the majority side, subscribed to every coupon.
	watchers := []*partitionWatcher{newPartitionWatcher(t, n2, ids), newPartitionWatcher(t, n3, ids)}

	// Before the cut every shopper follows a coupon and claims the first
	// five: their user grains are active on their owners, with entries.
	runShoppers(shoppers, func(s *partitionShopper) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := s.c.Follow(ctx, ids[0]); err != nil {
			t.Errorf("%s follow: %v", s.user, err)
		}
		for _, id := range ids[:5] {
			_, _ = h.Claim(ctx, s.c, s.node.name, s.user, id, s.user+"-"+id)
		}
	})
	onMajority := map[string]bool{}
	for _, p := range []*proc{n2, n3} {
		for _, id := range p.actors(t, "user") {
			onMajority[id] = true
		}
	}

	// The cut: n1 from n2 and n3, both ways; the database and the test
	// process still reach all three.
	lab.Cut(hosts[0], hosts[1])
	lab.Cut(hosts[0], hosts[2])
	cut := time.Now()
	n1.WaitAlive(t, 1, 30*time.Second)
	n2.WaitAlive(t, 2, 30*time.Second)
	n3.WaitAlive(t, 2, 30*time.Second)
	t.Logf("both sides see the partition %s after the cut", time.Since(cut).Round(time.Millisecond))

	// During the cut every shopper claims the other coupons through its
	// own node: both sides write to the same coupons, and n1's shoppers
	// alone to the last ten.
	runShoppers(shoppers, func(s *partitionShopper) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, id := range ids[5:] {
			if s.node == n1 || !slices.Contains(ids[coupons-minority:], id) {
				_, _ = h.Claim(ctx, s.c, s.node.name, s.user, id, s.user+"-"+id)
			}
		}
	})
	// The writes that make a majority grain stale: acknowledged through n1
	// for users whose grain stayed active on n2 or n3.
	stale := 0
	for _, a := range h.Attempts() {
		if a.Outcome == history.OK && a.Via == n1.name && onMajority["user/"+a.User] {
			stale++
		}
	}
	if stale == 0 {
		t.Fatal("no claim was acknowledged through n1 for a user whose grain is on n2 or n3: the test would prove nothing")
	}
	t.Logf("claims during the cut: %d through n1 acknowledged for users active on the majority side", stale)

	// The heal: n1 is evicted by the majority and exits; n2 and n3 stay.
	lab.Heal(hosts[0], hosts[1])
	lab.Heal(hosts[0], hosts[2])
	healed := time.Now()
	exited := make(chan error, 1)
	go func() { exited <- n1.Err() }()
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("n1 exited with %v, want exit status 1 (evicted)", err)
		}
		t.Logf("n1 evicted and exited %s after the heal", time.Since(healed).Round(time.Millisecond))
	case <-time.After(60 * time.Second):
		t.Fatal("n1 did not exit within 60 s of the heal")
	}
	n2.WaitAlive(t, 2, 30*time.Second)
	n3.WaitAlive(t, 2, 30*time.Second)

	// Reads through the majority equal the journal.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	store := openStoreAt(t, db.URI())
	// The claims: no coupon over its quantity, no n twice, every
	// acknowledged claim in the journal, no refused one in it.
	report, err := history.Check(ctx, store, ids, h.Attempts())
	if err != nil {
		t.Fatal(err)
	}
	t.Log(report)
	if err := report.Err(); err != nil {
		t.Fatal(err)
	}
	if left := report.NotSoldOut(); len(left) > 0 {
		t.Fatalf("coupons not sold out although demand was 2-3x the supply: %v", left)
	}
	readers := map[string]*client.Client{}
	for _, s := range shoppers {
		for _, p := range []*proc{n2, n3} {
			readers[s.user+"@"+p.name] = p.session(t, s.user)
		}
	}
	for _, s := range shoppers {
		for _, p := range []*proc{n2, n3} {
			c := readers[s.user+"@"+p.name]
			wallet, err := c.Wallet(ctx)
			if err != nil {
				t.Fatalf("%s wallet through %s: %v", s.user, p.name, err)
			}
			if got, want := claimSet(wallet), claimSet(report.Wallets[s.user]); !slices.Equal(got, want) {
				t.Errorf("%s's wallet through %s: %d claims, the journal has %d\n got %v\nwant %v", s.user, p.name, len(got), len(want), got, want)
			}
			feed, err := c.Feed(ctx, 0, couponmesh.MaxFeedLimit)
			if err != nil {
				t.Fatalf("%s feed through %s: %v", s.user, p.name, err)
			}
			// The journal's last seq is its entry count: the store reads
			// seqs 1, 2, … up to the first missing one.
			if got, want := len(feed), report.FeedSeq[s.user]; int64(got) != want || (got > 0 && feed[got-1].Seq != want) {
				t.Errorf("%s's feed through %s: %d entries, the journal has %d", s.user, p.name, got, want)
			}
		}
	}
	for _, id := range ids {
		for _, p := range []*proc{n2, n3} {
			c, err := readers[shoppers[0].user+"@"+p.name].Get(ctx, id)
			if err != nil {
				t.Fatalf("get %s through %s: %v", id, p.name, err)
			}
			if want := report.Coupons[id]; c.Claimed != want.Claims || c.Version != want.Seq {
				t.Errorf("coupon %s through %s: claimed %d version %d, the journal has %d claims up to seq %d",
					id, p.name, c.Claimed, c.Version, want.Claims, want.Seq)
			}
		}
	}
	for _, w := range watchers {
		testutil.CheckFor(t, 30*time.Second, "watcher on "+w.node+" at the journal's last versions", func() error {
			for _, id := range ids {
				if got, want := w.version(id), report.Coupons[id].Seq; got != want {
					return fmt.Errorf("%s at version %d, journal at %d", id, got, want)
				}
			}
			return nil
		})
	}
}

// startNodeOn starts a node process in h's namespace, every listener on
// h's address, with the admin token of the test process (adminCall's).
func startNodeOn(t *testing.T, h *netlab.Host, db string, seeds []string) *proc {
	t.Helper()
	cfg := procConfig(t, h.Name, db, "COUPONMESH_CLUSTER_REJOIN_INTERVAL=1s")
	cfg.Host, cfg.HTTP, cfg.Admin, cfg.Gossip, cfg.Seeds = h, "", "", "", seeds
	cfg.Log = testLogWriter{t, h.Name}
	return startProc(t, cfg)
}

// testLogWriter sends a node's output to the test log, prefixed with the
// node's name.
type testLogWriter struct {
	t    *testing.T
	name string
}

func (w testLogWriter) Write(b []byte) (int, error) {
	w.t.Logf("%s: %s", w.name, b)
	return len(b), nil
}

type partitionShopper struct {
	user string
	node *proc
	c    *client.Client
}

func runShoppers(shoppers []*partitionShopper, f func(*partitionShopper)) {
	var wg sync.WaitGroup
	for _, s := range shoppers {
		wg.Go(func() { f(s) })
	}
	wg.Wait()
}

// claimSet is a wallet as sorted "coupon n code" strings.
func claimSet(w []couponmesh.Claim) []string {
	out := make([]string, 0, len(w))
	for _, c := range w {
		out = append(out, c.Coupon+" "+strconv.Itoa(c.N)+" "+c.Code)
	}
	slices.Sort(out)
	return out
}

// partitionWatcher is a session subscribed to coupons that keeps the
// newest version pushed of each.
type partitionWatcher struct {
	node string
	mu   sync.Mutex
	v    map[string]int64
}

func newPartitionWatcher(t *testing.T, p *proc, ids []string) *partitionWatcher {
	t.Helper()
	w := &partitionWatcher{node: p.name, v: map[string]int64{}}
	c := p.sessionOpts(t, "watcher-"+p.name, client.Options{OnCoupon: func(c couponmesh.Coupon) {
		w.mu.Lock()
		w.v[c.ID] = max(w.v[c.ID], c.Version)
		w.mu.Unlock()
	}})
	var subs []client.Sub
	for _, id := range ids {
		subs = append(subs, client.Sub{ID: id})
	}
	got, err := c.Subscribe(context.Background(), subs)
	if err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	for _, c := range got {
		w.v[c.ID] = max(w.v[c.ID], c.Version)
	}
	w.mu.Unlock()
	return w
}

func (w *partitionWatcher) version(id string) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.v[id]
}
