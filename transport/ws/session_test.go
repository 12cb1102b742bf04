package ws_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
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
	"github.com/couponmesh/couponmesh/transport/auth"
	"github.com/couponmesh/couponmesh/transport/transporttest"
	"github.com/couponmesh/couponmesh/transport/ws"
)

func TestAuthTimeoutCloses1008(t *testing.T) {
	cfg := ws.LocalConfig()
	cfg.AuthTimeout = 200 * time.Millisecond
	e := newEnv(t, cfg)

	late := e.dial(client.Options{})
	select {
	case <-late.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("session without auth still open after 5 s")
	}
	if got := late.CloseStatus(); got != websocket.StatusPolicyViolation {
		t.Fatalf("close status %v, want 1008", got)
	}
	// Authenticating late is too late.
	if _, err := late.Auth(ctxT(t), e.token("alice", couponmesh.RoleShopper)); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("late auth: %v, want ErrClosed", err)
	}
	if got := e.metric("couponmesh_ws_sessions_dropped_total", "reason", "auth_timeout"); got != 1 {
		t.Fatalf("dropped{auth_timeout} = %v, want 1", got)
	}

	// A session that authenticates in time outlives the auth timeout.
	ok := e.login("bob", client.Options{})
	time.Sleep(3 * cfg.AuthTimeout)
	if err := ok.Ping(ctxT(t)); err != nil {
		t.Fatalf("authenticated session: %v", err)
	}
}

// TestTokenExpiryCloses1008: a session whose token runs out without a
// re-auth is closed; a re-auth with a fresh token keeps it open.
func TestTokenExpiryCloses1008(t *testing.T) {
	e := newEnv(t, ws.LocalConfig())
	// Expired 28 s ago: still accepted within the 30 s leeway for 1–2 s more
	// (exp is whole seconds, so it loses up to one second to truncation).
	almost := signed(t, secret, claimsFor("alice", time.Now().Add(-auth.Leeway+2*time.Second)))

	expiring := e.dial(client.Options{})
	if _, err := expiring.Auth(ctxT(t), almost); err != nil {
		t.Fatal(err)
	}
	renewed := e.dial(client.Options{})
	if _, err := renewed.Auth(ctxT(t), almost); err != nil {
		t.Fatal(err)
	}
	info, err := renewed.Auth(ctxT(t), e.token("alice", couponmesh.RoleShopper))
	if err != nil {
		t.Fatal(err)
	}
	if info.User != "alice" || info.Role != couponmesh.RoleShopper || time.Until(info.ExpiresAt) < 30*time.Minute {
		t.Fatalf("auth reply %+v", info)
	}

	select {
	case <-expiring.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("session with an expired token still open")
	}
	if got := expiring.CloseStatus(); got != websocket.StatusPolicyViolation {
		t.Fatalf("close status %v, want 1008", got)
	}
	if err := renewed.Ping(ctxT(t)); err != nil {
		t.Fatalf("re-authenticated session: %v", err)
	}
	if got := e.metric("couponmesh_ws_sessions_dropped_total", "reason", "token_expired"); got != 1 {
		t.Fatalf("dropped{token_expired} = %v, want 1", got)
	}
}

// smallBuffers wraps a listener so that accepted connections have small
// kernel send buffers: a peer that stops reading then backs up into the
// session's queue after a few hundred kilobytes, not tens of megabytes.
type smallBuffers struct{ net.Listener }

// newSmallBufferEnv is newEnv with small server socket send buffers, so
// that a client that stops reading blocks the server's writes soon.
func newSmallBufferEnv(t *testing.T, cfg ws.Config) *env {
	t.Helper()
	e := newEnv(t, cfg)
	e.srv.Close()
	e.srv = httptest.NewUnstartedServer(e.h)
	e.srv.Listener = smallBuffers{e.srv.Listener}
	e.srv.Start()
	e.url = "ws" + strings.TrimPrefix(e.srv.URL, "http")
	return e
}

// slowRaw dials a raw connection with a small receive buffer: with the
// server's small send buffer, a few KiB of frames the client does not read
// stop the session's writer.
func (e *env) slowRaw() *rawConn {
	e.t.Helper()
	dialer := &net.Dialer{}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetReadBuffer(4 << 10)
		}
		return c, err
	}}}
	c, _, err := websocket.Dial(ctxT(e.t), e.url, &websocket.DialOptions{HTTPClient: hc, Subprotocols: []string{ws.Subprotocol}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.CloseNow() })
	c.SetReadLimit(-1)
	return &rawConn{t: e.t, c: c}
}

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(8 << 10)
	}
	return c, err
}

