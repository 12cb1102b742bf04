package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/internal/testutil"
	"github.com/couponmesh/couponmesh/transport/ws"
)

// The public listener's header limits: a 64 KiB header gets 431 before any
// handler runs, a header that never ends is cut after ReadHeaderTimeout, and
// an API body over 64 KiB gets a clear 400; the node keeps serving.
func TestPublicHTTPLimits(t *testing.T) {
	a := startApp(t, nil)
	t.Run("64 KiB header gets 431", func(t *testing.T) {
		req, _ := http.NewRequest("GET", baseURL(a)+"/api/coupons", nil)
		req.Header.Set("X-Big", strings.Repeat("x", 64<<10))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status %d, want 431", resp.StatusCode)
		}
	})
	t.Run("64 KiB header on the WebSocket upgrade gets 431", func(t *testing.T) {
		h := http.Header{"Origin": {"http://localhost"}, "Cookie": {strings.Repeat("y", 64<<10)}}
		_, resp, err := websocket.Dial(context.Background(), wsURL(a), &websocket.DialOptions{HTTPHeader: h, Subprotocols: []string{ws.Subprotocol}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("dial: %v (response %v), want 431", err, resp)
		}
	})
	t.Run("body over 64 KiB gets 400", func(t *testing.T) {
		tok := login(t, baseURL(a), "acme", couponmesh.RoleMerchant)
		// A body that never ends: the server must stop reading and answer.
		body := io.MultiReader(strings.NewReader(`{"title":"x","quantity":1,"description":"`), endless{})
		req, _ := http.NewRequest("POST", baseURL(a)+"/api/coupons", body)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "larger than 65536 bytes") {
			t.Fatalf("status %d %s, want 400 naming the limit", resp.StatusCode, b)
		}
	})
	t.Run("slow header is cut", func(t *testing.T) {
		conn, err := net.Dial("tcp", a.HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
		start := time.Now()
		stop := make(chan struct{})
		defer close(stop)
		go func() { // a header line every second, never the end of the header
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(time.Second):
				}
				if _, err := fmt.Fprintf(conn, "X-Slow-%d: y\r\n", i); err != nil {
					return
				}
			}
		}()
		conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		took := time.Since(start)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestTimeout {
				t.Fatalf("answered %d", resp.StatusCode)
			}
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("connection still open after %v", took)
		}
		if took < 4*time.Second || took > 8*time.Second {
			t.Fatalf("cut after %v, want about ReadHeaderTimeout (5 s)", took)
		}
		t.Logf("slow header cut after %v (%v)", took.Round(time.Millisecond), err)
	})
	if _, err := client.NewAPI(baseURL(a), "").Browse(context.Background(), couponmesh.BrowseQuery{}); err != nil {
		t.Fatalf("node after the limits: %v", err)
	}
}

type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

// writeOutcomes counts ok and rate_limited answers of a user's writes.
type writeOutcomes struct {
	ok, limited atomic.Int64
	mu          sync.Mutex
	other       []error
}

func (w *writeOutcomes) add(err error) {
	switch couponmesh.ErrorCode(err) {
	case "":
		w.ok.Add(1)
	case couponmesh.CodeRateLimited:
		w.limited.Add(1)
	default:
		w.mu.Lock()
		w.other = append(w.other, err)
		w.mu.Unlock()
	}
}

