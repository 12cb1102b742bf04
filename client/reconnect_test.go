package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/internal/testutil"
	"github.com/couponmesh/couponmesh/transport/auth"
	"github.com/couponmesh/couponmesh/transport/transporttest"
	"github.com/couponmesh/couponmesh/transport/ws"
)

// world is two nodes (real ws.Handlers on httptest servers) over one
// in-memory service and hub, as a cluster looks to its clients, each behind
// a relay that the test controls.
type world struct {
	svc    *transporttest.Service
	tokens *auth.Tokens
	a, b   *relay

	mu       sync.Mutex
	attempts []string // relay names, in the order connections were attempted
}

// newWorld builds the world; hook, if not nil, becomes the service's Hook
// (set before any server starts).
func newWorld(t *testing.T, hook func(ctx context.Context, method string) error) *world {
	t.Helper()
	hub := transporttest.NewHub()
	w := &world{svc: transporttest.NewService(hub)}
	w.svc.Hook = hook
	var err error
	if w.tokens, err = auth.New(auth.LocalConfig("reconnect tests")); err != nil {
		t.Fatal(err)
	}
	node := func() string {
		h := ws.NewHandler(ws.LocalConfig(), w.svc, hub, w.tokens, prometheus.NewRegistry(), nil)
		srv := httptest.NewServer(h)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			h.Shutdown(ctx)
			srv.Close()
		})
		return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	}
	w.a = newRelay(t, w, "a", node())
	w.b = newRelay(t, w, "b", node())
	return w
}

func (w *world) token(t *testing.T, user string) string {
	t.Helper()
	tok, _, err := w.tokens.Issue(couponmesh.Principal{User: user, Role: couponmesh.RoleShopper})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (w *world) attemptLog() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.attempts)
}

// put stores coupon id at version v (a change every follower's feed records).
func (w *world) put(id string, v int64) {
	w.svc.Put(couponmesh.Coupon{ID: id, Merchant: "shop1", Title: fmt.Sprintf("%s v%d", id, v), Quantity: 10, Version: v})
}

// relay is a WebSocket proxy in front of a node: it records the frames the
// client sends, and can refuse upgrades (503, as a draining node does),
// drop connections without a close frame, or close them with a code.
type relay struct {
	w        *world
	name     string
	backend  string
	url      string // ws://127.0.0.1:port/ws
	hostport string

	mu       sync.Mutex
	refuse   bool
	attempts int
	pairs    map[*pair]struct{}
	frames   []string
}

type pair struct {
	front, back *websocket.Conn
	cut         atomic.Bool // the test ended it: the pumps do not relay the end
}

func newRelay(t *testing.T, w *world, name, backend string) *relay {
	r := &relay{w: w, name: name, backend: backend, pairs: make(map[*pair]struct{})}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(func() {
		r.drop()
		srv.Close()
	})
	r.hostport = srv.Listener.Addr().String()
	r.url = "ws://" + r.hostport + "/ws"
	return r
}

func (r *relay) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.attempts++
	refuse := r.refuse
	r.mu.Unlock()
	r.w.mu.Lock()
	r.w.attempts = append(r.w.attempts, r.name)
	r.w.mu.Unlock()
	if refuse {
		http.Error(w, "node is draining", http.StatusServiceUnavailable)
		return
	}
	back, _, err := websocket.Dial(req.Context(), r.backend, &websocket.DialOptions{Subprotocols: []string{client.Subprotocol}})
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	back.SetReadLimit(1 << 20)
	front, err := websocket.Accept(w, req, &websocket.AcceptOptions{Subprotocols: []string{client.Subprotocol}})
	if err != nil {
		back.CloseNow()
		return
	}
	p := &pair{front: front, back: back}
	r.mu.Lock()
	r.pairs[p] = struct{}{}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.pairs, p)
		r.mu.Unlock()
	}()
	ctx := context.Background()
	go func() { // node → client
		for {
			typ, data, err := back.Read(ctx)
			if err != nil {
				if !p.cut.Load() {
					if code := websocket.CloseStatus(err); code != -1 {
						var ce websocket.CloseError
						errors.As(err, &ce)
						front.Close(code, ce.Reason)
					} else {
						front.CloseNow()
					}
				}
				return
			}
			if front.Write(ctx, typ, data) != nil {
				return
			}
		}
	}()
	for { // client → node
		typ, data, err := front.Read(ctx)
		if err != nil {
			if !p.cut.Load() {
				back.Close(websocket.StatusNormalClosure, "")
			}
			back.CloseNow()
			return
		}
		r.mu.Lock()
		r.frames = append(r.frames, string(data))
		r.mu.Unlock()
		if back.Write(ctx, typ, data) != nil {
			return
		}
	}
}

