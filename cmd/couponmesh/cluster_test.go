package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/cluster/clustertest"
	"github.com/couponmesh/couponmesh/cluster/placement"
	"github.com/couponmesh/couponmesh/internal/history"
	"github.com/couponmesh/couponmesh/internal/testutil"
	adminctl "github.com/couponmesh/couponmesh/transport/admin/ctl"
)

// Multi-node tests run every node as its own process (protoactor's cluster
// trips -race when several members share one process), against one
// embedded database process started by the test.

// nodeBinary builds the couponmesh binary once per test run.
func nodeBinary(t testing.TB) string { return clustertest.Binary(t) }

func TestMain(m *testing.M) {
	if floodProcess() {
		os.Exit(0)
	}
	code := m.Run()
	clustertest.RemoveBinary()
	os.Exit(code)
}

// sharedDB starts the database the nodes of a test share: couponmesh devdb
// as a process of its own, built without -race like the nodes (in the test
// process, under -race and beside other packages' tests, it answered too
// slowly when a drain or a failure moved many identities at once).
func sharedDB(t testing.TB) string {
	t.Helper()
	return clustertest.StartDB(t, nil, testAddr(t), t.TempDir()).URI()
}

// proc is a node process of a test (a clustertest.Node) with the names the
// tests of this package use and the couponmesh views they need.
type proc struct {
	*clustertest.Node
	name, http, admin string     // Node.Name, Node.HTTP, Node.Admin
	out               syncBuffer // its output, also copied to the test's (tcluster nodes)
}

// procConfig is how the tests of this package start a node on loopback:
// free ports, the tests' JWT secret, the log level of nodeLogLevel and the
// admin token adminCall sends, the test process's COUPONMESH_ADMIN_TOKEN
// (normally none: the node asks for none; a test that sets one sets
// clustertest.AdminToken, which proc's admin calls send). env comes last
// and wins.
func procConfig(t testing.TB, name, db string, env ...string) clustertest.NodeConfig {
	return clustertest.NodeConfig{
		Name: name, HTTP: testAddr(t), Admin: testAddr(t), Gossip: testAddr(t), DB: db,
		Env: append([]string{"COUPONMESH_ADMIN_TOKEN=" + os.Getenv("COUPONMESH_ADMIN_TOKEN"),
			"COUPONMESH_JWT_SECRET=" + testSecret, "COUPONMESH_LOG_LEVEL=" + nodeLogLevel()}, env...),
	}
}

// startProc starts a node and waits until it is ready (clustertest.StartNode).
func startProc(t testing.TB, cfg clustertest.NodeConfig) *proc {
	t.Helper()
	p := launchProc(t, cfg)
	p.WaitReady(t, 60*time.Second)
	return p
}

// launchProc starts a node without waiting until it is ready
// (clustertest.LaunchNode); its output goes to cfg.Log (nil: stderr) and
// to p.out.
func launchProc(t testing.TB, cfg clustertest.NodeConfig) *proc {
	t.Helper()
	p := &proc{}
	if cfg.Log == nil {
		cfg.Log = os.Stderr
	}
	cfg.Log = io.MultiWriter(cfg.Log, &p.out)
	p.set(clustertest.LaunchNode(t, cfg))
	return p
}

func (p *proc) set(n *clustertest.Node) {
	p.Node, p.name, p.http, p.admin = n, n.Name, n.HTTP, n.Admin
}

// kill sends SIGKILL (no shutdown code runs) and waits for the exit.
func (p *proc) kill(testing.TB) { p.Kill() }

// tcluster is a cluster of node processes on loopback.
type tcluster struct {
	t     testing.TB
	db    string
	seed  string // memberlist address of the first node
	nodes []*proc
	env   []string // extra environment for every node
}

func startCluster(t testing.TB, n int, env ...string) *tcluster {
	t.Helper()
	c := &tcluster{t: t, db: sharedDB(t), env: env}
	for range n {
		c.add()
	}
	c.waitMembers(n)
	return c
}

// add starts one more node seeded with the first one.
func (c *tcluster) add(env ...string) *proc {
	c.t.Helper()
	cfg := procConfig(c.t, fmt.Sprintf("n%d", len(c.nodes)+1), c.db, append(slices.Clone(c.env), env...)...)
	if c.seed == "" {
		c.seed = cfg.Gossip
	}
	cfg.Seeds = []string{c.seed}
	p := startProc(c.t, cfg)
	c.nodes = append(c.nodes, p)
	return p
}