// TestSlowConsumerDropped: a session that stops reading is dropped with
// 1013 and detached from the hub, while the publisher never blocks and a
// healthy session receives growing versions to the last. If Send blocked, the
// publishing loop (which holds the hub's lock while it calls Send) would
// stall and the healthy session would miss pushes; if the queue were
// unbounded, no drop would happen.
func TestSlowConsumerDropped(t *testing.T) {
	cfg := ws.LocalConfig()
	cfg.SendQueue = 64
	cfg.PingInterval = time.Minute // no ping may end the slow session first
	cfg.CloseGrace = 10 * time.Second
	e := newSmallBufferEnv(t, cfg)

	desc := strings.Repeat("d", 2000)
	e.svc.Put(couponmesh.Coupon{ID: "hot", Merchant: "m", Title: "t", Quantity: 1, Description: desc})

	// The slow client: a raw connection with a small receive buffer that
	// stops reading after subscribing.
	slow := e.slowRaw()
	slow.auth(e.token("slow", couponmesh.RoleShopper))
	slow.send(`{"id":1,"op":"subscribe","coupons":[{"id":"hot"}]}`)
	if m := slow.mustNext(); m["ok"] == nil {
		t.Fatalf("subscribe: %v", m)
	}
	slow.send(`{"id":2,"op":"feed"}`)
	if m := slow.mustNext(); m["ok"] == nil {
		t.Fatalf("feed: %v", m)
	}

	var (
		mu   sync.Mutex
		got  []int64
		seen = make(chan struct{}, 1)
	)
	healthy := e.login("healthy", client.Options{OnCoupon: func(c couponmesh.Coupon) {
		mu.Lock()
		got = append(got, c.Version)
		mu.Unlock()
		select {
		case seen <- struct{}{}:
		default:
		}
	}})
	if _, err := healthy.Subscribe(ctxT(t), []client.Sub{{ID: "hot", Version: 1}}); err != nil {
		t.Fatal(err)
	}
	if n := e.hub.Subscribers("hot"); n != 2 {
		t.Fatalf("%d subscribers, want 2", n)
	}

	// Publish until the slow session is gone, pacing on the healthy one so
	// that only the slow one falls behind.
	const max = 5000
	published := 0
	publisherDone := make(chan struct{})
	go func() {
		defer close(publisherDone)
		for v := int64(2); v < max; v++ {
			c := couponmesh.Coupon{ID: "hot", Merchant: "m", Title: "t", Quantity: 1, Description: desc, Version: v}
			e.hub.PublishCoupon(c)
			// Coupon pushes are conflated (one queued per coupon); the
			// slow session's feed is not, and fills its queue.
			e.hub.PublishFeed("slow", couponmesh.FeedEntry{Seq: v, Type: couponmesh.FeedCouponChanged, Coupon: "hot", Change: &c})
			published++
			if e.hub.Subscribers("hot") == 1 && published > 10 {
				return
			}
			mu.Lock()
			behind := lastOf(got) < v-int64(cfg.SendQueue/2)
			mu.Unlock()
			for behind {
				select {
				case <-seen:
				case <-time.After(5 * time.Second):
					return
				}
				mu.Lock()
				behind = lastOf(got) < v-int64(cfg.SendQueue/2)
				mu.Unlock()
			}
		}
	}()
	select {
	case <-publisherDone:
	case <-time.After(20 * time.Second):
		t.Fatal("publisher blocked: Send must never block")
	}
	if n := e.hub.Subscribers("hot"); n != 1 {
		t.Fatalf("after %d pushes the slow session is still subscribed (%d subscribers)", published, n)
	}
	testutil.Until(t, 5*time.Second, "slow_consumer metric", func() bool {
		return e.metric("couponmesh_ws_sessions_dropped_total", "reason", "slow_consumer") == 1
	})
	// Publishing coupons never touches the feed registration: only the
	// session's own Detach removes it, while its connection is still open.
	testutil.Until(t, 5*time.Second, "the dropped session to detach", func() bool { return e.hub.Attached("slow") == 0 })
	if e.h.Sessions() != 2 {
		t.Fatalf("%d sessions; the slow one should still be flushing", e.h.Sessions())
	}

	// The healthy session got growing versions up to the last (it may
	// skip one that a newer replaced while queued: conflation).
	last := int64(published + 1)
	testutil.Until(t, 10*time.Second, "healthy session to catch up", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0 && got[len(got)-1] == last
	})
	mu.Lock()
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			mu.Unlock()
			t.Fatalf("healthy session: push %d has version %d after %d", i, got[i], got[i-1])
		}
	}
	mu.Unlock()
	// And it keeps receiving.
	e.hub.PublishCoupon(couponmesh.Coupon{ID: "hot", Version: last + 1})
	testutil.Until(t, 5*time.Second, "a push after the drop", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return got[len(got)-1] == last+1
	})

	// The slow client, reading again, finds the close frame 1013 after
	// what was already in flight.
	if got := slow.closeStatus(); got != websocket.StatusTryAgainLater {
		t.Fatalf("slow session close status %v, want 1013", got)
	}
	testutil.Until(t, 5*time.Second, "session count 1", func() bool { return e.h.Sessions() == 1 })
}

