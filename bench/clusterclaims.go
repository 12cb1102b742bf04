package bench

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/pprof/profile"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
)

// couponmesh bench cluster-claims: the node CPU a durable claim costs on
// one node and on clusters of more (issue 20, item 5). The same steady load
// on each: shoppers spread over the nodes' sessions claim at a fixed pace
// across coupons whose grains are spread by the cluster, one watcher
// follows every coupon. Per cluster size it reports the CPU time of all
// node processes (from /proc/PID/stat) over the timed phase, less their
// idle cost measured just before, divided by the claims acknowledged; and
// the nodes' CPU profiles (a phase of their own after the timed one)
// merged and split into costs (claimCosts).

// clusterClaimsRun is one cluster size's measurement.
type clusterClaimsRun struct {
	Nodes         int            `json:"nodes"`
	OK            int            `json:"ok"`
	Errors        map[string]int `json:"errorsByCode"`
	FirstError    string         `json:"firstError,omitempty"`
	Achieved      float64        `json:"claimsPerSec"`
	IdlePercent   float64        `json:"idleCpuPercent"` // all nodes together, % of one core, before the load
	NodeUs        float64        `json:"nodeCpuUsPerClaim"`
	NodeUsRaw     float64        `json:"nodeCpuUsPerClaimWithIdle"`
	DBUs          float64        `json:"dbCpuUsPerClaim"`
	P50ms         float64        `json:"claimReplyP50ms"`
	P99ms         float64        `json:"claimReplyP99ms"`
	RemoteFrames  int64          `json:"remoteMessages"` // protoactor remote messages sent by the nodes (metrics), per claim below
	RemotePer     float64        `json:"remoteMessagesPerClaim"`
	JournalClaims int            `json:"journalClaims"`
	LostAcked     int            `json:"acknowledgedClaimsMissing"`
	Profile       string         `json:"profile,omitempty"`
	Breakdown     []costShare    `json:"breakdown,omitempty"`
}

type clusterClaimsResult struct {
	Scenario string             `json:"scenario"`
	Time     time.Time          `json:"time"`
	Machine  machine            `json:"machine"`
	Rate     float64            `json:"ratePerSec"`
	Shoppers int                `json:"shoppers"`
	Coupons  int                `json:"coupons"`
	Duration string             `json:"duration"`
	Runs     []clusterClaimsRun `json:"runs"`
	Figures  []benchFigure      `json:"figures"`
}

type clusterClaimsFlags struct {
	benchFlags
	sizes                 []int
	rate                  float64
	shoppers, ncoupons    int
	warmup, dur, idle     time.Duration
	profileDur            time.Duration
	dbCPUs, profileDirArg string
}

func parseClusterClaimsFlags(args []string) (clusterClaimsFlags, error) {
	var f clusterClaimsFlags
	fs := flag.NewFlagSet("bench cluster-claims", flag.ContinueOnError)
	f.register(fs)
	sizes := fs.String("nodes", "1,3,10", "cluster sizes, one run each")
	fs.Float64Var(&f.rate, "rate", 200, "claims per second, the same on every cluster size")
	fs.IntVar(&f.shoppers, "shoppers", 60, "shoppers, one session each, spread over the nodes")
	fs.IntVar(&f.ncoupons, "coupons", 200, "coupons claimed (quantity high: none sells out)")
	fs.DurationVar(&f.warmup, "warmup", 3*time.Second, "claims at the rate before the timed phase (activates the grains)")
	fs.DurationVar(&f.idle, "idle", 3*time.Second, "idle phase before the timed one: the nodes' idle CPU, subtracted")
	fs.DurationVar(&f.dur, "duration", 10*time.Second, "the timed phase")
	fs.DurationVar(&f.profileDur, "profile-for", 10*time.Second, "a phase after the timed one, at the same rate, with every node's CPU profile (0: none)")
	fs.StringVar(&f.profileDirArg, "profile-dir", "", "directory for the merged profile of each size (default: --out)")
	fs.StringVar(&f.dbCPUs, "db-cpus", "", "taskset CPU list for the devdb (empty: where the bench runs)")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 16 {
			return f, fmt.Errorf("bench cluster-claims: bad cluster size %q (1…16)", s)
		}
		f.sizes = append(f.sizes, n)
	}
	total := f.rate * (f.warmup + f.dur + f.profileDur).Seconds()
	switch {
	case f.rate <= 0 || f.shoppers <= 0 || f.ncoupons <= 0 || f.dur <= 0 || f.idle <= 0 || f.warmup < 0 || f.profileDur < 0:
		return f, errors.New("bench cluster-claims: --rate, --shoppers, --coupons, --duration and --idle must be positive")
	case total > float64(f.shoppers*f.ncoupons):
		return f, fmt.Errorf("bench cluster-claims: %.0f claims > --shoppers × --coupons (one claim per shopper per coupon)", total)
	}
	return f, nil
}

