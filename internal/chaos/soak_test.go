//go:build chaos && soak

package chaos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/procfs"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/cluster/clustertest"
	"github.com/couponmesh/couponmesh/internal/history"
)

// The soak's own load, beside the chaos load of newEnv (whose shoppers,
// once their 300 coupons are sold out, go on reading them): round after
// round, soakCoupons new coupons of soakQuantity each, claimed by
// soakShoppers new users (one session each, spread over the nodes), one
// claim every pace per user. New users and coupons each round keep the
// load's state from growing in the nodes: the grains of past rounds
// passivate (actors.passivate_after), as in production.
const (
	soakCoupons  = 40
	soakQuantity = 15 // demand 20 per coupon
	soakShoppers = 20
	soakChecked  = 10 // rounds whose claims are checked against the journal
	// A round starts every soakRound (at once when the last one took
	// longer): the rate of new grains, hence how many are live, does not
	// follow the machine's load. With passivate_after at soakPassivate
	// the live set is reached in the first minutes.
	soakRound     = 8 * time.Second
	soakPassivate = "1m"
)

// soakRec records the soak rounds' claims.
var soakRec history.Recorder

// soakSample is one reading of a process's memory.
type soakSample struct {
	at         time.Duration // since the load started
	rss        float64       // bytes, VmRSS from /proc/<pid>/status
	heap       float64       // bytes, go_memstats_heap_alloc_bytes (-1: not read)
	heapGoal   float64       // bytes, go_memstats_next_gc_bytes (-1: not read)
	goroutines float64       // go_goroutines (-1: not read)
	caches     float64       // bytes, couponmesh_cache_bytes summed (-1: not read)
	// For reading a rise of RSS the heap goal does not show (CSV only):
	// heap spans in use, goroutine stacks, all memory from the OS.
	heapInuse, stacks, sys float64
	// Live grains of the node by kind (/admin/api/node; -1: not read).
	coupons, users float64
}

