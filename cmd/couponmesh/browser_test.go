package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
)

// Browser tests: the real app in headless Chromium against a real node.
// Each saves screenshots into $COUPONMESH_ARTIFACTS (default artifacts/).

// A claim in one browser session shows in another session's page (another
// user, another browser context) within a second, click to DOM change.
func TestBrowserClaimShowsLiveInOtherSession(t *testing.T) {
	chromiumPath(t) // fail (or skip with -short) before starting anything
	a := startApp(t, nil)
	base := baseURL(a)
	createCoupon(t, a, "bistro", couponmesh.CouponSpec{ID: "soup", Title: ptr("Free soup with any main"), Discount: ptr("free soup"), Quantity: ptr(50)})
	createCoupon(t, a, "acme", couponmesh.CouponSpec{ID: "pizza", Title: ptr("Two for one pizza"), Discount: ptr("2 for 1"),
		Description: ptr("Any two large pizzas for the price of one, Monday to Thursday."), Quantity: ptr(5)})

	b := newBrowser(t)
	alice := b.newPage("alice", desktop)
	bob := b.newPage("bob", phone)
	alice.login(base, "alice")
	bob.login(base, "bob")
	alice.waitJS(10*time.Second, "two coupons listed", `document.querySelectorAll('#coupon-list [data-coupon-id]').length === 2`)
	bob.waitJS(10*time.Second, "two coupons listed", `document.querySelectorAll('#coupon-list [data-coupon-id]').length === 2`)
	alice.screenshot("list")
	bob.screenshot("list")
	alice.openCoupon("pizza", 5)
	bob.openCoupon("pizza", 5)
	// The page subscribes when it opens a coupon; wait for the server's
	// answer so the measurement starts with the subscription in place.
	eval[chromedp.Void](bob, `window.couponmesh.subscribe(['pizza']).then(() => undefined)`)

	// Timestamps in the pages: the click in alice's, the change in bob's
	// (both tabs read the same clock).
	eval[chromedp.Void](alice, `document.querySelector('#claim-btn').addEventListener('click', () => { window.__clickedAt = Date.now() }, {capture: true, once: true})`)
	eval[chromedp.Void](bob, `(() => {
		const el = document.querySelector('#remaining');
		new MutationObserver(() => {
			if (el.textContent.trim() === '4' && !window.__changedAt) window.__changedAt = Date.now();
		}).observe(el, {childList: true, characterData: true, subtree: true});
	})()`)

	start := time.Now()
	alice.click("#claim-btn")
	bob.waitJS(10*time.Second, "bob sees 4 remaining", textIs("#remaining", "4"))
	seen := time.Since(start)
	latency := eval[float64](bob, `window.__changedAt`) - eval[float64](alice, `window.__clickedAt`)
	t.Logf("claim in alice's page to bob's DOM change: %.0f ms in the pages (%s seen from the test, with DevTools round trips)", latency, seen.Round(time.Millisecond))
	if latency > 1000 || latency < 0 {
		t.Errorf("bob's page changed %.0f ms after alice's click, want within 1000 ms", latency)
	}

	alice.waitJS(10*time.Second, "alice's wallet", shown(`#wallet [data-coupon="pizza"]`))
	alice.waitJS(10*time.Second, "alice gets her code", `(() => {
		const w = document.querySelector('#wallet [data-coupon="pizza"]');
		return document.querySelector('#claim-result').textContent.trim() === 'Claimed! Your code: ' + w.dataset.claimCode;
	})()`)
	alice.waitJS(10*time.Second, "alice's button", `document.querySelector('#claim-btn').disabled`)
	if got := bob.text("#claimed"); got != "1" {
		t.Errorf("bob's page: claimed %q, want 1", got)
	}
	if bob.text("#wallet") != "" {
		t.Errorf("bob's wallet shows %q, want empty", bob.text("#wallet"))
	}
	alice.screenshot("claimed")
	bob.screenshot("updated")
}