func benchClusterClaims(ctx context.Context, args []string) error {
	f, err := parseClusterClaimsFlags(args)
	if err != nil {
		return err
	}
	res := clusterClaimsResult{
		Scenario: "cluster-claims", Machine: describeMachine(f.nodeCPUs), Rate: f.rate, Shoppers: f.shoppers,
		Coupons: f.ncoupons, Duration: f.dur.String(),
	}
	for _, n := range f.sizes {
		run, err := clusterClaimsOnce(ctx, f, n)
		if err != nil {
			return fmt.Errorf("%d nodes: %w", n, err)
		}
		fmt.Printf("cluster-claims: %d node(s): %d ok (errors %s), %.0f claims/s, node CPU %.0f µs per claim (%.0f with idle; idle %.1f%% of a core), devdb %.0f µs, %.2f remote messages per claim, reply p50 %.1f p99 %.1f ms; acknowledged claims missing %d\n",
			n, run.OK, fmtCodes(run.Errors), run.Achieved, run.NodeUs, run.NodeUsRaw, run.IdlePercent, run.DBUs, run.RemotePer, run.P50ms, run.P99ms, run.LostAcked)
		if len(run.Breakdown) > 0 {
			var total float64
			for _, c := range run.Breakdown {
				total += c.CPUs
			}
			writeBreakdown(os.Stdout, run.Breakdown, total, run.NodeUs)
		}
		res.Runs = append(res.Runs, run)
	}
	res.Time = time.Now().UTC()
	res.Figures = clusterClaimsFigures(res)
	e := &benchEnv{out: f.out}
	path, err := e.writeResult("cluster-claims", res)
	if err != nil {
		return err
	}
	fmt.Printf("cluster-claims: result in %s\n", path)
	for _, r := range res.Runs {
		if r.LostAcked > 0 {
			return fmt.Errorf("cluster-claims: %d nodes: %d acknowledged claims missing from the journal", r.Nodes, r.LostAcked)
		}
	}
	return nil
}

