package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"golang.org/x/sync/errgroup"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors"
	"github.com/couponmesh/couponmesh/actors/coupon"
	"github.com/couponmesh/couponmesh/client"
)

// couponmesh bench timers: durable timers (issue 18) under a burst. N
// coupons (quantity 1) expire within one second of each other, created
// with their expiresAt far enough ahead for the set-up; watcher sessions
// (the Go SDK, reconnecting, at most 1,000 coupons each: the session's
// subscription limit) subscribe to all of them. Phase one runs on one node,
// phase two on three nodes, one of which is killed (SIGKILL) shortly before
// the first due time; the watchers are on the two survivors. Measured per
// phase: the lateness from each coupon's due time to the first push that
// shows it expired (as the watcher session sees it) and to the At of its
// expired journal entry (read from the database afterwards), coupons whose
// push or entry never came (missed), coupons with more than one expired
// entry (doubled), and the nodes' CPU from just before the first due time
// until the last push arrived.

// latStats summarises lateness samples in milliseconds.
type latStats struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50Ms"`
	P99 float64 `json:"p99Ms"`
	Max float64 `json:"maxMs"`
}

func lateStats(ds []time.Duration) latStats {
	slices.Sort(ds)
	if len(ds) == 0 {
		return latStats{}
	}
	return latStats{N: len(ds), P50: ms(quantile(ds, 0.5)), P99: ms(quantile(ds, 0.99)), Max: ms(ds[len(ds)-1])}
}

// timersPhase is the outcome of one phase.
type timersPhase struct {
	Name              string             `json:"name"`
	Nodes             int                `json:"nodes"`
	Placement         string             `json:"placement"`
	Coupons           int                `json:"coupons"`
	Watchers          int                `json:"watchers"`
	SpreadSeconds     float64            `json:"dueSpreadSeconds"`
	SetupSeconds      float64            `json:"setupSeconds"` // create + subscribe + settle
	SpareSeconds      float64            `json:"spareSeconds"` // from the end of the set-up to the first due time
	Killed            string             `json:"killed,omitempty"`
	KilledBeforeMs    float64            `json:"killedBeforeFirstDueMs,omitempty"`
	DetectedSeconds   float64            `json:"deadSeenAfterSeconds,omitempty"` // from the kill until both survivors listed it as gone
	FailoverSeconds   float64            `json:"failoverSeconds,omitempty"`      // from the kill until a coupon it held answered a probe from a survivor
	VictimShards      []int              `json:"victimShards,omitempty"`
	VictimCoupons     int                `json:"affectedCoupons,omitempty"` // coupons whose grain or reminder shard was on the killed node
	Push              latStats           `json:"pushLateness"`
	PushVictim        *latStats          `json:"pushLatenessAffected,omitempty"`
	PushOthers        *latStats          `json:"pushLatenessOthers,omitempty"`
	Journal           latStats           `json:"journalLateness"`
	MissedPushes      int                `json:"missedPushes"`
	MissedEntries     int                `json:"missedEntries"`
	DoubledEntries    int                `json:"doubledEntries"`
	Reconnects        int                `json:"watcherReconnects"`
	WindowSeconds     float64            `json:"windowSeconds"` // from 0.5 s before the first due time to the last push (or the deadline)
	NodeCPUPercent    map[string]float64 `json:"nodeCpuPercent"`
	FirstSubscribeErr string             `json:"firstSubscribeError,omitempty"`
}

// timersResult is the JSON of the timers scenario.
type timersResult struct {
	Scenario string        `json:"scenario"`
	Time     time.Time     `json:"time"`
	Machine  machine       `json:"machine"`
	Phases   []timersPhase `json:"phases"`
	Figures  []benchFigure `json:"figures"`
}

type timersFlags struct {
	out, nodeCPUs, logLevel string
	coupons, perWatcher     int
	createWorkers           int
	spread, lead, killAt    time.Duration
	window                  time.Duration
	keepLogs                bool
	skipOne, skipThree      bool
	profileDir              string
}