// The node stops and starts again on the same port and data directory: the
// page reconnects by itself and shows live changes made after the restart.
func TestBrowserReconnectsAfterNodeRestart(t *testing.T) {
	chromiumPath(t) // fail (or skip with -short) before starting anything
	cfg := nodeConfig(t)
	n := startNode(t, cfg)
	base := baseURL(n.app)
	createCoupon(t, n.app, "acme", couponmesh.CouponSpec{ID: "latte", Title: ptr("Half off any latte"), Discount: ptr("50%"), Quantity: ptr(10)})

	b := newBrowser(t)
	p := b.newPage("dora", phone)
	p.login(base, "dora")
	p.openCoupon("latte", 10)
	p.recordConnStates()

	n.stop(t)
	p.waitJS(10*time.Second, "reconnecting while the node is down", `document.querySelector('#conn-state').dataset.state === 'reconnecting'`)
	p.waitJS(10*time.Second, "stale marker while down", shown(`[data-testid="coupon-stale"]`))
	p.screenshot("node-down")

	restarted := time.Now()
	n = startNode(t, cfg)
	p.waitJS(20*time.Second, "online again after the restart", `(() => {
		const s = window.__states, r = s.indexOf('reconnecting');
		return r >= 0 && s.lastIndexOf('online') > r && window.couponmesh.state === 'online';
	})()`)
	t.Logf("page online %s after the node was listening again; states %s", time.Since(restarted).Round(time.Millisecond), eval[string](p, `window.__states.join(' → ')`))
	if shownNow := eval[bool](p, shown(`[data-testid="coupon-stale"]`)); shownNow {
		t.Errorf("stale marker still shown while online")
	}

	// Another shopper claims through the Go SDK: the page shows it live.
	erin := dial(t, n.app, "erin", client.Options{})
	if _, err := erin.Claim(context.Background(), "latte", "rid-erin"); err != nil {
		t.Fatal(err)
	}
	p.waitJS(10*time.Second, "the claim made after the restart", textIs("#remaining", "9"))
	if got := p.text("#claimed"); got != "1" {
		t.Errorf("claimed %q, want 1", got)
	}
	p.screenshot("after-restart")
	b.close() // before the node stops: no session left to tear down
}

