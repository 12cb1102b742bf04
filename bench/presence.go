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
	"github.com/couponmesh/couponmesh/client"
)

// presencePhase is one presence load measured once with presence on and
// once with it off (actors.presence_off), each on a fresh node.
type presencePhase struct {
	Name     string `json:"name"` // fanout: many watchers of one coupon; many: many coupons, one watcher each
	Presence bool   `json:"presence"`
	Sessions int    `json:"sessions"`
	Coupons  int    `json:"coupons"`
	Watchers int    `json:"watchers"` // (session, coupon) pairs
	Failed   int    `json:"failedSessions"`
	// JoinSeconds: connect, auth and subscribe of every session.
	JoinSeconds float64 `json:"joinSeconds"`
	// ExactAfterSeconds: from the last join until every watcher's last
	// presence push told the exact count (presence on; -1: not within the
	// deadline).
	ExactAfterSeconds float64 `json:"exactAfterSeconds"`
	WindowSeconds     float64 `json:"windowSeconds"` // from the first join to the end of the measurement
	NodeCPUSeconds    float64 `json:"nodeCpuSeconds"`
	// Presence messages in the window: hub → grain refs (registrations,
	// renewals, reports, unregistrations), as sent by the hub and as
	// received by the grains, and grain → hub presence pushes.
	HubRefs        float64 `json:"hubRefs"`
	HubReports     float64 `json:"hubReports"` // of HubRefs, the reports: sent only because a count changed
	GrainReceived  float64 `json:"grainReceived"`
	PresencePushes float64 `json:"presencePushes"`
	// MessagesPerSec: (hub reports + presence pushes) / window, the
	// messages presence adds; registrations and renewals are sent without
	// presence too and only carry the count.
	MessagesPerSec   float64 `json:"presenceMessagesPerSec"`
	PresenceFrames   int64   `json:"presenceFramesToClients"`
	ExtraCPUPercent  float64 `json:"extraCpuPercent,omitempty"`          // on against off, same phase
	ExtraCPUSeconds  float64 `json:"extraCpuSeconds,omitempty"`          // on minus off
	ExtraCPUPerJoinU float64 `json:"extraCpuPerWatcherMicros,omitempty"` // (on - off) / watchers
}

type presenceResult struct {
	Scenario string          `json:"scenario"`
	Time     time.Time       `json:"time"`
	Machine  machine         `json:"machine"`
	Phases   []presencePhase `json:"phases"`
	Figures  []benchFigure   `json:"figures"`
}