// TestSoak runs the chaos suite's load on three nodes in network
// namespaces for SOAK_DURATION (`make soak`: build tags chaos and soak),
// samples each node's memory every SOAK_SAMPLE (5s by default), writes the table
// and the verdict to SOAK_REPORT, with each node's heap profile beside it,
// and fails when a node's RSS or Go heap goal does not level off (levelsOff),
// or when an invariant of the chaos suite breaks.
func TestSoak(t *testing.T) {
	dur, err := time.ParseDuration(os.Getenv("SOAK_DURATION"))
	if err != nil || dur < 30*time.Second {
		t.Fatalf("SOAK_DURATION=%q: want a duration of at least 30s", os.Getenv("SOAK_DURATION"))
	}
	every := 5 * time.Second
	if s := os.Getenv("SOAK_SAMPLE"); s != "" {
		if every, err = time.ParseDuration(s); err != nil || every <= 0 {
			t.Fatalf("SOAK_SAMPLE=%q: %v", s, err)
		}
	}
	if dl, ok := t.Deadline(); ok && time.Until(dl) < dur+10*time.Minute {
		t.Fatalf("the test deadline (-timeout) leaves %s: SOAK_DURATION %s needs 10 minutes more", time.Until(dl).Round(time.Second), dur)
	}

	// Failure detection for a LAN, not the suite's fast one: on a shared
	// machine loaded far beyond its cores a starved node can be declared
	// dead and evicted, which is the chaos suite's subject, not the soak's.
	// A node that exits all the same fails the soak.
	// The caches small: they hold whatever their bound allows for their
	// TTL (bigcache's queues grow by doubling and never shrink), so at the
	// production 256 MB each they would still be filling after 30 minutes
	// and hide a leak behind their growth. At 8 MB they reach their bound
	// in the ramp (the report's caches column shows it) and the verdict
	// is about everything else.
	e := newEnv(t, "", "COUPONMESH_CLUSTER_FAILURE_DETECTION=lan", "COUPONMESH_CACHE_SIZE_MB=8",
		"COUPONMESH_ACTORS_PASSIVATE_AFTER="+soakPassivate)
	start := time.Now()
	end := start.Add(dur)
	nodes := e.all()

	dir := "."
	if p := os.Getenv("SOAK_REPORT"); p != "" {
		dir = filepath.Dir(p)
	}

	// The sampler. Every sample also goes to soak-samples.csv at once, so
	// that a run that fails later still leaves its figures.
	csv, err := os.Create(filepath.Join(dir, "soak-samples.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer csv.Close()
	fmt.Fprintln(csv, "seconds,process,rss_bytes,heap_alloc_bytes,heap_goal_bytes,goroutines,cache_bytes,heap_inuse_bytes,stack_inuse_bytes,sys_bytes,coupon_grains,user_grains")
	samples := make([][]soakSample, len(nodes)+1) // the last: the database
	stopSampling := make(chan struct{})
	var sampling sync.WaitGroup
	sampling.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			for i, n := range nodes {
				s := sampleNode(n, time.Since(start))
				samples[i] = append(samples[i], s)
				fmt.Fprintf(csv, "%.0f,%s,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f\n", s.at.Seconds(), n.Name, s.rss, s.heap, s.heapGoal, s.goroutines, s.caches, s.heapInuse, s.stacks, s.sys, s.coupons, s.users)
			}
			s := soakSample{at: time.Since(start), rss: rss(e.db.Cmd.Process.Pid), heap: -1, heapGoal: -1, goroutines: -1, caches: -1, heapInuse: -1, stacks: -1, sys: -1, coupons: -1, users: -1}
			samples[len(nodes)] = append(samples[len(nodes)], s)
			fmt.Fprintf(csv, "%.0f,database,%.0f,-1,-1,-1,-1,-1,-1,-1,-1,-1\n", s.at.Seconds(), s.rss)
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	})

	// Heap profiles under load at the start of the middle third and at the
	// end, for what grows between them (soakGrowth, in the report).
	third := filepath.Join(dir, "soak-heap-%s-third.pb.gz")
	loaded := filepath.Join(dir, "soak-heap-%s-end.pb.gz")
	thirdTimer := time.AfterFunc(dur/3, func() { saveProfiles(t, nodes, third) })
	defer thirdTimer.Stop()

	// The rounds.
	rounds, connectFailures, lateRounds := 0, 0, 0
	for r := 0; time.Now().Before(end); r++ {
		if at := start.Add(time.Duration(r) * soakRound); time.Until(at) > 0 {
			time.Sleep(time.Until(at))
		} else if r > 0 {
			lateRounds++
		}
		ids := e.soakCoupons(r)
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i := range soakShoppers {
			user := fmt.Sprintf("r%d-u%d", r, i)
			wg.Go(func() {
				if !e.soakShop(user, i, ids) {
					mu.Lock()
					connectFailures++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		rounds++
	}
	close(stopSampling)
	sampling.Wait()
	saveProfiles(t, nodes, loaded)
	e.halt()

	// Heap profiles, for what grows (written beside the report).
	var profiles []string
	for _, n := range nodes {
		p := filepath.Join(dir, "soak-heap-"+n.Name+".pb.gz")
		if err := heapProfile(n, p); err != nil {
			t.Errorf("heap profile of %s: %v", n.Name, err)
			continue
		}
		profiles = append(profiles, p)
	}

	// The memory report first: the checks below may fail the test.
	report, ok := soakReport(nodes, samples, dur, every, rounds, lateRounds, connectFailures, soakRec.Attempts(), profiles)
	report += soakGrowth(nodes, third, loaded)
	t.Log("\n" + report)
	if p := os.Getenv("SOAK_REPORT"); p != "" {
		if err := os.WriteFile(p, []byte(report), 0o644); err != nil {
			t.Error(err)
		}
	}

	// The invariants of the chaos suite over its own load, then over the
	// soak's last rounds (all of them would take the journals of thousands
	// of coupons: more than the check's deadline).
	e.finish(fmt.Sprintf("soak %s", dur))
	var last []history.Attempt
	var lastIDs []string
	from := max(0, rounds-soakChecked)
	for _, a := range soakRec.Attempts() {
		var r int
		if _, err := fmt.Sscanf(a.Coupon, "r%d-", &r); err == nil && r >= from {
			last = append(last, a)
		}
	}
	for r := from; r < rounds; r++ {
		for i := range soakCoupons {
			lastIDs = append(lastIDs, fmt.Sprintf("r%d-c%d", r, i))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	store, err := history.Open(ctx, e.db.URI())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(context.Background())
	check, err := history.Check(ctx, store, lastIDs, last)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("soak, last %d rounds: %s", rounds-from, check)
	for _, v := range check.Violations {
		t.Error(v)
	}
	if !ok {
		t.Errorf("memory did not level off (see the report)")
	}
	for _, n := range nodes {
		if !n.Running() {
			t.Errorf("%s exited during the soak: %v", n.Name, n.Err())
		}
	}
	if connectFailures > 0 {
		t.Errorf("%d soak shoppers could not connect", connectFailures)
	}
}

// soakCoupons creates round r's coupons through a live node.
func (e *env) soakCoupons(r int) []string {
	t := e.t
	n := e.live()[0]
	api := client.NewAPI("http://"+n.HTTP, e.login(n, "acme", couponmesh.RoleMerchant))
	ids := make([]string, soakCoupons)
	for i := range ids {
		ids[i] = fmt.Sprintf("r%d-c%d", r, i)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := api.CreateCoupon(ctx, couponmesh.CouponSpec{ID: ids[i], Title: ptr("Soak " + ids[i]), Quantity: ptr(soakQuantity)})
		cancel()
		if err != nil {
			t.Fatalf("create coupon %s: %v", ids[i], err)
		}
	}
	return ids
}

// soakShop claims every coupon of ids once as user, in its own session,
// recorded into soakRec; false when it could not connect.
func (e *env) soakShop(user string, k int, ids []string) bool {
	c, via := e.connect(user, k, client.Options{})
	if c == nil {
		return false
	}
	defer func() { c.Close() }()
	for _, id := range ids {
		time.Sleep(pace)
		if c.State() == client.StateClosed {
			c.Close()
			if c, via = e.connect(user, k+1, client.Options{}); c == nil {
				return false
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _ = soakRec.Claim(ctx, c, via.Name, user, id, user+"-"+id)
		cancel()
	}
	return true
}

// rss is a process's VmRSS in bytes (-1 when it cannot be read).
func rss(pid int) float64 {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return -1
	}
	st, err := p.NewStatus()
	if err != nil {
		return -1
	}
	return float64(st.VmRSS)
}

// sampleNode reads n's RSS and, from its /metrics, its Go heap (allocated,
// and the goal of the next GC) and goroutines.
func sampleNode(n *clustertest.Node, at time.Duration) soakSample {
	s := soakSample{at: at, rss: rss(n.Cmd.Process.Pid), heap: -1, heapGoal: -1, goroutines: -1, caches: -1, heapInuse: -1, stacks: -1, sys: -1, coupons: -1, users: -1}
	if body, err := adminGet(n, "/admin/api/node"); err == nil {
		var info struct {
			Actors map[string]int `json:"actors"`
		}
		if json.Unmarshal(body, &info) == nil {
			s.coupons, s.users = float64(info.Actors["coupon"]), float64(info.Actors["user"])
		}
	}
	body, err := adminGet(n, "/metrics")
	if err != nil {
		return s
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return s
	}
	if f := fams["go_memstats_heap_alloc_bytes"]; f != nil && len(f.Metric) > 0 {
		s.heap = f.Metric[0].GetGauge().GetValue()
	}
	if f := fams["go_memstats_next_gc_bytes"]; f != nil && len(f.Metric) > 0 {
		s.heapGoal = f.Metric[0].GetGauge().GetValue()
	}
	if f := fams["go_goroutines"]; f != nil && len(f.Metric) > 0 {
		s.goroutines = f.Metric[0].GetGauge().GetValue()
	}
	for name, v := range map[string]*float64{"go_memstats_heap_inuse_bytes": &s.heapInuse, "go_memstats_stack_inuse_bytes": &s.stacks, "go_memstats_sys_bytes": &s.sys} {
		if f := fams[name]; f != nil && len(f.Metric) > 0 {
			*v = f.Metric[0].GetGauge().GetValue()
		}
	}
	if f := fams["couponmesh_cache_bytes"]; f != nil {
		s.caches = 0
		for _, m := range f.Metric {
			s.caches += m.GetGauge().GetValue()
		}
	}
	return s
}

// adminGet reads path from n's admin listener.
func adminGet(n *clustertest.Node, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.Admin+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+clustertest.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// heapProfile saves n's heap profile (after a GC) to path.
func heapProfile(n *clustertest.Node, path string) error {
	b, err := adminGet(n, "/debug/pprof/heap?gc=1")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// saveProfiles saves each node's heap profile to fmt.Sprintf(pattern, name).
func saveProfiles(t *testing.T, nodes []*clustertest.Node, pattern string) {
	for _, n := range nodes {
		if err := heapProfile(n, fmt.Sprintf(pattern, n.Name)); err != nil {
			t.Logf("heap profile of %s: %v", n.Name, err)
		}
	}
}

// soakGrowth renders, per node, what its live heap gained from the profile
// of the middle third's start (base) to the one at the end of the load
// (`go tool pprof -diff_base`), largest first.
func soakGrowth(nodes []*clustertest.Node, base, end string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nWhat the live heap gained from the start of the middle third to the end of the load (both under load, after a GC; `go tool pprof -top -diff_base=BASE -sample_index=inuse_space END`):\n")
	for _, n := range nodes {
		from, to := fmt.Sprintf(base, n.Name), fmt.Sprintf(end, n.Name)
		out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=20", "-sample_index=inuse_space", "-diff_base="+from, to).CombinedOutput()
		if err != nil {
			out = fmt.Appendf(out, "%v\n", err)
		}
		fmt.Fprintf(&b, "\n%s (%s -> %s):\n\n```\n%s```\n", n.Name, filepath.Base(from), filepath.Base(to), out)
	}
	return b.String()
}

// soakReport renders the samples as Markdown (a row per minute, means of
// the samples in it) with the verdict, and reports whether every node's
// RSS and heap levelled off.
func soakReport(nodes []*clustertest.Node, samples [][]soakSample, dur, every time.Duration, rounds, lateRounds, connectFailures int, attempts []history.Attempt, profiles []string) (string, bool) {
	var b strings.Builder
	outcomes := map[history.Outcome]int{}
	for _, a := range attempts {
		outcomes[a.Outcome]++
	}
	fmt.Fprintf(&b, "Soak of %s (`make soak SOAK_DURATION=%s`), %s: three nodes and the database in network namespaces, the chaos suite's load (24 shoppers without retries and 6 with, 3 watchers of 300 coupons) and %d rounds of %d new coupons claimed by %d new users each (sessions without SDK retries; a round every %s, %d started late because the one before took longer; grains passivate after %s idle); the rounds' claims: %d ok, %d sold_out, %d already_claimed, %d other errors, %d unknown, %d without an answer; %d shoppers that could not connect. Memory sampled every %s.\n\n",
		dur, dur, time.Now().UTC().Format("2006-01-02 15:04 UTC"), rounds, soakCoupons, soakShoppers, soakRound, lateRounds, soakPassivate,
		outcomes[history.OK], outcomes[history.SoldOut], outcomes[history.AlreadyClaimed], outcomes[history.Failed], outcomes[history.Unknown], outcomes[history.NoAnswer], connectFailures, every)

	mib := func(v float64) string {
		if v < 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", v/(1<<20))
	}
	// A row per minute (or per sample when the run is shorter than 10 minutes).
	bucket := time.Minute
	if dur < 10*time.Minute {
		bucket = every
	}
	fmt.Fprintf(&b, "| time |")
	for _, n := range nodes {
		fmt.Fprintf(&b, " %s RSS MiB | %s heap MiB | %s heap goal MiB | %s caches MiB | %s goroutines |", n.Name, n.Name, n.Name, n.Name, n.Name)
	}
	fmt.Fprintf(&b, " database RSS MiB |\n|---|")
	for range nodes {
		fmt.Fprintf(&b, "---|---|---|---|---|")
	}
	fmt.Fprintf(&b, "---|\n")
	type acc struct{ rss, heap, goal, caches, gr, n, nh float64 }
	maxAt := time.Duration(0)
	for _, s := range samples[0] {
		maxAt = max(maxAt, s.at)
	}
	for from := time.Duration(0); from <= maxAt; from += bucket {
		fmt.Fprintf(&b, "| %s |", from)
		for k, series := range samples {
			var a acc
			for _, s := range series {
				if s.at >= from && s.at < from+bucket && s.rss >= 0 {
					a.rss += s.rss
					a.n++
					if s.heap >= 0 {
						a.heap += s.heap
						a.goal += s.heapGoal
						a.caches += s.caches
						a.gr += s.goroutines
						a.nh++
					}
				}
			}
			if a.n == 0 {
				a.rss, a.n = -1, 1
			}
			fmt.Fprintf(&b, " %s |", mib(a.rss/a.n))
			switch {
			case k == len(samples)-1: // the database: RSS only
			case a.nh == 0:
				fmt.Fprintf(&b, " - | - | - | - |")
			default:
				fmt.Fprintf(&b, " %s | %s | %s | %.0f |", mib(a.heap/a.nh), mib(a.goal/a.nh), mib(a.caches/a.nh), a.gr/a.nh)
			}
		}
		b.WriteString("\n")
	}

	fmt.Fprintf(&b, "\nVerdict: the mean of the last third of the samples must stay within %.0f%% of the mean of the middle third, for each node's RSS and Go heap goal (the first third is the ramp; internal/chaos/soak_verdict_test.go says why). The heap goal (go_memstats_next_gc_bytes) is the live heap after the last GC times 1 + GOGC/100: it follows what the heap retains without the sawtooth of the allocated heap between two GCs, which sampling every few seconds catches at random points.\n\n", soakTolerance*100)
	fmt.Fprintf(&b, "| node | measure | middle third mean MiB | last third mean MiB | change | levels off |\n|---|---|---|---|---|---|\n")
	ok := true
	for i, n := range nodes {
		for _, s := range samples[i] {
			if s.rss < 0 {
				ok = false
				fmt.Fprintf(&b, "| %s | exited at %s | - | - | - | **no** |\n", n.Name, s.at.Round(time.Second))
				break
			}
		}
		for _, m := range []struct {
			name string
			get  func(soakSample) float64
		}{{"RSS", func(s soakSample) float64 { return s.rss }}, {"Go heap goal", func(s soakSample) float64 { return s.heapGoal }}} {
			var vals []float64
			for _, s := range samples[i] {
				if v := m.get(s); v >= 0 {
					vals = append(vals, v)
				}
			}
			middle, last, lev := levelsOff(vals, soakTolerance)
			ok = ok && lev
			change := "-"
			if middle > 0 {
				change = fmt.Sprintf("%+.1f%%", 100*(last-middle)/middle)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", n.Name, m.name, mib(middle), mib(last), change, yesNo(lev))
		}
	}
	// The live grains, for reading the heap: not part of the verdict (a
	// node holds the grains of the last passivate_after of load).
	for i, n := range nodes {
		var vals []float64
		for _, s := range samples[i] {
			if s.coupons >= 0 {
				vals = append(vals, s.coupons+s.users)
			}
		}
		if middle, last, _ := levelsOff(vals, soakTolerance); middle > 0 {
			fmt.Fprintf(&b, "| %s | live grains (coupons + users, not judged) | %.0f grains | %.0f grains | %+.1f%% | - |\n", n.Name, middle, last, 100*(last-middle)/middle)
		}
	}
	if ok {
		fmt.Fprintf(&b, "\n**Levelled off**: every node's RSS and Go heap goal.\n")
	} else {
		fmt.Fprintf(&b, "\n**Did not level off.** What the heap holds at the end (`go tool pprof -top -sample_index=inuse_space`):\n")
		for _, p := range profiles {
			out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=15", "-sample_index=inuse_space", p).CombinedOutput()
			if err != nil {
				out = fmt.Appendf(out, "%v\n", err)
			}
			fmt.Fprintf(&b, "\n%s:\n\n```\n%s```\n", filepath.Base(p), out)
		}
	}
	return b.String(), ok
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}
