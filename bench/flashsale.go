package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors/coupon"
	"github.com/couponmesh/couponmesh/client"
)

// flashRun is one flash sale: every shopper claims the hot coupon at once
// while the watchers follow it; then, as the reference of the same run, the
// same shoppers claim the same units spread over many coupons.
type flashRun struct {
	Nodes    int `json:"nodes"`
	Shoppers int `json:"shoppers"`
	Watchers int `json:"watchers"`
	Units    int `json:"units"`

	OK             int            `json:"ok"`
	SoldOut        int            `json:"soldOut"`
	Errors         map[string]int `json:"errorsByCode"` // other than sold_out
	FirstError     string         `json:"firstError,omitempty"`
	SoldOutSeconds float64        `json:"soldOutSeconds"` // from the first claim sent to the last ok answer
	ClaimsPerSec   float64        `json:"claimsPerSecUntilSoldOut"`
	OKP50ms        float64        `json:"okP50ms"`
	OKP99ms        float64        `json:"okP99ms"`
	SoldOutP50ms   float64        `json:"soldOutP50ms"`
	SoldOutP99ms   float64        `json:"soldOutP99ms"`
	AllP99ms       float64        `json:"allAnswersP99ms"`
	AllMaxms       float64        `json:"allAnswersMaxMs"`
	DistinctN      bool           `json:"okNDistinct1ToUnits"`
	// The claims answered with an error, sent again with the same rid (as
	// a client does) after the run: their first answers, which count in
	// the checks (not in the rates or latencies).
	RetriedOK      int   `json:"retriedOk"`
	RetriedSoldOut int   `json:"retriedSoldOut"`
	StillFailing   int   `json:"stillFailingAfterRetries"`
	JournalClaims  int64 `json:"journalClaims"`

	// Watchers: the lag from the last ok answer (the last claim's commit
	// happened before it) to each watcher's push of the final state
	// (clamped at 0: the push leaves at the commit, the answer after the
	// user grain's write). FinalSpreadMs: from the first watcher holding
	// the final state (the closest observable to the commit) to the last.
	WatchersFinal    int     `json:"watchersAtFinalState"`
	FinalSpreadMs    float64 `json:"finalStateFirstToLastWatcherMs"`
	LagP50ms         float64 `json:"watcherLagP50ms"`
	LagP99ms         float64 `json:"watcherLagP99ms"`
	LagMaxms         float64 `json:"watcherLagMaxMs"`
	Deliveries       int64   `json:"deliveries"` // coupon pushes the watchers received
	DeliveriesPerSec float64 `json:"deliveriesPerSec"`
	Dropped          float64 `json:"watchersDroppedSlowConsumer"`

	SpreadCoupons      int     `json:"spreadCoupons"`
	SpreadOK           int     `json:"spreadOk"`
	SpreadSeconds      float64 `json:"spreadSeconds"`
	SpreadClaimsPerSec float64 `json:"spreadClaimsPerSec"`
	HotPctSpread       float64 `json:"hotPercentOfSpread"`

	// The first node's group commit during the drop.
	BulkWrites  int64   `json:"bulkWrites"`
	BulkDocs    int64   `json:"bulkWriteDocs"`
	BulkWriteMs float64 `json:"bulkWriteMeanMs"`
	// The same during the spread reference.
	SpreadBulkWrites  int64   `json:"spreadBulkWrites"`
	SpreadBulkDocs    int64   `json:"spreadBulkWriteDocs"`
	SpreadBulkWriteMs float64 `json:"spreadBulkWriteMeanMs"`

	// CPU time (user + system, /proc/PID/stat) used from the first claim
	// sent to the last answer of the drop and of the spread reference: the
	// nodes', the devdb's and the load generator's (this process: the
	// shoppers and the watchers). Seconds.
	CPU       flashCPU `json:"cpu"`
	SpreadCPU flashCPU `json:"spreadCpu"`
}

// flashCPU is the CPU time of a flash sale's processes over one round.
type flashCPU struct {
	Nodes float64 `json:"nodesSeconds"`
	DB    float64 `json:"devdbSeconds"`
	Load  float64 `json:"loadSeconds"`
}

