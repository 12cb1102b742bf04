package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
)

// fanoutRate is the result of one update rate.
type fanoutRate struct {
	Rate            float64 `json:"updatesPerSec"`
	Updates         int     `json:"updates"`
	UpdateErrors    int     `json:"updateErrors"`
	FirstUpdateErr  string  `json:"firstUpdateError,omitempty"`
	NodeCPUPercent  float64 `json:"nodeCpuPercent"`
	BenchCPUPercent float64 `json:"benchCpuPercent"`
	Deliveries      int64   `json:"deliveries"`
	Expected        int64   `json:"expected"`  // updates × followers
	Conflated       int64   `json:"conflated"` // expected but skipped: a newer version was queued (docs/PROTOCOL.md)
	Drops           int64   `json:"drops"`     // followers that never got the rate's last version (or a newer one)
	PushesPerSec    float64 `json:"deliveredPushesPerSec"`
	P50ms           float64 `json:"p50ms"`
	P95ms           float64 `json:"p95ms"`
	P99ms           float64 `json:"p99ms"`
	MaxMs           float64 `json:"maxMs"`
	LastP50ms       float64 `json:"lastDeliveryP50ms"`
	LastP99ms       float64 `json:"lastDeliveryP99ms"`
	LastMaxMs       float64 `json:"lastDeliveryMaxMs"`
	SentLastP99ms   float64 `json:"sentLastDeliveryP99ms"` // from the update request sent
	UpdateReplyP50  float64 `json:"updateReplyP50ms"`
	UpdateReplyP99  float64 `json:"updateReplyP99ms"`
}

// fanoutResult is the JSON of the fanout scenario.
type fanoutResult struct {
	Scenario     string        `json:"scenario"`
	Time         time.Time     `json:"time"`
	Machine      machine       `json:"machine"`
	Followers    int           `json:"followers"`
	Connected    int           `json:"connected"`
	Duration     string        `json:"durationPerRate"`
	LatencyFrom  string        `json:"latencyFrom"`
	Rates        []fanoutRate  `json:"rates"`
	TargetP99ms  float64       `json:"targetLastDeliveryP99ms"`
	SetupSeconds float64       `json:"setupSeconds"`
	Figures      []benchFigure `json:"figures"`
}

// delivery is one push received: the coupon version and when.
type delivery struct {
	version int64
	at      int64 // unix ns
	journal int64 // the change's updatedAt, unix ns (the node's clock: same machine)
}

// benchFanout: N sessions follow one coupon; the merchant updates it at
// fixed rates through the HTTP API. The latency of a delivery is its
// receive time minus the time the bench sent the update request (so it
// includes the HTTP request, the durable commit, and the fan-out).
// fanoutFlags are the flags of bench fanout.
type fanoutFlags struct {
	benchFlags
	n            int
	rates        []float64
	dur, grace   time.Duration
	svg, profile string
	sdk          bool
}

func parseFanoutFlags(args []string) (fanoutFlags, error) {
	var f fanoutFlags
	fs := flag.NewFlagSet("bench fanout", flag.ContinueOnError)
	f.register(fs)
	fs.IntVar(&f.n, "followers", 10000, "sessions subscribed to the coupon")
	ratesArg := fs.String("rates", "1,5,20", "update rates to run, one after the other (updates/s)")
	fs.DurationVar(&f.dur, "duration", 10*time.Second, "how long each rate runs")
	fs.DurationVar(&f.grace, "grace", 3*time.Second, "wait after the last update of a rate for late deliveries")
	fs.StringVar(&f.svg, "svg", "", "also write an SVG plot of the latency percentiles against the rate to this file")
	fs.StringVar(&f.profile, "profile", "", "write a CPU profile of the node during the first rate to this file")
	fs.BoolVar(&f.sdk, "sdk", false, "followers use the Go SDK (decodes every push in full) instead of raw protocol v1 readers")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	var err error
	if f.rates, err = parseRates(*ratesArg, 1000); err != nil {
		return f, fmt.Errorf("bench fanout: %w", err)
	}
	if f.n <= 0 || f.dur <= 0 {
		return f, errors.New("bench fanout: --followers and --duration must be positive")
	}
	return f, nil
}