// A user's writes (claims, follows, unfollows) are bounded by one token
// bucket in its user grain, however many sessions it spreads them over.
func TestUserWriteRateAcrossSessions(t *testing.T) {
	const rate, burst = 5, 10
	a := startApp(t, func(c *Config) { c.Limits.UserWriteRate, c.Limits.UserWriteBurst = rate, burst })
	api := client.NewAPI(baseURL(a), login(t, baseURL(a), "acme", couponmesh.RoleMerchant))
	ctx := context.Background()
	var ids []string
	for i := range 40 {
		c, err := api.CreateCoupon(ctx, couponmesh.CouponSpec{ID: fmt.Sprintf("w%d", i), Title: ptr("w"), Quantity: ptr(5)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	sessions := []*client.Client{dial(t, a, "flo", client.Options{}), dial(t, a, "flo", client.Options{}), dial(t, a, "flo", client.Options{})}
	var out writeOutcomes
	start := time.Now()
	var wg sync.WaitGroup
	for i, s := range sessions {
		wg.Go(func() {
			for k := i; k < len(ids); k += len(sessions) {
				_, err := s.Claim(ctx, ids[k], "r"+ids[k])
				out.add(err)
				_, err = s.Follow(ctx, ids[k])
				out.add(err)
				out.add(s.Unfollow(ctx, ids[k]))
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	if len(out.other) > 0 {
		t.Fatalf("unexpected errors: %v", out.other)
	}
	allowed := burst + int64(float64(rate)*el.Seconds()) + 1
	t.Logf("%d writes over 3 sessions in %v: %d ok, %d rate_limited (bucket allows %d)",
		out.ok.Load()+out.limited.Load(), el.Round(time.Millisecond), out.ok.Load(), out.limited.Load(), allowed)
	if out.ok.Load() > allowed || out.ok.Load() < burst {
		t.Fatalf("%d writes admitted, want between %d and %d", out.ok.Load(), burst, allowed)
	}
	// A refused claim changed nothing: the wallet holds exactly the claims
	// that were answered ok.
	w, err := sessions[0].Wallet(ctx)
	if err != nil {
		t.Fatal(err)
	}
	claimed := 0
	for _, id := range ids {
		c, err := sessions[0].Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		claimed += c.Claimed
	}
	if claimed != len(w) {
		t.Fatalf("%d units claimed, wallet holds %d", claimed, len(w))
	}
	// Reads are not writes; another user has its own bucket.
	if _, err := sessions[1].Wallet(ctx); err != nil {
		t.Fatalf("read while limited: %v", err)
	}
	other := dial(t, a, "gus", client.Options{})
	if _, err := other.Claim(ctx, ids[0], "g1"); err != nil {
		t.Fatalf("another user's claim: %v", err)
	}
}

// percentile returns the p-th percentile of ds (sorted in place).
func percentile(ds []time.Duration, p float64) time.Duration {
	slices.Sort(ds)
	i := int(float64(len(ds))*p+0.5) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

// measure runs n requests of a session alternately ping and get, one every
// 10 ms (within the session's own request rate), and returns their p50 and
// p99.
func latencies(t *testing.T, c *client.Client, coupon string, n int) (p50, p99 time.Duration) {
	t.Helper()
	ctx := context.Background()
	ds := make([]time.Duration, 0, n)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := range n {
		<-tick.C
		start := time.Now()
		var err error
		if i%2 == 0 {
			err = c.Ping(ctx)
		} else {
			_, err = c.Get(ctx, coupon)
		}
		if err != nil {
			t.Fatalf("victim's request %d: %v", i, err)
		}
		ds = append(ds, time.Since(start))
	}
	return percentile(ds, 0.5), percentile(ds, 0.99)
}

// While one user floods the node from several sessions (claims, follows,
// gets of the coupon everybody reads, garbage; never waiting for replies,
// reconnecting when closed), another user's requests are answered as fast
// as before: the flood is refused at the session and user limits. The node
// and the flooder run as processes of their own, so that the flooder's CPU
// does not queue the victim's goroutines in the node's scheduler (in one
// process it would: that measures the test, not the node).
func TestFloodDoesNotSlowOtherUsers(t *testing.T) {
	c := startCluster(t, 1)
	p := c.nodes[0]
	createCoupons(t, p, "f", 20, 10)
	popular := createCoupons(t, p, "popular", 1, 1_000_000)[0]
	victim := p.session(t, "vic")
	const n = 300
	latencies(t, victim, popular, 50) // warm up
	before50, before99 := latencies(t, victim, popular, n)

	tok, err := client.DevLogin(context.Background(), p.base(), "mal", couponmesh.RoleShopper)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$") // TestMain runs the flooder (floodProcess)
	// One core for the attacker, as a load generator on its own core would
	// have; the node and the victim share the other with whatever else runs.
	cmd.Env = append(os.Environ(), "COUPONMESH_TEST_FLOOD_URL="+p.ws(), "COUPONMESH_TEST_FLOOD_TOKEN="+tok, "GOMAXPROCS=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	limited0 := metric(t, p, "couponmesh_ws_frames_rate_limited_total")
	const (
		floodDrops   = `couponmesh_ws_sessions_dropped_total{reason="flood"}`
		floodedAuths = `couponmesh_ws_sessions_dropped_total{reason="user_flooded"}`
	)
	testutil.CheckFor(t, 20*time.Second, "the flood to be on and refused", func() error {
		if metric(t, p, floodDrops) < 1 || metric(t, p, floodedAuths) < 1 {
			return errors.New("no session closed for flooding and no reconnect refused yet")
		}
		return nil
	})
	during50, during99 := latencies(t, victim, popular, n)
	stdin.Close() // the flooder stops
	if err := cmd.Wait(); err != nil {
		t.Fatalf("flooder: %v\n%s", err, out.String())
	}
	var stats string
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, "FLOOD ") {
			stats = line[strings.Index(line, "FLOOD "):]
		}
	}
	var frames, closes, refused int64
	var secs float64
	if _, err := fmt.Sscanf(stats, "FLOOD frames=%d seconds=%g closes1008=%d refused429=%d", &frames, &secs, &closes, &refused); err != nil {
		t.Fatalf("flooder output %q: %v", out.String(), err)
	}
	t.Logf("victim before: p50 %v p99 %v; during the flood: p50 %v p99 %v", before50, before99, during50, during99)
	t.Logf("flood: one user, %d sessions at a time, %.0f frames/s for %.1f s; %d sessions closed 1008 (node: %.0f for flooding, %.0f reconnects refused), %d upgrades refused 429; node refused %.0f frames",
		flooders, float64(frames)/secs, secs, closes, metric(t, p, floodDrops), metric(t, p, floodedAuths), refused, metric(t, p, "couponmesh_ws_frames_rate_limited_total")-limited0)
	if closes == 0 {
		t.Error("no flooding session was closed with 1008")
	}
	bound := max(3*before99, 50*time.Millisecond)
	if during99 > bound {
		t.Errorf("victim's p99 during the flood %v > %v (3x before, at least 50 ms)", during99, bound)
	}
	if err := victim.Ping(context.Background()); err != nil {
		t.Fatalf("victim after the flood: %v", err)
	}
}

// flooders is how many sessions the flooder keeps open at once.
const flooders = 4

// floodProcess is the flooder of TestFloodDoesNotSlowOtherUsers: TestMain
// runs it instead of the tests when the test binary is started with its
// environment. It floods until its stdin closes, then prints what it did.
func floodProcess() bool {
	url, tok := os.Getenv("COUPONMESH_TEST_FLOOD_URL"), os.Getenv("COUPONMESH_TEST_FLOOD_TOKEN")
	if url == "" {
		return false
	}
	stop := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(stop) }()
	var frames, closes1008, refused atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for i := range flooders {
		wg.Go(func() { flood(url, tok, i, stop, &frames, &closes1008, &refused) })
	}
	wg.Wait()
	fmt.Printf("FLOOD frames=%d seconds=%g closes1008=%d refused429=%d\n",
		frames.Load(), time.Since(start).Seconds(), closes1008.Load(), refused.Load())
	return true
}

// flood sends requests on one session after another without waiting for
// replies, until stop: each session until the server closes it.
func flood(url, tok string, worker int, stop <-chan struct{}, frames, closes1008, refused *atomic.Int64) {
	frame := 0
	for {
		select {
		case <-stop:
			return
		default:
		}
		conn, resp, err := websocket.Dial(context.Background(), url, &websocket.DialOptions{
			HTTPHeader: http.Header{"Origin": {"http://localhost"}}, Subprotocols: []string{ws.Subprotocol}})
		if err != nil {
			if resp != nil && resp.StatusCode == http.StatusTooManyRequests {
				refused.Add(1)
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		conn.SetReadLimit(-1)
		done := make(chan struct{})
		go func() { // drain replies until the server closes
			defer close(done)
			for {
				if _, _, err := conn.Read(context.Background()); err != nil {
					if websocket.CloseStatus(err) == websocket.StatusPolicyViolation {
						closes1008.Add(1)
					}
					return
				}
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn.Write(ctx, websocket.MessageText, []byte(`{"id":1,"op":"auth","token":"`+tok+`"}`))
	send:
		for {
			frame++
			var msg string
			switch frame % 5 {
			case 0:
				msg = fmt.Sprintf(`{"id":%d,"op":"claim","coupon":"f%d","rid":"r%d-%d"}`, frame, frame%20, worker, frame)
			case 1:
				msg = fmt.Sprintf(`{"id":%d,"op":"follow","coupon":"f%d"}`, frame, frame%20)
			case 2:
				msg = fmt.Sprintf(`{"id":%d,"op":"get","coupon":"popular0"}`, frame)
			case 3:
				msg = fmt.Sprintf(`{"id":%d,"op":"unfollow","coupon":"f%d"}`, frame, frame%20)
			default:
				msg = `{"id":` + fmt.Sprint(frame) + `,"op":"nonsense"`
			}
			select {
			case <-stop:
				break send
			case <-done:
				break send
			default:
			}
			if err := conn.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				break
			}
			frames.Add(1)
		}
		cancel()
		conn.CloseNow()
		<-done
	}
}

// The per-user write bucket holds across nodes: a user with a session on
// each of two nodes gets no more writes through than one bucket allows.
func TestClusterUserWriteRateAcrossNodes(t *testing.T) {
	const rate, burst = 2, 10
	c := startCluster(t, 2, fmt.Sprintf("COUPONMESH_LIMITS_USER_WRITE_RATE=%d", rate), fmt.Sprintf("COUPONMESH_LIMITS_USER_WRITE_BURST=%d", burst))
	ids := createCoupons(t, c.nodes[0], "x", 30, 5)
	sessions := []*client.Client{c.nodes[0].session(t, "flo"), c.nodes[1].session(t, "flo")}
	ctx := context.Background()
	var out writeOutcomes
	start := time.Now()
	var wg sync.WaitGroup
	for i, s := range sessions {
		wg.Go(func() {
			for k := i; k < len(ids); k += len(sessions) {
				_, err := s.Claim(ctx, ids[k], "r"+ids[k])
				out.add(err)
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	if len(out.other) > 0 {
		t.Fatalf("unexpected errors: %v", out.other)
	}
	allowed := burst + int64(rate*el.Seconds()) + 1
	t.Logf("30 claims through 2 nodes in %v: %d ok, %d rate_limited (one bucket allows %d)",
		el.Round(time.Millisecond), out.ok.Load(), out.limited.Load(), allowed)
	if out.ok.Load() > allowed || out.ok.Load() < burst {
		t.Fatalf("%d claims admitted, want between %d and %d", out.ok.Load(), burst, allowed)
	}
	w, err := sessions[1].Wallet(ctx)
	if err != nil || int64(len(w)) != out.ok.Load() {
		t.Fatalf("wallet holds %d claims (%v), %d were answered ok", len(w), err, out.ok.Load())
	}
}

// The limits come from node.yaml and the environment, with the defaults of
// the packages that enforce them; a bad trusted proxy is an error.
func TestLimitsConfig(t *testing.T) {
	cfg, err := LoadConfig("../../configs/node.yaml", map[string]string{
		"COUPONMESH_WS_REQUEST_RATE":         "-1",
		"COUPONMESH_WS_TRUSTED_PROXIES":      "10.0.0.0/8,192.0.2.7,2001:db8::/32",
		"COUPONMESH_LIMITS_USER_WRITE_BURST": "7",
	})
	if err != nil {
		t.Fatal(err)
	}
	d := ws.DefaultConfig()
	if cfg.WS.RequestRate != -1 || cfg.WS.RequestBurst != d.RequestBurst || cfg.WS.SessionsPerUser != d.SessionsPerUser ||
		cfg.WS.SessionsPerIP != d.SessionsPerIP || cfg.WS.HandshakeRate != d.HandshakeRate || cfg.WS.FloodWindow != d.FloodWindow {
		t.Fatalf("ws limits %+v", cfg.WS)
	}
	if cfg.Limits.UserWriteRate != 10 || cfg.Limits.UserWriteBurst != 7 {
		t.Fatalf("limits %+v", cfg.Limits)
	}
	p, err := cfg.trustedProxies()
	if err != nil || len(p) != 3 || p[1].String() != "192.0.2.7/32" {
		t.Fatalf("trusted proxies %v %v", p, err)
	}
	// Defaults without a file are the same as node.yaml's.
	bare, _ := LoadConfig("", map[string]string{})
	if bare.WS.RequestRate != d.RequestRate || bare.WS.HandshakeBurst != d.HandshakeBurst || bare.Limits.UserWriteBurst != 100 {
		t.Fatalf("defaults %+v %+v", bare.WS, bare.Limits)
	}
	if _, err := LoadConfig("../../configs/node.yaml", map[string]string{"COUPONMESH_WS_TRUSTED_PROXIES": "10.0.0.0/33"}); err == nil || !strings.Contains(err.Error(), "trusted_proxies") {
		t.Fatalf("bad CIDR: %v", err)
	}
}
