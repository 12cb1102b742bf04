package bench

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/cluster/clustertest"
	"github.com/couponmesh/couponmesh/transport/auth"
)

// benchEnv is what every scenario has: the processes it started, the
// token signer matching the nodes' secret, and where results go.
type benchEnv struct {
	bin      string
	dir      string // temporary: data directories and process logs
	out      string
	nodeCPUs string // taskset CPU list for the nodes ("" : not pinned)
	dbCPUs   string // taskset CPU list for the devdb ("": where the bench runs)
	keepLogs bool
	logLevel string // of the nodes ("": warn)
	secret   string
	tokens   *auth.Tokens
	procs    []*clustertest.Proc // the devdb first, then the nodes in start order
	db       string              // mongodb URI
	dbPprof  string              // the devdb's pprof listener
	nodeEnv  []string            // more environment for the nodes started from now on
}

func newBenchEnv(out, nodeCPUs string) (*benchEnv, error) {
	bin, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "couponmesh-bench-")
	if err != nil {
		return nil, err
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	secret := hex.EncodeToString(b)
	tokens, err := auth.New(auth.Config{Secret: []byte(secret), Issuer: "couponmesh", Audience: "couponmesh", TTL: 2 * time.Hour})
	if err != nil {
		return nil, err
	}
	if nodeCPUs != "" {
		if _, err := exec.LookPath("taskset"); err != nil {
			return nil, fmt.Errorf("--node-cpus %s needs taskset: %w", nodeCPUs, err)
		}
	}
	return &benchEnv{bin: bin, dir: dir, out: out, nodeCPUs: nodeCPUs, secret: secret, tokens: tokens}, nil
}

// close stops every process started, by PID, the last started first:
// SIGTERM, then SIGKILL after 20 s. It removes the temporary directory
// unless a process failed.
func (e *benchEnv) close() {
	for _, p := range slices.Backward(e.procs) {
		if p.Terminate(20 * time.Second) {
			fmt.Fprintf(os.Stderr, "bench: pid %d did not stop on SIGTERM: killed it\n", p.Cmd.Process.Pid)
		}
	}
	if e.keepLogs {
		fmt.Fprintf(os.Stderr, "bench: process logs kept in %s\n", e.dir)
		return
	}
	_ = os.RemoveAll(e.dir)
}

func (e *benchEnv) logFile(name string) (*os.File, error) {
	return os.Create(filepath.Join(e.dir, name+".log"))
}