// fanoutSent is one update answered ok, at which rate.
type fanoutSent struct {
	version  int64
	at, done int64
	rate     int
}

// fanoutRun is one fanout run: the followers' deliveries and the updates
// sent, by rate.
type fanoutRun struct {
	f    fanoutFlags
	e    *benchEnv
	node *benchNode
	api  *client.API
	id   string // the coupon followed

	// Each follower appends to its own slice (one push at a time per
	// follower); the slices are read only once the followers are closed.
	recs  [][]delivery
	alive []bool

	smu    sync.Mutex
	sents  []fanoutSent
	uerrs  []int     // update errors by rate
	ufirst []string  // the first one's message
	ncpu   []float64 // node CPU % by rate
	bcpu   []float64 // bench CPU % by rate
	seq    int
}

func benchFanout(ctx context.Context, args []string) (err error) {
	f, err := parseFanoutFlags(args)
	if err != nil {
		return err
	}
	mach := describeMachine(f.nodeCPUs)
	e, node, api, err := setupOneNode(ctx, f.benchFlags)
	if e != nil {
		defer e.close()
	}
	if err != nil {
		return err
	}
	ids, err := createSettled(ctx, e, api, "fan", 1, 1000000)
	if err != nil {
		return err
	}
	r := &fanoutRun{f: f, e: e, node: node, api: api, id: ids[0]}
	closeFollowers, took, failed, firstErr := r.connect(ctx)
	closed := false
	defer func() {
		if !closed {
			closeFollowers()
		}
	}()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if firstErr != nil {
		return fmt.Errorf("fanout: %d of %d sessions failed, first: %w", failed, f.n, firstErr)
	}
	res := fanoutResult{
		Scenario: "fanout", Time: time.Now().UTC(), Machine: mach,
		Followers: f.n, Connected: f.n - failed, Duration: f.dur.String(), TargetP99ms: 150, SetupSeconds: took.Seconds(),
		LatencyFrom: "the change's updatedAt (journaled by the node just before its commit; same clock), so it includes the commit and the fan-out; sentLast* fields are from the bench sending the HTTP update request",
	}
	r.uerrs, r.ufirst = make([]int, len(f.rates)), make([]string, len(f.rates))
	r.ncpu, r.bcpu = make([]float64, len(f.rates)), make([]float64, len(f.rates))
	for ri := range f.rates {
		if err := r.runRate(ctx, ri); err != nil {
			return err
		}
	}
	closeFollowers()
	closed = true
	res.Rates = r.tally(int64(res.Connected))
	res.Figures = fanoutFigures(res)
	path, err := e.writeResult("fanout", res)
	if err != nil {
		return err
	}
	if f.svg != "" {
		if err := plotFanout(f.svg, res); err != nil {
			return fmt.Errorf("plot: %w", err)
		}
	}
	for _, fr := range res.Rates {
		fmt.Printf("fanout: %d followers, %g updates/s × %d: %.0f pushes/s, latency p50 %.1f p95 %.1f p99 %.1f max %.1f ms; last delivery per update p99 %.1f ms (target ≤ 150 ms; %.1f ms from the request sent); conflated %d; followers short of the last version %d; update errors %d; CPU node %.0f%% bench %.0f%% [%s]\n",
			res.Connected, fr.Rate, fr.Updates, fr.PushesPerSec, fr.P50ms, fr.P95ms, fr.P99ms, fr.MaxMs, fr.LastP99ms, fr.SentLastP99ms, fr.Conflated, fr.Drops, fr.UpdateErrors, fr.NodeCPUPercent, fr.BenchCPUPercent, path)
		if fr.FirstUpdateErr != "" {
			fmt.Printf("fanout: first update error at %g/s: %s\n", fr.Rate, fr.FirstUpdateErr)
		}
	}
	return nil
}

