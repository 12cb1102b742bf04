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
//     (the throughput and the p99 under it: the targets) and once with
//     --light-concurrency (the latency at light load);
//   - browse, uncached: the first read of distinct browse queries (merchant,
//     status, limit) over HTTP (GET /api/coupons): the database's answer;
//   - browse, cached: a few of the same queries again and again: answered
//     from the bigcache layer (pages live browse_ttl, 2 s by default, so
//     each is read from the database again every 2 s).
func benchReads(ctx context.Context, args []string) (err error) {
	fs := flag.NewFlagSet("bench reads", flag.ContinueOnError)
	var f benchFlags
	f.register(fs)
	ncoupons := fs.Int("coupons", 1000, "coupons created (each read once uncached)")
	nmerchants := fs.Int("merchants", 100, "merchants the coupons belong to (distinct browse queries: 4 per merchant)")
	sessions := fs.Int("sessions", 64, "WebSocket sessions for the gets")
	conc := fs.Int("concurrency", 64, "gets in flight (spread over the sessions; at most 16 per session)")
	light := fs.Int("light-concurrency", 4, "gets in flight in a second cached-get phase: the latency at light load")
	bconc := fs.Int("browse-concurrency", 8, "browse requests in flight")
	hot := fs.Int("hot-queries", 10, "distinct browse queries read again and again in the cached browse phase")
	dur := fs.Duration("duration", 5*time.Second, "how long each kind of read runs at most")
	maxReads := fs.Int("max-reads", 2000000, "reads per kind at most")
	profile := fs.String("profile", "", "write a CPU profile of the node during the loaded cached-get phase to this file")
	sdk := fs.Bool("sdk", false, "gets through the Go SDK (decodes every reply in full) instead of raw protocol v1 frames")
	browseTTL := fs.Duration("browse-ttl", time.Minute, "cache.browse_ttl of the reading node (COUPONMESH_CACHE_BROWSE_TTL; 0: the default, 2s), so that the cached browse phase reads the cache and not a database answer every 2s")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case *ncoupons <= 0 || *nmerchants <= 0 || *sessions <= 0 || *conc <= 0 || *light <= 0 || *bconc <= 0 || *hot <= 0 || *dur <= 0 || *maxReads <= 0:
		return errors.New("bench reads: sizes and --duration must be positive")
	case *conc > 16**sessions:
		return errors.New("bench reads: --concurrency above 16 per session (ws.max_inflight)")
	}
	mach := describeMachine(f.nodeCPUs)
	e, n1, _, err := setupOneNode(ctx, f)
	if e != nil {
		defer e.close()
	}
	if err != nil {
		return err
	}
	res := readsResult{Scenario: "reads", Time: time.Now().UTC(), Machine: mach, Coupons: *ncoupons, Merchants: *nmerchants,
		Sessions: *sessions, Duration: dur.String(), MaxReads: *maxReads, BrowseTTL: "2s (default)"}
	if *browseTTL > 0 {
		res.BrowseTTL = browseTTL.String()
	}

	// The coupons, coupon i of merchant m(i % merchants).
	ids := make([]string, *ncoupons)
	for i := range ids {
		ids[i] = "rd" + strconv.Itoa(i)
	}
	t0 := time.Now()
	if err := createMerchantCoupons(ctx, e, n1, ids, *nmerchants); err != nil {
		return err
	}
	res.CreateSeconds = time.Since(t0).Seconds()

	// A fresh node: no grain active, caches empty. The first one writes
	// its snapshots when it stops. startNode passes the environment on.
	t0 = time.Now()
	if err := stopBenchNode(n1); err != nil {
		return err
	}
	if *browseTTL > 0 {
		if err := os.Setenv("COUPONMESH_CACHE_BROWSE_TTL", browseTTL.String()); err != nil {
			return err
		}
	}
	node, err := e.startNode(ctx, "n2")
	if err != nil {
		return err
	}
	res.RestartSeconds = time.Since(t0).Seconds()
	var get func(w int, id string) error
	ws := fmt.Sprintf("WebSocket get (raw protocol v1 frames), %d sessions", *sessions)
	if *sdk {
		ws = fmt.Sprintf("WebSocket get (Go SDK), %d sessions", *sessions)
		clients, _, err := dialShoppers(ctx, e, node, f, *sessions, func(i int) string { return "r" + strconv.Itoa(i) })
		defer closeAll(clients)
		if err != nil {
			return err
		}
		get = func(w int, id string) error {
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			c, err := clients[w%len(clients)].Get(rctx, id)
			if err == nil && c.ID != id {
				err = fmt.Errorf("get %s: got %q", id, c.ID)
			}
			return err
		}
	} else {
		hcs := sourceClients(f.sources)
		raws := make([]*rawSession, *sessions)
		defer func() {
			for _, r := range raws {
				if r != nil {
					r.Close()
				}
			}
		}()
		if _, _, err := inParallel(ctx, f.workers, *sessions, func(i int) (err error) {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			raws[i], err = dialRawSession(cctx, e, node, &websocket.DialOptions{HTTPClient: hcs[i%len(hcs)], Subprotocols: []string{client.Subprotocol}}, "r"+strconv.Itoa(i))
			return err
		}); err != nil {
			return err
		}
		get = func(w int, id string) error {
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			return raws[w%len(raws)].get(rctx, id)
		}
	}

	// get, uncached: each coupon once, in a random order.
	order := rand.Perm(len(ids))
	ph, err := runReadPhase(ctx, node, "coupon read (uncached)", ws, *conc, *dur, min(*maxReads, len(ids)), func(w, i int) error {
		return get(w, ids[order[i]])
	})
	if err != nil {
		return err
	}
	res.Phases = append(res.Phases, ph)
	active := make([]string, ph.Reads) // the coupons read above are active now
	for i := range active {
		active[i] = ids[order[i]]
	}
	if len(active) == 0 {
		return errors.New("reads: no coupon was read uncached")
	}

	// get, cached: the active coupons at random.
	var pwg sync.WaitGroup
	if *profile != "" {
		pwg.Go(func() {
			if err := profileCPU(ctx, node, *dur, *profile); err != nil {
				fmt.Fprintf(os.Stderr, "bench reads: profile: %v\n", err)
			}
		})
	}
	ph, err = runReadPhase(ctx, node, "coupon read (cached)", ws, *conc, *dur, *maxReads, func(w, _ int) error {
		return get(w, active[rand.IntN(len(active))])
	})
	if err != nil {
		return err
	}
	res.Phases = append(res.Phases, ph)
	pwg.Wait()
	ph, err = runReadPhase(ctx, node, "coupon read (cached), light load", ws, *light, *dur, *maxReads, func(w, _ int) error {
		return get(w, active[rand.IntN(len(active))])
	})
	if err != nil {
		return err
	}
	lightPh := ph

	// browse, uncached: distinct queries, each once.
	var queries []couponmesh.BrowseQuery
	for _, limit := range []int{20, 10} {
		for _, st := range []couponmesh.Status{"", couponmesh.StatusActive} {
			for m := range *nmerchants {
				queries = append(queries, couponmesh.BrowseQuery{Merchant: merchantName(m), Status: st, Limit: limit})
			}
		}
	}
	hcs := sourceClients(f.sources)
	apis := make([]*client.API, len(hcs))
	for i, hc := range hcs {
		hc.Transport.(*http.Transport).MaxIdleConnsPerHost = *bconc
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
	ph, err = runReadPhase(ctx, node, "browse page (uncached)", httpVia, *bconc, *dur, min(*maxReads, len(queries)), func(w, i int) error {
		return browse(w, queries[i])
	})
	if err != nil {
		return err
	}
	res.Phases = append(res.Phases, ph)

	// browse, cached: a few queries again and again, each read once first.
	hotq := queries[:min(*hot, len(queries))]
	for i, q := range hotq {
		if err := browse(i, q); err != nil {
			return err
		}
	}
	ph, err = runReadPhase(ctx, node, "browse page (cached)", httpVia, *bconc, *dur, *maxReads, func(w, i int) error {
		return browse(w, hotq[i%len(hotq)])
	})
	if err != nil {
		return err
	}
	res.Phases = append(res.Phases, ph)

	cached, uncached := res.Phases[1], res.Phases[0]
	p99 := atMost("coupon read (cached), p99", cached.P99ms, "ms", 1)
	p99.Note = fmt.Sprintf("%s, %d in flight, active grains; latency in the client", ws, cached.Concurrency)
	rate := atLeast("coupon read (cached), reads/s", cached.ReadsPerSec, "reads/s", 50000)
	rate.Note = p99.Note
	lp99 := benchFigure{What: lightPh.Kind + ", p99", Value: lightPh.P99ms, Unit: "ms",
		Note: fmt.Sprintf("%d in flight: %.0f reads/s, p50 %.2f ms", lightPh.Concurrency, lightPh.ReadsPerSec, lightPh.P50ms)}
	res.Figures = []benchFigure{p99, rate, lp99}
	for _, p := range []readPhase{uncached, res.Phases[2], res.Phases[3]} {
		res.Figures = append(res.Figures,
			benchFigure{What: p.Kind + ", reads/s", Value: p.ReadsPerSec, Unit: "reads/s", Note: fmt.Sprintf("%s, %d in flight", p.Via, p.Concurrency)},
			benchFigure{What: p.Kind + ", p99", Value: p.P99ms, Unit: "ms"})
	}
	res.Phases = append(res.Phases, lightPh)
	path, err := e.writeResult("reads", res)
	if err != nil {
		return err
	}
	fmt.Printf("reads: %d coupons of %d merchants; get (WebSocket) cached %.0f reads/s p99 %.2f ms (targets ≥ 50,000/s, p99 ≤ 1 ms; with %d in flight p99 %.2f ms), uncached %.0f reads/s p99 %.1f ms; browse (HTTP) cached %.0f reads/s p99 %.2f ms, uncached %.0f reads/s p99 %.1f ms; node CPU %.0f/%.0f/%.0f/%.0f%%, errors %d/%d/%d/%d (get cached/uncached, browse cached/uncached) [%s]\n",
		*ncoupons, *nmerchants, cached.ReadsPerSec, cached.P99ms, lightPh.Concurrency, lightPh.P99ms, uncached.ReadsPerSec, uncached.P99ms,
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

// runReadPhase calls read(worker, i) from conc workers for i = 0, 1, …
// until limit reads or d, and measures each call's latency.
func runReadPhase(ctx context.Context, node *benchNode, kind, via string, conc int, d time.Duration, limit int, read func(w, i int) error) (readPhase, error) {
	ph := readPhase{Kind: kind, Via: via, Concurrency: conc}
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