func nodeLogLevel() string {
	if testing.Verbose() {
		return "info"
	}
	return "warn"
}

// waitMembers waits until every running node sees n alive members.
func (c *tcluster) waitMembers(n int) {
	c.t.Helper()
	for _, p := range c.nodes {
		if !p.Running() {
			continue
		}
		testutil.CheckFor(c.t, 30*time.Second, p.name+" sees "+fmt.Sprint(n)+" members", func() error {
			alive, err := p.Alive()
			if err != nil {
				return err
			}
			if len(alive) != n {
				return fmt.Errorf("%d alive", len(alive))
			}
			return nil
		})
	}
}

// owners maps each identity ("kind/id") activated anywhere to the nodes
// holding an activation of it.
func (c *tcluster) owners(kind string) map[string][]string {
	c.t.Helper()
	out := make(map[string][]string)
	for _, p := range c.nodes {
		if !p.Running() {
			continue
		}
		for _, id := range p.actors(c.t, kind) {
			out[id] = append(out[id], p.name)
		}
	}
	return out
}

// members returns the members p knows, with the admin API's figures.
func (p *proc) members() ([]MemberInfo, error) {
	var res struct {
		Members []MemberInfo `json:"members"`
	}
	err := p.AdminCall(http.MethodGet, "/admin/api/members", &res)
	return res.Members, err
}

func (p *proc) actors(t testing.TB, kind string) []string {
	t.Helper()
	var out []string
	after := ""
	for {
		var res struct {
			Actors []ActorInfo `json:"actors"`
			Next   string      `json:"next"`
		}
		if err := p.AdminCall(http.MethodGet, "/admin/api/actors?limit=1000&kind="+kind+"&after="+after, &res); err != nil {
			t.Fatalf("%s actors: %v", p.name, err)
		}
		for _, a := range res.Actors {
			out = append(out, a.Identity)
		}
		if res.Next == "" {
			return out
		}
		after = res.Next
	}
}

func (p *proc) ws() string   { return "ws://" + p.http + "/ws" }
func (p *proc) base() string { return "http://" + p.http }

// merchantAPI returns the HTTP API as merchant acme through node p.
func merchantAPI(t testing.TB, p *proc) *client.API {
	t.Helper()
	tok, err := client.DevLogin(context.Background(), p.base(), "acme", couponmesh.RoleMerchant)
	if err != nil {
		t.Fatal(err)
	}
	return client.NewAPI(p.base(), tok)
}