// connect subscribes the followers to the coupon, through the Go SDK with
// --sdk, else as raw protocol v1 readers. It returns what closes them, the
// wall time, the sessions that failed and the first error.
func (r *fanoutRun) connect(ctx context.Context) (closeFollowers func(), took time.Duration, failed int, firstErr error) {
	n := r.f.n
	r.recs, r.alive = make([][]delivery, n), make([]bool, n)
	record := func(i int) func(version, updated int64) {
		return func(version, updated int64) {
			r.recs[i] = append(r.recs[i], delivery{version, time.Now().UnixNano(), updated})
		}
	}
	coupon := func(int) string { return r.id }
	if r.f.sdk {
		var clients []*client.Client
		clients, took, failed, firstErr = connectAll(ctx, r.e, r.node, r.f.benchFlags, n, coupon,
			func(i int) func(couponmesh.Coupon) {
				rec := record(i)
				return func(c couponmesh.Coupon) { rec(c.Version, c.UpdatedAt.UnixNano()) }
			})
		for i, c := range clients {
			r.alive[i] = c != nil
		}
		return func() { closeAll(clients) }, took, failed, firstErr
	}
	var raws []*rawFollower
	raws, took, failed, firstErr = connectRaw(ctx, r.e, r.node, r.f.benchFlags, 0, n, coupon, record, nil)
	for i, rf := range raws {
		r.alive[i] = rf != nil
	}
	return func() { closeRaw(raws) }, took, failed, firstErr
}