func (r *relay) setRefuse(v bool) {
	r.mu.Lock()
	r.refuse = v
	r.mu.Unlock()
}

func (r *relay) attemptCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempts
}

func (r *relay) open() []*pair {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ps []*pair
	for p := range r.pairs {
		ps = append(ps, p)
	}
	return ps
}

// drop cuts every connection without a close frame (1006 for the client).
func (r *relay) drop() {
	for _, p := range r.open() {
		p.cut.Store(true)
		p.front.CloseNow()
		p.back.CloseNow()
	}
}

// closeWith closes every client connection with code and reason.
func (r *relay) closeWith(code websocket.StatusCode, reason string) {
	for _, p := range r.open() {
		p.cut.Store(true)
		p.back.CloseNow()
		go p.front.Close(code, reason)
	}
}

// sent returns the frames with op the client sent through this relay.
func (r *relay) sent(op string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, f := range r.frames {
		if strings.Contains(f, `"op":"`+op+`"`) {
			out = append(out, f)
		}
	}
	return out
}

// recorder keeps what the callbacks of a client received.
type recorder struct {
	mu      sync.Mutex
	coupons []string
	feed    []int64
	states  []client.State
}

func (r *recorder) options(tok string) client.Options {
	return client.Options{
		Reconnect: true,
		Token:     func(context.Context) (string, error) { return tok, nil },
		Backoff:   client.Backoff{Base: time.Millisecond, Max: 10 * time.Millisecond},
		OnCoupon: func(c couponmesh.Coupon) {
			r.mu.Lock()
			r.coupons = append(r.coupons, fmt.Sprintf("%s v%d", c.ID, c.Version))
			r.mu.Unlock()
		},
		OnFeed: func(e couponmesh.FeedEntry) {
			r.mu.Lock()
			r.feed = append(r.feed, e.Seq)
			r.mu.Unlock()
		},
		OnState: func(s client.State) {
			r.mu.Lock()
			r.states = append(r.states, s)
			r.mu.Unlock()
		},
	}
}

func (r *recorder) snapshot() (coupons []string, feed []int64, states []client.State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.coupons), slices.Clone(r.feed), slices.Clone(r.states)
}

func (r *recorder) wantCoupons(want ...string) func() error {
	return func() error {
		got, _, _ := r.snapshot()
		if !slices.Equal(got, want) {
			return fmt.Errorf("OnCoupon got %q, want %q", got, want)
		}
		return nil
	}
}

func (r *recorder) wantFeed(want ...int64) func() error {
	return func() error {
		_, got, _ := r.snapshot()
		if !slices.Equal(got, want) {
			return fmt.Errorf("OnFeed got seqs %v, want %v", got, want)
		}
		return nil
	}
}

func (r *recorder) wantStates(want ...client.State) func() error {
	return func() error {
		_, _, got := r.snapshot()
		if !slices.Equal(got, want) {
			return fmt.Errorf("OnState got %v, want %v", got, want)
		}
		return nil
	}
}