// startDB starts `couponmesh devdb` and waits for its "listening" line.
func (e *benchEnv) startDB(ctx context.Context) error {
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	if e.dbPprof, err = freeAddr(); err != nil {
		return err
	}
	args := []string{e.bin, "devdb", "--addr", addr, "--data", filepath.Join(e.dir, "devdb"), "--log-level", "warn", "--pprof", e.dbPprof}
	if e.dbCPUs != "" {
		args = append([]string{"taskset", "-c", e.dbCPUs}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	logf, err := e.logFile("devdb")
	if err != nil {
		return err
	}
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	p, err := clustertest.Launch("devdb", cmd)
	if err != nil {
		return err
	}
	e.procs = append(e.procs, p)
	line := make(chan string, 1)
	go func() {
		r := bufio.NewReader(out)
		l, _ := r.ReadString('\n')
		line <- l
		_, _ = r.WriteTo(logf)
	}()
	select {
	case l := <-line:
		if !strings.HasPrefix(l, "devdb listening") {
			e.keepLogs = true
			return fmt.Errorf("devdb did not start (log in %s)", e.dir)
		}
	case <-time.After(60 * time.Second):
		e.keepLogs = true
		return errors.New("devdb did not start within 60s")
	case <-ctx.Done():
		return ctx.Err()
	}
	e.db = "mongodb://" + addr + "/"
	return nil
}

// benchNode is one node process.
type benchNode struct {
	name, http string
	admin      string // admin listener (admin API, metrics, pprof)
	cluster    string // memberlist address
	cmd        benchCmd
}

// benchCmd is a node process as the scenarios use it: its Process (PID,
// signals, kill) and Wait, which returns once it has exited (any number of
// times, from any goroutine).
type benchCmd struct {
	*clustertest.Proc
	Process *os.Process
}

// Wait waits until the process has exited and returns how it exited.
func (c benchCmd) Wait() error { return c.Err() }

func (n *benchNode) ws() string   { return "ws://" + n.http + "/ws" }
func (n *benchNode) base() string { return "http://" + n.http }

// startNode starts a node (pinned with taskset when nodeCPUs is set) with
// the per-address and per-user limits off: all the load comes from one host.
func (e *benchEnv) startNode(ctx context.Context, name string) (*benchNode, error) {
	return e.startMember(ctx, name, "")
}

// startMember is startNode for a member of a cluster: seed is the memberlist
// address of a node started before ("": the node is its own seed).
func (e *benchEnv) startMember(ctx context.Context, name, seed string) (*benchNode, error) {
	var addrs [3]string
	for i := range addrs {
		a, err := freeAddr()
		if err != nil {
			return nil, err
		}
		addrs[i] = a
	}
	if seed == "" {
		seed = addrs[2]
	}
	n := &benchNode{name: name, http: addrs[0], admin: addrs[1], cluster: addrs[2]}
	var cmd *exec.Cmd
	if e.nodeCPUs != "" {
		cmd = exec.Command("taskset", "-c", e.nodeCPUs, e.bin, "node")
	} else {
		cmd = exec.Command(e.bin, "node")
	}
	cmd.Env = append(os.Environ(),
		"COUPONMESH_NODE_NAME="+name, "COUPONMESH_HTTP_ADDR="+addrs[0], "COUPONMESH_ADMIN_ADDR="+addrs[1],
		"COUPONMESH_CLUSTER_ADDR="+addrs[2], "COUPONMESH_SEEDS="+seed, "COUPONMESH_MONGO_URI="+e.db,
		"COUPONMESH_DATA_DIR="+filepath.Join(e.dir, name), "COUPONMESH_DEV=true",
		"COUPONMESH_JWT_SECRET="+e.secret, "COUPONMESH_JWT_ISSUER=couponmesh", "COUPONMESH_JWT_AUDIENCE=couponmesh",
		"COUPONMESH_LOG_LEVEL="+cmp.Or(e.logLevel, "warn"),
		"COUPONMESH_WS_SESSIONS_PER_IP=-1", "COUPONMESH_WS_HANDSHAKE_RATE=-1", "COUPONMESH_WS_REQUEST_RATE=-1",
		"COUPONMESH_WS_SESSIONS_PER_USER=-1", "COUPONMESH_LIMITS_USER_WRITE_RATE=-1")
	cmd.Env = append(cmd.Env, e.nodeEnv...)
	logf, err := e.logFile(name)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := clustertest.Launch(name, cmd)
	if err != nil {
		return nil, err
	}
	e.procs = append(e.procs, p)
	n.cmd = benchCmd{Proc: p, Process: cmd.Process}
	cn := &clustertest.Node{Proc: p, HTTP: n.http, Admin: n.admin, Gossip: n.cluster}
	deadline := time.Now().Add(60 * time.Second)
	for cn.Ready() != nil {
		if !p.Running() || time.Now().After(deadline) {
			e.keepLogs = true
			return nil, fmt.Errorf("node %s not ready within 60s (running %v; log in %s)", name, p.Running(), e.dir)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return n, nil
}

// startMembers starts n members n1 … nN of one cluster, n2 … seeded with
// n1.
func (e *benchEnv) startMembers(ctx context.Context, n int) ([]*benchNode, error) {
	var nodes []*benchNode
	for i := range n {
		seed := ""
		if i > 0 {
			seed = nodes[0].cluster
		}
		node, err := e.startMember(ctx, "n"+strconv.Itoa(i+1), seed)
		if err != nil {
			return nodes, err
		}
		nodes = append(nodes, node)
	}
	return nodes, nil
}

func (e *benchEnv) token(user string, role couponmesh.Role) (string, error) {
	tok, _, err := e.tokens.Issue(couponmesh.Principal{User: user, Role: role})
	return tok, err
}

// writeResult writes v as JSON to DIR/SCENARIO-TIME.json.
func (e *benchEnv) writeResult(scenario string, v any) (string, error) {
	if err := os.MkdirAll(e.out, 0o755); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(e.out, scenario+"-"+time.Now().UTC().Format("20060102T150405Z")+".json")
	return path, os.WriteFile(path, append(b, '\n'), 0o644)
}

// freeAddr returns a 127.0.0.1 address whose port was free just now and
// that no other caller in this process got (clustertest.FreeAddr).
func freeAddr() (string, error) { return clustertest.FreeAddr() }

// sourceClients returns HTTP clients that dial from 127.0.0.2, 127.0.0.3,
// … (n of them), so that many sessions to one node address do not run out
// of ephemeral ports of one source address.
func sourceClients(n int) []*http.Client {
	out := make([]*http.Client, n)
	for i := range out {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i))}, Timeout: 30 * time.Second}
		out[i] = &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 1}}
	}
	return out
}

