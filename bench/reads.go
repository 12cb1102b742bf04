package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
)

// readPhase is one kind of read measured by the reads scenario.
type readPhase struct {
	Kind        string  `json:"kind"`
	Via         string  `json:"via"`
	Concurrency int     `json:"concurrency"`
	Offered     float64 `json:"offeredPerSec,omitempty"` // paced: reads/s offered (0: as fast as answered)
	Reads       int     `json:"reads"`
	Errors      int     `json:"errors"`
	FirstError  string  `json:"firstError,omitempty"`
	Seconds     float64 `json:"seconds"`
	ReadsPerSec float64 `json:"readsPerSec"`
	P50ms       float64 `json:"p50ms"`
	P99ms       float64 `json:"p99ms"`
	MaxMs       float64 `json:"maxMs"`
	NodeCPU     float64 `json:"nodeCpuPercent"`
	BenchCPU    float64 `json:"benchCpuPercent"`
	// From the node's metrics during the phase: which path the reads took.
	Activations     float64 `json:"couponActivations"`
	SnapshotHits    float64 `json:"snapshotCacheHits"`
	SnapshotMisses  float64 `json:"snapshotCacheMisses"`
	BrowseHits      float64 `json:"browseCacheHits"`
	BrowseMisses    float64 `json:"browseCacheMisses"`
	GrainRequests   float64 `json:"grainRequests"`
	NodeMetricsNote string  `json:"note,omitempty"`
}

// readsResult is the JSON of the reads scenario.
type readsResult struct {
	Scenario       string        `json:"scenario"`
	Time           time.Time     `json:"time"`
	Machine        machine       `json:"machine"`
	Coupons        int           `json:"coupons"`
	Merchants      int           `json:"merchants"`
	Sessions       int           `json:"sessions"`
	BrowseTTL      string        `json:"browseTtl"`
	Duration       string        `json:"durationPerKind"`
	MaxReads       int           `json:"maxReadsPerKind"`
	CreateSeconds  float64       `json:"createSeconds"`
	RestartSeconds float64       `json:"restartSeconds"`
	Phases         []readPhase   `json:"phases"`
	Figures        []benchFigure `json:"figures"`
}

// benchReads: coupons are created through a first node, which is then
// stopped; a second node on the same database starts with no active grain
// and empty caches. On it, one after the other, for --duration each:
//   - get, uncached: the first `get` of each coupon over WebSocket (Go SDK):
//     the grain activates from the database (snapshot, then journal tail);
//   - get, cached: `get` of the coupons activated just before, at random:
//     answered from the grains' memory; once with --concurrency in flight
//     (the throughput: its target), once with --light-concurrency (the
//     latency at light load) and once offered at --rate, paced, with the
//     latency counted from each get's due time (the p99 at 50,000 reads/s:
//     its target; a closed loop at full speed measures the p99 of its own
//     queue instead);
//   - browse, uncached: the first read of distinct browse queries (merchant,
//     status, limit) over HTTP (GET /api/coupons): the database's answer;
//   - browse, cached: a few of the same queries again and again: answered
//     from the bigcache layer (pages live browse_ttl, 2 s by default, so
//     each is read from the database again every 2 s).
//
// readsFlags are the flags of bench reads.
type readsFlags struct {
	benchFlags
	ncoupons, nmerchants, sessions, conc, light, bconc, hot, maxReads int
	rate                                                              float64
	dur, browseTTL                                                    time.Duration
	profile                                                           string
	sdk                                                               bool
}