func benchTimers(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench timers", flag.ContinueOnError)
	var f timersFlags
	fs.StringVar(&f.out, "out", "bench-results", "directory for the JSON results")
	fs.StringVar(&f.nodeCPUs, "node-cpus", "", "taskset CPU list for the node of phase one (empty: not pinned); the three nodes of phase two are not pinned")
	fs.StringVar(&f.logLevel, "log-level", "warn", "log level of the nodes")
	fs.IntVar(&f.coupons, "coupons", 10000, "coupons due in each phase")
	fs.IntVar(&f.createWorkers, "create-workers", 8, "coupons being created at once (more starve the node's database pool on a busy machine)")
	fs.IntVar(&f.perWatcher, "per-watcher", 1000, "coupons each watcher session subscribes to (the node allows 1,000)")
	fs.DurationVar(&f.spread, "spread", time.Second, "the due times are spread evenly over this")
	fs.DurationVar(&f.lead, "lead", 0, "first due time after the start of the set-up (coupons created, watchers subscribed, processes idle again); 0: from the pace of creating "+strconv.Itoa(timersCalibrate)+" coupons first (timersLead)")
	fs.DurationVar(&f.killAt, "kill-before", time.Second, "phase two: kill a node this long before the first due time")
	fs.DurationVar(&f.window, "window", 30*time.Second, "after the last due time, how long pushes may take before the missing ones count as missed")
	fs.BoolVar(&f.keepLogs, "keep-logs", false, "keep the processes' logs (their directory is printed at the end)")
	fs.BoolVar(&f.skipOne, "skip-one", false, "skip phase one (one node)")
	fs.BoolVar(&f.skipThree, "skip-three", false, "skip phase two (three nodes, one killed)")
	fs.StringVar(&f.profileDir, "profile-dir", "", "write CPU profiles of the nodes that stay and of the devdb over the burst (from 1 s before the first due time, for the spread + 8 s; the journal is read after them), a goroutine dump of the nodes 1 s after the first due time and their /metrics once the pushes are in, to this directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if f.coupons <= 0 || f.perWatcher <= 0 || f.createWorkers <= 0 || f.spread <= 0 || f.lead < 0 || f.killAt <= 0 || f.window <= 0 {
		return errors.New("bench timers: --coupons, --per-watcher, --create-workers, --spread, --kill-before and --window must be positive, --lead not negative")
	}
	res := timersResult{Scenario: "timers", Machine: describeMachine(f.nodeCPUs)}
	if !f.skipOne {
		p, err := timersRun(ctx, f, 1)
		if err != nil {
			return fmt.Errorf("phase one node: %w", err)
		}
		res.Phases = append(res.Phases, p)
		printTimersPhase(p)
	}
	if !f.skipThree {
		p, err := timersRun(ctx, f, 3)
		if err != nil {
			return fmt.Errorf("phase three nodes: %w", err)
		}
		res.Phases = append(res.Phases, p)
		printTimersPhase(p)
	}
	for _, p := range res.Phases {
		cpu := 0.0
		for _, v := range p.NodeCPUPercent {
			cpu += v
		}
		note := fmt.Sprintf("%d coupons due within %s, %d watcher sessions (Go SDK); push p50 %.0f ms, max %.0f ms; journal entry p50 %.0f / p99 %.0f / max %.0f ms; node CPU %.0f%% of a core over %.1f s",
			p.Coupons, time.Duration(p.SpreadSeconds*float64(time.Second)), p.Watchers, p.Push.P50, p.Push.Max, p.Journal.P50, p.Journal.P99, p.Journal.Max, cpu, p.WindowSeconds)
		note += "; " + p.Placement
		if p.Killed != "" {
			note += fmt.Sprintf("; %s (%d of %d shards; the grain or shard of %d coupons) killed %.0f ms before the first due time, seen dead after %.1f s, its identities served again after %.1f s",
				p.Killed, len(p.VictimShards), couponmesh.ReminderShards, p.VictimCoupons, p.KilledBeforeMs, p.DetectedSeconds, p.FailoverSeconds)
		}
		late := atMost("timers, "+p.Name+": lateness from due time to the push, p99", p.Push.P99, "ms", 1000)
		late.Note = note
		res.Figures = append(res.Figures, late)
		if p.PushOthers != nil && p.PushVictim != nil {
			others := atMost("timers, "+p.Name+": lateness p99 of coupons whose grain and shard were on the survivors", p.PushOthers.P99, "ms", 1000)
			others.Note = fmt.Sprintf("p50 %.0f ms, max %.0f ms over %d coupons", p.PushOthers.P50, p.PushOthers.Max, p.PushOthers.N)
			victim := atMost("timers, "+p.Name+": lateness max of coupons whose grain or shard was on the killed node (target: failover + 1 s, from the due time)",
				p.PushVictim.Max, "ms", (p.FailoverSeconds-p.KilledBeforeMs/1000+1)*1000)
			victim.Note = fmt.Sprintf("p50 %.0f ms, p99 %.0f ms over %d coupons; failover (a coupon it held answering a probe from a survivor) %.1f s after the kill, %.0f ms before the first due time",
				p.PushVictim.P50, p.PushVictim.P99, p.PushVictim.N, p.FailoverSeconds, p.KilledBeforeMs)
			res.Figures = append(res.Figures, others, victim)
		}
		missed := atMost("timers, "+p.Name+": coupons missed (no expired push or no expired entry)", float64(max(p.MissedPushes, p.MissedEntries)), "coupons", 0)
		missed.Note = fmt.Sprintf("%d pushes and %d journal entries missing %.0f s after the last due time", p.MissedPushes, p.MissedEntries, f.window.Seconds())
		res.Figures = append(res.Figures, missed,
			atMost("timers, "+p.Name+": coupons expired twice (journal)", float64(p.DoubledEntries), "coupons", 0))
	}
	res.Time = time.Now().UTC()
	e := &benchEnv{out: f.out}
	path, err := e.writeResult("timers", res)
	if err != nil {
		return err
	}
	fmt.Printf("timers: results in %s\n", path)
	return nil
}