// flashCPUNow reads the CPU time the nodes, the devdb and this process
// have used so far.
func (s *flashsale) flashCPUNow() flashCPU {
	var c flashCPU
	for _, n := range s.nodes {
		c.Nodes += cpuTime(n.cmd.Process.Pid).Seconds()
	}
	if len(s.e.procs) > 0 {
		c.DB = cpuTime(s.e.procs[0].Cmd.Process.Pid).Seconds()
	}
	c.Load = cpuTime(os.Getpid()).Seconds()
	return c
}

// since is c minus the earlier reading c0.
func (c flashCPU) since(c0 flashCPU) flashCPU {
	return flashCPU{Nodes: c.Nodes - c0.Nodes, DB: c.DB - c0.DB, Load: c.Load - c0.Load}
}

// flashsaleResult is the JSON of the flashsale scenario.
type flashsaleResult struct {
	Scenario string        `json:"scenario"`
	Time     time.Time     `json:"time"`
	Machine  machine       `json:"machine"`
	One      flashRun      `json:"oneNode"`
	Three    *flashRun     `json:"threeNodes,omitempty"`
	Figures  []benchFigure `json:"figures"`
}

// benchFlashsale: the drop. S shopper sessions and W watcher sessions (all
// subscribed to the hot coupon) on one node; one coupon of U units; every
// shopper claims it at once. Then, in the same run, the same shoppers claim
// U units spread over C coupons: the reference rate. Then the same on three
// nodes (a fresh database), sessions spread over them.
func benchFlashsale(ctx context.Context, args []string) (err error) {
	fs := flag.NewFlagSet("bench flashsale", flag.ContinueOnError)
	var f benchFlags
	f.register(fs)
	shoppers := fs.Int("shoppers", 10000, "shopper sessions; each claims the hot coupon once")
	watchers := fs.Int("watchers", 5000, "watcher sessions subscribed to the hot coupon")
	units := fs.Int("units", 5000, "units of the hot coupon (and in all of the spread coupons)")
	spread := fs.Int("spread", 200, "coupons of the reference run (units/spread each)")
	three := fs.Bool("three", true, "also run on three nodes")
	profile := fs.String("profile", "", "write a CPU profile of the (first) node over the first 3 s of the one-node drop to this file")
	dbProfile := fs.String("db-profile", "", "write CPU profiles of the devdb over the first 2 s of the one-node drop and of its spread reference to FILE-hot.pprof and FILE-spread.pprof")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *shoppers <= 0 || *watchers < 0 || *units <= 0 || *spread <= 0 || *units%*spread != 0 {
		return errors.New("bench flashsale: sizes must be positive and --units a multiple of --spread")
	}
	res := flashsaleResult{Scenario: "flashsale", Time: time.Now().UTC(), Machine: describeMachine(f.nodeCPUs)}
	for _, n := range []int{1, 3} {
		if n == 3 && !*three {
			break
		}
		prof, dbProf := *profile, *dbProfile
		if n > 1 {
			prof, dbProf = "", ""
		}
		r, err := flashsaleOn(ctx, f, n, *shoppers, *watchers, *units, *spread, prof, dbProf)
		if err != nil {
			return fmt.Errorf("%d node(s): %w", n, err)
		}
		printFlashRun(r)
		if n == 1 {
			res.One = r
		} else {
			res.Three = &r
		}
	}
	o := res.One
	lag := atMost("one hot coupon: watchers at the final state after the last claim", max(o.LagMaxms, o.FinalSpreadMs), "ms", 1000)
	lag.Note = fmt.Sprintf("%d watchers: the larger of the last watcher's lag after the last ok answer (p50 %.0f, p99 %.0f, max %.0f ms) and the time from the first watcher holding the final state to the last (%.0f ms)", o.Watchers, o.LagP50ms, o.LagP99ms, o.LagMaxms, o.FinalSpreadMs)
	pct := atLeast("one hot coupon: claims/s until sold out, % of the same units over 200 coupons", o.HotPctSpread, "%", 80)
	pct.Note = fmt.Sprintf("%d shoppers, %d units: %.0f claims/s hot vs %.0f claims/s over %d coupons, same node, same run", o.Shoppers, o.Units, o.ClaimsPerSec, o.SpreadClaimsPerSec, o.SpreadCoupons)
	p99 := atMost("one hot coupon: every answer p99 (ok and sold_out)", o.AllP99ms, "ms", 3000)
	p99.Note = fmt.Sprintf("ok p50 %.0f p99 %.0f ms; sold_out p50 %.0f p99 %.0f ms", o.OKP50ms, o.OKP99ms, o.SoldOutP50ms, o.SoldOutP99ms)
	res.Figures = []benchFigure{pct, p99, lag,
		atMost("one hot coupon: watchers dropped (1013)", o.Dropped, "sessions", 0),
		atMost("one hot coupon: wrong answers (ok ≠ units, n not 1..units, journal ≠ units; errors retried with their rid)", float64(flashWrong(o)), "claims", 0),
		{What: "one hot coupon: watcher deliveries/s", Value: o.DeliveriesPerSec, Unit: "deliveries/s", Note: "coupon pushes received by the watchers (conflated per session)"},
	}
	if t := res.Three; t != nil {
		res.Figures = append(res.Figures,
			benchFigure{What: "one hot coupon on 3 nodes: claims/s until sold out", Value: t.ClaimsPerSec, Unit: "claims/s",
				Note: fmt.Sprintf("%.0f%% of the spread rate on the same 3 nodes (%.0f claims/s); every answer p99 %.0f ms; watchers final max %.0f ms after the last claim", t.HotPctSpread, t.SpreadClaimsPerSec, t.AllP99ms, t.LagMaxms)},
			atMost("one hot coupon on 3 nodes: wrong answers", float64(flashWrong(*t)), "claims", 0))
	}
	e, err := newBenchEnv(f.out, "")
	if err != nil {
		return err
	}
	defer e.close()
	path, err := e.writeResult("flashsale", res)
	if err != nil {
		return err
	}
	fmt.Printf("flashsale: results in %s\n", path)
	if flashWrong(o) > 0 || (res.Three != nil && flashWrong(*res.Three) > 0) {
		return errors.New("flashsale: wrong answers (see above)")
	}
	return nil
}