// Three nodes: a shopper on node A claims a coupon that lives on node B; a
// subscriber on node C gets the push.
func TestClusterClaimAcrossNodes(t *testing.T) {
	c := startCluster(t, 3)
	a, b, cn := c.nodes[0], c.nodes[1], c.nodes[2]
	ctx := context.Background()
	api := merchantAPI(t, a)

	// Create coupons until one is activated on B.
	var id string
	for i := range 30 {
		cid := fmt.Sprintf("x%d", i)
		if _, err := api.CreateCoupon(ctx, couponmesh.CouponSpec{ID: cid, Title: ptr("Cross " + cid), Quantity: ptr(3)}); err != nil {
			t.Fatal(err)
		}
		if own := c.owners(actorsKindCoupon)["coupon/"+cid]; len(own) == 1 && own[0] == b.name {
			id = cid
			break
		}
	}
	if id == "" {
		t.Fatal("no coupon landed on node B in 30 tries")
	}
	t.Logf("coupon %s lives on %s", id, b.name)

	// Five subscribers on node C: the grain sends node C one push, and C's
	// hub hands it to the five sessions.
	watchers := make([]*latest, 5)
	for i := range watchers {
		watchers[i] = &latest{}
		sub := cn.sessionOpts(t, fmt.Sprintf("watcher%d", i), client.Options{OnCoupon: watchers[i].on})
		if _, err := sub.Subscribe(ctx, []client.Sub{{ID: id}}); err != nil {
			t.Fatal(err)
		}
	}

	pushes0, deliveries0 := metric(t, cn, "couponmesh_hub_pushes_total"), metric(t, cn, "couponmesh_hub_deliveries_total")
	shopper := a.session(t, "shopper1")
	claim, err := shopper.Claim(ctx, id, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if claim.N != 1 {
		t.Fatalf("claim n = %d, want 1", claim.N)
	}
	testutil.CheckFor(t, 5*time.Second, "push on node C", func() error {
		for _, w := range watchers {
			if got := w.get(id); got.Claimed != 1 {
				return fmt.Errorf("claimed %d", got.Claimed)
			}
		}
		return nil
	})

	pushes, deliveries := metric(t, cn, "couponmesh_hub_pushes_total")-pushes0, metric(t, cn, "couponmesh_hub_deliveries_total")-deliveries0
	t.Logf("node C: %v push(es) from the grain, %v deliveries to sessions", pushes, deliveries)
	if pushes != 1 || deliveries != 5 {
		t.Errorf("node C got %v pushes for %v deliveries, want 1 push for 5 deliveries", pushes, deliveries)
	}
	if own := c.owners(actorsKindCoupon)["coupon/"+id]; len(own) != 1 || own[0] != b.name {
		t.Fatalf("coupon %s activations: %v, want only %s", id, own, b.name)
	}
}

const actorsKindCoupon = "coupon"

// metric reads a counter or gauge without labels from a node's /metrics.
func metric(t testing.TB, p *proc, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return 0
}

func (p *proc) sessionOpts(t testing.TB, user string, opts client.Options) *client.Client {
	t.Helper()
	ctx := context.Background()
	tok, err := client.DevLogin(ctx, p.base(), user, couponmesh.RoleShopper)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.Dial(ctx, p.ws(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	if _, err := cl.Auth(ctx, tok); err != nil {
		t.Fatal(err)
	}
	return cl
}

// ctl runs `couponmesh ctl` against a node and returns its output.
func ctl(t *testing.T, p *proc, args ...string) string {
	t.Helper()
	var out strings.Builder
	if err := adminctl.Run(append([]string{"--admin", p.admin}, args...), &out); err != nil {
		t.Fatalf("ctl %v: %v", args, err)
	}
	return out.String()
}

// load runs shoppers spread over nodes: each claims the coupons in order
// (once each), then keeps reading them, until stop. Every claim and its
// answer is recorded in hist; every error a shopper sees, other than
// sold_out, is kept in errs. The sessions do not retry: an error is seen
// where it happens.
type load struct {
	hist    history.Recorder
	mu      sync.Mutex
	errs    []error
	calls   int
	claimed atomic.Int32 // shoppers done claiming
	stop    chan struct{}
	wg      sync.WaitGroup
	cancel  context.CancelFunc
}

func startLoad(t *testing.T, nodes []*proc, shoppers int, coupons []string, pace time.Duration) *load {
	t.Helper()
	l := &load{stop: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	for i := range shoppers {
		p := nodes[i%len(nodes)]
		user := fmt.Sprintf("shopper%d", i)
		s := p.session(t, user)
		l.wg.Go(func() {
			k := 0
			for {
				select {
				case <-l.stop:
					return
				case <-time.After(pace):
				}
				cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
				var err error
				if k < len(coupons) {
					_, err = l.hist.Claim(cctx, s, p.name, user, coupons[k], fmt.Sprintf("%s-%d", user, k))
					if k == len(coupons)-1 {
						l.claimed.Add(1)
					}
				} else {
					_, err = s.Get(cctx, coupons[k%len(coupons)])
				}
				ccancel()
				k++
				l.mu.Lock()
				l.calls++
				if err != nil && ctx.Err() == nil && couponmesh.ErrorCode(err) != couponmesh.CodeSoldOut {
					l.errs = append(l.errs, fmt.Errorf("%s on %s: %w", user, p.name, err))
				}
				l.mu.Unlock()
			}
		})
	}
	return l
}

// waitClaimed waits until every shopper has sent its claims.
func (l *load) waitClaimed(t *testing.T, shoppers int, d time.Duration) {
	t.Helper()
	testutil.CheckFor(t, d, "every shopper claimed every coupon", func() error {
		if n := int(l.claimed.Load()); n < shoppers {
			return fmt.Errorf("%d of %d shoppers done", n, shoppers)
		}
		return nil
	})
}

// end stops the shoppers and returns the calls made and the errors seen.
func (l *load) end() (int, []error) {
	close(l.stop)
	l.wg.Wait()
	l.cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls, l.errs
}

// journalClaims returns how many claimed entries coupon id's journal in j
// holds (read by history.Check).
func journalClaims(t testing.TB, ctx context.Context, j history.Journal, id string) int {
	t.Helper()
	r, err := history.Check(ctx, j, []string{id}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r.Coupons[id].Claims
}

// openJournal opens the database at uri to read journals from (closed when
// the test ends).
func openJournal(t testing.TB, uri string) history.Journal { return openStoreAt(t, uri) }

// checkHistory reads the claims of coupons (and of the users in hist)
// straight from the database at uri, not through the grains, and checks
// what the clients were told against them (internal/history): no coupon
// over its quantity, no n granted twice, every acknowledged claim in the
// journals with the same n and code, no claim where a client was told a
// definite failure. soldOut says demand exceeded supply: every coupon must
// then have sold out, or the over-claim check proved nothing.
func checkHistory(t testing.TB, uri string, coupons []string, hist *history.Recorder, soldOut bool) history.Report {
	t.Helper()
	r, err := history.Check(t.Context(), openJournal(t, uri), coupons, hist.Attempts())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("history: %s", r)
	if err := r.Err(); err != nil {
		t.Errorf("the journal contradicts what clients were told:\n%v", err)
	}
	if left := r.NotSoldOut(); soldOut && len(left) > 0 {
		t.Errorf("%d coupons not sold out although demand exceeded supply: %v", len(left), left)
	}
	return r
}

func createCoupons(t testing.TB, p *proc, prefix string, n, quantity int) []string {
	t.Helper()
	api := merchantAPI(t, p)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s%d", prefix, i)
		if _, err := api.CreateCoupon(context.Background(), couponmesh.CouponSpec{ID: ids[i], Title: ptr("Coupon " + ids[i]), Quantity: ptr(quantity)}); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// duplicates returns the identities activated on more than one node.
func duplicates(owners map[string][]string) map[string][]string {
	out := make(map[string][]string)
	for id, ns := range owners {
		if len(ns) > 1 {
			out[id] = ns
		}
	}
	return out
}

// A fourth node joins while shoppers claim and read on three: no shopper
// sees an error (their sessions do not retry: every error counts), some
// identities move to the new node, none stays
// activated on two nodes, and the journal holds exactly what the shoppers
// were told. Demand exceeds supply (9 shoppers, 6 units a coupon), and the
// claims flow through the join.
func TestClusterJoinUnderLoad(t *testing.T) {
	c := startCluster(t, 3)
	const shoppers = 9
	coupons := createCouponsVia(t, merchantAPI(t, c.nodes[0]), "j", 80, 6)
	// 80 claims 60 ms apart: about 5 s, within a user's write burst (100).
	l := startLoad(t, c.nodes, shoppers, coupons, 60*time.Millisecond)
	time.Sleep(time.Second)
	before := c.owners("coupon")
	joining := time.Now()
	n4 := c.add()
	c.waitMembers(4)
	joined := time.Now()
	l.waitClaimed(t, shoppers, 60*time.Second)
	time.Sleep(time.Until(joined.Add(3 * time.Second))) // reads after the join
	calls, errs := l.end()
	after := c.owners("coupon")

	var moved []string
	for id, ns := range after {
		if len(ns) == 1 && ns[0] == n4.name && len(before[id]) > 0 {
			moved = append(moved, fmt.Sprintf("%s (%s→%s)", id, before[id][0], n4.name))
		}
	}
	t.Logf("%d calls, %d errors; %d of %d coupon activations moved to %s: %v", calls, len(errs), len(moved), len(after), n4.name, moved)
	for _, err := range errs {
		t.Errorf("client-visible error: %v", err)
	}
	if len(moved) == 0 {
		t.Errorf("no identity moved to the new node")
	}
	if d := duplicates(after); len(d) > 0 {
		t.Errorf("identities activated on several nodes: %v", d)
	}
	during := 0
	for _, a := range l.hist.Attempts() {
		if a.Outcome == history.OK && a.Start.After(joining) && a.Start.Before(joined) {
			during++
		}
	}
	t.Logf("%d claims acknowledged while %s joined (%s)", during, n4.name, joined.Sub(joining).Round(time.Millisecond))
	if during == 0 {
		t.Error("no claim was acknowledged while the node joined: the test did not claim through the join")
	}
	checkHistory(t, c.db, coupons, &l.hist, true)
}

// ownerInView returns the member that owns kind/id in p's own view of the
// cluster (the admin API with local=1 answers without forwarding).
func (p *proc) ownerInView(kind, id string) (string, error) {
	resp, err := http.Get("http://" + p.admin + "/admin/api/actors/" + kind + "/" + id + "?local=1")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var res struct {
		Owner string `json:"owner"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return "", fmt.Errorf("%s: owner of %s/%s: %d %w", p.name, kind, id, resp.StatusCode, err)
	}
	return res.Owner, nil
}

// staleWatch compares, until stopped, the owners the late node names with
// those an up-to-date node names for a sample of identities, and keeps
// when the late node named an old owner for one the other had moved to the
// new node.
type staleWatch struct {
	mu          sync.Mutex
	first, last time.Time
	example     string
	stop        chan struct{}
	done        chan struct{}
}

func watchStale(current, late *proc, newNode string, ids []string) *staleWatch {
	w := &staleWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			for _, id := range ids {
				want, err1 := current.ownerInView("coupon", id)
				got, err2 := late.ownerInView("coupon", id)
				if err1 != nil || err2 != nil || want != newNode || got == newNode {
					continue
				}
				now := time.Now()
				w.mu.Lock()
				if w.first.IsZero() {
					w.first = now
					w.example = fmt.Sprintf("coupon/%s: %s names %s, %s names %s", id, current.name, want, late.name, got)
				}
				w.last = now
				w.mu.Unlock()
				break // one stale identity a round: short rounds while the view is stale
			}
		}
	}()
	return w
}

// end stops the watch and returns how long the late node was seen stale.
func (w *staleWatch) end() (time.Duration, string) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last.Sub(w.first), w.example
}

// One node applies membership changes 3 s late (a stale view) while a
// fourth node joins under reads: the late node is seen naming old owners
// for identities the others moved to the new node, and once views agree,
// no identity is active on two nodes.
func TestClusterStaleViewLeavesNoDuplicate(t *testing.T) {
	// The readers send back to back, over a session's request rate: they
	// are load, not clients (rate_limited replies would end their sessions).
	c := startCluster(t, 2, "COUPONMESH_WS_REQUEST_RATE=-1")
	late := c.add("COUPONMESH_CLUSTER_TOPOLOGY_DELAY=3s")
	c.waitMembers(3)
	time.Sleep(4 * time.Second) // the late node applies the 3-member view
	var ids []string
	for i := range 200 {
		ids = append(ids, fmt.Sprintf("s%d", i)) // reads of unknown coupons activate grains too
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs int
	for i, p := range c.nodes {
		s := p.session(t, fmt.Sprintf("reader%d", i))
		wg.Go(func() {
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := s.Get(ctx, ids[k%len(ids)])
				cancel()
				if err != nil && couponmesh.ErrorCode(err) != couponmesh.CodeNotFound {
					mu.Lock()
					errs++
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(time.Second)
	watch := watchStale(c.nodes[0], late, "n4", ids[:40])
	c.add()
	c.waitMembers(4)
	time.Sleep(5 * time.Second) // past the late node's delay and a re-publish
	stale, example := watch.end()
	close(stop)
	wg.Wait()
	t.Logf("the late node was seen with a stale view for %s (%s)", stale.Round(time.Millisecond), example)
	if stale < time.Second {
		t.Errorf("the late node was seen stale for %s, want most of its 3 s delay: the test did not run with a stale view", stale)
	}
	for _, id := range ids[:40] {
		want, err1 := c.nodes[0].ownerInView("coupon", id)
		got, err2 := late.ownerInView("coupon", id)
		if err1 != nil || err2 != nil || want != got {
			t.Errorf("coupon/%s after the delay: %s names %s (%v), %s names %s (%v)", id, c.nodes[0].name, want, err1, late.name, got, err2)
		}
	}
	time.Sleep(time.Second)
	owners := c.owners("coupon")
	t.Logf("%d identities active, %d read errors during the churn", len(owners), errs)
	if d := duplicates(owners); len(d) > 0 {
		t.Errorf("%d identities activated on several nodes: %v", len(d), d)
	}
}

// verifyAcked checks through node p that every acknowledged claim is in its
// user's wallet with the same number, and that no coupon has more claims
// than its quantity.
func verifyAcked(t testing.TB, p *proc, acked map[string][]couponmesh.Claim, coupons []string) {
	t.Helper()
	ctx := context.Background()
	n := 0
	for user, claims := range acked {
		s := p.session(t, user)
		wallet, err := s.Wallet(ctx)
		if err != nil {
			t.Fatalf("wallet of %s: %v", user, err)
		}
		have := make(map[string]int)
		for _, c := range wallet {
			have[c.Coupon] = c.N
		}
		for _, c := range claims {
			if have[c.Coupon] != c.N {
				t.Errorf("acknowledged claim %s #%d of %s is not in the wallet (wallet has #%d)", c.Coupon, c.N, user, have[c.Coupon])
			}
			n++
		}
		s.Close()
	}
	s := p.session(t, "auditor")
	for _, id := range coupons {
		c, err := s.Get(ctx, id)
		if err != nil {
			t.Fatalf("get %s: %v", id, err)
		}
		if c.Claimed > c.Quantity {
			t.Errorf("coupon %s over-claimed: %d of %d", id, c.Claimed, c.Quantity)
		}
	}
	t.Logf("%d acknowledged claims verified", n)
}

// A node paused (SIGSTOP) past failure detection and then resumed is told
// by the others that it was declared dead, and exits (status 1, saying it
// was evicted) instead of serving its old activations. Its own shoppers
// send claims during the pause on the coupons it held, while shoppers on
// the survivors claim the same coupons there: whatever the zombie answers
// must be what the journal holds (its stale activations are fenced by the
// journal's unique keys), no unit is granted twice, every acknowledged
// claim is kept, and demand exceeds supply so that every coupon sells out.
func TestClusterPausedNodeIsEvicted(t *testing.T) {
	c := startCluster(t, 3)
	const survivors = 6
	// 6 shoppers on the survivors (and 3 on the zombie) for 4 units each.
	coupons := createCoupons(t, c.nodes[0], "p", 30, 4)
	victim := c.nodes[2]
	zombies := make([]*client.Client, 3)
	for i := range zombies {
		zombies[i] = victim.session(t, fmt.Sprintf("zombie%d", i))
	}
	// 30 claims 200 ms apart: the survivors' claims go on through the pause.
	l := startLoad(t, c.nodes[:2], survivors, coupons, 200*time.Millisecond)
	time.Sleep(time.Second)
	var held []string
	for _, ident := range victim.actors(t, "coupon") {
		held = append(held, strings.TrimPrefix(ident, "coupon/"))
	}
	held = held[:min(len(held), 16)] // a session's requests in flight (ws.max_inflight)
	if len(held) == 0 {
		t.Fatalf("%s holds no coupon", victim.name)
	}
	victim.Signal(t, syscall.SIGSTOP)
	// The zombie's shoppers claim what it held: their frames wait in its
	// socket until SIGCONT, then meet its stale activations.
	var zwg sync.WaitGroup
	for i, z := range zombies {
		user := fmt.Sprintf("zombie%d", i)
		for k, id := range held {
			zwg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
				defer cancel()
				_, _ = l.hist.Claim(ctx, z, victim.name, user, id, fmt.Sprintf("%s-%d", user, k))
			})
		}
	}
	testutil.CheckFor(t, 20*time.Second, "survivors drop the paused node", func() error {
		ms, err := c.nodes[0].members()
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.Name == victim.name && m.Status == "alive" {
				return fmt.Errorf("%s still alive", victim.name)
			}
		}
		return nil
	})
	time.Sleep(time.Second)
	victim.Signal(t, syscall.SIGCONT)
	resumed := time.Now()
	exited := make(chan error, 1)
	go func() { exited <- victim.Err() }()
	select {
	case err := <-exited:
		t.Logf("paused node exited %s after SIGCONT: %v", time.Since(resumed).Round(time.Millisecond), err)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(victim.out.String(), "evicted by the cluster") {
			t.Errorf("the evicted node ended with %v; want exit status 1 after saying it was evicted by the cluster (its supervisor restarts it)", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the paused node kept running 20 s after SIGCONT")
	}
	zwg.Wait()
	l.waitClaimed(t, survivors, 60*time.Second)
	calls, errs := l.end()
	t.Logf("%d calls on the survivors, %d errors", calls, len(errs))
	for _, err := range errs {
		t.Logf("error: %v", err)
	}
	zombie := map[history.Outcome]int{}
	for _, a := range l.hist.Attempts() {
		if a.Via == victim.name {
			zombie[a.Outcome]++
		}
	}
	t.Logf("claims sent to the zombie during its pause, by outcome: %v", zombie)
	if len(zombie) == 0 {
		t.Error("no claim was sent to the zombie")
	}
	verifyAcked(t, c.nodes[0], l.hist.Acked(), coupons)
	checkHistory(t, c.db, coupons, &l.hist, true)
	if d := duplicates(c.owners("coupon")); len(d) > 0 {
		t.Errorf("identities activated on several nodes: %v", d)
	}
}

// The placement actor and the grains agree on the leave request.
func TestLeaveMethodAgrees(t *testing.T) {
	if placement.LeaveMethod != actors.LeaveMethod {
		t.Fatalf("placement sends %q, grains handle %q", placement.LeaveMethod, actors.LeaveMethod)
	}
}