// Offline (DevTools network emulation): cached coupons and the wallet stay
// on screen marked stale, also across a reload; a claim is queued, and back
// online it is sent exactly once.
//
// Chromium's offline emulation fails new requests and WebSocket handshakes
// and fires the offline event, but it leaves an open WebSocket open (checked
// with Chromium 156: the node kept the session, the page saw no close). The
// SDK closes its socket on the offline event; the test checks on the node
// that the session is really gone, so nothing can leak through it, and
// counts the claim frames the page sent (DevTools sees every frame).
func TestBrowserOfflineClaimIsQueuedAndSentOnce(t *testing.T) {
	chromiumPath(t) // fail (or skip with -short) before starting anything
	a := startApp(t, nil)
	base := baseURL(a)
	ctx := context.Background()
	createCoupon(t, a, "acme", couponmesh.CouponSpec{ID: "bagel", Title: ptr("Bagel and coffee"), Discount: ptr("€3 off"), Quantity: ptr(20)})
	createCoupon(t, a, "acme", couponmesh.CouponSpec{ID: "tea", Title: ptr("A pot of tea for two"), Discount: ptr("25%"),
		Description: ptr("Any loose-leaf tea, served with two cups."), Quantity: ptr(20)})

	b := newBrowser(t)
	p := b.newPage("carol", desktop)
	p.login(base, "carol")
	// Online first: a claim in the wallet, both coupons seen (and cached).
	p.openCoupon("bagel", 20)
	p.click("#claim-btn")
	p.waitJS(10*time.Second, "bagel in the wallet", shown(`#wallet [data-coupon="bagel"]`))
	p.click("#coupon-view a.back")
	p.waitJS(10*time.Second, "back to the list", shown(`#coupon-list [data-coupon-id="tea"]`))
	if got := sessions(t, a); got != 1 {
		t.Fatalf("%v WebSocket sessions on the node, want 1 (the page)", got)
	}

	// The service worker has cached the app shell once it controls the page.
	p.waitJS(10*time.Second, "service worker in control", `!!navigator.serviceWorker.controller`)

	p.setOffline(true)
	p.waitJS(10*time.Second, "offline state", `document.querySelector('#conn-state').dataset.state === 'offline'`)
	// The socket is really gone (closed by the SDK on the offline event; the
	// emulation alone would leave it open): the node has no session left.
	checkFor(t, 5*time.Second, "the node drops the page's session", func() error {
		if n := sessions(t, a); n != 0 {
			return fmt.Errorf("%v sessions", n)
		}
		return nil
	})
	// Cached data stays on screen, marked stale; the list is read from the
	// cache (the HTTP request fails offline).
	p.do(5*time.Second, "reload the list offline", chromedp.Click(chromedp.ID("filter-btn"), chromedp.NodeVisible))
	p.waitJS(10*time.Second, "list stale marker", shown(`[data-testid="list-stale"]`))
	p.waitJS(10*time.Second, "cached list", `document.querySelectorAll('#coupon-list [data-coupon-id]').length === 2`)
	p.waitJS(10*time.Second, "wallet stale marker", shown(`[data-testid="wallet-stale"]`))
	p.waitJS(10*time.Second, "cached wallet", shown(`#wallet [data-coupon="bagel"]`))
	p.screenshot("offline-list")

	p.openCoupon("tea", 20)
	p.waitJS(10*time.Second, "coupon stale marker", shown(`[data-testid="coupon-stale"]`))
	p.click("#claim-btn")
	p.waitJS(10*time.Second, "claim queued", `document.querySelector('#claim-result').dataset.state === 'queued'`)
	p.waitJS(10*time.Second, "queued claim in the wallet", shown(`#wallet li.pending`))
	p.screenshot("offline-queued")
	p.screenshotAt(phone, "offline-queued")
	// The claim queue and the cache outlive the page: reload while offline
	// (the service worker serves the app shell).
	p.do(20*time.Second, "reload while offline", chromedp.Reload())
	p.waitJS(10*time.Second, "offline after the reload", `!!window.couponmesh && document.querySelector('#conn-state').dataset.state === 'offline'`)
	p.waitJS(10*time.Second, "cached coupon after the reload", textIs("#coupon-title", "A pot of tea for two"))
	p.waitJS(10*time.Second, "cached counts after the reload", textIs("#remaining", "20"))
	p.waitJS(10*time.Second, "coupon stale marker after the reload", shown(`[data-testid="coupon-stale"]`))
	p.waitJS(10*time.Second, "queued claim kept", shown(`#wallet li.pending`)+
		` && document.querySelector('#claim-btn').textContent === 'Claim queued' && document.querySelector('#claim-result').dataset.state === 'queued'`)
	p.waitJS(10*time.Second, "cached wallet after the reload", shown(`#wallet [data-coupon="bagel"]`)+" && "+shown(`[data-testid="wallet-stale"]`))
	p.screenshot("offline-reloaded")
	if got := eval[string](p, `performance.getEntriesByType('navigation')[0].deliveryType`); got != "cache-storage" {
		t.Errorf("the reloaded page came from %q, want the service worker's cache (cache-storage)", got)
	}
	if got := p.claimFramesSent("tea"); got != 0 {
		t.Fatalf("%d claim frames for tea sent while offline", got)
	}
	api := client.NewAPI(base, "")
	if c, err := api.Coupon(ctx, "tea"); err != nil || c.Claimed != 0 {
		t.Fatalf("tea on the node while the page is offline: %+v %v", c, err)
	}

	p.setOffline(false)
	p.waitJS(15*time.Second, "tea in the wallet after going online", shown(`#wallet [data-coupon="tea"]`))
	p.waitJS(10*time.Second, "the code on screen", `/^Claimed! Your code: \S+$/.test(document.querySelector('#claim-result').textContent.trim())`)
	p.waitJS(10*time.Second, "no queued claim left", `!document.querySelector('#wallet li.pending') && document.querySelector('#conn-state').dataset.state === 'online'`)
	p.waitJS(10*time.Second, "remaining updated", textIs("#remaining", "19"))
	p.screenshot("back-online")

	if got := p.claimFramesSent("tea"); got != 1 {
		t.Errorf("%d claim frames for tea sent, want exactly 1", got)
	}
	tea, err := api.Coupon(ctx, "tea")
	if err != nil || tea.Claimed != 1 {
		t.Errorf("tea on the node: claimed %d (%v), want 1", tea.Claimed, err)
	}
	wallet, err := dial(t, a, "carol", client.Options{}).Wallet(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var teas int
	for _, w := range wallet {
		if w.Coupon == "tea" {
			teas++
			if shown := p.text("#claim-result"); shown != "Claimed! Your code: "+w.Code {
				t.Errorf("page shows %q, the node has code %s", shown, w.Code)
			}
		}
	}
	if teas != 1 || len(wallet) != 2 {
		t.Errorf("carol's wallet on the node: %+v, want one claim of tea and one of bagel", wallet)
	}
}

// ---- node helpers for restarts ----

// nodeConfig is startApp's configuration with a fixed public port and data
// directory, so a node can be started again where it was.
func nodeConfig(t *testing.T) Config {
	t.Helper()
	cfg, err := LoadConfig("", map[string]string{})
	if err != nil && !strings.Contains(err.Error(), "jwt_secret") {
		t.Fatal(err)
	}
	cfg.HTTPAddr, cfg.AdminAddr = testAddr(t), "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Dev = true
	cfg.JWTSecret = testSecret
	cfg.NodeName = "test"
	return cfg
}

type testNode struct {
	app  *App
	once sync.Once
}

// startNode starts a node in-process; it is stopped at the end of the test
// unless stopped before.
func startNode(t *testing.T, cfg Config) *testNode {
	t.Helper()
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	n := &testNode{}
	// The port was free a moment ago; another socket may hold it briefly.
	checkFor(t, 10*time.Second, "start node on "+cfg.HTTPAddr, func() error {
		var err error
		n.app, err = Start(context.Background(), cfg, log)
		return err
	})
	t.Cleanup(func() { n.stop(t) })
	return n
}

func (n *testNode) stop(t *testing.T) {
	n.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		start := time.Now()
		n.app.Stop(ctx)
		t.Logf("node stopped in %s", time.Since(start).Round(time.Millisecond))
	})
}