func parseReadsFlags(args []string) (readsFlags, error) {
	var f readsFlags
	fs := flag.NewFlagSet("bench reads", flag.ContinueOnError)
	f.register(fs)
	fs.IntVar(&f.ncoupons, "coupons", 1000, "coupons created (each read once uncached)")
	fs.IntVar(&f.nmerchants, "merchants", 100, "merchants the coupons belong to (distinct browse queries: 4 per merchant)")
	fs.IntVar(&f.sessions, "sessions", 64, "WebSocket sessions for the gets")
	fs.IntVar(&f.conc, "concurrency", 64, "gets in flight (spread over the sessions; at most 16 per session)")
	fs.IntVar(&f.light, "light-concurrency", 4, "gets in flight in a second cached-get phase: the latency at light load")
	fs.Float64Var(&f.rate, "rate", 50000, "cached gets per second offered in a paced phase (--concurrency workers; each get's latency counts from the time it was due to be sent, so a slow answer delays nothing unmeasured): the p99 target")
	fs.IntVar(&f.bconc, "browse-concurrency", 8, "browse requests in flight")
	fs.IntVar(&f.hot, "hot-queries", 10, "distinct browse queries read again and again in the cached browse phase")
	fs.DurationVar(&f.dur, "duration", 5*time.Second, "how long each kind of read runs at most")
	fs.IntVar(&f.maxReads, "max-reads", 2000000, "reads per kind at most")
	fs.StringVar(&f.profile, "profile", "", "write a CPU profile of the node during the loaded cached-get phase to this file")
	fs.BoolVar(&f.sdk, "sdk", false, "gets through the Go SDK (decodes every reply in full) instead of raw protocol v1 frames")
	fs.DurationVar(&f.browseTTL, "browse-ttl", time.Minute, "cache.browse_ttl of the reading node (COUPONMESH_CACHE_BROWSE_TTL; 0: the default, 2s), so that the cached browse phase reads the cache and not a database answer every 2s")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	switch {
	case f.ncoupons <= 0 || f.nmerchants <= 0 || f.sessions <= 0 || f.conc <= 0 || f.light <= 0 || f.bconc <= 0 || f.hot <= 0 || f.dur <= 0 || f.maxReads <= 0 || f.rate <= 0:
		return f, errors.New("bench reads: sizes and --duration must be positive")
	case f.conc > 16*f.sessions:
		return f, errors.New("bench reads: --concurrency above 16 per session (ws.max_inflight)")
	}
	return f, nil
}

func benchReads(ctx context.Context, args []string) (err error) {
	f, err := parseReadsFlags(args)
	if err != nil {
		return err
	}
	mach := describeMachine(f.nodeCPUs)
	e, n1, _, err := setupOneNode(ctx, f.benchFlags)
	if e != nil {
		defer e.close()
	}
	if err != nil {
		return err
	}
	res := readsResult{Scenario: "reads", Time: time.Now().UTC(), Machine: mach, Coupons: f.ncoupons, Merchants: f.nmerchants,
		Sessions: f.sessions, Duration: f.dur.String(), MaxReads: f.maxReads, BrowseTTL: "2s (default)"}
	if f.browseTTL > 0 {
		res.BrowseTTL = f.browseTTL.String()
	}

	// The coupons, coupon i of merchant m(i % merchants).
	ids := make([]string, f.ncoupons)
	for i := range ids {
		ids[i] = "rd" + strconv.Itoa(i)
	}
	t0 := time.Now()
	if err := createMerchantCoupons(ctx, e, n1, ids, f.nmerchants); err != nil {
		return err
	}
	res.CreateSeconds = time.Since(t0).Seconds()

	// A fresh node: no grain active, caches empty. The first one writes
	// its snapshots when it stops. startNode passes the environment on.
	t0 = time.Now()
	if err := stopBenchNode(n1); err != nil {
		return err
	}
	if f.browseTTL > 0 {
		if err := os.Setenv("COUPONMESH_CACHE_BROWSE_TTL", f.browseTTL.String()); err != nil {
			return err
		}
	}
	node, err := e.startNode(ctx, "n2")
	if err != nil {
		return err
	}
	res.RestartSeconds = time.Since(t0).Seconds()
	get, ws, closeGets, err := readGetter(ctx, e, node, f)
	defer closeGets()
	if err != nil {
		return err
	}
	lightPh, pacedPh, err := readGets(ctx, node, f, &res, ids, get, ws)
	if err != nil {
		return err
	}
	if err := readBrowse(ctx, node, f, &res); err != nil {
		return err
	}
	res.Figures = readsFigures(res, ws, lightPh, pacedPh)
	res.Phases = append(res.Phases, lightPh, pacedPh)
	path, err := e.writeResult("reads", res)
	if err != nil {
		return err
	}
	cached, uncached := res.Phases[1], res.Phases[0]
	fmt.Printf("reads: %d coupons of %d merchants; get (WebSocket) cached: offered %.0f/s, answered %.0f/s, p99 %.2f ms (target p99 ≤ 1 ms at ≥ 50,000/s); full speed %.0f reads/s p99 %.2f ms (target ≥ 50,000/s; with %d in flight p99 %.2f ms), uncached %.0f reads/s p99 %.1f ms; browse (HTTP) cached %.0f reads/s p99 %.2f ms, uncached %.0f reads/s p99 %.1f ms; node CPU %.0f/%.0f/%.0f/%.0f%%, errors %d/%d/%d/%d (get cached/uncached, browse cached/uncached) [%s]\n",
		f.ncoupons, f.nmerchants, pacedPh.Offered, pacedPh.ReadsPerSec, pacedPh.P99ms, cached.ReadsPerSec, cached.P99ms, lightPh.Concurrency, lightPh.P99ms, uncached.ReadsPerSec, uncached.P99ms,
		res.Phases[3].ReadsPerSec, res.Phases[3].P99ms, res.Phases[2].ReadsPerSec, res.Phases[2].P99ms,
		cached.NodeCPU, uncached.NodeCPU, res.Phases[3].NodeCPU, res.Phases[2].NodeCPU,
		cached.Errors, uncached.Errors, res.Phases[3].Errors, res.Phases[2].Errors, path)
	for _, p := range res.Phases {
		if p.FirstError != "" {
			fmt.Printf("reads: %s: %d errors, first: %s\n", p.Kind, p.Errors, p.FirstError)
		}
	}
	return nil
}

