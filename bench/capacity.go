package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/couponmesh/couponmesh/client"
)

// memPoint is the node's RSS with Sessions open.
type memPoint struct {
	Sessions int   `json:"sessions"`
	RSSKiB   int64 `json:"rssKiB"`
}

// capacityResult is the JSON of the capacity scenario.
type capacityResult struct {
	Scenario        string        `json:"scenario"`
	Time            time.Time     `json:"time"`
	Machine         machine       `json:"machine"`
	Sessions        int           `json:"sessions"`
	Coupons         int           `json:"coupons"`
	Workers         int           `json:"workers"`
	Sources         int           `json:"sources"`
	Failed          int           `json:"failed"`
	FirstError      string        `json:"firstError,omitempty"`
	SetupSeconds    float64       `json:"setupSeconds"`
	SessionsPerSec  float64       `json:"sessionsPerSec"`
	RSSBeforeKiB    int64         `json:"rssBeforeKiB"`
	RSSAfterKiB     int64         `json:"rssAfterKiB"`
	Memory          []memPoint    `json:"memory"` // RSS while the sessions were being opened
	RSSPerSessionKB float64       `json:"rssPerSessionKiB"`
	TargetRate      float64       `json:"targetSessionsPerSec"`
	TargetRSSKiB    float64       `json:"targetRssPerSessionKiB"`
	NodeCPUPercent  float64       `json:"nodeCpuPercentDuringSetup"`
	BenchCPUPercent float64       `json:"benchCpuPercentDuringSetup"`
	Figures         []benchFigure `json:"figures"`
}

