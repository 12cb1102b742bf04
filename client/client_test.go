package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
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
	"github.com/couponmesh/couponmesh/transport/httpapi"
	"github.com/couponmesh/couponmesh/transport/transporttest"
	"github.com/couponmesh/couponmesh/transport/ws"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// scripted is a protocol server that answers each request frame with the
// frame script returns for it (with "ID" replaced by the request's id).
func scripted(t testing.TB, script func(req string) string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{client.Subprotocol}})
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			_, data, err := c.Read(context.Background())
			if err != nil {
				return
			}
			id := strings.TrimPrefix(string(data), `{"id":`)
			id = id[:strings.IndexByte(id, ',')]
			out := strings.ReplaceAll(script(string(data)), "ID", id)
			if err := c.Write(context.Background(), websocket.MessageText, []byte(out)); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// TestBatchedFramesAreSplit: one frame holding pushes and a reply,
// separated by '\n', yields each message, in order, pushes to the callbacks
// and the reply to its call; a presence push reaches OnPresence in its
// place, and an unknown push type is ignored.
func TestBatchedFramesAreSplit(t *testing.T) {
	url := scripted(t, func(string) string {
		return `{"push":"coupon","coupon":{"id":"a","version":1}}` + "\n" +
			`{"push":"feed","entry":{"seq":7,"type":"claimed","coupon":"a"}}` + "\n" +
			`{"id":ID,"ok":{"coupon":{"id":"a","version":2}}}` + "\n" +
			`{"push":"presence","coupon":"a","watching":12}` + "\n" +
			`{"push":"coupon","coupon":{"id":"a","version":3}}` + "\n" +
			`{"push":"future","x":1}` + "\n"
	})
	var (
		mu  sync.Mutex
		got []string
	)
	record := func(s string) {
		mu.Lock()
		got = append(got, s)
		mu.Unlock()
	}
	c, err := client.Dial(ctxT(t), url, client.Options{
		OnCoupon: func(c couponmesh.Coupon) { record("coupon " + c.ID + " v" + itoa(c.Version)) },
		OnFeed:   func(e couponmesh.FeedEntry) { record("feed " + itoa(e.Seq)) },
		OnPresence: func(coupon string, watching int) {
			record("presence " + coupon + " " + itoa(int64(watching)))
		},
		OnError: func(e *couponmesh.Error) { record("error " + e.Message) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cp, err := c.Get(ctxT(t), "a")
	if err != nil || cp.Version != 2 {
		t.Fatalf("get: %+v %v", cp, err)
	}
	want := []string{"coupon a v1", "feed 7", "presence a 12", "coupon a v3"}
	testutil.Until(t, 5*time.Second, fmt.Sprintf("%d callbacks", len(want)), func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= len(want)
	})
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("callbacks %q, want %q", got, want)
	}
}

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func TestErrorRepliesAndRawFrames(t *testing.T) {
	url := scripted(t, func(req string) string {
		switch {
		case strings.Contains(req, `"op":"claim"`):
			return `{"id":ID,"error":{"code":"sold_out","message":"all gone"}}`
		case strings.Contains(req, `"op":"raw"`):
			return `{"error":{"code":"bad_request","message":"no id here"}}`
		}
		return `{"id":ID,"ok":{"echo":true}}`
	})
	errs := make(chan *couponmesh.Error, 1)
	c, err := client.Dial(ctxT(t), url, client.Options{OnError: func(e *couponmesh.Error) { errs <- e }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Claim(ctxT(t), "a", "r1")
	var ce *couponmesh.Error
	if !errors.As(err, &ce) || ce.Code != couponmesh.CodeSoldOut || ce.Message != "all gone" {
		t.Fatalf("claim: %v", err)
	}
	raw, err := c.Do(ctxT(t), "anything", map[string]any{"x": 1, "id": "ignored"})
	if err != nil || string(raw) != `{"echo":true}` {
		t.Fatalf("Do: %s %v", raw, err)
	}
	if err := c.WriteRaw(ctxT(t), []byte(`{"id":1,"op":"raw",`)); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-errs:
		if e.Code != couponmesh.CodeBadRequest {
			t.Fatalf("OnError got %v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an error without id did not reach OnError")
	}
	if got := c.CloseStatus(); got != -1 {
		t.Fatalf("CloseStatus of an open client = %v, want -1", got)
	}
}

func TestContextCancelsWait(t *testing.T) {
	url := scripted(t, func(string) string { return `{"push":"coupon","coupon":{"id":"never"}}` })
	c, err := client.Dial(ctxT(t), url, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Ping(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ping without reply: %v", err)
	}
}

// stack is the real transport (ws and httpapi) over the in-memory service.
type stack struct {
	svc  *transporttest.Service
	hub  *transporttest.Hub
	ws   *ws.Handler
	base string
	url  string
}

func newStack(t *testing.T) *stack {
	t.Helper()
	s := &stack{hub: transporttest.NewHub()}
	s.svc = transporttest.NewService(s.hub)
	tokens, err := auth.New(auth.LocalConfig("client tests"))
	if err != nil {
		t.Fatal(err)
	}
	s.ws = ws.NewHandler(ws.LocalConfig(), s.svc, s.hub, tokens, prometheus.NewRegistry(), nil)
	srv := httptest.NewServer(httpapi.New(httpapi.Options{Service: s.svc, Tokens: tokens, WS: s.ws, Dev: true}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.ws.Shutdown(ctx)
		srv.Close()
	})
	s.base = srv.URL
	s.url = "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	return s
}

// TestEndToEnd drives the HTTP API and the WebSocket protocol the way an
// app does: a merchant creates a coupon, a shopper follows and claims it,
// the merchant's update reaches the shopper as a push.
func TestEndToEnd(t *testing.T) {
	s := newStack(t)
	ctx := ctxT(t)

	mtok, err := client.DevLogin(ctx, s.base, "shop1", couponmesh.RoleMerchant)
	if err != nil {
		t.Fatal(err)
	}
	merchant := client.NewAPI(s.base, mtok)
	title, qty := "Half price", 2
	c, err := merchant.CreateCoupon(ctx, couponmesh.CouponSpec{ID: "half", Title: &title, Quantity: &qty})
	if err != nil || c.ID != "half" || c.Merchant != "shop1" || c.Remaining != 2 {
		t.Fatalf("create: %+v %v", c, err)
	}
	if _, err := (&client.API{BaseURL: s.base}).CreateCoupon(ctx, couponmesh.CouponSpec{Title: &title, Quantity: &qty}); couponmesh.ErrorCode(err) != couponmesh.CodeUnauthorized {
		t.Fatalf("create without token: %v", err)
	}
	if _, err := merchant.Coupon(ctx, "nope"); couponmesh.ErrorCode(err) != couponmesh.CodeNotFound {
		t.Fatalf("get unknown: %v", err)
	}
	page, err := merchant.Browse(ctx, couponmesh.BrowseQuery{Merchant: "shop1", Status: couponmesh.StatusActive, Limit: 10})
	if err != nil || len(page.Coupons) != 1 {
		t.Fatalf("browse: %+v %v", page, err)
	}
	if _, err := merchant.Browse(ctx, couponmesh.BrowseQuery{Status: "bogus"}); couponmesh.ErrorCode(err) != couponmesh.CodeBadRequest {
		t.Fatalf("browse bad status: %v", err)
	}

	stok, err := client.DevLogin(ctx, s.base, "alice", couponmesh.RoleShopper)
	if err != nil {
		t.Fatal(err)
	}
	pushes := make(chan couponmesh.Coupon, 8)
	feed := make(chan couponmesh.FeedEntry, 8)
	shopper, err := client.Dial(ctx, s.url, client.Options{
		OnCoupon: func(c couponmesh.Coupon) { pushes <- c },
		OnFeed:   func(e couponmesh.FeedEntry) { feed <- e },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer shopper.Close()
	// Before auth a session is a visitor's: it may read, not act.
	if _, err := shopper.Get(ctx, "half"); err != nil {
		t.Fatalf("get before auth (an anonymous session): %v", err)
	}
	if _, err := shopper.Wallet(ctx); couponmesh.ErrorCode(err) != couponmesh.CodeUnauthorized {
		t.Fatalf("wallet before auth: %v", err)
	}
	info, err := shopper.Auth(ctx, stok)
	if err != nil || info.User != "alice" {
		t.Fatalf("auth: %+v %v", info, err)
	}
	if _, err := shopper.Follow(ctx, "half"); err != nil {
		t.Fatal(err)
	}
	if _, err := shopper.Feed(ctx, 0, 10); err != nil {
		t.Fatal(err)
	}
	cl, err := shopper.Claim(ctx, "half", "r-1")
	if err != nil || cl.N != 1 {
		t.Fatalf("claim: %+v %v", cl, err)
	}
	newTitle := "Half price, today only"
	if _, err := merchant.UpdateCoupon(ctx, "half", couponmesh.CouponSpec{Title: &newTitle}); err != nil {
		t.Fatal(err)
	}
	var last couponmesh.Coupon
	for last.Title != newTitle {
		select {
		case last = <-pushes:
		case <-time.After(5 * time.Second):
			t.Fatalf("no push with the new title; last %+v", last)
		}
	}
	if last.Claimed != 1 || last.Version != 3 {
		t.Fatalf("push %+v", last)
	}
	select {
	case e := <-feed:
		if e.Type != couponmesh.FeedClaimed {
			t.Fatalf("feed push %+v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no feed push")
	}
	w, err := shopper.Wallet(ctx)
	if err != nil || len(w) != 1 || w[0].Code != cl.Code {
		t.Fatalf("wallet: %+v %v", w, err)
	}
	if _, err := merchant.WithdrawCoupon(ctx, "half"); err != nil {
		t.Fatal(err)
	}
	bob, err := client.Dial(ctx, s.url, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	btok, _ := client.DevLogin(ctx, s.base, "bob", couponmesh.RoleShopper)
	if _, err := bob.Auth(ctx, btok); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Claim(ctx, "half", "r-1"); couponmesh.ErrorCode(err) != couponmesh.CodeExpired {
		t.Fatalf("claim of a withdrawn coupon: %v, want expired", err)
	}
	if err := shopper.Unfollow(ctx, "half"); err != nil {
		t.Fatal(err)
	}
	if err := shopper.Unsubscribe(ctx, "half"); err != nil {
		t.Fatal(err)
	}
	if err := shopper.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestServerCloseIsReported(t *testing.T) {
	s := newStack(t)
	c, err := client.Dial(ctxT(t), s.url, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.ws.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	<-c.Done()
	if got := c.CloseStatus(); got != websocket.StatusGoingAway {
		t.Fatalf("CloseStatus %v, want 1001", got)
	}
	if err := c.Ping(ctxT(t)); !errors.Is(err, client.ErrClosed) || !strings.Contains(err.Error(), "1001") {
		t.Fatalf("call after close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close after the server closed: %v", err)
	}
}

func TestDevLoginOff(t *testing.T) {
	tokens, _ := auth.New(auth.LocalConfig("x"))
	srv := httptest.NewServer(httpapi.New(httpapi.Options{Service: transporttest.NewService(nil), Tokens: tokens}))
	defer srv.Close()
	if _, err := client.DevLogin(ctxT(t), srv.URL, "alice", couponmesh.RoleShopper); couponmesh.ErrorCode(err) != couponmesh.CodeNotFound {
		t.Fatalf("dev login off: %v, want not_found", err)
	}
}

// TestUnavailableIsRetried: a reconnecting client sends a request again
// when the server answers unavailable (a grain moving, a slow database),
// until it gets an answer; a client without Reconnect hands the error back.
func TestUnavailableIsRetried(t *testing.T) {
	var n atomic.Int32
	url := scripted(t, func(string) string {
		if n.Add(1) <= 2 {
			return `{"id":ID,"error":{"code":"unavailable","message":"moving"}}`
		}
		return `{"id":ID,"ok":{"claim":{"coupon":"a","user":"u","n":1,"code":"K"}}}`
	})
	c, err := client.Dial(ctxT(t), url, client.Options{Reconnect: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := c.Claim(ctxT(t), "a", "r1")
	if err != nil || cl.Code != "K" || n.Load() != 3 {
		t.Fatalf("claim: %+v %v after %d requests, want the claim after 3", cl, err, n.Load())
	}

	n.Store(0)
	plain, err := client.Dial(ctxT(t), url, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Claim(ctxT(t), "a", "r2"); couponmesh.ErrorCode(err) != couponmesh.CodeUnavailable || n.Load() != 1 {
		t.Fatalf("without Reconnect: %v after %d requests, want unavailable after 1", err, n.Load())
	}
}