// flashWrong counts what contradicts the invariants in r.
func flashWrong(r flashRun) int {
	wrong := abs(r.OK+r.RetriedOK-r.Units) + abs(int(r.JournalClaims)-r.Units) + abs(r.SoldOut+r.RetriedSoldOut-(r.Shoppers-r.Units)) + r.StillFailing
	if !r.DistinctN {
		wrong++
	}
	return wrong
}

func abs(n int) int { return max(n, -n) }

func printFlashRun(r flashRun) {
	fmt.Printf("flashsale, %d node(s): %d shoppers, %d watchers, %d units: %d ok, %d sold_out, errors %s (sent again with their rid: %d ok, %d sold_out, %d failing); sold out after %.2fs: %.0f claims/s vs %.0f claims/s over %d coupons (%.0f%%, target ≥ 80%%); answers p99 %.0f ms (ok p50 %.0f p99 %.0f, sold_out p50 %.0f p99 %.0f, max %.0f; target ≤ 3000); watchers final %d/%d, lag after the last ok p50 %.0f p99 %.0f max %.0f ms, first to last watcher %.0f ms (target ≤ 1000); %d deliveries, %.0f/s; dropped %v; n distinct 1..units %v; journal %d claims; node 1 group commit: %d BulkWrites of %d documents, mean %.1f ms (spread: %d of %d, mean %.1f ms); CPU s nodes/devdb/load %.2f/%.2f/%.2f (spread %.2f/%.2f/%.2f)\n",
		r.Nodes, r.Shoppers, r.Watchers, r.Units, r.OK, r.SoldOut, fmtCodes(r.Errors), r.RetriedOK, r.RetriedSoldOut, r.StillFailing, r.SoldOutSeconds, r.ClaimsPerSec, r.SpreadClaimsPerSec, r.SpreadCoupons, r.HotPctSpread,
		r.AllP99ms, r.OKP50ms, r.OKP99ms, r.SoldOutP50ms, r.SoldOutP99ms, r.AllMaxms, r.WatchersFinal, r.Watchers, r.LagP50ms, r.LagP99ms, r.LagMaxms, r.FinalSpreadMs,
		r.Deliveries, r.DeliveriesPerSec, r.Dropped, r.DistinctN, r.JournalClaims, r.BulkWrites, r.BulkDocs, r.BulkWriteMs, r.SpreadBulkWrites, r.SpreadBulkDocs, r.SpreadBulkWriteMs,
		r.CPU.Nodes, r.CPU.DB, r.CPU.Load, r.SpreadCPU.Nodes, r.SpreadCPU.DB, r.SpreadCPU.Load)
}

