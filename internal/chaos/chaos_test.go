//go:build chaos

package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/cluster/clustertest"
	"github.com/couponmesh/couponmesh/internal/history"
	"github.com/couponmesh/couponmesh/internal/netlab"
)

// The load of every scenario.
// Each shopper claims the coupons in order, one every pace: the load lasts
// about couponCount x pace (30 s), longer than any fault, and every coupon
// sells out to the first 20 of its 30 claimers (demand 1.5x the supply).
const (
	couponCount = 300
	quantity    = 20
	rawShoppers = 24
	sdkShoppers = 6
	pace        = 100 * time.Millisecond
)

// env is one scenario's cluster and load.
type env struct {
	t       *testing.T
	lab     *netlab.Lab
	dbHost  *netlab.Host
	db      *clustertest.DB
	hosts   []*netlab.Host
	mu      sync.Mutex // guards nodes
	nodes   []*clustertest.Node
	seeds   []string
	coupons []string
	raw     history.Recorder // claims of shoppers without SDK retries
	sdk     history.Recorder // claims of shoppers whose SDK reconnects and retries
	watch   []*watcher
	users   []string
	stop    chan struct{}  // closed to stop the shoppers
	wg      sync.WaitGroup // the shoppers
	unwatch chan struct{}  // closed to stop the watchers, once checked
	watchWG sync.WaitGroup // the watchers
	faultAt time.Time      // when the fault ended (time to full service is counted from it)
	dbDir   string
}

// newEnv starts the database and three nodes, each in its own namespace,
// creates the coupons and starts the load and the watchers.
func newEnv(t *testing.T, dbDir string, nodeEnv ...string) *env {
	e := &env{t: t, lab: netlab.New(t), stop: make(chan struct{}), unwatch: make(chan struct{}), dbDir: dbDir}
	e.dbHost = e.lab.Host("db")
	if e.dbDir == "" {
		e.dbDir = t.TempDir()
	}
	e.db = clustertest.StartDB(t, e.dbHost, e.dbHost.Addr(27017), e.dbDir)
	for i := range 4 { // the fourth host is for a node added later
		h := e.lab.Host(fmt.Sprintf("n%d", i+1))
		e.hosts = append(e.hosts, h)
		if i < 3 {
			e.seeds = append(e.seeds, h.Addr(7946))
		}
	}
	for i := range 3 {
		e.startNode(i, nodeEnv...)
	}
	for _, n := range e.nodes {
		n.WaitAlive(t, 3, 30*time.Second)
	}
	api := client.NewAPI("http://"+e.nodes[0].HTTP, e.login(e.nodes[0], "acme", couponmesh.RoleMerchant))
	e.coupons = make([]string, couponCount)
	var created sync.WaitGroup
	for w := range 8 {
		created.Go(func() {
			for i := w; i < couponCount; i += 8 {
				id := fmt.Sprintf("c%d", i)
				if _, err := api.CreateCoupon(t.Context(), couponmesh.CouponSpec{ID: id, Title: ptr("Chaos " + id), Quantity: ptr(quantity)}); err != nil {
					t.Error(err)
				}
				e.coupons[i] = id
			}
		})
	}
	created.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for i := range 3 {
		e.watch = append(e.watch, e.newWatcher(i))
	}
	for i := range rawShoppers + sdkShoppers {
		user := fmt.Sprintf("s%d", i)
		e.users = append(e.users, user)
		e.wg.Go(func() { e.shop(user, i, i >= rawShoppers) })
	}
	t.Cleanup(func() { e.halt(); e.stopWatching() })
	return e
}

func ptr[T any](v T) *T { return &v }

func (e *env) startNode(i int, extra ...string) *clustertest.Node {
	h := e.hosts[i]
	env := append([]string{"COUPONMESH_CLUSTER_REJOIN_INTERVAL=1s", "COUPONMESH_CLUSTER_DRAIN_SPREAD=1s"}, extra...)
	n := clustertest.StartNode(e.t, clustertest.NodeConfig{Name: h.Name, Host: h, Seeds: e.seeds, DB: e.db.URI(), Env: env, Log: logTo{e.t, h.Name}})
	e.mu.Lock()
	defer e.mu.Unlock()
	if i < len(e.nodes) {
		e.nodes[i] = n
	} else {
		e.nodes = append(e.nodes, n)
	}
	return n
}