// readGetter opens the --sessions sessions of the gets (raw protocol v1
// frames, or the Go SDK with --sdk) and returns the get of worker w, how it
// reads, and what closes the sessions (also after an error).
func readGetter(ctx context.Context, e *benchEnv, node *benchNode, f readsFlags) (get func(w int, id string) error, via string, closeGets func(), err error) {
	if f.sdk {
		via = fmt.Sprintf("WebSocket get (Go SDK), %d sessions", f.sessions)
		clients, _, err := dialShoppers(ctx, e, node, f.benchFlags, f.sessions, func(i int) string { return "r" + strconv.Itoa(i) })
		get = func(w int, id string) error {
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			c, err := clients[w%len(clients)].Get(rctx, id)
			if err == nil && c.ID != id {
				err = fmt.Errorf("get %s: got %q", id, c.ID)
			}
			return err
		}
		return get, via, func() { closeAll(clients) }, err
	}
	via = fmt.Sprintf("WebSocket get (raw protocol v1 frames), %d sessions", f.sessions)
	hcs := sourceClients(f.sources)
	raws := make([]*rawSession, f.sessions)
	closeRaws := func() {
		for _, r := range raws {
			if r != nil {
				r.Close()
			}
		}
	}
	_, _, err = inParallel(ctx, f.workers, f.sessions, func(i int) (err error) {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		raws[i], err = dialRawSession(cctx, e, node, &websocket.DialOptions{HTTPClient: hcs[i%len(hcs)], Subprotocols: []string{client.Subprotocol}}, "r"+strconv.Itoa(i))
		return err
	})
	get = func(w int, id string) error {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return raws[w%len(raws)].get(rctx, id)
	}
	return get, via, closeRaws, err
}

// readGets runs the get phases: uncached (each coupon once, in a random
// order), cached (the coupons now active, at random) at --concurrency, at
// --light-concurrency and paced at --rate. It appends the first two to
// res.Phases and returns the light and the paced one.
func readGets(ctx context.Context, node *benchNode, f readsFlags, res *readsResult, ids []string, get func(w int, id string) error, ws string) (light, paced readPhase, err error) {
	order := rand.Perm(len(ids))
	ph, err := runReadPhase(ctx, node, "coupon read (uncached)", ws, f.conc, 0, f.dur, min(f.maxReads, len(ids)), func(w, i int) error {
		return get(w, ids[order[i]])
	})
	if err != nil {
		return ph, ph, err
	}
	res.Phases = append(res.Phases, ph)
	active := make([]string, ph.Reads) // the coupons read above are active now
	for i := range active {
		active[i] = ids[order[i]]
	}
	if len(active) == 0 {
		return ph, ph, errors.New("reads: no coupon was read uncached")
	}
	cached := func(w, _ int) error { return get(w, active[rand.IntN(len(active))]) }

	var pwg sync.WaitGroup
	if f.profile != "" {
		pwg.Go(func() {
			if err := profileCPU(ctx, node, f.dur, f.profile); err != nil {
				fmt.Fprintf(os.Stderr, "bench reads: profile: %v\n", err)
			}
		})
	}
	ph, err = runReadPhase(ctx, node, "coupon read (cached)", ws, f.conc, 0, f.dur, f.maxReads, cached)
	if err != nil {
		return ph, ph, err
	}
	res.Phases = append(res.Phases, ph)
	pwg.Wait()
	if light, err = runReadPhase(ctx, node, "coupon read (cached), light load", ws, f.light, 0, f.dur, f.maxReads, cached); err != nil {
		return light, light, err
	}
	paced, err = runReadPhase(ctx, node, fmt.Sprintf("coupon read (cached), %.0f/s offered", f.rate), ws, f.conc, f.rate, f.dur, f.maxReads, cached)
	return light, paced, err
}