// benchPresence measures presence (issue 19) on one node: --watchers
// sessions joining one coupon as fast as they can (fanout), and --coupons
// coupons with one watcher each, --per-session coupons per session (many).
// Each phase runs on a fresh node with presence on, then on another fresh
// node with presence off, the coupons active in the node before the
// measurement starts (a get of each). It reports the presence messages
// per second between the hub and the grains, how long after the last join
// every watcher's last presence push was exact, and the node's extra CPU
// time with presence on.
func benchPresence(ctx context.Context, args []string) (err error) {
	fs := flag.NewFlagSet("bench presence", flag.ContinueOnError)
	var f benchFlags
	f.register(fs)
	watchers := fs.Int("watchers", 10_000, "fanout: sessions watching one coupon")
	coupons := fs.Int("coupons", 50_000, "many: coupons, one watcher each")
	perSession := fs.Int("per-session", 100, "many: coupons per session")
	repeat := fs.Int("repeat", 1, "on/off pairs per load (the figures are their medians: this machine is shared)")
	only := fs.String("only", "", "run only this load (fanout or many)")
	tail := fs.Duration("tail", 3*time.Second, "measurement after the last join (presence off), or after the count is exact (on)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *watchers < 1 || *coupons < 1 || *perSession < 1 || *coupons%*perSession != 0 {
		return errors.New("bench presence: --watchers and --coupons >= 1, --coupons a multiple of --per-session")
	}
	e, err := newBenchEnv(f.out, f.nodeCPUs)
	if err != nil {
		return err
	}
	e.keepLogs, e.logLevel = f.keepLogs, f.logLevel
	defer e.close()
	if err := e.startDB(ctx); err != nil {
		return err
	}
	res := presenceResult{Scenario: "presence", Time: time.Now().UTC(), Machine: describeMachine(f.nodeCPUs)}

	// The coupons, created once through a node of their own.
	setup, err := e.startNode(ctx, "setup")
	if err != nil {
		return err
	}
	mtok, err := e.token("bench-merchant", couponmesh.RoleMerchant)
	if err != nil {
		return err
	}
	api := client.NewAPI(setup.base(), mtok)
	hot := []string{"hot"}
	start := time.Now()
	if err := createCouponsRetry(ctx, api, hot, 1000); err != nil {
		return err
	}
	many := make([]string, *coupons)
	for i := range many {
		many[i] = "w" + strconv.Itoa(i)
	}
	if *only == "" || *only == "many" {
		if err := createCouponsRetry(ctx, api, many, 1000); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "bench presence: %d coupons created in %v\n", len(many)+1, time.Since(start).Round(time.Millisecond))
	if err := stopBenchNode(setup); err != nil {
		return err
	}

	type load struct {
		name     string
		sessions int
		coupons  func(i int) []string
		ids      []string
	}
	loads := []load{
		{"fanout", *watchers, func(int) []string { return hot }, hot},
		{"many", *coupons / *perSession, func(i int) []string { return many[i**perSession : (i+1)**perSession] }, many},
	}
	for _, l := range loads {
		if *only != "" && *only != l.name {
			continue
		}
		for range max(*repeat, 1) {
			onAt := -1 // index of the presence-on phase in res.Phases
			hold := time.Duration(0)
			for _, on := range []bool{true, false} {
				// Lease renewals (every 10 s by default) are the same with and
				// without presence: keep their passes out of the measurement.
				e.nodeEnv = []string{"COUPONMESH_ACTORS_PRESENCE_OFF=" + strconv.FormatBool(!on),
					"COUPONMESH_ACTORS_HUB_REFRESH=60s", "COUPONMESH_ACTORS_HUB_LEASE=180s"}
				node, err := e.startNode(ctx, fmt.Sprintf("%s-%v", l.name, on))
				if err != nil {
					return err
				}
				if err := activate(ctx, e, node, f, l.ids); err != nil {
					return err
				}
				if err := e.settle(ctx); err != nil {
					return err
				}
				p, err := presenceRun(ctx, e, node, f, l.name, on, l.sessions, l.coupons, hold, *tail)
				if err != nil {
					return err
				}
				res.Phases = append(res.Phases, p)
				if on {
					onAt = len(res.Phases) - 1
					// The run without presence is measured as long after its
					// last join as this one waited for the exact count.
					hold = time.Duration(max(p.ExactAfterSeconds, 0) * float64(time.Second))
				} else if onAt >= 0 {
					o := &res.Phases[onAt]
					o.ExtraCPUSeconds = o.NodeCPUSeconds - p.NodeCPUSeconds
					if p.NodeCPUSeconds > 0 {
						o.ExtraCPUPercent = 100 * o.ExtraCPUSeconds / p.NodeCPUSeconds
					}
					o.ExtraCPUPerJoinU = 1e6 * o.ExtraCPUSeconds / float64(max(o.Watchers, 1))
					fmt.Printf("presence %-6s extra node CPU with presence: %.2fs (%.1f%%, %.1f µs per watcher)\n", o.Name, o.ExtraCPUSeconds, o.ExtraCPUPercent, o.ExtraCPUPerJoinU)
				}
				fmt.Printf("presence %-6s on=%-5v sessions=%d watchers=%d join=%.2fs exact_after=%.2fs window=%.2fs node_cpu=%.2fs presence_msgs/s=%.0f hub_refs=%.0f (reports %.0f) grain_received=%.0f pushes=%.0f frames=%d failed=%d\n",
					p.Name, p.Presence, p.Sessions, p.Watchers, p.JoinSeconds, p.ExactAfterSeconds, p.WindowSeconds, p.NodeCPUSeconds,
					p.MessagesPerSec, p.HubRefs, p.HubReports, p.GrainReceived, p.PresencePushes, p.PresenceFrames, p.Failed)
				if err := stopBenchNode(node); err != nil {
					return err
				}
				if err := e.settle(ctx); err != nil {
					return err
				}
			}
		}
	}
	// The medians over the on/off pairs of each load.
	for _, l := range loads {
		var exact, msgs, extra []float64
		for _, p := range res.Phases {
			if p.Presence && p.Name == l.name {
				exact, msgs, extra = append(exact, p.ExactAfterSeconds), append(msgs, p.MessagesPerSec), append(extra, p.ExtraCPUPercent)
			}
		}
		if len(exact) == 0 {
			continue
		}
		res.Figures = append(res.Figures,
			atMost("presence exact after the last join, "+l.name, median(exact), "s", 2),
			benchFigure{What: "presence messages (reports + pushes), " + l.name, Value: median(msgs), Unit: "msgs/s"})
		if l.name == "fanout" {
			res.Figures = append(res.Figures, atMost("presence extra node CPU, fanout", median(extra), "%", 5))
		} else {
			res.Figures = append(res.Figures, benchFigure{What: "presence extra node CPU, " + l.name, Value: median(extra), Unit: "%"})
		}
	}
	for _, fig := range res.Figures {
		fmt.Printf("presence median: %s = %.2f %s\n", fig.What, fig.Value, fig.Unit)
	}
	path, err := e.writeResult("presence", res)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench presence: results in %s\n", path)
	return nil
}