// lastOf returns the last version in got (0: none).
func lastOf(got []int64) int64 {
	if len(got) == 0 {
		return 0
	}
	return got[len(got)-1]
}

// TestStuckClientsDoNotHoldBackOthers: more clients than the node has
// writers stop reading while their queues are allowed to grow; the writes to
// them block in the kernel. A healthy session still receives every push
// promptly: a writer stuck on a client does not hold the others' turns.
func TestStuckClientsDoNotHoldBackOthers(t *testing.T) {
	cfg := ws.LocalConfig()
	cfg.SendQueue = 1 << 20 // never dropped during the test: they stay stuck
	cfg.PingInterval = time.Minute
	e := newSmallBufferEnv(t, cfg)

	desc := strings.Repeat("d", 4000)
	e.svc.Put(couponmesh.Coupon{ID: "hot", Merchant: "m", Title: "t", Quantity: 1, Description: desc})
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetReadBuffer(4 << 10)
		}
		return c, err
	}}}
	const stuck = 24
	for i := range stuck {
		c, _, err := websocket.Dial(ctxT(t), e.url, &websocket.DialOptions{HTTPClient: hc, Subprotocols: []string{ws.Subprotocol}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		c.SetReadLimit(-1)
		r := &rawConn{t: t, c: c}
		r.auth(e.token(fmt.Sprintf("stuck%d", i), couponmesh.RoleShopper))
		r.send(`{"id":1,"op":"subscribe","coupons":[{"id":"hot"}]}`)
		if m := r.mustNext(); m["ok"] == nil {
			t.Fatalf("subscribe: %v", m)
		}
	}
	got := make(chan int64, 1024)
	healthy := e.login("healthy", client.Options{OnCoupon: func(c couponmesh.Coupon) { got <- c.Version }})
	if _, err := healthy.Subscribe(ctxT(t), []client.Sub{{ID: "hot", Version: 1}}); err != nil {
		t.Fatal(err)
	}
	// 200 pushes of 4 KB fill every stuck client's socket buffers many
	// times over; each must reach the healthy session within 2 s.
	for v := int64(2); v < 202; v++ {
		e.hub.PublishCoupon(couponmesh.Coupon{ID: "hot", Merchant: "m", Title: "t", Quantity: 1, Description: desc, Version: v})
		select {
		case g := <-got:
			if g != v {
				t.Fatalf("healthy session got version %d, want %d", g, v)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("push %d did not reach the healthy session within 2 s", v)
		}
	}
}

func TestSubscribeSnapshotsAndPushes(t *testing.T) {
	e := newEnv(t, ws.LocalConfig())
	e.svc.Put(couponmesh.Coupon{ID: "c1", Merchant: "m", Title: "one", Quantity: 5, Version: 3})
	e.svc.Put(couponmesh.Coupon{ID: "c2", Merchant: "m", Title: "two", Quantity: 5, Version: 7})

	pushes := make(chan couponmesh.Coupon, 16)
	c := e.login("alice", client.Options{OnCoupon: func(c couponmesh.Coupon) { pushes <- c }})
	res, err := c.SubscribeReport(ctxT(t), []client.Sub{{ID: "c1", Version: 3}, {ID: "c2", Version: 6}, {ID: "ghost"}, {ID: "c2", Version: 6}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Coupons) != 1 || res.Coupons[0].ID != "c2" || res.Coupons[0].Version != 7 {
		t.Fatalf("snapshots %+v, want only c2 v7 (c1 is not newer than 3)", res.Coupons)
	}
	if len(res.Missing) != 1 || res.Missing[0] != "ghost" {
		t.Fatalf("missing %v, want [ghost]", res.Missing)
	}
	if e.hub.Subscribers("ghost") != 0 {
		t.Fatal("a missing coupon stays subscribed")
	}
	all, err := c.Subscribe(ctxT(t), []client.Sub{{ID: "c1"}})
	if err != nil || len(all) != 1 || all[0].Version != 3 {
		t.Fatalf("version 0 must always get the snapshot: %+v %v", all, err)
	}

	if _, err := e.svc.UpdateCoupon(ctxT(t), couponmesh.Principal{User: "m", Role: couponmesh.RoleMerchant}, "c1", couponmesh.CouponSpec{Title: ptr("uno")}); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-pushes:
		if p.ID != "c1" || p.Version != 4 || p.Title != "uno" {
			t.Fatalf("push %+v", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no push after an update")
	}

	if err := c.Unsubscribe(ctxT(t), "c1"); err != nil {
		t.Fatal(err)
	}
	e.svc.UpdateCoupon(ctxT(t), couponmesh.Principal{User: "m", Role: couponmesh.RoleMerchant}, "c1", couponmesh.CouponSpec{Title: ptr("eins")})
	// Replies and pushes share one ordered queue: a push sent before the
	// ping would arrive before its reply.
	if err := c.Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-pushes:
		t.Fatalf("push %+v after unsubscribe", p)
	default:
	}

	got, err := c.Get(ctxT(t), "c1")
	if err != nil || got.Version != 5 {
		t.Fatalf("get: %+v %v", got, err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestFollowFeedClaimWallet(t *testing.T) {
	e := newEnv(t, ws.LocalConfig())
	e.svc.Put(couponmesh.Coupon{ID: "c1", Merchant: "m", Title: "one", Quantity: 1})
	e.svc.Put(couponmesh.Coupon{ID: "gone", Merchant: "m", Title: "two", Quantity: 5, Withdrawn: true})

	feed := make(chan couponmesh.FeedEntry, 16)
	coupons := make(chan couponmesh.Coupon, 16)
	c := e.login("alice", client.Options{
		OnFeed:   func(f couponmesh.FeedEntry) { feed <- f },
		OnCoupon: func(c couponmesh.Coupon) { coupons <- c },
	})
	ctx := ctxT(t)

	fc, err := c.Follow(ctx, "c1")
	if err != nil || fc.ID != "c1" {
		t.Fatalf("follow: %+v %v", fc, err)
	}
	if e.hub.Subscribers("c1") != 1 {
		t.Fatal("follow did not subscribe")
	}
	entries, err := c.Feed(ctx, 0, 0)
	if err != nil || len(entries) != 1 || entries[0].Seq != 1 || entries[0].Type != couponmesh.FeedFollowed {
		t.Fatalf("feed: %+v %v", entries, err)
	}
	if e.hub.Attached("alice") != 1 {
		t.Fatal("feed did not attach")
	}

	cl, err := c.Claim(ctx, "c1", "rid-1")
	if err != nil || cl.Coupon != "c1" || cl.User != "alice" || cl.N != 1 || cl.Code == "" {
		t.Fatalf("claim: %+v %v", cl, err)
	}
	again, err := c.Claim(ctx, "c1", "rid-1")
	if err != nil || again != cl {
		t.Fatalf("retried claim: %+v %v, want the first answer %+v", again, err, cl)
	}
	wantCode := func(err error, code couponmesh.Code) {
		t.Helper()
		var ce *couponmesh.Error
		if !errors.As(err, &ce) || ce.Code != code {
			t.Fatalf("error %v, want %s", err, code)
		}
	}
	_, err = c.Claim(ctx, "c1", "rid-2")
	wantCode(err, couponmesh.CodeAlreadyClaimed)
	bob := e.login("bob", client.Options{})
	_, err = bob.Claim(ctx, "c1", "rid-1")
	wantCode(err, couponmesh.CodeSoldOut)
	_, err = bob.Claim(ctx, "gone", "rid-1")
	wantCode(err, couponmesh.CodeExpired)
	_, err = bob.Claim(ctx, "nope", "rid-1")
	wantCode(err, couponmesh.CodeNotFound)

	// Live pushes: the feed entry of the claim and the coupon change.
	select {
	case f := <-feed:
		if f.Seq != 2 || f.Type != couponmesh.FeedClaimed || f.Claim == nil || *f.Claim != cl {
			t.Fatalf("feed push %+v", f)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no feed push for the claim")
	}
	select {
	case p := <-coupons:
		if p.ID != "c1" || p.Claimed != 1 || p.Status != couponmesh.StatusSoldOut {
			t.Fatalf("coupon push %+v", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no coupon push for the claim")
	}

	w, err := c.Wallet(ctx)
	if err != nil || len(w) != 1 || w[0] != cl {
		t.Fatalf("wallet: %+v %v", w, err)
	}
	empty, err := bob.Wallet(ctx)
	if err != nil || empty == nil || len(empty) != 0 {
		t.Fatalf("empty wallet must be [] not null: %#v %v", empty, err)
	}
	entries, err = c.Feed(ctx, 1, 10)
	if err != nil || len(entries) != 2 || entries[0].Seq != 2 || entries[1].Seq != 3 || entries[1].Type != couponmesh.FeedCouponChanged {
		t.Fatalf("feed after 1: %+v %v", entries, err)
	}

	if err := c.Unfollow(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if e.hub.Subscribers("c1") != 0 {
		t.Fatal("unfollow did not unsubscribe")
	}

	// Identity comes from the token only: a "user" field is ignored.
	raw, err := c.Do(ctx, "wallet", map[string]any{"user": "bob"})
	if err != nil || !strings.Contains(string(raw), `"user":"alice"`) {
		t.Fatalf("wallet with a user field: %s %v", raw, err)
	}
}

func TestInternalErrorsAreNotSent(t *testing.T) {
	e := newEnv(t, ws.LocalConfig())
	c := e.login("alice", client.Options{})
	e.svc.FailWith("Coupon", fmt.Errorf("mongo: dial tcp 10.1.2.3:27017: secret detail"))
	_, err := c.Get(ctxT(t), "c1")
	var ce *couponmesh.Error
	if !errors.As(err, &ce) || ce.Code != couponmesh.CodeInternal || strings.Contains(ce.Message, "secret") {
		t.Fatalf("error %v: want internal without details", err)
	}
	testutil.Until(t, 2*time.Second, "the log line", func() bool {
		l := e.logs.String()
		return strings.Contains(l, "secret detail") && strings.Contains(l, "session=") && strings.Contains(l, "user=alice")
	})

	e.svc.FailWith("Coupon", context.DeadlineExceeded)
	_, err = c.Get(ctxT(t), "c1")
	if !errors.As(err, &ce) || ce.Code != couponmesh.CodeUnavailable {
		t.Fatalf("deadline: %v, want unavailable", err)
	}
	if got := e.metric("couponmesh_ws_requests_total", "op", "get", "result", "internal"); got != 1 {
		t.Fatalf("requests_total{get,internal} = %v", got)
	}
}

func TestRequestTimeout(t *testing.T) {
	cfg := ws.LocalConfig()
	cfg.RequestTimeout = 100 * time.Millisecond
	e := newEnv(t, cfg)
	e.svc.Hook = func(ctx context.Context, method string) error {
		<-ctx.Done()
		return ctx.Err()
	}
	c := e.login("alice", client.Options{})
	_, err := c.Get(ctxT(t), "c1")
	var ce *couponmesh.Error
	if !errors.As(err, &ce) || ce.Code != couponmesh.CodeUnavailable {
		t.Fatalf("slow request: %v, want unavailable", err)
	}
}

// TestMaxInflight: requests beyond MaxInflight answer rate_limited; replies
// come out of order, matched by id.
func TestMaxInflight(t *testing.T) {
	cfg := ws.LocalConfig()
	cfg.MaxInflight = 2
	e := newEnv(t, cfg)
	e.svc.Put(couponmesh.Coupon{ID: "c1", Merchant: "m", Title: "t", Quantity: 5})
	release := make(chan struct{})
	var held atomic.Int32
	e.svc.Hook = func(ctx context.Context, method string) error {
		if method == "Wallet" {
			held.Add(1)
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return nil
	}
	c := e.login("alice", client.Options{})
	ctx := ctxT(t)
	errs := make(chan error, 2)
	for range 2 {
		go func() { _, err := c.Wallet(ctx); errs <- err }()
	}
	testutil.Until(t, 5*time.Second, "two requests in flight", func() bool { return held.Load() == 2 })
	_, err := c.Get(ctx, "c1")
	var ce *couponmesh.Error
	if !errors.As(err, &ce) || ce.Code != couponmesh.CodeRateLimited {
		t.Fatalf("third request: %v, want rate_limited", err)
	}
	if err := c.Ping(ctx); err != nil { // inline ops are not counted
		t.Fatal(err)
	}
	close(release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Get(ctx, "c1"); err != nil {
		t.Fatalf("after the slots freed: %v", err)
	}
}

func TestMaxSubscriptions(t *testing.T) {
	cfg := ws.LocalConfig()
	cfg.MaxSubscriptions = 3
	e := newEnv(t, cfg)
	for _, id := range []string{"a", "b", "c", "d"} {
		e.svc.Put(couponmesh.Coupon{ID: id, Merchant: "m", Title: "t", Quantity: 5})
	}
	c := e.login("alice", client.Options{})
	ctx := ctxT(t)
	if _, err := c.Subscribe(ctx, []client.Sub{{ID: "a"}, {ID: "b"}}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Subscribe(ctx, []client.Sub{{ID: "a"}, {ID: "c"}, {ID: "d"}})
	var ce *couponmesh.Error
	if !errors.As(err, &ce) || ce.Code != couponmesh.CodeBadRequest || !strings.Contains(ce.Message, "at most 3") {
		t.Fatalf("4th subscription: %v", err)
	}
	if e.hub.Subscribers("c") != 0 || e.hub.Subscribers("d") != 0 {
		t.Fatal("a refused subscribe registered coupons")
	}
	if _, err := c.Follow(ctx, "c"); err != nil {
		t.Fatalf("3rd subscription via follow: %v", err)
	}
	if _, err := c.Follow(ctx, "d"); err == nil {
		t.Fatal("follow beyond the limit accepted")
	}
	if err := c.Unsubscribe(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, []client.Sub{{ID: "d"}}); err != nil {
		t.Fatalf("after an unsubscribe: %v", err)
	}
}

func TestSubscribeFailureRollsBack(t *testing.T) {
	e := newEnv(t, ws.LocalConfig())
	e.svc.Put(couponmesh.Coupon{ID: "a", Merchant: "m", Title: "t", Quantity: 5})
	c := e.login("alice", client.Options{})
	e.svc.FailWith("Coupon", couponmesh.ErrUnavailable)
	_, err := c.Subscribe(ctxT(t), []client.Sub{{ID: "a"}})
	var ce *couponmesh.Error
	if !errors.As(err, &ce) || ce.Code != couponmesh.CodeUnavailable {
		t.Fatalf("subscribe: %v, want unavailable", err)
	}
	if e.hub.Subscribers("a") != 0 {
		t.Fatal("a failed subscribe left its registration")
	}
}

func TestPingTimeoutDropsDeadPeer(t *testing.T) {
	cfg := ws.LocalConfig()
	cfg.PingInterval = 100 * time.Millisecond
	cfg.PingTimeout = 200 * time.Millisecond
	cfg.AuthTimeout = time.Minute
	e := newEnv(t, cfg)
	// A peer that never reads never answers pings.
	c, _, err := websocket.Dial(ctxT(t), e.url, &websocket.DialOptions{Subprotocols: []string{ws.Subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	// A peer that reads answers them and stays.
	alive := e.dial(client.Options{})
	testutil.Until(t, 5*time.Second, "the dead peer to be dropped", func() bool {
		return e.metric("couponmesh_ws_sessions_dropped_total", "reason", "ping_timeout") == 1 && e.h.Sessions() == 1
	})
	if err := alive.Ping(ctxT(t)); err != nil {
		t.Fatalf("live peer: %v", err)
	}
}

func TestShutdownClosesSessions(t *testing.T) {
	e := newEnv(t, ws.LocalConfig())
	a := e.login("alice", client.Options{})
	b := e.dial(client.Options{})
	testutil.Until(t, time.Second, "2 sessions", func() bool {
		return e.h.Sessions() == 2 && e.metric("couponmesh_ws_sessions") == 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Client{a, b} {
		<-c.Done()
		if got := c.CloseStatus(); got != websocket.StatusGoingAway {
			t.Fatalf("close status %v, want 1001", got)
		}
	}
	if e.h.Sessions() != 0 || e.metric("couponmesh_ws_sessions") != 0 {
		t.Fatal("sessions left after Shutdown")
	}
	if e.hub.Registrations() != 0 {
		t.Fatal("hub registrations left after Shutdown")
	}
	if _, err := client.Dial(ctxT(t), e.url, client.Options{}); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("dial after Shutdown: %v, want 503", err)
	}
}

// TestSessionEndDetaches: a client that goes away leaves nothing in the hub.
func TestSessionEndDetaches(t *testing.T) {
	e := newEnv(t, ws.LocalConfig())
	e.svc.Put(couponmesh.Coupon{ID: "a", Merchant: "m", Title: "t", Quantity: 5})
	c := e.login("alice", client.Options{})
	if _, err := c.Subscribe(ctxT(t), []client.Sub{{ID: "a"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Feed(ctxT(t), 0, 0); err != nil {
		t.Fatal(err)
	}
	if e.hub.Registrations() != 2 {
		t.Fatalf("%d registrations, want 2", e.hub.Registrations())
	}
	c.Close()
	testutil.Until(t, 5*time.Second, "detach", func() bool { return e.hub.Registrations() == 0 && e.h.Sessions() == 0 })
}

// nowService answers CouponJSONNow for the coupons in now, like a node
// whose grains are active, and everything else from the in-memory service.
type nowService struct {
	*transporttest.Service
	now map[string]couponmesh.Coupon
}

func (n nowService) CouponJSONNow(id string) ([]byte, int64, bool) {
	c, ok := n.now[id]
	if !ok {
		return nil, 0, false
	}
	b, err := json.Marshal(c)
	return b, c.Version, err == nil
}

// TestGetAnsweredNow: a get of a coupon the service has at hand
// (couponmesh.CouponReaderNow) is answered from it; other gets go through
// Service.Coupon as before.
func TestGetAnsweredNow(t *testing.T) {
	e := newEnv(t, ws.LocalConfig())
	svc := nowService{Service: e.svc, now: map[string]couponmesh.Coupon{"hot": {ID: "hot", Title: "from memory", Version: 7}}}
	e.svc.Put(couponmesh.Coupon{ID: "cold", Merchant: "m", Title: "from the service", Quantity: 1})
	h := ws.NewHandler(ws.LocalConfig(), svc, e.hub, e.tokens, nil, nil)
	srv := httptest.NewServer(h)
	defer srv.Close()
	e.url = "ws" + strings.TrimPrefix(srv.URL, "http")
	c := e.login("reader", client.Options{})
	for id, want := range map[string]string{"hot": "from memory", "cold": "from the service"} {
		got, err := c.Get(ctxT(t), id)
		if err != nil || got.Title != want {
			t.Fatalf("get %s: %+v %v, want %q", id, got, err, want)
		}
	}
	if _, err := c.Get(ctxT(t), "none"); couponmesh.ErrorCode(err) != couponmesh.CodeNotFound {
		t.Fatalf("get none: %v, want not_found", err)
	}
	// Subscribe reads the same way, and still leaves out what the client
	// has at its version.
	for _, tc := range []struct {
		name string
		subs []client.Sub
		want []string // titles
	}{
		{"new to both", []client.Sub{{ID: "hot"}, {ID: "cold"}}, []string{"from memory", "from the service"}},
		{"hot up to date", []client.Sub{{ID: "hot", Version: 7}, {ID: "cold"}}, []string{"from the service"}},
		{"hot behind", []client.Sub{{ID: "hot", Version: 6}}, []string{"from memory"}},
	} {
		got, err := c.SubscribeReport(ctxT(t), tc.subs)
		var titles []string
		for _, cp := range got.Coupons {
			titles = append(titles, cp.Title)
		}
		if err != nil || !slices.Equal(titles, tc.want) {
			t.Fatalf("subscribe %s: %q %v, want %q", tc.name, titles, err, tc.want)
		}
	}
}