func printTimersPhase(p timersPhase) {
	fmt.Printf("timers: %s: %d coupons due within %.1f s: push lateness p50 %.0f / p99 %.0f / max %.0f ms (target p99 ≤ 1000 ms); journal entry p50 %.0f / p99 %.0f / max %.0f ms; missed %d pushes, %d entries; doubled %d (targets 0); node CPU %v %% over %.1f s\n",
		p.Name, p.Coupons, p.SpreadSeconds, p.Push.P50, p.Push.P99, p.Push.Max, p.Journal.P50, p.Journal.P99, p.Journal.Max,
		p.MissedPushes, p.MissedEntries, p.DoubledEntries, p.NodeCPUPercent, p.WindowSeconds)
	if p.Killed != "" {
		fmt.Printf("timers: %s: %s killed %.0f ms before the first due time, seen dead after %.1f s, failover %.1f s; %d coupons had their grain or shard (%d shards) there: lateness p50 %.0f / p99 %.0f / max %.0f ms (target max ≤ failover + 1 s); the others p50 %.0f / p99 %.0f ms\n",
			p.Name, p.Killed, p.KilledBeforeMs, p.DetectedSeconds, p.FailoverSeconds, p.VictimCoupons, len(p.VictimShards), p.PushVictim.P50, p.PushVictim.P99, p.PushVictim.Max, p.PushOthers.P50, p.PushOthers.P99)
	}
}

// timersWatcher is one watcher session and when it first saw each coupon
// expired.
type timersWatcher struct {
	c          *client.Client
	mu         sync.Mutex
	expired    map[string]time.Time
	reconnects int
}