// TestDrainCloseMovesToNamedNode: node a closes with 1012 naming node b;
// the client goes to b first, resubscribes with the versions it holds and
// receives only the snapshot that changed while it was away.
func TestDrainCloseMovesToNamedNode(t *testing.T) {
	w := newWorld(t, nil)
	w.put("x", 1)
	w.put("y", 1)
	var rec recorder
	c, err := client.Dial(ctxT(t), w.a.url, rec.options(w.token(t, "alice")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if snaps, err := c.Subscribe(ctxT(t), []client.Sub{{ID: "x"}, {ID: "y"}}); err != nil || len(snaps) != 2 {
		t.Fatalf("subscribe: %v %v", snaps, err)
	}

	// Both nodes refuse for now (a drains, b is not ready yet), so that x
	// changes while the client is away.
	w.a.setRefuse(true)
	w.b.setRefuse(true)
	before := len(w.attemptLog())
	w.a.closeWith(websocket.StatusServiceRestart, w.b.hostport+", not an address!")
	testutil.CheckFor(t, 5*time.Second, "an attempt at node b", func() error {
		if w.b.attemptCount() == 0 {
			return errors.New("no attempt at node b")
		}
		return nil
	})
	if log := w.attemptLog(); log[before] != "b" {
		t.Fatalf("attempts after the 1012 close: %v, want b first", log[before:])
	}
	w.put("x", 2)
	w.b.setRefuse(false)
	testutil.CheckFor(t, 5*time.Second, "coupons", rec.wantCoupons("x v2"))
	testutil.CheckFor(t, 5*time.Second, "states", rec.wantStates(client.StateConnected, client.StateReconnecting, client.StateConnected))

	subs := w.b.sent("subscribe")
	if len(subs) != 1 || !strings.Contains(subs[0], `{"id":"x","version":1}`) || !strings.Contains(subs[0], `{"id":"y","version":1}`) {
		t.Fatalf("resubscribe at b: %q", subs)
	}
	if auths := w.b.sent("auth"); len(auths) != 1 {
		t.Fatalf("auth frames at b: %q", auths)
	}
	// Live pushes now come from b.
	w.put("y", 2)
	testutil.CheckFor(t, 5*time.Second, "coupons", rec.wantCoupons("x v2", "y v2"))
	if err := c.Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// TestDropResumesFeed: the connection ends without a close frame; the
// client retries with backoff while the node refuses, then resyncs: the
// feed resumes after the last seq it delivered, without gaps or
// duplicates, and the coupon from the version it held.
func TestDropResumesFeed(t *testing.T) {
	w := newWorld(t, nil)
	w.put("x", 1)
	var rec recorder
	c, err := client.Dial(ctxT(t), w.a.url, rec.options(w.token(t, "alice")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Follow(ctxT(t), "x"); err != nil {
		t.Fatal(err)
	}
	entries, err := c.Feed(ctxT(t), 0, 0)
	if err != nil || len(entries) != 1 || entries[0].Type != couponmesh.FeedFollowed {
		t.Fatalf("feed: %+v %v", entries, err)
	}
	w.put("x", 2) // feed seq 2, pushed live
	testutil.CheckFor(t, 5*time.Second, "feed", rec.wantFeed(2))
	testutil.CheckFor(t, 5*time.Second, "coupons", rec.wantCoupons("x v2"))

	w.a.setRefuse(true)
	n := w.a.attemptCount()
	w.a.drop()
	testutil.CheckFor(t, 5*time.Second, "reconnect attempts", func() error {
		if got := w.a.attemptCount() - n; got < 3 {
			return fmt.Errorf("%d attempts after the drop, want 3 or more", got)
		}
		return nil
	})
	if got := c.State(); got != client.StateReconnecting {
		t.Fatalf("state %v while the node refuses", got)
	}
	w.put("x", 3) // seqs 3 and 4 while away
	w.put("x", 4)
	w.a.setRefuse(false)
	testutil.CheckFor(t, 5*time.Second, "feed", rec.wantFeed(2, 3, 4))
	testutil.CheckFor(t, 5*time.Second, "coupons", rec.wantCoupons("x v2", "x v4"))
	w.put("x", 5)
	testutil.CheckFor(t, 5*time.Second, "feed", rec.wantFeed(2, 3, 4, 5))
	testutil.CheckFor(t, 5*time.Second, "coupons", rec.wantCoupons("x v2", "x v4", "x v5"))

	feeds := w.a.sent("feed")
	if len(feeds) != 2 || !strings.Contains(feeds[1], `"after":2`) {
		t.Fatalf("feed requests %q, want a resume after 2", feeds)
	}
	subs := w.a.sent("subscribe")
	if len(subs) != 1 || !strings.Contains(subs[0], `{"id":"x","version":2}`) {
		t.Fatalf("resubscribe %q", subs)
	}
}

// TestClaimInFlightRetriedWithSameRid: the node drops while a claim is in
// flight; the claim is sent again with its rid on the next connection, the
// call returns the one claim, and the user holds one claim.
func TestClaimInFlightRetriedWithSameRid(t *testing.T) {
	var calls atomic.Int32
	entered, release := make(chan struct{}), make(chan struct{})
	w := newWorld(t, func(_ context.Context, method string) error {
		if method == "Claim" && calls.Add(1) == 1 {
			close(entered)
			<-release // the first claim completes only after the retry
		}
		return nil
	})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	w.put("x", 1)
	var rec recorder
	c, err := client.Dial(ctxT(t), w.a.url, rec.options(w.token(t, "alice")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	type answer struct {
		cl  couponmesh.Claim
		err error
	}
	answers := make(chan answer, 2)
	go func() {
		cl, err := c.Claim(ctxT(t), "x", "rid-1")
		answers <- answer{cl, err}
	}()
	<-entered
	w.a.drop()
	a := <-answers
	if a.err != nil || a.cl.N != 1 || a.cl.User != "alice" {
		t.Fatalf("claim across the drop: %+v %v", a.cl, a.err)
	}
	close(release)
	claims := w.a.sent("claim")
	if len(claims) != 2 || claims[0][strings.Index(claims[0], `"op"`):] != claims[1][strings.Index(claims[1], `"op"`):] ||
		!strings.Contains(claims[1], `"rid":"rid-1"`) {
		t.Fatalf("claim frames %q, want the same claim twice", claims)
	}
	wallet, err := c.Wallet(ctxT(t))
	if err != nil || len(wallet) != 1 || wallet[0].Code != a.cl.Code {
		t.Fatalf("wallet %+v %v", wallet, err)
	}
	testutil.CheckFor(t, 5*time.Second, "the retried claim at the service", func() error {
		if n := calls.Load(); n != 2 {
			return fmt.Errorf("%d claims reached the service", n)
		}
		return nil
	})
	if cp, err := w.svc.Coupon(ctxT(t), "x"); err != nil || cp.Claimed != 1 {
		t.Fatalf("coupon after the retried claim: %+v %v", cp, err)
	}
	select {
	case a := <-answers:
		t.Fatalf("a second answer: %+v", a)
	default:
	}
}

// TestPolicyCloseDoesNotReconnect: 1008 (auth) ends the client for good.
func TestPolicyCloseDoesNotReconnect(t *testing.T) {
	w := newWorld(t, nil)
	var rec recorder
	c, err := client.Dial(ctxT(t), w.a.url, rec.options(w.token(t, "alice")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w.a.closeWith(websocket.StatusPolicyViolation, "token expired")
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("client still alive after 1008")
	}
	if got := c.CloseStatus(); got != websocket.StatusPolicyViolation {
		t.Fatalf("CloseStatus %v", got)
	}
	if err := c.Ping(ctxT(t)); !errors.Is(err, client.ErrClosed) || !strings.Contains(err.Error(), "1008") {
		t.Fatalf("call after 1008: %v", err)
	}
	// Done is closed by the supervisor as it gives up: it dials no more.
	if n := w.a.attemptCount(); n != 1 {
		t.Fatalf("%d connection attempts, want 1", n)
	}
	testutil.CheckFor(t, 5*time.Second, "states", rec.wantStates(client.StateConnected, client.StateClosed))
}

// countingTransport counts the upgrade requests a client starts.
type countingTransport struct{ n atomic.Int32 }

func (ct *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	ct.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

// TestCloseStopsReconnecting: calls wait across a reconnect until their
// deadline; Close stops the attempts and fails the waiting calls.
func TestCloseStopsReconnecting(t *testing.T) {
	w := newWorld(t, nil)
	var rec recorder
	opts := rec.options(w.token(t, "alice"))
	dials := &countingTransport{}
	opts.HTTPClient = &http.Client{Transport: dials}
	c, err := client.Dial(ctxT(t), w.a.url, opts)
	if err != nil {
		t.Fatal(err)
	}
	w.a.setRefuse(true)
	w.a.drop()
	testutil.CheckFor(t, 5*time.Second, "dials while reconnecting", func() error {
		if n := dials.n.Load(); n < 4 {
			return fmt.Errorf("%d dials", n)
		}
		return nil
	})
	short, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := c.Ping(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ping while reconnecting: %v, want the deadline", err)
	}
	waiting := make(chan error, 1)
	go func() { waiting <- c.Ping(ctxT(t)) }()
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-waiting:
		if !errors.Is(err, client.ErrClosed) {
			t.Fatalf("waiting call after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiting call survived Close")
	}
	n := dials.n.Load()
	time.Sleep(30 * time.Millisecond) // many backoff periods
	if m := dials.n.Load(); m != n {
		t.Fatalf("%d dials after Close", m-n)
	}
	if got := c.State(); got != client.StateClosed {
		t.Fatalf("state %v after Close", got)
	}
	testutil.CheckFor(t, 5*time.Second, "states", rec.wantStates(client.StateConnected, client.StateReconnecting, client.StateClosed))
}

func TestBackoffBounds(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name    string
		b       client.Backoff
		attempt int
		ceiling time.Duration
	}{
		{"first attempt", client.Backoff{Base: 100 * ms, Max: 5000 * ms}, 0, 100 * ms},
		{"doubles", client.Backoff{Base: 100 * ms, Max: 5000 * ms}, 3, 800 * ms},
		{"capped", client.Backoff{Base: 100 * ms, Max: 5000 * ms}, 6, 5000 * ms},
		{"no overflow", client.Backoff{Base: 100 * ms, Max: 5000 * ms}, 200, 5000 * ms},
		{"negative attempt", client.Backoff{Base: 100 * ms, Max: 5000 * ms}, -1, 100 * ms},
		{"base above max", client.Backoff{Base: 9 * time.Second, Max: time.Second}, 0, time.Second},
		{"defaults", client.Backoff{}, 1, 500 * ms},
		{"default max", client.Backoff{Base: time.Second}, 10, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.b.Ceiling(tc.attempt); got != tc.ceiling {
				t.Fatalf("Ceiling(%d) = %v, want %v", tc.attempt, got, tc.ceiling)
			}
			var lo, hi time.Duration = tc.ceiling, 0
			for range 2000 {
				d := tc.b.Delay(tc.attempt)
				if d < 0 || d > tc.ceiling {
					t.Fatalf("Delay(%d) = %v, outside [0, %v]", tc.attempt, d, tc.ceiling)
				}
				lo, hi = min(lo, d), max(hi, d)
			}
			// Full jitter: the draws spread over the whole range.
			if lo > tc.ceiling/10 || hi < tc.ceiling*9/10 {
				t.Fatalf("2000 delays within [%v, %v] of [0, %v]: not full jitter", lo, hi, tc.ceiling)
			}
		})
	}
}

// TestDialWithTokenAndAddresses: Options.Token authenticates at Dial; a
// dead first address is skipped; a bad address is an error.
func TestDialWithTokenAndAddresses(t *testing.T) {
	w := newWorld(t, nil)
	w.put("x", 1)
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	var rec recorder
	opts := rec.options(w.token(t, "alice"))
	opts.Addresses = []string{w.b.hostport}
	c, err := client.Dial(ctxT(t), "ws"+strings.TrimPrefix(dead.URL, "http")+"/ws", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Get(ctxT(t), "x"); err != nil {
		t.Fatalf("get after Dial with a token: %v", err)
	}
	if w.b.attemptCount() != 1 {
		t.Fatalf("b attempts %d", w.b.attemptCount())
	}
	opts.Addresses = []string{"ftp://nope"}
	if _, err := client.Dial(ctxT(t), w.a.url, opts); err == nil || !strings.Contains(err.Error(), "bad address") {
		t.Fatalf("Dial with a bad address: %v", err)
	}
	opts.Addresses = nil
	opts.Token = func(context.Context) (string, error) { return "garbage", nil }
	if _, err := client.Dial(ctxT(t), w.a.url, opts); couponmesh.ErrorCode(err) != couponmesh.CodeUnauthorized {
		t.Fatalf("Dial with a bad token: %v", err)
	}
}

// TestReauthBeforeExpiry: with Options.Token, the client sends a fresh
// token before the current one expires, on the same connection.
func TestReauthBeforeExpiry(t *testing.T) {
	w := newWorld(t, nil)
	cfg := auth.LocalConfig("reconnect tests")
	cfg.TTL = 2 * time.Second
	short, err := auth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var issued atomic.Int32
	var rec recorder
	opts := rec.options("")
	opts.Token = func(context.Context) (string, error) {
		issued.Add(1)
		tok, _, err := short.Issue(couponmesh.Principal{User: "alice", Role: couponmesh.RoleShopper})
		return tok, err
	}
	c, err := client.Dial(ctxT(t), w.a.url, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testutil.CheckFor(t, 5*time.Second, "auth frames", func() error {
		if n := len(w.a.sent("auth")); n < 2 {
			return fmt.Errorf("%d auth frames", n)
		}
		return nil
	})
	if err := c.Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if n := w.a.attemptCount(); n != 1 {
		t.Fatalf("%d connections, want the first one only", n)
	}
}

// TestFeedGapFilledAndDeduped: a feed push after a gap makes the client
// read the missing entries; entries seen twice (in a page and as a push)
// reach OnFeed once, in seq order.
func TestFeedGapFilledAndDeduped(t *testing.T) {
	entry := func(seq int) string {
		return fmt.Sprintf(`{"seq":%d,"type":"claimed","coupon":"x"}`, seq)
	}
	var pings atomic.Int32
	url := scripted(t, func(req string) string {
		switch {
		case strings.Contains(req, `"op":"feed"`) && strings.Contains(req, `"after":0`):
			return `{"id":ID,"ok":{"entries":[` + entry(1) + `]}}`
		case strings.Contains(req, `"op":"feed"`) && strings.Contains(req, `"after":1`):
			return `{"push":"feed","entry":` + entry(3) + `}` + "\n" + `{"id":ID,"ok":{"entries":[` + entry(2) + `,` + entry(3) + `]}}`
		case strings.Contains(req, `"op":"ping"`) && pings.Add(1) == 1:
			return `{"push":"feed","entry":` + entry(3) + `}` + "\n" + `{"id":ID,"ok":{}}`
		case strings.Contains(req, `"op":"ping"`):
			return `{"push":"feed","entry":` + entry(2) + `}` + "\n" + `{"push":"feed","entry":` + entry(4) + `}` + "\n" + `{"id":ID,"ok":{}}`
		}
		return `{"id":ID,"error":{"code":"bad_request","message":"unexpected"}}`
	})
	var rec recorder
	c, err := client.Dial(ctxT(t), url, client.Options{OnFeed: rec.options("").OnFeed})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if entries, err := c.Feed(ctxT(t), 0, 0); err != nil || len(entries) != 1 {
		t.Fatalf("feed: %v %v", entries, err)
	}
	if err := c.Ping(ctxT(t)); err != nil { // pushes 3: a gap after 1
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, "feed", rec.wantFeed(2, 3))
	if err := c.Ping(ctxT(t)); err != nil { // pushes 2 again, then 4
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, "feed", rec.wantFeed(2, 3, 4))
}

// TestPingDetectsDeadConnection: the first server answers auth, then stops
// reading (so no pong comes back, as on a black-holed network); with
// PingInterval the client cuts that connection and reconnects.
func TestPingDetectsDeadConnection(t *testing.T) {
	var conns atomic.Int32
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{client.Subprotocol}})
		if err != nil {
			return
		}
		defer c.CloseNow()
		first := conns.Add(1) == 1
		for {
			_, data, err := c.Read(context.Background())
			if err != nil {
				return
			}
			id := strings.TrimPrefix(string(data), `{"id":`)
			id = id[:strings.IndexByte(id, ',')]
			if c.Write(context.Background(), websocket.MessageText, []byte(`{"id":`+id+`,"ok":{}}`)) != nil {
				return
			}
			if first {
				<-stop // read nothing more: pings go unanswered
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) })
	var rec recorder
	opts := rec.options("tok")
	opts.PingInterval = 50 * time.Millisecond
	c, err := client.Dial(ctxT(t), "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testutil.CheckFor(t, 5*time.Second, "states", rec.wantStates(client.StateConnected, client.StateReconnecting, client.StateConnected))
	if err := c.Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

// walletHeldOnA dials node a of a new world, with Reconnect as given, and
// makes a wallet read that node a holds (its first, until its session
// ends); it returns once node a runs it. The read's error comes on the
// channel.
func walletHeldOnA(t *testing.T, reconnect bool) (*world, <-chan error) {
	t.Helper()
	held := make(chan struct{}, 1)
	var first atomic.Bool
	w := newWorld(t, func(ctx context.Context, method string) error {
		if method == "Wallet" && first.CompareAndSwap(false, true) {
			held <- struct{}{}
			<-ctx.Done() // until node a's session ends
		}
		return nil
	})
	var rec recorder
	opts := rec.options(w.token(t, "alice"))
	opts.Reconnect = reconnect
	c, err := client.Dial(ctxT(t), w.a.url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx := ctxT(t)
	res := make(chan error, 1)
	go func() {
		_, err := c.Wallet(ctx)
		res <- err
	}()
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("the wallet read never reached node a")
	}
	return w, res
}

// result waits for the error on res.
func result(t *testing.T, res <-chan error) error {
	t.Helper()
	select {
	case err := <-res:
		return err
	case <-ctxT(t).Done():
		t.Fatal("the wallet read did not return")
		return nil
	}
}

// TestPendingAt1012IsNotSent: a call still waiting for its reply when the
// node closes with 1012 was never run there (a node answers every request
// it ran before its 1012 close: docs/PROTOCOL.md, "Drain handover"). Without
// Reconnect it fails with an error wrapping ErrNotSent and ErrClosed; with
// Reconnect it is sent again on the node the close names and answered
// there. Node a holds the wallet read and its relay closes with 1012, as a
// node does that read the request only after it had decided to close.
func TestPendingAt1012IsNotSent(t *testing.T) {
	for _, reconnect := range []bool{false, true} {
		t.Run(fmt.Sprintf("reconnect=%v", reconnect), func(t *testing.T) {
			w, res := walletHeldOnA(t, reconnect)
			w.a.closeWith(websocket.StatusServiceRestart, w.b.hostport)
			err := result(t, res)
			if !reconnect {
				if !errors.Is(err, client.ErrNotSent) || !errors.Is(err, client.ErrClosed) {
					t.Fatalf("wallet pending at the 1012 close: %v, want ErrNotSent and ErrClosed", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("wallet pending at the 1012 close, with Reconnect: %v, want it answered by node b", err)
			}
			if sent := w.b.sent("wallet"); len(sent) != 1 {
				t.Fatalf("wallet frames at node b: %q, want the one sent again", sent)
			}
		})
	}
}

// TestPendingAtOtherClosesIsNotNotSent: a call pending when the
// connection ends otherwise than with 1012 (1011, or without a close
// frame) has an unknown outcome: ErrClosed without ErrNotSent.
func TestPendingAtOtherClosesIsNotNotSent(t *testing.T) {
	for _, code := range []websocket.StatusCode{websocket.StatusInternalError, -1} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			w, res := walletHeldOnA(t, false)
			if code == -1 {
				w.a.drop()
			} else {
				w.a.closeWith(code, "requests still running")
			}
			if err := result(t, res); !errors.Is(err, client.ErrClosed) || errors.Is(err, client.ErrNotSent) {
				t.Fatalf("wallet pending at close %v: %v, want ErrClosed without ErrNotSent", code, err)
			}
		})
	}
}