// rssKiB reads VmRSS of a process from /proc.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for l := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// cpuTime returns the user+system CPU time a process has used so far
// (from /proc/PID/stat, in clock ticks of 10 ms).
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses.
	_, rest, ok := strings.Cut(string(b), ") ")
	if !ok {
		return 0
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}

// quantile returns the q-quantile (0 ≤ q ≤ 1) of sorted by the nearest
// rank method; 0 for no samples.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// machine describes where the bench ran, for the JSON results.
type machine struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpuModel"`
	NodeCPUs string `json:"nodeCpus"`
	Go       string `json:"go"`
	LoadAvg  string `json:"loadAvgAtStart"` // /proc/loadavg: other work on the machine
}

func describeMachine(nodeCPUs string) machine {
	m := machine{NodeCPUs: nodeCPUs, Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAvg = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for l := range strings.Lines(string(b)) {
			if strings.HasPrefix(l, "processor") {
				m.CPUs++
			}
			if rest, ok := strings.CutPrefix(l, "model name"); ok && m.CPUModel == "" {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ":"))
			}
		}
	}
	return m
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// benchFigure is one measured figure beside its DESIGN.md target. Every
// scenario's JSON result carries its figures in a "figures" list; `bench
// report` builds the table of docs/BENCHMARKS.md from them without knowing
// the scenarios.
type benchFigure struct {
	What   string  `json:"what"`             // as in DESIGN.md's Targets, e.g. "connect + auth + subscribe"
	Value  float64 `json:"value"`            // measured
	Unit   string  `json:"unit"`             // "sessions/s", "ms", "KiB", "%", "s", "claims"
	Target float64 `json:"target,omitempty"` // DESIGN.md target in the same unit
	Better string  `json:"better,omitempty"` // "higher" or "lower"; "" when there is no target
	Note   string  `json:"note,omitempty"`   // settings that matter for this figure
}

// met reports whether the figure meets its target (true without a target).
func (f benchFigure) met() bool {
	switch f.Better {
	case "higher":
		return f.Value >= f.Target
	case "lower":
		return f.Value <= f.Target
	}
	return true
}

// atLeast and atMost build figures with a target.
func atLeast(what string, v float64, unit string, target float64) benchFigure {
	return benchFigure{What: what, Value: v, Unit: unit, Target: target, Better: "higher"}
}

func atMost(what string, v float64, unit string, target float64) benchFigure {
	return benchFigure{What: what, Value: v, Unit: unit, Target: target, Better: "lower"}
}

// profileCPU writes a CPU profile of node n taken over d to path (from the
// node's admin listener, /debug/pprof/profile), for `go tool pprof`.
func profileCPU(ctx context.Context, n *benchNode, d time.Duration, path string) error {
	return fetchProfile(ctx, n, fmt.Sprintf("profile?seconds=%d", max(int(d.Seconds()), 1)), path)
}

// profileDB writes a CPU profile of the devdb taken over d to path.
func (e *benchEnv) profileDB(ctx context.Context, d time.Duration, path string) error {
	return fetchProfile(ctx, &benchNode{admin: e.dbPprof}, fmt.Sprintf("profile?seconds=%d", max(int(d.Seconds()), 1)), path)
}

// fetchProfile writes the /debug/pprof/WHAT of node n's admin listener to
// path.
func fetchProfile(ctx context.Context, n *benchNode, what, path string) error {
	return fetchAdmin(ctx, n, "/debug/pprof/"+what, path)
}