// flashsale is one flash sale on its processes, step by step.
type flashsale struct {
	f         benchFlags
	e         *benchEnv
	nodes     []*benchNode
	hot       string   // the hot coupon
	spreadIDs []string // the coupons of the reference run
	clients   []*client.Client
	r         *flashRun
	dbProfile string // FILE of --db-profile (empty: none)

	final      []atomic.Int64 // by watcher: when it first held the final state (Unix ns)
	deliveries atomic.Int64
	lastOK     time.Time    // the last ok answer of the drop
	seen       map[int]bool // unit numbers granted
}

// flashsaleOn runs one flash sale and its spread reference on n fresh nodes
// over a fresh devdb, and stops them.
func flashsaleOn(ctx context.Context, f benchFlags, n, shoppers, watchers, units, spread int, profile, dbProfile string) (flashRun, error) {
	r := flashRun{Nodes: n, Shoppers: shoppers, Watchers: watchers, Units: units, SpreadCoupons: spread, Errors: map[string]int{}}
	e, err := newBenchEnv(f.out, f.nodeCPUs)
	if err != nil {
		return r, err
	}
	defer e.close()
	e.keepLogs, e.logLevel = f.keepLogs, f.logLevel
	if err := e.startDB(ctx); err != nil {
		return r, err
	}
	nodes, err := e.startMembers(ctx, n)
	if err != nil {
		return r, err
	}
	tok, err := e.token("bench", couponmesh.RoleMerchant)
	if err != nil {
		return r, err
	}
	api := client.NewAPI(nodes[0].base(), tok)
	hot, err := createSettled(ctx, e, api, "fs-hot", 1, units)
	if err != nil {
		return r, err
	}
	spreadIDs, err := createSettled(ctx, e, api, "fs-sp", spread, units/spread)
	if err != nil {
		return r, err
	}
	s := &flashsale{f: f, e: e, nodes: nodes, hot: hot[0], spreadIDs: spreadIDs, r: &r, dbProfile: dbProfile}
	raws, err := s.connectWatchers(ctx, api)
	defer func() { closeRaw(raws) }()
	if err != nil {
		return r, err
	}
	all, err := s.connectShoppers(ctx)
	defer func() { closeAll(all) }()
	if err != nil {
		return r, err
	}
	if err := e.settle(ctx); err != nil {
		return r, err
	}
	fmt.Fprintf(os.Stderr, "flashsale, %d node(s): %d shoppers and %d watchers connected\n", n, shoppers, watchers)

	hr, err := s.drop(ctx, profile)
	if err != nil {
		return r, err
	}
	s.waitWatchers(hr.start)
	s.retryFailed(ctx, hr)

	// The journal, read from the database.
	st, err := openStore(ctx, e.db)
	if err != nil {
		return r, err
	}
	claims, err := countEntries(ctx, st, coupon.Entity(s.hot), coupon.EntryClaimed)
	_ = st.Close(context.Background())
	r.JournalClaims = int64(claims)
	if err != nil {
		return r, fmt.Errorf("count the journal: %w", err)
	}
	return r, s.reference(ctx)
}