// sessions reads the node's open WebSocket sessions from its metrics.
func sessions(t *testing.T, a *App) float64 {
	t.Helper()
	resp, err := http.Get("http://" + a.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "couponmesh_ws_sessions "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatal("no couponmesh_ws_sessions in /metrics")
	return 0
}

// ---- network emulation ----

// emulateNetworkConditions is DevTools' Network.emulateNetworkConditions.
// cdproto dropped it for emulateNetworkConditionsByRule plus
// overrideNetworkState; Chromium still implements it, and it is the one
// command that both cuts the network and tells the page (navigator.onLine,
// the offline and online events).
var emulateNetworkConditions = cdp.Command[emulateNetworkConditionsParams, cdp.Empty]{Method: "Network.emulateNetworkConditions"}

type emulateNetworkConditionsParams struct {
	Offline            bool    `json:"offline"`
	Latency            float64 `json:"latency"`
	DownloadThroughput float64 `json:"downloadThroughput"`
	UploadThroughput   float64 `json:"uploadThroughput"`
}

// setOffline switches DevTools network emulation offline or back online,
// for the page and for its service workers (each has a network of its own).
func (p *page) setOffline(offline bool) {
	p.t.Helper()
	conditions := emulateNetworkConditionsParams{Offline: offline, DownloadThroughput: -1, UploadThroughput: -1}
	emulate := chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulateNetworkConditions, conditions)
		return err
	})
	p.do(5*time.Second, fmt.Sprintf("network offline=%v", offline), emulate)
	for _, w := range p.serviceWorkers() {
		p.do(5*time.Second, fmt.Sprintf("service worker network offline=%v", offline), chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Run(w, emulate)
			return err
		}))
	}
}

// serviceWorkers attaches to the service workers of the page's browser
// context (once each).
func (p *page) serviceWorkers() []context.Context {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	infos, err := chromedp.Targets(ctx)
	if err != nil {
		p.t.Fatalf("%s: targets: %v", p.name, err)
	}
	bc := chromedp.FromContext(p.ctx).BrowserContextID
	if p.workers == nil {
		p.workers = map[target.ID]context.Context{}
	}
	var out []context.Context
	for _, info := range infos {
		if info.Type != "service_worker" || info.BrowserContextID != bc {
			continue
		}
		w, ok := p.workers[info.TargetID]
		if !ok {
			var cancel context.CancelFunc
			w, cancel = chromedp.NewContext(p.ctx, chromedp.WithTargetID(info.TargetID))
			p.t.Cleanup(cancel)
			if err := chromedp.Do(w); err != nil {
				p.t.Fatalf("%s: attach to service worker %s: %v", p.name, info.URL, err)
			}
			p.workers[info.TargetID] = w
		}
		out = append(out, w)
	}
	return out
}