// readBrowse runs the browse phases over HTTP and appends them to
// res.Phases: uncached (distinct queries, each once), then cached (a few
// queries again and again, each read once first).
func readBrowse(ctx context.Context, node *benchNode, f readsFlags, res *readsResult) error {
	var queries []couponmesh.BrowseQuery
	for _, limit := range []int{20, 10} {
		for _, st := range []couponmesh.Status{"", couponmesh.StatusActive} {
			for m := range f.nmerchants {
				queries = append(queries, couponmesh.BrowseQuery{Merchant: merchantName(m), Status: st, Limit: limit})
			}
		}
	}
	hcs := sourceClients(f.sources)
	apis := make([]*client.API, len(hcs))
	for i, hc := range hcs {
		hc.Transport.(*http.Transport).MaxIdleConnsPerHost = f.bconc
		apis[i] = &client.API{BaseURL: node.base(), HTTPClient: hc}
	}
	browse := func(w int, q couponmesh.BrowseQuery) error {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		p, err := apis[w%len(apis)].Browse(rctx, q)
		if err == nil && len(p.Coupons) == 0 {
			err = fmt.Errorf("browse %+v: empty page", q)
		}
		return err
	}
	httpVia := "HTTP GET /api/coupons?merchant=&status=&limit= (Go SDK API)"
	ph, err := runReadPhase(ctx, node, "browse page (uncached)", httpVia, f.bconc, 0, f.dur, min(f.maxReads, len(queries)), func(w, i int) error {
		return browse(w, queries[i])
	})
	if err != nil {
		return err
	}
	res.Phases = append(res.Phases, ph)

	hotq := queries[:min(f.hot, len(queries))]
	for i, q := range hotq {
		if err := browse(i, q); err != nil {
			return err
		}
	}
	ph, err = runReadPhase(ctx, node, "browse page (cached)", httpVia, f.bconc, 0, f.dur, f.maxReads, func(w, i int) error {
		return browse(w, hotq[i%len(hotq)])
	})
	if err != nil {
		return err
	}
	res.Phases = append(res.Phases, ph)
	return nil
}

// readsFigures: the cached get against its targets (the rate at
// --concurrency in flight, the p99 and the rate reached when offered
// --rate), the light-load get, and the rate and p99 of the other phases.
func readsFigures(res readsResult, ws string, lightPh, pacedPh readPhase) []benchFigure {
	cached, uncached := res.Phases[1], res.Phases[0]
	p99 := benchFigure{What: "coupon read (cached), p99", Value: cached.P99ms, Unit: "ms",
		Note: fmt.Sprintf("%s, %d in flight, active grains, full speed (the p99 of the load's own queue); latency in the client", ws, cached.Concurrency)}
	rate := atLeast("coupon read (cached), reads/s", cached.ReadsPerSec, "reads/s", 50000)
	rate.Note = p99.Note
	pNote := fmt.Sprintf("%s, %d workers, %.0f gets/s offered at a steady pace; latency from each get's due time to its answer (p50 %.2f ms, max %.1f ms)",
		ws, pacedPh.Concurrency, pacedPh.Offered, pacedPh.P50ms, pacedPh.MaxMs)
	pp99 := atMost(pacedPh.Kind+", p99", pacedPh.P99ms, "ms", 1)
	pp99.Note = pNote
	prate := benchFigure{What: pacedPh.Kind + ", reads/s answered", Value: pacedPh.ReadsPerSec, Unit: "reads/s", Note: pNote}
	lp99 := benchFigure{What: lightPh.Kind + ", p99", Value: lightPh.P99ms, Unit: "ms",
		Note: fmt.Sprintf("%d in flight: %.0f reads/s, p50 %.2f ms", lightPh.Concurrency, lightPh.ReadsPerSec, lightPh.P50ms)}
	figures := []benchFigure{pp99, prate, rate, p99, lp99}
	for _, p := range []readPhase{uncached, res.Phases[2], res.Phases[3]} {
		figures = append(figures,
			benchFigure{What: p.Kind + ", reads/s", Value: p.ReadsPerSec, Unit: "reads/s", Note: fmt.Sprintf("%s, %d in flight", p.Via, p.Concurrency)},
			benchFigure{What: p.Kind + ", p99", Value: p.P99ms, Unit: "ms"})
	}
	return figures
}