// benchCapacity: N idle sessions, each authenticated as its own shopper
// and subscribed to one of N/10 coupons; the connect+auth+subscribe rate
// and the node's RSS per session.
func benchCapacity(ctx context.Context, args []string) (err error) {
	fs := flag.NewFlagSet("bench capacity", flag.ContinueOnError)
	var f benchFlags
	f.register(fs)
	n := fs.Int("sessions", 5000, "sessions to open (each process may hold 20,000 open files)")
	per := fs.Int("per-coupon", 10, "sessions per coupon")
	settle := fs.Duration("settle", 3*time.Second, "idle time before the RSS is read again")
	profile := fs.String("profile", "", "write a heap profile of the node with the sessions open to this file")
	cpuProfile := fs.String("cpu-profile", "", "write a CPU profile of the node over the first 3 s of the setup to this file")
	sdk := fs.Bool("sdk", false, "sessions use the Go SDK instead of raw protocol v1 (auth, subscribe, read)")
	sample := fs.Duration("sample", 250*time.Millisecond, "read the node's RSS this often while the sessions open (raw sessions only; the plot)")
	svg := fs.String("svg", "", "also write an SVG plot of the node's RSS against the sessions to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n <= 0 || *per <= 0 || *sample <= 0 {
		return errors.New("bench capacity: --sessions, --per-coupon and --sample must be positive")
	}
	var memory []memPoint
	mach := describeMachine(f.nodeCPUs)
	e, node, api, err := setupOneNode(ctx, f)
	if e != nil {
		defer e.close()
	}
	if err != nil {
		return err
	}
	ncoupons := (*n + *per - 1) / *per
	ids, err := createSettled(ctx, e, api, "cap", ncoupons, 1000000)
	if err != nil {
		return err
	}
	before, err := rssKiB(node.cmd.Process.Pid)
	if err != nil {
		return err
	}
	n0, b0 := cpuTime(node.cmd.Process.Pid), cpuTime(os.Getpid())
	if *cpuProfile != "" {
		go func() {
			if err := profileCPU(ctx, node, 3*time.Second, *cpuProfile); err != nil {
				fmt.Fprintf(os.Stderr, "bench capacity: profile: %v\n", err)
			}
		}()
	}
	var (
		took     time.Duration
		failed   int
		firstErr error
	)
	if *sdk {
		var clients []*client.Client
		clients, took, failed, firstErr = connectAll(ctx, e, node, f, *n, func(i int) string { return ids[i / *per] }, nil)
		defer closeAll(clients)
	} else {
		// All at once (the rate), the node's RSS read every --sample meanwhile
		// (the plot of memory against sessions).
		var raws []*rawFollower
		defer func() { closeRaw(raws) }()
		noPush := func(int) func(int64, int64) { return func(int64, int64) {} }
		var opened atomic.Int64
		stop, sampled := make(chan struct{}), make(chan []memPoint)
		go func() { sampled <- sampleRSS(node.cmd.Process.Pid, &opened, *sample, stop) }()
		raws, took, failed, firstErr = connectRaw(ctx, e, node, f, 0, *n, func(i int) string { return ids[i / *per] }, noPush, &opened)
		close(stop)
		memory = <-sampled
		if rss, err := rssKiB(node.cmd.Process.Pid); err == nil {
			memory = append(memory, memPoint{Sessions: int(opened.Load()), RSSKiB: rss})
		}
	}
	nodeCPU := 100 * (cpuTime(node.cmd.Process.Pid) - n0).Seconds() / took.Seconds()
	benchCPU := 100 * (cpuTime(os.Getpid()) - b0).Seconds() / took.Seconds()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	time.Sleep(*settle)
	after, err := rssKiB(node.cmd.Process.Pid)
	if err != nil {
		return err
	}
	if *profile != "" {
		if err := fetchProfile(ctx, node, "heap?gc=1", *profile); err != nil {
			return fmt.Errorf("heap profile: %w", err)
		}
	}
	ok := *n - failed
	res := capacityResult{
		Scenario: "capacity", Time: time.Now().UTC(), Machine: mach,
		Sessions: *n, Coupons: ncoupons, Workers: f.workers, Sources: f.sources, Failed: failed,
		SetupSeconds: took.Seconds(), SessionsPerSec: float64(ok) / took.Seconds(),
		RSSBeforeKiB: before, RSSAfterKiB: after, TargetRate: 3000, TargetRSSKiB: 32,
		NodeCPUPercent: nodeCPU, BenchCPUPercent: benchCPU,
	}
	if ok > 0 {
		res.RSSPerSessionKB = float64(after-before) / float64(ok)
	}
	if firstErr != nil {
		res.FirstError = firstErr.Error()
	}
	res.Figures = []benchFigure{
		atLeast("connect + auth + subscribe", res.SessionsPerSec, "sessions/s", 3000),
		atMost("RSS per idle authenticated, subscribed session", res.RSSPerSessionKB, "KiB", 32),
		{What: "idle sessions held on one node", Value: float64(ok), Unit: "sessions"},
	}
	res.Memory = append([]memPoint{{Sessions: 0, RSSKiB: before}}, memory...)
	if *svg != "" {
		if err := plotMemory(*svg, res); err != nil {
			return fmt.Errorf("plot: %w", err)
		}
	}
	path, err := e.writeResult("capacity", res)
	if err != nil {
		return err
	}
	fmt.Printf("capacity: %d sessions (%d failed) on %d coupons: %.0f sessions/s connect+auth+subscribe (target ≥ 3,000/s); node RSS %.1f KiB per idle session (target ≤ 32 KiB); CPU during setup node %.0f%% bench %.0f%% [%s]\n",
		ok, failed, ncoupons, res.SessionsPerSec, res.RSSPerSessionKB, nodeCPU, benchCPU, path)
	if firstErr != nil {
		return fmt.Errorf("%d sessions failed, first: %w", failed, firstErr)
	}
	return nil
}

// sampleRSS reads pid's RSS every interval until stop is closed, beside
// the number of sessions opened so far.
func sampleRSS(pid int, opened *atomic.Int64, interval time.Duration, stop <-chan struct{}) []memPoint {
	var out []memPoint
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return out
		case <-t.C:
			if rss, err := rssKiB(pid); err == nil {
				out = append(out, memPoint{Sessions: int(opened.Load()), RSSKiB: rss})
			}
		}
	}
}