// timersRun runs one phase on n nodes (n = 3: one is killed).
func timersRun(ctx context.Context, f timersFlags, n int) (timersPhase, error) {
	t0 := time.Now()
	first := t0.Add(f.lead).Truncate(time.Millisecond)
	p := timersPhase{Nodes: n, Coupons: f.coupons, SpreadSeconds: f.spread.Seconds()}
	pin := ""
	if n == 1 {
		p.Name, pin = "one node", f.nodeCPUs
		p.Placement = "not pinned"
		if pin != "" {
			p.Placement = "the node pinned to CPUs " + pin + " (taskset)"
		}
	} else {
		// The nodes on every core, also when the bench itself runs
		// pinned (make bench), as in failover and drain.
		p.Name = fmt.Sprintf("%d nodes, one killed", n)
		pin = "0-" + strconv.Itoa(max(describeMachine("").CPUs, 1)-1) // not runtime.NumCPU: that is the bench's own affinity
		p.Placement = "the three nodes on all cores (taskset -c " + pin + "), the devdb and the load wherever the bench runs"
	}
	e, err := newBenchEnv(f.out, pin)
	if err != nil {
		return p, err
	}
	e.keepLogs, e.logLevel = f.keepLogs, f.logLevel
	defer e.close()
	if err := e.startDB(ctx); err != nil {
		return p, err
	}
	var nodes []*benchNode
	for i := range n {
		seed := ""
		if i > 0 {
			seed = nodes[0].cluster
		}
		nd, err := e.startMember(ctx, "n"+strconv.Itoa(i+1), seed)
		if err != nil {
			return p, err
		}
		nodes = append(nodes, nd)
	}
	if err := foWaitMembers(ctx, nodes, n, 30*time.Second); err != nil {
		return p, err
	}
	if err := timersShardsUp(ctx, nodes[0], 30*time.Second); err != nil {
		return p, err
	}
	tok, err := e.token("bench", couponmesh.RoleMerchant)
	if err != nil {
		return p, err
	}
	api := client.NewAPI(nodes[0].base(), tok)
	api.HTTPClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	if f.lead == 0 {
		if first, err = timersLead(ctx, api, f); err != nil {
			return p, err
		}
	}

	// The coupons, due evenly over the spread from first on.
	ids := make([]string, f.coupons)
	due := make(map[string]time.Time, f.coupons)
	for i := range ids {
		ids[i] = "tm" + strconv.Itoa(i)
		due[ids[i]] = couponmesh.ReminderTime(first.Add(time.Duration(int64(f.spread) * int64(i) / int64(f.coupons)))) // as the node keeps it
	}
	created := time.Now()
	if err := timersCreate(ctx, api, ids, f.createWorkers, due, first); err != nil {
		return p, err
	}
	fmt.Fprintf(os.Stderr, "timers: %s: %d coupons created in %.1f s; first due in %.1f s\n", p.Name, len(ids), time.Since(created).Seconds(), time.Until(first).Seconds())
	// Phase two: coupons without a time, one of which the victim will hold,
	// to measure the failover by probing it.
	var probes []string
	if n > 1 {
		for i := range 30 {
			probes = append(probes, "tp"+strconv.Itoa(i))
		}
		if err := createCouponsRetry(ctx, api, probes, 1); err != nil {
			return p, err
		}
	}

	// The watchers, on the nodes that stay.
	watchOn := nodes
	var victim *benchNode
	if n > 1 {
		victim = nodes[1]
		watchOn = slices.Concat(nodes[:1], nodes[2:])
	}
	ws, err := timersWatch(ctx, e, watchOn, ids, f.perWatcher)
	defer func() {
		for _, w := range ws {
			w.c.Close()
		}
	}()
	p.Watchers = len(ws)
	if err != nil {
		return p, err
	}
	if err := e.settle(ctx); err != nil {
		return p, err
	}
	p.SetupSeconds = time.Since(t0).Seconds()
	p.SpareSeconds = time.Until(first).Seconds()
	if p.SpareSeconds < 2 {
		return p, fmt.Errorf("the set-up took %.1f s, leaving %.1f s before the first due time: raise --lead (now %s)", p.SetupSeconds, p.SpareSeconds, f.lead)
	}

	// Phase two: the coupons whose grain or reminder shard the victim
	// holds, and a probe coupon it holds.
	victimShard, affected, probe := map[int]bool{}, map[string]bool{}, ""
	if victim != nil {
		held, err := foActors(ctx, victim)
		if err != nil {
			return p, err
		}
		for _, ident := range held {
			if s, ok := strings.CutPrefix(ident, actors.KindReminders+"/"); ok {
				k, _ := strconv.Atoi(s)
				victimShard[k] = true
				p.VictimShards = append(p.VictimShards, k)
			}
			if id, ok := strings.CutPrefix(ident, actors.KindCoupon+"/"); ok {
				affected[id] = true
				if probe == "" && slices.Contains(probes, id) {
					probe = id
				}
			}
		}
		slices.Sort(p.VictimShards)
		for _, id := range ids {
			if victimShard[timersShard(id)] {
				affected[id] = true
			}
			if affected[id] {
				p.VictimCoupons++
			}
		}
		if probe == "" {
			return p, fmt.Errorf("%s holds none of the %d probe coupons", victim.name, len(probes))
		}
	}

	live := nodes
	var detected, failover chan time.Duration
	if victim != nil {
		if err := sleepCtx(ctx, time.Until(first.Add(-f.killAt))); err != nil {
			return p, err
		}
		killed := time.Now()
		if err := victim.cmd.Process.Kill(); err != nil {
			return p, fmt.Errorf("kill %s: %w", victim.name, err)
		}
		_ = victim.cmd.Wait()
		p.Killed, p.KilledBeforeMs = victim.name, ms(first.Sub(killed))
		live = watchOn
		failover = make(chan time.Duration, 1)
		go func() {
			for ctx.Err() == nil && time.Since(killed) < time.Minute {
				pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
				err := adminCall(pctx, live[0].admin, http.MethodPost, "/admin/api/actors/coupon/"+probe+"/probe", nil, nil)
				cancel()
				if err == nil {
					failover <- time.Since(killed)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			failover <- -1
		}()
		detected = make(chan time.Duration, 1)
		go func() {
			for ctx.Err() == nil && time.Since(killed) < time.Minute {
				if foDead(ctx, live[0], victim.name) && foDead(ctx, live[len(live)-1], victim.name) {
					detected <- time.Since(killed)
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
			detected <- -1
		}()
	}

	profiled, metrics := timersProfile(ctx, e, f, live, first, n)
	defer profiled()

	// From just before the first due time until every push is in (or the
	// window is over): the nodes' CPU.
	if err := sleepCtx(ctx, time.Until(first.Add(-500*time.Millisecond))); err != nil {
		return p, err
	}
	winStart := time.Now()
	cpu0 := make([]time.Duration, len(live))
	for i, nd := range live {
		cpu0[i] = cpuTime(nd.cmd.Process.Pid)
	}
	deadline := first.Add(f.spread + f.window)
	seen := func() int {
		k := 0
		for _, w := range ws {
			w.mu.Lock()
			k += len(w.expired)
			w.mu.Unlock()
		}
		return k
	}
	for seen() < len(ids) && time.Now().Before(deadline) {
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return p, err
		}
	}
	win := time.Since(winStart)
	metrics()
	p.WindowSeconds = win.Seconds()
	p.NodeCPUPercent = map[string]float64{}
	for i, nd := range live {
		p.NodeCPUPercent[nd.name] = float64(cpuTime(nd.cmd.Process.Pid)-cpu0[i]) / float64(win) * 100
	}
	if detected != nil {
		p.DetectedSeconds, p.FailoverSeconds = (<-detected).Seconds(), (<-failover).Seconds()
	}

	// Pushes: the first expired state each coupon showed a watcher.
	var all, vict, others []time.Duration
	for _, w := range ws {
		w.mu.Lock()
		p.Reconnects += w.reconnects
		for id, at := range w.expired {
			l := at.Sub(due[id])
			all = append(all, l)
			if affected[id] {
				vict = append(vict, l)
			} else {
				others = append(others, l)
			}
		}
		w.mu.Unlock()
	}
	p.MissedPushes = len(ids) - len(all)
	p.Push = lateStats(all)
	if victim != nil {
		pv, po := lateStats(vict), lateStats(others)
		p.PushVictim, p.PushOthers = &pv, &po
	}

	profiled() // the journal reads below are the bench's, not the burst's
	// The journal: one expired entry per coupon, when.
	if err := sleepCtx(ctx, 2*time.Second); err != nil { // a doubled wake-up would come about now
		return p, err
	}
	entries, err := timersJournal(ctx, e.db, ids)
	if err != nil {
		return p, err
	}
	var jl []time.Duration
	for _, id := range ids {
		ats := entries[coupon.Entity(id)]
		switch {
		case len(ats) == 0:
			p.MissedEntries++
			continue
		case len(ats) > 1:
			p.DoubledEntries++
		}
		jl = append(jl, ats[0].Sub(due[id]))
	}
	p.Journal = lateStats(jl)
	return p, nil
}

// timersProfile starts the profiles of --profile-dir over the burst of the
// phase on n nodes (live: the nodes that stay); wait waits for them, and
// metrics saves the nodes' /metrics (call it when the pushes are in).
func timersProfile(ctx context.Context, e *benchEnv, f timersFlags, live []*benchNode, first time.Time, n int) (wait, metrics func()) {
	if f.profileDir == "" {
		return func() {}, func() {}
	}
	if err := os.MkdirAll(f.profileDir, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "timers: profiles: %v\n", err)
		return func() {}, func() {}
	}
	d := f.spread + 8*time.Second
	var wg sync.WaitGroup
	report := func(err error) {
		if err != nil {
			fmt.Fprintf(os.Stderr, "timers: profile: %v\n", err)
		}
	}
	path := func(what string) string {
		return filepath.Join(f.profileDir, fmt.Sprintf("timers-%dnodes-%s", n, what))
	}
	wg.Go(func() {
		if sleepCtx(ctx, time.Until(first.Add(-time.Second))) == nil {
			report(e.profileDB(ctx, d, path("devdb.cpu.pprof")))
		}
	})
	for _, nd := range live {
		wg.Go(func() {
			if sleepCtx(ctx, time.Until(first.Add(-time.Second))) == nil {
				report(profileCPU(ctx, nd, d, path(nd.name+".cpu.pprof")))
			}
		})
		wg.Go(func() {
			if sleepCtx(ctx, time.Until(first.Add(time.Second))) == nil {
				report(fetchProfile(ctx, nd, "goroutine?debug=1", path(nd.name+".goroutines.txt")))
			}
		})
	}
	fmt.Fprintf(os.Stderr, "timers: profiles of the burst in %s\n", f.profileDir)
	return wg.Wait, func() {
		for _, nd := range live {
			report(fetchAdmin(ctx, nd, "/metrics", path(nd.name+".metrics.txt")))
		}
	}
}

func timersShard(id string) int { return couponmesh.Reminder{Target: coupon.Entity(id)}.Shard() }

// timersShardsUp waits until every reminder shard answers through node n.
func timersShardsUp(ctx context.Context, n *benchNode, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		var res RemindersInfo
		err := adminCall(ctx, n.admin, http.MethodGet, "/admin/api/reminders", nil, &res)
		if err == nil {
			down := 0
			for _, s := range res.Shards {
				if s.Error != "" {
					down++
				}
			}
			if down == 0 && len(res.Shards) == couponmesh.ReminderShards {
				return nil
			}
			err = fmt.Errorf("%d shards did not answer", down)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("reminder shards not up within %s: %w", within, err)
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// timersCreate creates the coupons (quantity 1, expiring at due[id]); it
// stops early when, at the pace so far, the last create would come less
// than 10 s before firstDue.
func timersCreate(ctx context.Context, api *client.API, ids []string, workers int, due map[string]time.Time, firstDue time.Time) error {
	start := time.Now()
	err := createCouponSpecs(ctx, api, ids, workers, func(id string) couponmesh.CouponSpec {
		title, qty, exp := "Timed coupon "+id, 1, due[id]
		return couponmesh.CouponSpec{ID: id, Title: &title, Quantity: &qty, ExpiresAt: &exp}
	}, func(i int) error {
		if i < 200 {
			return nil
		}
		if end := start.Add(time.Since(start) * time.Duration(len(ids)) / time.Duration(i)); end.After(firstDue.Add(-10 * time.Second)) {
			return fmt.Errorf("%d of %d coupons created in %.1f s: at this pace the last would come %.0f s before the first due time: raise --lead",
				i, len(ids), time.Since(start).Seconds(), firstDue.Sub(end).Seconds())
		}
		return nil
	})
	if err != nil {
		return err
	}
	if time.Until(firstDue) < 10*time.Second {
		return fmt.Errorf("the coupons were created %.1f s before the first due time, too late to subscribe: raise --lead", time.Until(firstDue).Seconds())
	}
	return ctx.Err()
}

// timersWatch connects one reconnecting watcher per perWatcher coupons,
// spread over nodes, and subscribes each to its coupons (in chunks that fit
// a client message).
func timersWatch(ctx context.Context, e *benchEnv, nodes []*benchNode, ids []string, perWatcher int) ([]*timersWatcher, error) {
	var ws []*timersWatcher
	for k := 0; k*perWatcher < len(ids); k++ {
		mine := ids[k*perWatcher : min((k+1)*perWatcher, len(ids))]
		w := &timersWatcher{expired: map[string]time.Time{}}
		home := nodes[k%len(nodes)]
		var others []string
		for _, nd := range nodes {
			if nd != home {
				others = append(others, nd.ws())
			}
		}
		user := "watcher" + strconv.Itoa(k)
		var err error
		w.c, err = client.Dial(ctx, home.ws(), client.Options{
			Reconnect: true,
			Addresses: others,
			Token:     func(context.Context) (string, error) { return e.token(user, couponmesh.RoleShopper) },
			OnCoupon: func(c couponmesh.Coupon) {
				if c.Status != couponmesh.StatusExpired {
					return
				}
				now := time.Now()
				w.mu.Lock()
				if _, ok := w.expired[c.ID]; !ok {
					w.expired[c.ID] = now
				}
				w.mu.Unlock()
			},
			OnState: func(st client.State) {
				if st == client.StateReconnecting {
					w.mu.Lock()
					w.reconnects++
					w.mu.Unlock()
				}
			},
		})
		if err != nil {
			return ws, fmt.Errorf("watcher %s: %w", user, err)
		}
		ws = append(ws, w)
		for c := range slices.Chunk(mine, 400) {
			subs := make([]client.Sub, len(c))
			for i, id := range c {
				subs[i] = client.Sub{ID: id}
			}
			sctx, cancel := context.WithTimeout(ctx, time.Minute)
			_, err := w.c.Subscribe(sctx, subs)
			cancel()
			if err != nil {
				return ws, fmt.Errorf("watcher %s: subscribe: %w", user, err)
			}
		}
	}
	return ws, nil
}

// timersJournal reads the expired entries of the coupons ids from the
// database, through persistence/mongodb: the At of each, by coupon entity.
func timersJournal(ctx context.Context, uri string, ids []string) (map[string][]time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute) // the database may still be busy with the burst
	defer cancel()
	st, err := openStore(ctx, uri)
	if err != nil {
		return nil, err
	}
	defer st.Close(context.Background())
	var mu sync.Mutex
	out := map[string][]time.Time{}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, id := range ids {
		g.Go(func() error {
			// The database may still be busy with the burst (deleting the
			// woken reminders): a read that timed out is tried again.
			entries, err := backoff.Retry(gctx, func() ([]couponmesh.Entry, error) {
				es, err := journalEntries(gctx, st, coupon.Entity(id))
				if err != nil && !errors.Is(err, couponmesh.ErrUnavailable) {
					return nil, backoff.Permanent(err)
				}
				return es, err
			}, backoff.WithBackOff(backoff.NewExponentialBackOff()), backoff.WithMaxElapsedTime(time.Minute))
			if err != nil {
				return fmt.Errorf("journal of %s: %w", id, err)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, e := range entries {
				if e.Type == coupon.EntryExpired {
					out[e.Entity] = append(out[e.Entity], e.At)
				}
			}
			return nil
		})
	}
	return out, g.Wait()
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// timersCalibrate is how many coupons (without times) timersLead creates.
const timersCalibrate = 300

// timersLead picks the first due time when --lead is 0: six times the time
// the coupons would take to create at the pace of timersCalibrate coupons
// created just now, plus a minute for subscribing and settling. Six: the
// pace drops as the collections grow (on a busy machine 300 coupons took
// 0.9 s, 8,395 then 93.8 s, 3.7 times slower each). It waits less than a
// fixed lead long enough for a busy machine (300 s was the default) and
// still stops the run when the pace drops further (timersCreate).
func timersLead(ctx context.Context, api *client.API, f timersFlags) (time.Time, error) {
	ids := make([]string, timersCalibrate)
	for i := range ids {
		ids[i] = "tcal" + strconv.Itoa(i)
	}
	start := time.Now()
	err := createCouponSpecs(ctx, api, ids, f.createWorkers, func(id string) couponmesh.CouponSpec {
		title, qty := "Calibration coupon "+id, 1
		return couponmesh.CouponSpec{ID: id, Title: &title, Quantity: &qty}
	}, nil)
	if err != nil {
		return time.Time{}, err
	}
	create := time.Since(start) * time.Duration(f.coupons) / timersCalibrate
	lead := 6*create + time.Minute
	fmt.Fprintf(os.Stderr, "timers: %d coupons created in %.1f s: first due in %.0f s\n", timersCalibrate, time.Since(start).Seconds(), lead.Seconds())
	return time.Now().Add(lead).Truncate(time.Millisecond), nil
}