// runRate sends the updates of rate number ri for --duration, waits
// --grace for late deliveries, and records the CPU the node and the bench
// used meanwhile.
func (r *fanoutRun) runRate(ctx context.Context, ri int) error {
	rate, node := r.f.rates[ri], r.node
	interval := time.Duration(float64(time.Second) / rate)
	count := max(int(r.f.dur.Seconds()*rate), 1)
	w0, n0, b0 := time.Now(), cpuTime(node.cmd.Process.Pid), cpuTime(os.Getpid())
	if r.f.profile != "" && ri == 0 {
		go func() {
			if err := profileCPU(ctx, node, r.f.dur, r.f.profile); err != nil {
				fmt.Fprintf(os.Stderr, "bench fanout: profile: %v\n", err)
			}
		}()
	}
	var uwg sync.WaitGroup
	tick := time.NewTicker(interval)
	for range count {
		r.seq++
		title := "Bench update " + strconv.Itoa(r.seq)
		uwg.Go(func() {
			t0 := time.Now()
			uctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			c, err := r.api.UpdateCoupon(uctx, r.id, couponmesh.CouponSpec{Title: &title})
			t1 := time.Now()
			r.smu.Lock()
			defer r.smu.Unlock()
			if err != nil {
				if r.uerrs[ri] == 0 {
					r.ufirst[ri] = err.Error()
				}
				r.uerrs[ri]++
				return
			}
			r.sents = append(r.sents, fanoutSent{c.Version, t0.UnixNano(), t1.UnixNano(), ri})
		})
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	tick.Stop()
	uwg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	time.Sleep(r.f.grace)
	wall := time.Since(w0).Seconds()
	r.ncpu[ri] = 100 * (cpuTime(node.cmd.Process.Pid) - n0).Seconds() / wall
	r.bcpu[ri] = 100 * (cpuTime(os.Getpid()) - b0).Seconds() / wall
	return nil
}

// fanoutAcc gathers the deliveries of one rate.
type fanoutAcc struct {
	lat     []time.Duration
	last    map[int64]time.Duration // by version: the last delivery, from the journal time
	sent    map[int64]time.Duration // by version: the last delivery, from the request sent
	firstAt int64
	lastAt  int64
	n       int64
	drops   int64 // followers short of the rate's last version
}

// tally matches the followers' deliveries (once they are closed) with the
// updates sent and returns the figures of each rate; connected is the
// number of followers that subscribed.
func (r *fanoutRun) tally(connected int64) []fanoutRate {
	byVersion := make(map[int64]fanoutSent, len(r.sents))
	for _, s := range r.sents {
		byVersion[s.version] = s
	}
	accs := make([]fanoutAcc, len(r.f.rates))
	for ri := range accs {
		accs[ri].last = make(map[int64]time.Duration)
		accs[ri].sent = make(map[int64]time.Duration)
	}
	// The last version of each rate: every follower must get it (or a
	// newer one); the versions before it may be conflated.
	lastOfRate := make([]int64, len(r.f.rates))
	for _, s := range r.sents {
		lastOfRate[s.rate] = max(lastOfRate[s.rate], s.version)
	}
	for i, rs := range r.recs {
		if !r.alive[i] {
			continue
		}
		var newest int64
		for _, d := range rs {
			newest = max(newest, d.version)
		}
		for ri, last := range lastOfRate {
			if last > 0 && newest < last {
				accs[ri].drops++
			}
		}
		for _, d := range rs {
			s, ok := byVersion[d.version]
			if !ok {
				continue // the snapshot of the subscribe, or a failed update
			}
			a := &accs[s.rate]
			l := time.Duration(d.at - d.journal)
			a.lat = append(a.lat, l)
			a.last[d.version] = max(a.last[d.version], l)
			a.sent[d.version] = max(a.sent[d.version], time.Duration(d.at-s.at))
			a.n++
			if a.firstAt == 0 || s.at < a.firstAt {
				a.firstAt = s.at
			}
			a.lastAt = max(a.lastAt, d.at)
		}
	}
	var out []fanoutRate
	for ri, rate := range r.f.rates {
		out = append(out, r.rateFigures(ri, rate, accs[ri], connected))
	}
	return out
}

// rateFigures computes the figures of rate number ri from its deliveries.
func (r *fanoutRun) rateFigures(ri int, rate float64, a fanoutAcc, connected int64) fanoutRate {
	var updates int64
	var replies []time.Duration
	for _, s := range r.sents {
		if s.rate == ri {
			updates++
			replies = append(replies, time.Duration(s.done-s.at))
		}
	}
	slices.Sort(a.lat)
	slices.Sort(replies)
	lasts := slices.Sorted(maps.Values(a.last))
	sentLasts := slices.Sorted(maps.Values(a.sent))
	fr := fanoutRate{
		Rate: rate, Updates: int(updates), UpdateErrors: r.uerrs[ri], FirstUpdateErr: r.ufirst[ri],
		NodeCPUPercent: r.ncpu[ri], BenchCPUPercent: r.bcpu[ri], Deliveries: a.n, Expected: updates * connected,
		P50ms: ms(quantile(a.lat, 0.50)), P95ms: ms(quantile(a.lat, 0.95)), P99ms: ms(quantile(a.lat, 0.99)), MaxMs: ms(quantile(a.lat, 1)),
		LastP50ms: ms(quantile(lasts, 0.5)), LastP99ms: ms(quantile(lasts, 0.99)), LastMaxMs: ms(quantile(lasts, 1)),
		SentLastP99ms:  ms(quantile(sentLasts, 0.99)),
		UpdateReplyP50: ms(quantile(replies, 0.5)), UpdateReplyP99: ms(quantile(replies, 0.99)),
	}
	fr.Conflated, fr.Drops = fr.Expected-fr.Deliveries, a.drops
	if a.lastAt > a.firstAt {
		fr.PushesPerSec = float64(a.n) / (float64(a.lastAt-a.firstAt) / 1e9)
	}
	return fr
}

// fanoutFigures: the last delivery p99 at the lowest rate against the
// latency target, the highest delivered rate against the saturation target,
// and the drops (followers that never reached a rate's last version, summed
// over the rates; conflated versions are not drops).
func fanoutFigures(res fanoutResult) []benchFigure {
	if len(res.Rates) == 0 {
		return nil
	}
	low, best := res.Rates[0], res.Rates[0]
	var drops int64
	for _, r := range res.Rates {
		if r.Rate < low.Rate {
			low = r
		}
		if r.PushesPerSec > best.PushesPerSec {
			best = r
		}
		drops += r.Drops
	}
	lat := atMost(fmt.Sprintf("fan-out to %s followers: update's commit to last delivery, p99", groupThousands(int64(res.Connected))), low.LastP99ms, "ms", res.TargetP99ms)
	lat.Note = fmt.Sprintf("at %g update/s", low.Rate)
	sat := atLeast("fan-out at saturation", best.PushesPerSec, "deliveries/s", 400000)
	sat.Note = fmt.Sprintf("best of the rates, at %g updates/s", best.Rate)
	return []benchFigure{lat, sat, atMost("fan-out followers short of the last version", float64(drops), "followers", 0)}
}