// fetchAdmin writes what node n's admin listener answers at urlPath
// (a profile, /metrics) to path.
func fetchAdmin(ctx context.Context, n *benchNode, urlPath, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.admin+urlPath, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", urlPath, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.ReadFrom(resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// settle waits until the processes started (the database and the nodes)
// are idle, below 5% of a core over a second (and 1.5% more per node past
// two: an idle node's gossip and timers), so that work left from a
// scenario's set-up (snapshots written behind, which FerretDB makes slow)
// does not run during its measurement. It gives up quietly after a minute.
func (e *benchEnv) settle(ctx context.Context) error {
	busy := func() time.Duration {
		var sum time.Duration
		for _, p := range e.procs {
			if p.Running() {
				sum += cpuTime(p.Cmd.Process.Pid)
			}
		}
		return sum
	}
	deadline := time.Now().Add(time.Minute)
	last := busy()
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		now := busy()
		if now-last < 50*time.Millisecond+15*time.Millisecond*time.Duration(max(len(e.procs)-3, 0)) {
			return nil
		}
		last = now
	}
	fmt.Fprintln(os.Stderr, "bench: the processes were still busy after a minute; measuring anyway")
	return nil
}

// benchFlags are the flags every scenario takes.
type benchFlags struct {
	out      string
	nodeCPUs string
	workers  int
	sources  int
	keepLogs bool
	logLevel string
}

func (f *benchFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.out, "out", "bench-results", "directory for the JSON results")
	fs.StringVar(&f.nodeCPUs, "node-cpus", "", "taskset CPU list to pin the node to (e.g. 0; empty: not pinned); run the bench itself under taskset for the other core")
	fs.IntVar(&f.workers, "workers", 64, "sessions being set up at once")
	fs.IntVar(&f.sources, "sources", 8, "client source addresses 127.0.0.2 … (ephemeral ports are per source address)")
	fs.BoolVar(&f.keepLogs, "keep-logs", false, "keep the processes' logs (their directory is printed at the end)")
	fs.StringVar(&f.logLevel, "log-level", "warn", "log level of the nodes")
}

// connectAll opens n sessions to node, each authenticated as its own
// shopper and subscribed to the coupon coupon(i), from workers goroutines.
// It returns the clients (nil where a session failed), the wall time, and
// the first error of the failures with their count.
func connectAll(ctx context.Context, e *benchEnv, node *benchNode, f benchFlags, n int, coupon func(i int) string, onCoupon func(i int) func(couponmesh.Coupon)) ([]*client.Client, time.Duration, int, error) {
	hcs := sourceClients(f.sources)
	clients := make([]*client.Client, n)
	took, failed, firstErr := inParallel(ctx, f.workers, n, func(i int) error {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		user := "s" + strconv.Itoa(i)
		opts := client.Options{
			HTTPClient: hcs[i%len(hcs)],
			Token:      func(context.Context) (string, error) { return e.token(user, couponmesh.RoleShopper) },
		}
		if onCoupon != nil {
			opts.OnCoupon = onCoupon(i)
		}
		c, err := client.Dial(cctx, node.ws(), opts)
		if err != nil {
			return err
		}
		if _, err := c.Subscribe(cctx, []client.Sub{{ID: coupon(i)}}); err != nil {
			c.Close()
			return fmt.Errorf("subscribe: %w", err)
		}
		clients[i] = c
		return nil
	})
	return clients, took, failed, firstErr
}

// inParallel runs fn(0) … fn(n-1) from workers goroutines, until ctx is
// done, and returns the wall time, how many failed and the first error.
func inParallel(ctx context.Context, workers, n int, fn func(i int) error) (time.Duration, int, error) {
	var (
		next     atomic.Int64
		failed   atomic.Int64
		firstErr error
		errOnce  sync.Once
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(i); err != nil {
					failed.Add(1)
					errOnce.Do(func() { firstErr = err })
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start), int(failed.Load()), firstErr
}

// closeAll closes the clients, 64 at a time.
func closeAll(clients []*client.Client) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, c := range clients {
		if c == nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() { c.Close(); <-sem })
	}
	wg.Wait()
}