// clusterClaimsOnce starts a devdb and n nodes, measures, and stops them.
func clusterClaimsOnce(ctx context.Context, f clusterClaimsFlags, n int) (run clusterClaimsRun, err error) {
	run.Nodes = n
	e, err := newBenchEnv(f.out, f.nodeCPUs)
	if err != nil {
		return run, err
	}
	defer e.close()
	e.keepLogs, e.logLevel, e.dbCPUs = f.keepLogs, f.logLevel, f.dbCPUs
	if err := e.startDB(ctx); err != nil {
		return run, err
	}
	nodes, err := e.startMembers(ctx, n)
	if err != nil {
		return run, err
	}
	if err := foWaitMembers(ctx, nodes, n, 60*time.Second); err != nil {
		return run, err
	}
	tok, err := e.token("bench", couponmesh.RoleMerchant)
	if err != nil {
		return run, err
	}
	api := client.NewAPI(nodes[0].base(), tok)
	ids, err := createSettled(ctx, e, api, "cc", f.ncoupons, 1_000_000)
	if err != nil {
		return run, err
	}
	shoppers, _, err := dialShoppersOn(ctx, e, nodes, f.benchFlags, f.shoppers, func(i int) string { return "u" + strconv.Itoa(i) })
	defer func() { closeAll(shoppers) }()
	if err != nil {
		return run, err
	}
	// The watcher follows every coupon from the last node.
	watcher, err := client.Dial(ctx, nodes[n-1].ws(), client.Options{
		Token: func(context.Context) (string, error) { return e.token("watcher", couponmesh.RoleShopper) },
	})
	if err != nil {
		return run, fmt.Errorf("watcher: %w", err)
	}
	defer watcher.Close()
	subs := make([]client.Sub, len(ids))
	for i, id := range ids {
		subs[i] = client.Sub{ID: id}
	}
	if _, err := watcher.Subscribe(ctx, subs); err != nil {
		return run, fmt.Errorf("watcher: subscribe: %w", err)
	}

	p := &pacedClaims{f: f, clients: shoppers, ids: ids, okPer: make([]int, len(ids)), errs: map[string]int{}}
	if f.warmup > 0 {
		p.send(ctx, f.warmup)
	}
	if err := e.settle(ctx); err != nil {
		return run, err
	}
	pids := make([]int, n)
	for i, node := range nodes {
		pids[i] = node.cmd.Process.Pid
	}
	dbPid := e.procs[0].Cmd.Process.Pid
	sumCPU := func() time.Duration {
		var t time.Duration
		for _, pid := range pids {
			t += cpuTime(pid)
		}
		return t
	}
	i0, t0 := sumCPU(), time.Now()
	select {
	case <-time.After(f.idle):
	case <-ctx.Done():
		return run, ctx.Err()
	}
	idle := float64(sumCPU()-i0) / float64(time.Since(t0)) // cores

	m0, err := sumMetrics(nodes)
	if err != nil {
		return run, err
	}
	p.reset()
	c0, d0 := sumCPU(), cpuTime(dbPid)
	took := p.send(ctx, f.dur)
	nodeCPU, dbCPU := sumCPU()-c0, cpuTime(dbPid)-d0
	m1, err := sumMetrics(nodes)
	if err != nil {
		return run, err
	}
	if ctx.Err() != nil {
		return run, ctx.Err()
	}
	ok := p.ok()
	run.OK, run.Errors, run.FirstError = ok, p.errs, p.firstErr
	run.Achieved = float64(ok) / took.Seconds()
	run.IdlePercent = 100 * idle
	if ok > 0 {
		run.NodeUsRaw = float64(nodeCPU.Microseconds()) / float64(ok)
		run.NodeUs = (float64(nodeCPU.Microseconds()) - idle*float64(took.Microseconds())) / float64(ok)
		run.DBUs = float64(dbCPU.Microseconds()) / float64(ok)
		run.RemoteFrames = int64(m1.sum(remoteSentMetric) - m0.sum(remoteSentMetric))
		run.RemotePer = float64(run.RemoteFrames) / float64(ok)
	}
	slices.Sort(p.lat)
	run.P50ms, run.P99ms = ms(quantile(p.lat, 0.5)), ms(quantile(p.lat, 0.99))

	if f.profileDur > 0 {
		dir := cmp.Or(f.profileDirArg, f.out)
		path := filepath.Join(dir, fmt.Sprintf("cluster-claims-%dnodes.pprof", n))
		if err := profileNodes(ctx, nodes, f.profileDur, path, func() { p.send(ctx, f.profileDur) }); err != nil {
			fmt.Fprintf(os.Stderr, "bench cluster-claims: profile: %v\n", err)
		} else {
			run.Profile = path
			if run.Breakdown, err = breakdownFile(path, claimCosts); err != nil {
				return run, err
			}
		}
	}
	// Every claim acknowledged in any phase is checked against the journal.
	var vr claimsResult
	if err := verifyClaims(ctx, e.db, api, ids, 1_000_000, p.okAll, &vr); err != nil {
		return run, fmt.Errorf("verify: %w", err)
	}
	run.JournalClaims, run.LostAcked = vr.JournalClaims, vr.LostAcked
	return run, nil
}

// remoteSentMetric counts the messages a node sent to other members.
const remoteSentMetric = "couponmesh_remote_messages_total"

// sumMetrics scrapes every node and sums the samples.
func sumMetrics(nodes []*benchNode) (nodeMetrics, error) {
	sum := nodeMetrics{}
	for _, n := range nodes {
		m, err := scrapeNodeMetrics(n)
		if err != nil {
			return nil, err
		}
		for k, v := range m {
			sum[k] += v
		}
	}
	return sum, nil
}

// profileNodes takes a CPU profile of every node over d while load runs,
// and writes them merged to path.
func profileNodes(ctx context.Context, nodes []*benchNode, d time.Duration, path string, load func()) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	files := make([]string, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		files[i] = fmt.Sprintf("%s.%s", path, n.name)
		wg.Go(func() { errs[i] = profileCPU(ctx, n, d, files[i]) })
	}
	load()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var ps []*profile.Profile
	for _, file := range files {
		p, err := readProfile(file)
		if err != nil {
			return err
		}
		ps = append(ps, p)
		_ = os.Remove(file)
	}
	merged, err := profile.Merge(ps)
	if err != nil {
		return err
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := merged.Write(out); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// pacedClaims sends claims at f.rate, claim k from shopper k % shoppers to
// a coupon that shopper has not claimed (claimPair), each on its own
// goroutine at its due time; latency counts from the due time.
type pacedClaims struct {
	f        clusterClaimsFlags
	clients  []*client.Client
	ids      []string
	mu       sync.Mutex
	next     int
	lat      []time.Duration
	okPer    []int // this phase
	okAll    []int // every phase
	errs     map[string]int
	firstErr string
}

func (p *pacedClaims) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lat, p.okPer, p.errs, p.firstErr = nil, make([]int, len(p.ids)), map[string]int{}, ""
}