// runReadPhase calls read(worker, i) from conc workers for i = 0, 1, …
// until limit reads or d, and measures each call's latency. With rate > 0
// read i is due at start + i/rate: a worker waits for that time, and the
// latency counts from it (a worker held up by a slow answer sends late,
// and that wait is measured too).
func runReadPhase(ctx context.Context, node *benchNode, kind, via string, conc int, rate float64, d time.Duration, limit int, read func(w, i int) error) (readPhase, error) {
	ph := readPhase{Kind: kind, Via: via, Concurrency: conc, Offered: rate}
	m0, err := scrapeNodeMetrics(node)
	if err != nil {
		return ph, err
	}
	pid := node.cmd.Process.Pid
	n0, b0 := cpuTime(pid), cpuTime(os.Getpid())
	var (
		next   atomic.Int64
		errs   atomic.Int64
		first  atomic.Value
		mu     sync.Mutex
		lat    []time.Duration
		wg     sync.WaitGroup
		start  = time.Now()
		stopAt = start.Add(d)
	)
	for w := range conc {
		wg.Go(func() {
			var mine []time.Duration
			for ctx.Err() == nil && time.Now().Before(stopAt) {
				i := int(next.Add(1) - 1)
				if i >= limit {
					break
				}
				t := time.Now()
				if rate > 0 {
					t = start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
					if !t.Before(stopAt) {
						break
					}
					time.Sleep(time.Until(t))
				}
				if err := read(w, i); err != nil {
					errs.Add(1)
					first.CompareAndSwap(nil, err.Error())
					continue
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	took := time.Since(start)
	if ctx.Err() != nil {
		return ph, ctx.Err()
	}
	ph.NodeCPU = 100 * (cpuTime(pid) - n0).Seconds() / took.Seconds()
	ph.BenchCPU = 100 * (cpuTime(os.Getpid()) - b0).Seconds() / took.Seconds()
	m1, err := scrapeNodeMetrics(node)
	if err != nil {
		return ph, err
	}
	delta := func(k string) float64 { return m1.get(k) - m0.get(k) }
	ph.Activations = delta(`couponmesh_activations_total{kind="coupon"}`)
	ph.SnapshotHits = delta(`couponmesh_cache_hits_total{cache="snapshot"}`)
	ph.SnapshotMisses = delta(`couponmesh_cache_misses_total{cache="snapshot"}`)
	ph.BrowseHits = delta(`couponmesh_cache_hits_total{cache="browse"}`)
	ph.BrowseMisses = delta(`couponmesh_cache_misses_total{cache="browse"}`)
	ph.GrainRequests = delta("couponmesh_grain_requests_total")
	slices.Sort(lat)
	ph.Reads, ph.Errors, ph.Seconds = len(lat), int(errs.Load()), took.Seconds()
	if s, ok := first.Load().(string); ok {
		ph.FirstError = s
	}
	ph.ReadsPerSec = float64(ph.Reads) / took.Seconds()
	ph.P50ms, ph.P99ms, ph.MaxMs = ms(quantile(lat, 0.5)), ms(quantile(lat, 0.99)), ms(quantile(lat, 1))
	fmt.Fprintf(os.Stderr, "reads: %s: %d reads in %.1fs, %.0f/s, p50 %.2f p99 %.2f max %.1f ms, %d errors; node CPU %.0f%% bench %.0f%%; activations %.0f, snapshot cache %.0f hits %.0f misses, browse cache %.0f hits %.0f misses\n",
		kind, ph.Reads, ph.Seconds, ph.ReadsPerSec, ph.P50ms, ph.P99ms, ph.MaxMs, ph.Errors, ph.NodeCPU, ph.BenchCPU,
		ph.Activations, ph.SnapshotHits, ph.SnapshotMisses, ph.BrowseHits, ph.BrowseMisses)
	return ph, nil
}

func merchantName(m int) string { return "m" + strconv.Itoa(m) }

// createMerchantCoupons creates coupon ids[i] as merchant m(i % merchants),
// 16 at a time, through node's HTTP API.
func createMerchantCoupons(ctx context.Context, e *benchEnv, node *benchNode, ids []string, merchants int) error {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	apis := make([]*client.API, merchants)
	for m := range apis {
		tok, err := e.token(merchantName(m), couponmesh.RoleMerchant)
		if err != nil {
			return err
		}
		apis[m] = &client.API{BaseURL: node.base(), Token: tok, HTTPClient: hc}
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		sem   = make(chan struct{}, 16)
		title = "Bench coupon"
		qty   = 1000
	)
	for i, id := range ids {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := apis[i%merchants].CreateCoupon(ctx, couponmesh.CouponSpec{ID: id, Title: &title, Quantity: &qty}); err != nil {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("create coupon %s: %w", id, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}