// logTo sends a process's output to the test log.
type logTo struct {
	t    *testing.T
	name string
}

func (w logTo) Write(b []byte) (int, error) {
	w.t.Logf("%s: %s", w.name, strings.TrimSpace(string(b)))
	return len(b), nil
}

func (e *env) login(n *clustertest.Node, user string, role couponmesh.Role) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tok, err := client.DevLogin(ctx, "http://"+n.HTTP, user, role)
	if err != nil {
		e.t.Fatalf("login %s on %s: %v", user, n.Name, err)
	}
	return tok
}

// all returns every node started, in order.
func (e *env) all() []*clustertest.Node {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.nodes)
}

// live returns the nodes still running, in order.
func (e *env) live() []*clustertest.Node {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*clustertest.Node
	for _, n := range e.nodes {
		if n.Running() {
			out = append(out, n)
		}
	}
	return out
}

func wsURL(n *clustertest.Node) string { return "ws://" + n.HTTP + "/ws" }

// connect opens an authenticated session for user on the k-th live node
// (modulo), or returns nil.
func (e *env) connect(user string, k int, opts client.Options) (*client.Client, *clustertest.Node) {
	live := e.live()
	for try := range len(live) {
		n := live[(k+try)%len(live)]
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		tok, err := client.DevLogin(ctx, "http://"+n.HTTP, user, couponmesh.RoleShopper)
		if err == nil {
			var c *client.Client
			if c, err = client.Dial(ctx, wsURL(n), opts); err == nil {
				if _, err = c.Auth(ctx, tok); err == nil {
					cancel()
					return c, n
				}
				c.Close()
			}
		}
		cancel()
	}
	return nil, nil
}

// shop claims every coupon in turn (once each, with a rid per coupon) and
// then reads them, until stop. A shopper without SDK retries moves to
// another node only when its connection is lost; one with them lets the
// SDK reconnect over every node's address.
func (e *env) shop(user string, k int, sdk bool) {
	rec := &e.raw
	var opts client.Options
	if sdk {
		rec = &e.sdk
		opts.Reconnect = true
		for _, n := range e.all() {
			opts.Addresses = append(opts.Addresses, wsURL(n))
		}
	}
	var c *client.Client
	var via *clustertest.Node
	next := 0
	for {
		select {
		case <-e.stop:
			if c != nil {
				c.Close()
			}
			return
		case <-time.After(pace):
		}
		if c == nil || (!sdk && c.State() == client.StateClosed) {
			if c != nil {
				c.Close()
			}
			if c, via = e.connect(user, k, opts); c == nil {
				k++
				continue
			}
		}
		if next >= len(e.coupons) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _ = c.Get(ctx, e.coupons[k%len(e.coupons)])
			cancel()
			continue
		}
		id := e.coupons[next]
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := rec.Claim(ctx, c, via.Name, user, id, user+"-"+id)
		cancel()
		o, _ := history.Classify(err)
		if o.Definite() {
			next++ // else: the same rid again, which learns the first answer
		}
	}
}

// watcher is a session on one node subscribed to every coupon; when its
// connection is lost it reconnects to another node with the versions it
// saw.
type watcher struct {
	e    *env
	k    int
	mu   sync.Mutex
	v    map[string]int64
	c    *client.Client
	lost int // reconnections
}

func (e *env) newWatcher(k int) *watcher {
	w := &watcher{e: e, k: k, v: map[string]int64{}}
	w.connect()
	e.watchWG.Go(w.keep)
	return w
}

func (w *watcher) onCoupon(c couponmesh.Coupon) {
	w.mu.Lock()
	w.v[c.ID] = max(w.v[c.ID], c.Version)
	w.mu.Unlock()
}