// setupOneNode starts the database and one node and returns the merchant's API.
func setupOneNode(ctx context.Context, f benchFlags) (*benchEnv, *benchNode, *client.API, error) {
	return setupNodeDB(ctx, f, false, "")
}

// setupNodeDB is setupOneNode with the database in the node's process
// (embedded: no devdb, the node starts its own) or as a devdb pinned to
// dbCPUs ("": where the bench runs).
func setupNodeDB(ctx context.Context, f benchFlags, embedded bool, dbCPUs string) (*benchEnv, *benchNode, *client.API, error) {
	e, err := newBenchEnv(f.out, f.nodeCPUs)
	if err != nil {
		return nil, nil, nil, err
	}
	e.keepLogs, e.logLevel, e.dbCPUs = f.keepLogs, f.logLevel, dbCPUs
	if !embedded {
		if err := e.startDB(ctx); err != nil {
			return e, nil, nil, err
		}
	}
	node, err := e.startNode(ctx, "n1")
	if err != nil {
		return e, nil, nil, err
	}
	tok, err := e.token("bench", couponmesh.RoleMerchant)
	if err != nil {
		return e, nil, nil, err
	}
	api := client.NewAPI(node.base(), tok)
	api.HTTPClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	return e, node, api, nil
}

// createSettled creates n coupons PREFIX0 … of quantity qty as the API's
// merchant and waits until the processes are idle again (the snapshots of
// the creates are written behind); it returns their ids.
func createSettled(ctx context.Context, e *benchEnv, api *client.API, prefix string, n, qty int) ([]string, error) {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = prefix + strconv.Itoa(i)
	}
	if err := createCouponsRetry(ctx, api, ids, qty); err != nil {
		return nil, err
	}
	return ids, e.settle(ctx)
}

// createCouponsRetry creates the coupons ids with quantity qty as the API's
// merchant (createCouponSpecs).
func createCouponsRetry(ctx context.Context, api *client.API, ids []string, qty int) error {
	return createCouponSpecs(ctx, api, ids, 32, func(id string) couponmesh.CouponSpec {
		title := "Bench coupon " + id
		return couponmesh.CouponSpec{ID: id, Title: &title, Quantity: &qty}
	}, nil)
}

// createCouponSpecs creates the coupons spec(id) (title and quantity set)
// of ids as the API's merchant, workers at a time. A create whose outcome is
// unknown (unavailable) is tried again, up to 5 times; a retry that finds
// the id taken finds the coupon the earlier try created. before, when not
// nil, is called with each index before its create; its error stops the
// create.
func createCouponSpecs(ctx context.Context, api *client.API, ids []string, workers int, spec func(id string) couponmesh.CouponSpec, before func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		sem   = make(chan struct{}, workers)
	)
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
	}
	for i, id := range ids {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if before != nil {
				if err := before(i); err != nil {
					fail(err)
					return
				}
			}
			sp := spec(id)
			var err error
			for try := range 5 {
				if try > 0 {
					time.Sleep(time.Duration(try) * 200 * time.Millisecond)
				}
				_, err = api.CreateCoupon(ctx, sp)
				if try > 0 && couponmesh.ErrorCode(err) == couponmesh.CodeBadRequest {
					if c, rerr := api.Coupon(ctx, id); rerr == nil && c.Title == *sp.Title && c.Quantity == *sp.Quantity &&
						(sp.ExpiresAt == nil || c.ExpiresAt.Equal(couponmesh.ReminderTime(*sp.ExpiresAt))) {
						err = nil
					}
				}
				if couponmesh.ErrorCode(err) != couponmesh.CodeUnavailable || ctx.Err() != nil {
					break
				}
			}
			if err != nil {
				fail(fmt.Errorf("create coupon %s: %w", id, err))
			}
		})
	}
	wg.Wait()
	return first
}

// msList returns the durations in whole milliseconds.
func msList(ds []time.Duration) []int64 {
	out := make([]int64, len(ds))
	for i, d := range ds {
		out[i] = d.Milliseconds()
	}
	return out
}