// connectWatchers subscribes the watchers to the hot coupon, spread over
// the nodes, reading protocol v1 directly (as the fanout scenario's
// followers: the Go SDK decodes every push in full, which on the load's
// core would take CPU from the devdb); each records when it first holds the
// final state (the version after the last claim). It returns the watchers
// opened, for closeRaw, also on an error.
func (s *flashsale) connectWatchers(ctx context.Context, api *client.API) ([]*rawFollower, error) {
	before, err := api.Coupon(ctx, s.hot)
	if err != nil {
		return nil, err
	}
	finalVersion := before.Version + int64(s.r.Units)
	s.final = make([]atomic.Int64, s.r.Watchers)
	var raws []*rawFollower
	for k, node := range s.nodes {
		base, count := share(s.r.Watchers, len(s.nodes), k)
		rs, _, failed, err := connectRaw(ctx, s.e, node, s.f, base, count, func(int) string { return s.hot }, func(i int) func(int64, int64) {
			return func(version, _ int64) {
				s.deliveries.Add(1)
				if version >= finalVersion {
					s.final[base+i].CompareAndSwap(0, time.Now().UnixNano())
				}
			}
		}, nil)
		raws = append(raws, rs...)
		if err != nil {
			return raws, fmt.Errorf("%d of %d watchers failed, first: %w", failed, count, err)
		}
	}
	return raws, nil
}

// connectShoppers opens the shoppers' sessions, spread over the nodes; each
// loads its user grain first (a wallet read), so that neither run pays for
// activations. It returns every session opened, for closeAll, also on an
// error.
func (s *flashsale) connectShoppers(ctx context.Context) ([]*client.Client, error) {
	shoppers := s.r.Shoppers
	var all []*client.Client
	s.clients = make([]*client.Client, shoppers)
	for k, node := range s.nodes {
		base, count := share(shoppers, len(s.nodes), k)
		cs, _, err := dialShoppers(ctx, s.e, node, s.f, count, func(i int) string { return "b" + strconv.Itoa(base+i) })
		copy(s.clients[base:], cs)
		all = append(all, cs...)
		if err != nil {
			return all, err
		}
	}
	if _, failed, err := inParallel(ctx, s.f.workers, shoppers, func(i int) error {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err := s.clients[i].Wallet(wctx)
		return err
	}); err != nil {
		return all, fmt.Errorf("%d wallets failed, first: %w", failed, err)
	}
	return all, nil
}

// drop: every shopper claims the hot coupon at once. It records the
// answers, the sessions dropped as slow consumers and the group commit's
// BulkWrites of the first node meanwhile.
func (s *flashsale) drop(ctx context.Context, profile string) (claimRound, error) {
	r := s.r
	dropped := func() float64 {
		sum := 0.0
		for _, node := range s.nodes {
			if m, err := scrapeNodeMetrics(node); err == nil {
				sum += m.get(`couponmesh_ws_sessions_dropped_total{reason="slow_consumer"}`)
			}
		}
		return sum
	}
	d0 := dropped()
	m0, err := scrapeNodeMetrics(s.nodes[0])
	if err != nil {
		return claimRound{}, err
	}
	var pwg sync.WaitGroup
	if profile != "" {
		pwg.Go(func() {
			if err := profileCPU(ctx, s.nodes[0], 3*time.Second, profile); err != nil {
				fmt.Fprintf(os.Stderr, "bench flashsale: profile: %v\n", err)
			}
		})
	}
	s.profileDB(ctx, &pwg, "hot")
	c0 := s.flashCPUNow()
	hr := claimAll(ctx, s.clients, func(int) string { return s.hot }, "h")
	r.CPU = s.flashCPUNow().since(c0)
	pwg.Wait()
	r.Dropped = dropped() - d0
	if m1, err := scrapeNodeMetrics(s.nodes[0]); err == nil {
		r.BulkWrites, r.BulkDocs, r.BulkWriteMs = bulkStats(m0, m1)
	}
	var okLat, soldLat, allLat []time.Duration
	s.seen = make(map[int]bool, r.Units)
	r.DistinctN = true
	for _, a := range hr.answers {
		allLat = append(allLat, a.took)
		switch {
		case a.err == nil:
			r.OK++
			okLat = append(okLat, a.took)
			if a.at.After(s.lastOK) {
				s.lastOK = a.at
			}
			if a.n < 1 || a.n > r.Units || s.seen[a.n] {
				r.DistinctN = false
			}
			s.seen[a.n] = true
		case couponmesh.ErrorCode(a.err) == couponmesh.CodeSoldOut:
			r.SoldOut++
			soldLat = append(soldLat, a.took)
		default:
			code := claimErrCode(a.err)
			if r.FirstError == "" {
				r.FirstError = a.err.Error()
			}
			r.Errors[code]++
		}
	}
	r.SoldOutSeconds = s.lastOK.Sub(hr.start).Seconds()
	if r.SoldOutSeconds > 0 {
		r.ClaimsPerSec = float64(r.OK) / r.SoldOutSeconds
	}
	for _, l := range [][]time.Duration{okLat, soldLat, allLat} {
		slices.Sort(l)
	}
	r.OKP50ms, r.OKP99ms = ms(quantile(okLat, 0.5)), ms(quantile(okLat, 0.99))
	r.SoldOutP50ms, r.SoldOutP99ms = ms(quantile(soldLat, 0.5)), ms(quantile(soldLat, 0.99))
	r.AllP99ms, r.AllMaxms = ms(quantile(allLat, 0.99)), ms(quantile(allLat, 1))
	return hr, nil
}