func (p *pacedClaims) ok() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, v := range p.okPer {
		n += v
	}
	return n
}

// send paces claims for d and waits for their answers; it returns the time
// from the first due time to the last answer.
func (p *pacedClaims) send(ctx context.Context, d time.Duration) time.Duration {
	if p.okAll == nil {
		p.okAll = make([]int, len(p.ids))
	}
	if p.okPer == nil {
		p.okPer = make([]int, len(p.ids))
	}
	count := int(p.f.rate * d.Seconds())
	interval := time.Duration(float64(time.Second) / p.f.rate)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range count {
		due := start.Add(time.Duration(i) * interval)
		if w := time.Until(due); w > 0 {
			select {
			case <-time.After(w):
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		k := p.next
		p.next++
		u, c := claimPair(k, len(p.clients), len(p.ids))
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			_, err := p.clients[u].Claim(rctx, p.ids[c], "k"+strconv.Itoa(k))
			lat := time.Since(due)
			p.mu.Lock()
			defer p.mu.Unlock()
			p.lat = append(p.lat, lat)
			if err == nil {
				p.okPer[c]++
				p.okAll[c]++
				return
			}
			code := claimErrCode(err)
			if p.firstErr == "" {
				p.firstErr = err.Error()
			}
			p.errs[code]++
		})
	}
	wg.Wait()
	return time.Since(start)
}

// claimCosts split a claim's node CPU (bench cluster-claims): strong rules
// first, from the leaf up, as breakdownProfile does.
var claimCosts = costRules{
	strong: []costRule{
		{"cross-node messages (protoactor remote, gRPC, HTTP/2, protobuf)", regexp.MustCompile(`protoactor-go/remote\.|google\.golang\.org/grpc|golang\.org/x/net/http2|google\.golang\.org/protobuf`)},
		{"snapshot writes", strongCosts[0].fn},
		{"hub and session writes", strongCosts[3].fn},
		{"protocol encoding and decoding", strongCosts[2].fn},
		{"journal encoding and group commit", strongCosts[5].fn},
		{"user grain (admit, wallet, feed)", regexp.MustCompile(`couponmesh/actors/user\.`)},
		{"coupon grain (the claim, pushes)", regexp.MustCompile(`couponmesh/actors/coupon\.`)},
		{"grain calls (envelopes, futures, local dispatch)", regexp.MustCompile(`couponmesh/actors\.`)},
	},
	weak: []costRule{
		{"grain calls (envelopes, futures, local dispatch)", regexp.MustCompile(`asynkron/protoactor-go`)},
		weakCosts[2], weakCosts[3], weakCosts[4],
	},
}

// clusterClaimsFigures: the CPU per claim of each size, and of the larger
// ones against one node's (targets 1.5× at three nodes, 2× at ten).
func clusterClaimsFigures(res clusterClaimsResult) []benchFigure {
	var figs []benchFigure
	var one float64
	for _, r := range res.Runs {
		if r.Nodes == 1 {
			one = r.NodeUs
		}
	}
	for _, r := range res.Runs {
		note := fmt.Sprintf("%.0f claims/s asked, %.0f/s acknowledged, %d errors; %d shoppers over the nodes, %d coupons, one watcher of all; idle %.1f%% of a core subtracted (%.0f µs with it); devdb %.0f µs per claim; %.2f remote messages per claim; reply p99 %.0f ms",
			res.Rate, r.Achieved, sumCodes(r.Errors), res.Shoppers, res.Coupons, r.IdlePercent, r.NodeUsRaw, r.DBUs, r.RemotePer, r.P99ms)
		if len(r.Breakdown) > 0 {
			note += "; largest cost " + r.Breakdown[0].Cost + fmt.Sprintf(" (%.0f%%)", 100*r.Breakdown[0].Share)
		}
		figs = append(figs, benchFigure{What: fmt.Sprintf("node CPU per durable claim, %d node(s), all nodes summed", r.Nodes), Value: r.NodeUs, Unit: "µs", Note: note})
		target := map[int]float64{3: 1.5, 10: 2}[r.Nodes]
		if r.Nodes > 1 && one > 0 && target > 0 {
			figs = append(figs, atMost(fmt.Sprintf("node CPU per claim, %d nodes against one", r.Nodes), r.NodeUs/one, "×", target))
		}
		figs = append(figs, atMost(fmt.Sprintf("acknowledged claims missing from the journal, %d node(s)", r.Nodes), float64(r.LostAcked), "claims", 0))
	}
	return figs
}

func sumCodes(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