func (w *watcher) connect() bool {
	c, _ := w.e.connect(fmt.Sprintf("watcher%d", w.k), w.k, client.Options{OnCoupon: w.onCoupon})
	if c == nil {
		return false
	}
	w.mu.Lock()
	subs := make([]client.Sub, 0, len(w.e.coupons))
	for _, id := range w.e.coupons {
		subs = append(subs, client.Sub{ID: id, Version: w.v[id]})
	}
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := c.Subscribe(ctx, subs)
	if err != nil {
		c.Close()
		return false
	}
	for _, cp := range got {
		w.onCoupon(cp)
	}
	w.mu.Lock()
	w.c = c
	w.mu.Unlock()
	return true
}

func (w *watcher) keep() {
	for {
		select {
		case <-w.e.unwatch:
			w.mu.Lock()
			c := w.c
			w.mu.Unlock()
			if c != nil {
				c.Close() // not under w.mu: its read loop may be in onCoupon
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		w.mu.Lock()
		c := w.c
		w.mu.Unlock()
		if c != nil && c.State() != client.StateClosed {
			continue
		}
		if c != nil {
			c.Close()
		}
		w.mu.Lock()
		w.c = nil
		w.mu.Unlock()
		w.k++
		if w.connect() {
			w.mu.Lock()
			w.lost++
			w.mu.Unlock()
		}
	}
}

func (w *watcher) version(id string) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.v[id]
}

// halt stops the load (idempotent); the watchers go on until unwatched.
func (e *env) halt() {
	select {
	case <-e.stop:
	default:
		close(e.stop)
	}
	e.wg.Wait()
}

// stopWatching stops the watchers (idempotent).
func (e *env) stopWatching() {
	select {
	case <-e.unwatch:
	default:
		close(e.unwatch)
	}
	e.watchWG.Wait()
}

// result is one scenario's line of the table.
type result struct {
	name            string
	attempts, ok    int
	rawErrors       map[couponmesh.Code]int
	rawNoAnswer     int
	notSent         int // not sent: the node had announced its drain (both kinds of shoppers)
	sdkErrors       int
	longestWithout  time.Duration
	fullService     time.Duration // from the fault's end
	violations      int
	watchersChecked int
}

var (
	resultsMu sync.Mutex
	results   []result
)

// finish stops the load, waits for the cluster to settle, and checks
// every invariant against the journal.
func (e *env) finish(name string) {
	t := e.t
	time.Sleep(3 * time.Second) // load after the fault, for the time to full service
	e.halt()
	live := e.live()
	if len(live) == 0 {
		t.Fatal("no node left")
	}
	for _, n := range live {
		n.WaitAlive(t, len(live), 30*time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	store, err := history.Open(ctx, e.db.URI())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(context.Background())

	// A claim whose answer was lost was asked again with the same rid
	// (shop): its later answer is the first one, recorded too.
	attempts := append(e.raw.Attempts(), e.sdk.Attempts()...)
	report, err := history.Check(ctx, store, e.coupons, attempts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s", name, report)
	for _, v := range report.Violations {
		t.Error(v)
	}
	if report.Outcomes[history.SoldOut] == 0 {
		t.Errorf("no claim was refused sold_out: demand never exceeded supply, the over-claim check proves nothing")
	}

	// Watchers end at the final state of every coupon.
	last := map[string]int64{}
	for _, id := range e.coupons {
		entries, err := store.Entries(ctx, "coupon/"+id, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		last[id] = entries[len(entries)-1].Seq
	}
	deadline := time.Now().Add(30 * time.Second) // three hub renewals
	for i, w := range e.watch {
		for {
			var behind []string
			for _, id := range e.coupons {
				if w.version(id) != last[id] {
					behind = append(behind, fmt.Sprintf("%s at %d of %d", id, w.version(id), last[id]))
				}
			}
			if len(behind) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("watcher %d (reconnected %d times) not at the final state 30 s after the load: %v", i, w.lost, behind)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	e.stopWatching()

	// Every user's feed, read through a node, equals the user's journal.
	for _, u := range e.users {
		entries, err := store.Entries(ctx, "user/"+u, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		c, n := e.connect(u, 0, client.Options{})
		if c == nil {
			t.Fatalf("no node to read %s's feed", u)
		}
		feed, err := c.Feed(ctx, 0, couponmesh.MaxFeedLimit)
		c.Close()
		if err != nil {
			t.Errorf("%s's feed through %s: %v", u, n.Name, err)
			continue
		}
		if len(feed) != len(entries) {
			t.Errorf("%s's feed through %s: %d entries, the journal has %d", u, n.Name, len(feed), len(entries))
			continue
		}
		for i, f := range feed {
			if f.Seq != int64(i+1) {
				t.Errorf("%s's feed has a gap: seq %d at place %d", u, f.Seq, i+1)
				break
			}
		}
	}

	r := result{name: name, attempts: len(attempts), ok: report.Outcomes[history.OK], rawErrors: map[couponmesh.Code]int{},
		longestWithout: report.LongestWithoutOK, violations: len(report.Violations), watchersChecked: len(e.watch)}
	for _, a := range e.raw.Attempts() {
		switch a.Outcome {
		case history.OK, history.SoldOut, history.AlreadyClaimed:
		case history.NoAnswer:
			r.rawNoAnswer++
		case history.NotSent:
			r.notSent++
		default:
			r.rawErrors[a.Code]++
		}
	}
	for _, a := range e.sdk.Attempts() {
		switch a.Outcome {
		case history.OK, history.SoldOut, history.AlreadyClaimed:
		case history.NotSent:
			r.notSent++
		default:
			r.sdkErrors++
		}
	}
	r.fullService = fullService(attempts, e.faultAt)
	resultsMu.Lock()
	results = append(results, r)
	resultsMu.Unlock()
}

// fullService is the time from the fault's end to the first second in
// which every claim answered was a decision (ok, sold_out or
// already_claimed) with at least one ok.
func fullService(attempts []history.Attempt, from time.Time) time.Duration {
	if from.IsZero() {
		return 0
	}
	type sec struct{ decided, other, ok int }
	bySec := map[int64]*sec{}
	for _, a := range attempts {
		if a.End.Before(from) {
			continue
		}
		k := int64(a.End.Sub(from) / time.Second)
		s := bySec[k]
		if s == nil {
			s = &sec{}
			bySec[k] = s
		}
		switch a.Outcome {
		case history.OK:
			s.ok++
			s.decided++
		case history.SoldOut, history.AlreadyClaimed:
			s.decided++
		default:
			s.other++
		}
	}
	keys := make([]int64, 0, len(bySec))
	for k := range bySec {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if s := bySec[k]; s.other == 0 && s.ok > 0 {
			return time.Duration(k) * time.Second
		}
	}
	return -1
}

// waitExit waits for node n's process to exit with status want (-1: any).
func waitExit(t *testing.T, n *clustertest.Node, want int, within time.Duration) {
	t.Helper()
	select {
	case <-n.Exited():
	case <-time.After(within):
		t.Fatalf("%s still running %s later", n.Name, within)
	}
	var ee *exec.ExitError
	code := 0
	if err := n.Err(); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		code = -2
	}
	if want >= 0 && code != want {
		t.Fatalf("%s exited with %v (status %d), want status %d", n.Name, n.Err(), code, want)
	}
}

func loadFor(d time.Duration) { time.Sleep(d) }

func TestChaos(t *testing.T) {
	t.Cleanup(func() { writeTable(t) })
	t.Run("partition", func(t *testing.T) {
		e := newEnv(t, "")
		loadFor(3 * time.Second)
		e.lab.Cut(e.hosts[0], e.hosts[1])
		e.lab.Cut(e.hosts[0], e.hosts[2])
		loadFor(10 * time.Second)
		e.lab.Heal(e.hosts[0], e.hosts[1])
		e.lab.Heal(e.hosts[0], e.hosts[2])
		e.faultAt = time.Now()
		waitExit(t, e.nodes[0], 1, 60*time.Second) // the minority is evicted
		e.finish("partition: n1 cut from n2, n3 for 10 s")
	})
	t.Run("pause", func(t *testing.T) {
		e := newEnv(t, "")
		loadFor(3 * time.Second)
		e.nodes[1].Signal(t, syscall.SIGSTOP)
		loadFor(5 * time.Second)
		e.nodes[1].Signal(t, syscall.SIGCONT)
		e.faultAt = time.Now()
		waitExit(t, e.nodes[1], 1, 60*time.Second)
		e.finish("pause: n2 SIGSTOP for 5 s, then SIGCONT")
	})
	t.Run("kill", func(t *testing.T) {
		e := newEnv(t, "")
		loadFor(3 * time.Second)
		e.nodes[2].Kill()
		e.faultAt = time.Now()
		loadFor(5 * time.Second)
		e.finish("kill -9 of n3")
	})
	t.Run("db-pause", func(t *testing.T) {
		e := newEnv(t, "")
		loadFor(3 * time.Second)
		e.db.Signal(t, syscall.SIGSTOP)
		loadFor(5 * time.Second)
		e.db.Signal(t, syscall.SIGCONT)
		e.faultAt = time.Now()
		e.finish("database SIGSTOP for 5 s")
	})
	t.Run("db-kill", func(t *testing.T) {
		e := newEnv(t, "")
		loadFor(3 * time.Second)
		e.db.Kill()
		loadFor(3 * time.Second)
		e.db.Restart(t)
		e.faultAt = time.Now()
		e.finish("database kill -9, restarted 3 s later")
	})
	t.Run("db-disk-full", func(t *testing.T) {
		dir := tmpfs(t, 256)
		e := newEnv(t, filepath.Join(dir, "db"))
		loadFor(3 * time.Second)
		filler := fill(t, dir)
		loadFor(5 * time.Second)
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		e.faultAt = time.Now()
		e.finish("database disk full for 5 s (tmpfs)")
	})
	t.Run("gossip-loss", func(t *testing.T) {
		e := newEnv(t, "")
		for _, h := range e.hosts[:3] {
			e.lab.Loss(h, "udp", 7946, 5)
		}
		loadFor(20 * time.Second)
		for _, h := range e.hosts[:3] {
			e.lab.NoLoss(h, "udp", 7946, 5)
		}
		for _, n := range e.nodes {
			if !n.Running() {
				t.Errorf("%s exited under 5%% gossip loss: a false death", n.Name)
			}
		}
		e.finish("5% of gossip packets lost for 20 s")
	})
	t.Run("add-drain", func(t *testing.T) {
		e := newEnv(t, "")
		loadFor(3 * time.Second)
		e.startNode(3, "COUPONMESH_CLUSTER_REJOIN_INTERVAL=1s")
		loadFor(4 * time.Second)
		e.nodes[1].Signal(t, syscall.SIGTERM)
		waitExit(t, e.nodes[1], 0, 60*time.Second)
		e.faultAt = time.Now()
		e.finish("n4 added, then n2 drained (SIGTERM)")
	})
}

// tmpfs mounts a tmpfs of sizeMB at a new directory, unmounted when the
// test ends.
func tmpfs(t *testing.T, sizeMB int) string {
	dir, err := os.MkdirTemp("", "couponmesh-chaos-disk-")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", sizeMB), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
		}
		_ = os.Remove(dir)
	})
	return dir
}

// fill writes a file into dir until the filesystem is full and returns
// its path.
func fill(t *testing.T, dir string) string {
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return p
			}
			t.Fatal(err)
		}
	}
}

// writeTable prints the results and, when CHAOS_REPORT names a file,
// writes them there as a Markdown table.
func writeTable(t *testing.T) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "| scenario | claims | ok | longest without an ok | full service after the fault | errors seen by clients without retries | no answer (connection lost) | not sent (node draining) | errors seen through the SDK with retries | violations |\n")
	fmt.Fprintf(&b, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range results {
		codes := make([]string, 0, len(r.rawErrors))
		for c, n := range r.rawErrors {
			codes = append(codes, fmt.Sprintf("%s %d", c, n))
		}
		sort.Strings(codes)
		full := "-"
		switch {
		case r.fullService > 0:
			full = r.fullService.String()
		case r.fullService == 0:
			full = "< 1 s"
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %s | %d | %d | %d | %d |\n", r.name, r.attempts, r.ok,
			r.longestWithout.Round(10*time.Millisecond), full, or(strings.Join(codes, ", "), "0"), r.rawNoAnswer, r.notSent, r.sdkErrors, r.violations)
	}
	t.Log("\n" + b.String())
	if path := os.Getenv("CHAOS_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