// waitWatchers waits up to 10 s for every watcher to hold the final state
// and records their lag behind the last ok answer; start is the drop's.
func (s *flashsale) waitWatchers(start time.Time) {
	r := s.r
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		done := 0
		for i := range s.final {
			if s.final[i].Load() != 0 {
				done++
			}
		}
		if done == r.Watchers {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	var lags []time.Duration
	var firstFinal, lastFinal time.Time
	for i := range s.final {
		if at := s.final[i].Load(); at != 0 {
			t := time.Unix(0, at)
			lags = append(lags, max(t.Sub(s.lastOK), 0))
			if t.After(lastFinal) {
				lastFinal = t
			}
			if firstFinal.IsZero() || t.Before(firstFinal) {
				firstFinal = t
			}
		}
	}
	slices.Sort(lags)
	r.WatchersFinal = len(lags)
	r.FinalSpreadMs = ms(lastFinal.Sub(firstFinal))
	r.LagP50ms, r.LagP99ms, r.LagMaxms = ms(quantile(lags, 0.5)), ms(quantile(lags, 0.99)), ms(quantile(lags, 1))
	if r.WatchersFinal < r.Watchers {
		r.LagMaxms = 10000 // some never got there within the wait: over the target for sure
	}
	r.Deliveries = s.deliveries.Load()
	if d := lastFinal.Sub(start).Seconds(); d > 0 {
		r.DeliveriesPerSec = float64(r.Deliveries) / d
	}
}

// retryFailed sends the claims answered with an error (a timeout: their
// outcome was unknown to the shopper) again, with the same rid: each must
// get its first answer.
func (s *flashsale) retryFailed(ctx context.Context, hr claimRound) {
	r := s.r
	var failed []int
	for i, a := range hr.answers {
		if a.err != nil && couponmesh.ErrorCode(a.err) != couponmesh.CodeSoldOut {
			failed = append(failed, i)
		}
	}
	var mu sync.Mutex
	_, _, _ = inParallel(ctx, s.f.workers, len(failed), func(k int) error {
		i := failed[k]
		var cl couponmesh.Claim
		var err error
		for try := range 5 {
			if try > 0 {
				time.Sleep(time.Second)
			}
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			cl, err = s.clients[i].Claim(cctx, s.hot, "h"+strconv.Itoa(i))
			cancel()
			if err == nil || couponmesh.ErrorCode(err) == couponmesh.CodeSoldOut {
				break
			}
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			r.RetriedOK++
			if cl.N < 1 || cl.N > r.Units || s.seen[cl.N] {
				r.DistinctN = false
			}
			s.seen[cl.N] = true
		case couponmesh.ErrorCode(err) == couponmesh.CodeSoldOut:
			r.RetriedSoldOut++
		default:
			r.StillFailing++
		}
		return nil
	})
}

// reference runs the same shoppers for the same units over the spread
// coupons and compares the rates.
func (s *flashsale) reference(ctx context.Context) error {
	r := s.r
	if err := s.e.settle(ctx); err != nil {
		return err
	}
	s0, err := scrapeNodeMetrics(s.nodes[0])
	if err != nil {
		return err
	}
	spread := len(s.spreadIDs)
	var pwg sync.WaitGroup
	s.profileDB(ctx, &pwg, "spread")
	c0 := s.flashCPUNow()
	sr := claimAll(ctx, s.clients, func(i int) string { return s.spreadIDs[i%spread] }, "s")
	r.SpreadCPU = s.flashCPUNow().since(c0)
	pwg.Wait()
	if s1, err := scrapeNodeMetrics(s.nodes[0]); err == nil {
		r.SpreadBulkWrites, r.SpreadBulkDocs, r.SpreadBulkWriteMs = bulkStats(s0, s1)
	}
	var lastSpread time.Time
	for _, a := range sr.answers {
		if a.err == nil {
			r.SpreadOK++
			if a.at.After(lastSpread) {
				lastSpread = a.at
			}
		}
	}
	r.SpreadSeconds = lastSpread.Sub(sr.start).Seconds()
	if r.SpreadSeconds > 0 {
		r.SpreadClaimsPerSec = float64(r.SpreadOK) / r.SpreadSeconds
	}
	if r.SpreadClaimsPerSec > 0 {
		r.HotPctSpread = 100 * r.ClaimsPerSec / r.SpreadClaimsPerSec
	}
	return nil
}

// profileDB starts a CPU profile of the devdb over the next 2 s into
// FILE-phase.pprof (--db-profile), on wg.
func (s *flashsale) profileDB(ctx context.Context, wg *sync.WaitGroup, phase string) {
	if s.dbProfile == "" {
		return
	}
	wg.Go(func() {
		if err := s.e.profileDB(ctx, 2*time.Second, s.dbProfile+"-"+phase+".pprof"); err != nil {
			fmt.Fprintf(os.Stderr, "bench flashsale: devdb profile: %v\n", err)
		}
	})
}

// bulkStats returns the BulkWrites of a node's group commit between two
// scrapes, their documents and their mean duration.
func bulkStats(m0, m1 nodeMetrics) (n, docs int64, meanMs float64) {
	n = int64(m1.get("couponmesh_store_batch_size_count") - m0.get("couponmesh_store_batch_size_count"))
	docs = int64(m1.get("couponmesh_store_batch_size_sum") - m0.get("couponmesh_store_batch_size_sum"))
	if n > 0 {
		meanMs = 1000 * (m1.get("couponmesh_store_bulk_write_seconds_sum") - m0.get("couponmesh_store_bulk_write_seconds_sum")) / float64(n)
	}
	return n, docs, meanMs
}

// share is the part k of n of total: its first index and its size.
func share(total, n, k int) (base, count int) {
	base = total * k / n
	return base, total*(k+1)/n - base
}

type claimAnswer struct {
	took time.Duration
	at   time.Time // when the answer arrived
	n    int
	err  error
}

type claimRound struct {
	start   time.Time
	answers []claimAnswer
}

// claimAll makes every client claim coupon(i) at the same moment (rid
// PREFIX+i) and returns the answers.
func claimAll(ctx context.Context, clients []*client.Client, coupon func(i int) string, prefix string) claimRound {
	r := claimRound{answers: make([]claimAnswer, len(clients))}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			<-start
			cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			t0 := time.Now()
			cl, err := c.Claim(cctx, coupon(i), prefix+strconv.Itoa(i))
			now := time.Now()
			r.answers[i] = claimAnswer{took: now.Sub(t0), at: now, n: cl.N, err: err}
		})
	}
	r.start = time.Now()
	close(start)
	wg.Wait()
	return r
}