// startThree starts the devdb and three members (n2 and n3 seeded with n1),
// waits until each sees the three alive, and creates ncoupons coupons
// PREFIX0… of quantity qty as merchant "bench" (createSettled); it returns the nodes, an API
// client of n1 as the merchant, the merchant's token and the coupon ids.
func startThree(ctx context.Context, e *benchEnv, prefix string, ncoupons, qty int) ([]*benchNode, *client.API, string, []string, error) {
	if err := e.startDB(ctx); err != nil {
		return nil, nil, "", nil, err
	}
	nodes, err := e.startMembers(ctx, 3)
	if err != nil {
		return nil, nil, "", nil, err
	}
	if err := foWaitMembers(ctx, nodes, 3, 30*time.Second); err != nil {
		return nil, nil, "", nil, err
	}
	tok, err := e.token("bench", couponmesh.RoleMerchant)
	if err != nil {
		return nil, nil, "", nil, err
	}
	api := client.NewAPI(nodes[0].base(), tok)
	api.HTTPClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	ids, err := createSettled(ctx, e, api, prefix, ncoupons, qty)
	if err != nil {
		return nil, nil, "", nil, err
	}
	return nodes, api, tok, ids, nil
}

// dialShoppers opens n authenticated sessions to node, session i as shopper
// user(i), from f.workers goroutines and f.sources source addresses; nothing
// is subscribed. It returns the first error (with the clients opened so
// far, for closeAll).
func dialShoppers(ctx context.Context, e *benchEnv, node *benchNode, f benchFlags, n int, user func(i int) string) ([]*client.Client, time.Duration, error) {
	return dialShoppersOn(ctx, e, []*benchNode{node}, f, n, user)
}

// dialShoppersOn is dialShoppers with session i on nodes[i % len(nodes)].
func dialShoppersOn(ctx context.Context, e *benchEnv, nodes []*benchNode, f benchFlags, n int, user func(i int) string) ([]*client.Client, time.Duration, error) {
	hcs := sourceClients(f.sources)
	clients := make([]*client.Client, n)
	took, failed, err := inParallel(ctx, f.workers, n, func(i int) error {
		u := user(i)
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		c, err := client.Dial(dctx, nodes[i%len(nodes)].ws(), client.Options{
			HTTPClient: hcs[i%len(hcs)],
			Token:      func(context.Context) (string, error) { return e.token(u, couponmesh.RoleShopper) },
		})
		clients[i] = c
		return err
	})
	if ctx.Err() != nil {
		return clients, took, ctx.Err()
	}
	if err != nil {
		return clients, took, fmt.Errorf("%d of %d sessions failed, first: %w", failed, n, err)
	}
	return clients, took, nil
}

// nodeMetrics are the samples of a node's /metrics, by name with labels
// (`name{label="v"}`), the values summed over duplicates.
type nodeMetrics map[string]float64

func (m nodeMetrics) get(name string) float64 { return m[name] }

// sum is the sum of name's samples over all their labels.
func (m nodeMetrics) sum(name string) float64 {
	var v float64
	for k, x := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			v += x
		}
	}
	return v
}

// scrapeNodeMetrics reads the node's Prometheus metrics from its admin
// listener (loopback, no admin token in bench nodes).
func scrapeNodeMetrics(node *benchNode) (nodeMetrics, error) {
	resp, err := http.Get("http://" + node.admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: %s", resp.Status)
	}
	m := nodeMetrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			continue
		}
		m[l[:i]] += v
	}
	return m, sc.Err()
}

// parseRates reads a comma-separated list of rates, each in (0, limit].
func parseRates(arg string, limit float64) ([]float64, error) {
	var rates []float64
	for _, s := range strings.Split(arg, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || r <= 0 || r > limit {
			return nil, fmt.Errorf("bad rate %q (0 < rate ≤ %g)", s, limit)
		}
		rates = append(rates, r)
	}
	return rates, nil
}

// stopBenchNode stops one node gracefully (SIGTERM: it drains and writes
// its snapshots), SIGKILL after 30 s. benchEnv.close skips it afterwards.
func stopBenchNode(n *benchNode) error {
	if n.cmd.Terminate(30 * time.Second) {
		return fmt.Errorf("node %s did not stop within 30s of SIGTERM: killed", n.name)
	}
	if err := n.cmd.Err(); err != nil {
		return fmt.Errorf("node %s stopped: %w", n.name, err)
	}
	return nil
}