// activate makes the grains of ids active on node (a get of each over a
// few sessions), so that the measurement does not include their loading.
func activate(ctx context.Context, e *benchEnv, node *benchNode, f benchFlags, ids []string) error {
	cs, _, err := dialShoppers(ctx, e, node, f, 16, func(i int) string { return "activator" + strconv.Itoa(i) })
	defer func() {
		for _, c := range cs {
			if c != nil {
				c.Close()
			}
		}
	}()
	if err != nil {
		return err
	}
	_, failed, err := inParallel(ctx, len(cs), len(ids), func(i int) error {
		gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err := cs[i%len(cs)].Get(gctx, ids[i])
		return err
	})
	if err != nil {
		return fmt.Errorf("activate: %d gets failed, first: %w", failed, err)
	}
	return nil
}

// presenceRun connects sessions to node, session i subscribing to
// coupons(i), each as its own shopper, and measures from the first join
// until every watcher's last presence push is exact (presence on; at most
// 30 s) or for hold after the last join (off), plus tail.
func presenceRun(ctx context.Context, e *benchEnv, node *benchNode, f benchFlags, name string, on bool, sessions int, coupons func(i int) []string, hold, tail time.Duration) (presencePhase, error) {
	p := presencePhase{Name: name, Presence: on, Sessions: sessions, ExactAfterSeconds: -1}
	var frames atomic.Int64
	var mu sync.Mutex
	last := make([]map[string]int, sessions) // session → coupon → last presence count heard
	for i := range last {
		last[i] = make(map[string]int)
	}
	before, err := scrapeNodeMetrics(node)
	if err != nil {
		return p, err
	}
	cpu0 := cpuTime(node.cmd.Process.Pid)
	hcs := sourceClients(f.sources)
	clients := make([]*client.Client, sessions)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	start := time.Now()
	took, failed, firstErr := inParallel(ctx, f.workers, sessions, func(i int) error {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		user := "p" + strconv.Itoa(i)
		c, err := client.Dial(cctx, node.ws(), client.Options{
			HTTPClient: hcs[i%len(hcs)],
			Token:      func(context.Context) (string, error) { return e.token(user, couponmesh.RoleShopper) },
			OnPresence: func(id string, n int) {
				frames.Add(1)
				mu.Lock()
				last[i][id] = n
				mu.Unlock()
			},
		})
		if err != nil {
			return err
		}
		subs := make([]client.Sub, 0, len(coupons(i)))
		for _, id := range coupons(i) {
			subs = append(subs, client.Sub{ID: id})
		}
		if _, err := c.Subscribe(cctx, subs); err != nil {
			c.Close()
			return fmt.Errorf("subscribe: %w", err)
		}
		mu.Lock()
		clients[i] = c
		mu.Unlock()
		return nil
	})
	if ctx.Err() != nil {
		return p, ctx.Err()
	}
	p.JoinSeconds, p.Failed = took.Seconds(), failed
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "bench presence: %d of %d sessions failed, first: %v\n", failed, sessions, firstErr)
	}
	joined := time.Now()
	// The exact counts: of the sessions that joined.
	count := make(map[string]int)
	for i, c := range clients {
		if c != nil {
			for _, id := range coupons(i) {
				count[id]++
			}
		}
	}
	p.Coupons = len(count)
	for _, n := range count {
		p.Watchers += n
	}
	allExact := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for i, c := range clients {
			if c == nil {
				continue
			}
			for _, id := range coupons(i) {
				if n, ok := last[i][id]; !ok || n != count[id] {
					return false
				}
			}
		}
		return true
	}
	end := joined.Add(hold)
	if on {
		deadline := joined.Add(30 * time.Second)
		for !allExact() && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
		if allExact() {
			p.ExactAfterSeconds = time.Since(joined).Seconds()
		}
		end = time.Now()
	}
	select {
	case <-ctx.Done():
		return p, ctx.Err()
	case <-time.After(time.Until(end.Add(tail))):
	}
	p.NodeCPUSeconds = (cpuTime(node.cmd.Process.Pid) - cpu0).Seconds()
	p.WindowSeconds = time.Since(start).Seconds()
	after, err := scrapeNodeMetrics(node)
	if err != nil {
		return p, err
	}
	for _, reason := range []string{"register", "renew", "report", "unregister"} {
		k := `couponmesh_presence_sent_total{reason="` + reason + `"}`
		p.HubRefs += after.get(k) - before.get(k)
		if reason == "report" {
			p.HubReports = after.get(k) - before.get(k)
		}
	}
	p.GrainReceived = after.get("couponmesh_presence_received_total") - before.get("couponmesh_presence_received_total")
	p.PresencePushes = after.get("couponmesh_presence_pushes_total") - before.get("couponmesh_presence_pushes_total")
	p.MessagesPerSec = (p.HubReports + p.PresencePushes) / p.WindowSeconds
	p.PresenceFrames = frames.Load()
	return p, nil
}

// median of vs (0 for none); vs is reordered.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	slices.Sort(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2]
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
}
