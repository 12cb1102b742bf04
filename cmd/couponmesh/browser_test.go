package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
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
	"github.com/couponmesh/couponmesh/internal/testutil"
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

	alice.waitJS(10*time.Second, "alice gets her code and its QR code", `(() => {
		const code = document.querySelector('#claim-code').textContent;
		return code !== '' && document.querySelector('#claim-result').textContent.trim() === 'Claimed! Your code: ' + code &&
			!!document.querySelector('#claim-qr svg[data-qr="' + code + '"]');
	})()`)
	alice.waitJS(10*time.Second, "alice's button", `document.querySelector('#claim-btn').disabled`)
	if got := bob.text("#claimed"); got != "1" {
		t.Errorf("bob's page: claimed %q, want 1", got)
	}
	alice.screenshot("claimed")
	bob.screenshot("updated")
	alice.goTo("/wallet")
	alice.waitJS(10*time.Second, "alice's wallet", shown(`#wallet [data-coupon="pizza"]`))
	bob.goTo("/wallet")
	bob.waitJS(10*time.Second, "bob's wallet empty", shown("#wallet-empty")+` && document.querySelector('#wallet').children.length === 0`)
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
	p.waitJS(10*time.Second, "bagel claimed", `/^Claimed! Your code: \S+$/.test(document.querySelector('#claim-result').textContent.trim())`)
	p.goTo("/wallet")
	p.waitJS(10*time.Second, "bagel in the wallet", shown(`#wallet [data-coupon="bagel"]`))
	p.goTo("/")
	p.waitJS(10*time.Second, "back to the list", shown(`#coupon-list [data-coupon-id="tea"]`))
	if got := sessions(t, a); got != 1 {
		t.Fatalf("%v WebSocket sessions on the node, want 1 (the page)", got)
	}
	// The cards are updated in place, never replaced: a push or a reload of
	// the list under a tap must not swap the node being tapped (that was the
	// cause of "click ... Could not find node with given id" on a busy
	// machine: the list re-rendered between chromedp's query and click).
	p.markNodes(`#coupon-list [data-coupon-id]`, "data-coupon-id")
	dave := dial(t, a, "dave", client.Options{})
	if _, err := dave.Claim(ctx, "bagel", "dave-bagel"); err != nil {
		t.Fatal(err)
	}
	dave.Close()
	p.waitJS(10*time.Second, "the push updates the bagel card", textIs(`#coupon-list [data-coupon-id="bagel"] [data-testid="list-remaining"]`, "18 of 20 left"))
	p.checkNodesKept("after a coupon push")

	// The service worker has cached the app shell once it controls the page.
	p.waitJS(10*time.Second, "service worker in control", `!!navigator.serviceWorker.controller`)

	p.setOffline(true)
	p.waitJS(10*time.Second, "offline state", `document.querySelector('#conn-state').dataset.state === 'offline'`)
	// The socket is really gone (closed by the SDK on the offline event; the
	// emulation alone would leave it open): the node has no session left.
	testutil.CheckFor(t, 5*time.Second, "the node drops the page's session", func() error {
		if n := sessions(t, a); n != 0 {
			return fmt.Errorf("%v sessions", n)
		}
		return nil
	})
	// Cached data stays on screen, marked stale; the list is read from the
	// cache (the HTTP request fails offline).
	loads := p.listLoads()
	p.do(5*time.Second, "reload the list offline", chromedp.Click(chromedp.ID("filter-btn"), chromedp.NodeVisible))
	p.waitListLoaded(loads)
	p.waitJS(10*time.Second, "list stale marker", shown(`[data-testid="list-stale"]`))
	p.waitJS(10*time.Second, "cached list", `document.querySelectorAll('#coupon-list [data-coupon-id]').length === 2`)
	p.checkNodesKept("after the list reloaded from the cache")
	p.screenshot("offline-list")
	p.goTo("/wallet")
	p.waitJS(10*time.Second, "wallet stale marker", shown(`[data-testid="wallet-stale"]`))
	p.waitJS(10*time.Second, "cached wallet", shown(`#wallet [data-coupon="bagel"]`))
	loads = p.listLoads()
	p.goTo("/")
	p.waitListLoaded(loads)
	p.checkNodesKept("after going back to the list")

	p.openCoupon("tea", 20)
	p.waitJS(10*time.Second, "coupon stale marker", shown(`[data-testid="coupon-stale"]`))
	p.click("#claim-btn")
	p.waitJS(10*time.Second, "claim queued", `document.querySelector('#claim-result').dataset.state === 'queued'`)
	p.screenshot("offline-queued")
	p.screenshotAt(phone, "offline-queued")
	p.goTo("/wallet")
	p.waitJS(10*time.Second, "queued claim in the wallet", shown(`#wallet li.pending[data-coupon="tea"]`))
	p.goTo("/c/tea")
	// The claim queue and the cache outlive the page: reload while offline
	// (the service worker serves the app shell).
	p.do(20*time.Second, "reload while offline", chromedp.Reload())
	p.waitJS(10*time.Second, "offline after the reload", `!!window.couponmesh && document.querySelector('#conn-state').dataset.state === 'offline'`)
	p.waitJS(10*time.Second, "cached coupon after the reload", textIs("#coupon-title", "A pot of tea for two"))
	p.waitJS(10*time.Second, "cached counts after the reload", textIs("#remaining", "20"))
	p.waitJS(10*time.Second, "coupon stale marker after the reload", shown(`[data-testid="coupon-stale"]`))
	p.waitJS(10*time.Second, "queued claim kept",
		`document.querySelector('#claim-btn').textContent === 'Claim queued' && document.querySelector('#claim-result').dataset.state === 'queued'`)
	p.screenshot("offline-reloaded")
	if got := eval[string](p, `performance.getEntriesByType('navigation')[0].deliveryType`); got != "cache-storage" {
		t.Errorf("the reloaded page came from %q, want the service worker's cache (cache-storage)", got)
	}
	p.goTo("/wallet")
	p.waitJS(10*time.Second, "cached wallet after the reload", shown(`#wallet [data-coupon="bagel"]`)+" && "+shown(`[data-testid="wallet-stale"]`)+
		" && "+shown(`#wallet li.pending[data-coupon="tea"]`))
	p.goTo("/c/tea")
	if got := p.claimFramesSent("tea"); got != 0 {
		t.Fatalf("%d claim frames for tea sent while offline", got)
	}
	api := client.NewAPI(base, "")
	if c, err := api.Coupon(ctx, "tea"); err != nil || c.Claimed != 0 {
		t.Fatalf("tea on the node while the page is offline: %+v %v", c, err)
	}

	p.setOffline(false)
	p.waitJS(15*time.Second, "the code on screen after going online", `/^Claimed! Your code: \S+$/.test(document.querySelector('#claim-result').textContent.trim())`)
	p.waitJS(10*time.Second, "online", `document.querySelector('#conn-state').dataset.state === 'online'`)
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
	p.goTo("/wallet")
	p.waitJS(10*time.Second, "tea in the wallet, nothing queued", shown(`#wallet [data-coupon="tea"]`)+` && !document.querySelector('#wallet li.pending')`)
}

// listLoads is how many times the app rendered a load of the coupon list.
func (p *page) listLoads() int {
	p.t.Helper()
	return eval[int](p, `Number(document.querySelector('#coupon-list').dataset.loads || 0)`)
}

// waitListLoaded waits until the app rendered a load of the coupon list
// after the one counted by listLoads.
func (p *page) waitListLoaded(before int) {
	p.t.Helper()
	p.waitJS(10*time.Second, "the list loaded", fmt.Sprintf(`Number(document.querySelector('#coupon-list').dataset.loads || 0) > %d`, before))
}

// ---- node helpers for restarts ----

// nodeConfig is startApp's configuration with a fixed public port and data
// directory, so a node can be started again where it was.
func nodeConfig(t *testing.T) Config {
	t.Helper()
	cfg := testConfig(t)
	cfg.HTTPAddr = testAddr(t)
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
	log := testLogger()
	n := &testNode{}
	// The port was free a moment ago; another socket may hold it briefly.
	testutil.CheckFor(t, 10*time.Second, "start node on "+cfg.HTTPAddr, func() error {
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

// ---- the app for visitors, shoppers and merchants (issue 21) ----

// A visitor who never signs in browses the coupons made through the API,
// opens one by its URL, sees its remaining units change live (an anonymous
// session: no auth frame ever sent) and counts down to its end, reaches it
// from the keyboard, shares it, and finds both pages again offline, from
// the cache, marked stale.
func TestBrowserVisitorBrowsesLiveAndOffline(t *testing.T) {
	chromiumPath(t) // fail (or skip with -short) before starting anything
	a := startApp(t, nil)
	base := baseURL(a)
	ends := time.Now().Add(50 * time.Hour).UTC().Truncate(time.Second)
	createCoupon(t, a, "bistro", couponmesh.CouponSpec{ID: "soup", Title: ptr("Free soup with any main"), Discount: ptr("free soup"), Quantity: ptr(50)})
	createCoupon(t, a, "acme", couponmesh.CouponSpec{ID: "pizza.2for1", Title: ptr("Two for one pizza"), Discount: ptr("2 for 1"),
		Description: ptr("Any two large pizzas for the price of one, Monday to Thursday."), Quantity: ptr(5), ExpiresAt: &ends})

	b := newBrowser(t)
	p := b.newPage("visitor", phone)
	p.do(20*time.Second, "open the app", chromedp.Navigate(base+"/"))
	p.waitJS(10*time.Second, "two coupons listed", `document.querySelectorAll('#coupon-list [data-coupon-id]').length === 2`)
	p.waitJS(10*time.Second, "online as a visitor", `document.querySelector('#conn-state').dataset.state === 'online' && window.couponmesh.anonymous`)
	if eval[bool](p, shown("#login-form")) {
		t.Fatal("the sign-in form is on the first screen")
	}
	p.waitJS(5*time.Second, "a sign-in link", shown("#signin-link"))
	p.checkScreen("visitor-list")

	// From the keyboard: Tab to the coupon, Enter opens it.
	link := `#coupon-list [data-coupon-id="pizza.2for1"] a`
	p.tabTo(link, 15)
	p.press("\r")
	p.waitJS(10*time.Second, "the coupon's own URL", `location.pathname === '/c/pizza.2for1'`)
	p.waitJS(10*time.Second, "5 remaining", textIs("#remaining", "5"))
	p.waitJS(5*time.Second, "the bar full", `document.querySelector('#remaining-bar').value === 5 && document.querySelector('#remaining-bar').max === 5`)
	p.waitJS(5*time.Second, "a countdown to the end", `/^Ends in 2d \d\d:\d\d:\d\d$/.test(document.querySelector('#countdown').textContent)`)

	// Opened by its URL, as a shared link is.
	p.do(20*time.Second, "open the coupon's URL", chromedp.Navigate(base+"/c/pizza.2for1"))
	p.waitJS(10*time.Second, "the coupon", textIs("#coupon-title", "Two for one pizza"))
	p.waitJS(10*time.Second, "live as a visitor", `window.couponmesh.anonymous && window.couponmesh.subscriptions.has('pizza.2for1')`)
	// Subscribed on the node (the reply is in) before someone claims.
	eval[chromedp.Void](p, `window.couponmesh.subscribe(['pizza.2for1']).then(() => undefined)`)
	p.checkScreen("visitor-coupon")

	erin := dial(t, a, "erin", client.Options{})
	if _, err := erin.Claim(context.Background(), "pizza.2for1", "rid-erin"); err != nil {
		t.Fatal(err)
	}
	p.waitJS(10*time.Second, "the claim shows live", textIs("#remaining", "4"))
	p.waitJS(5*time.Second, "the bar moved", `document.querySelector('#remaining-bar').value === 4`)
	p.waitJS(5*time.Second, "the text", textIs("#remaining-text", "4 of 5 left"))

	p.click("#share-btn")
	p.waitJS(5*time.Second, "shared or copied", `document.querySelector('#share-result').textContent.includes('/c/pizza.2for1') || document.querySelector('#share-result').textContent === 'Shared.'`)
	if got := eval[int](p, `performance.getEntriesByType('navigation').length`); got != 1 {
		t.Errorf("%d page loads, want the live change without a reload", got)
	}
	p.mu.Lock()
	for _, f := range p.wsSent {
		if strings.Contains(f, `"op":"auth"`) {
			t.Errorf("the visitor's page sent an auth frame: %s", f)
		}
	}
	p.mu.Unlock()

	// Offline: the coupon page and the list load from the cache, stale.
	p.waitJS(10*time.Second, "service worker in control", `!!navigator.serviceWorker.controller`)
	p.setOffline(true)
	p.waitJS(10*time.Second, "offline", `document.querySelector('#conn-state').dataset.state === 'offline'`)
	p.do(20*time.Second, "reload the coupon offline", chromedp.Reload())
	p.waitJS(10*time.Second, "cached coupon", textIs("#coupon-title", "Two for one pizza")+" && "+textIs("#remaining", "4"))
	p.waitJS(10*time.Second, "coupon stale marker", shown(`[data-testid="coupon-stale"]`))
	if got := eval[string](p, `performance.getEntriesByType('navigation')[0].deliveryType`); got != "cache-storage" {
		t.Errorf("the coupon page offline came from %q, want the service worker's cache (cache-storage)", got)
	}
	p.screenshot("visitor-coupon-offline")
	p.goTo("/")
	p.waitJS(10*time.Second, "cached list", `document.querySelectorAll('#coupon-list [data-coupon-id]').length === 2`)
	p.waitJS(10*time.Second, "list stale marker", shown(`[data-testid="list-stale"]`))
	p.screenshot("visitor-list-offline")
	p.setOffline(false)
	p.waitJS(15*time.Second, "online again", `document.querySelector('#conn-state').dataset.state === 'online'`)
	p.waitJS(10*time.Second, "no stale marker", `!(`+shown(`[data-testid="coupon-stale"]`)+`)`)
	b.close()
}

// A visitor presses Claim: the app asks to sign in, comes back to the same
// coupon and completes the claim there, once; the code and its QR code are
// in the wallet.
func TestBrowserVisitorClaimSignsInAndClaimsOnce(t *testing.T) {
	chromiumPath(t) // fail (or skip with -short) before starting anything
	a := startApp(t, nil)
	base := baseURL(a)
	createCoupon(t, a, "acme", couponmesh.CouponSpec{ID: "latte", Title: ptr("Half off any latte"), Discount: ptr("50%"), Quantity: ptr(10)})

	b := newBrowser(t)
	p := b.newPage("visitor", phone)
	p.do(20*time.Second, "open the coupon's URL", chromedp.Navigate(base+"/c/latte"))
	p.waitJS(10*time.Second, "10 remaining", textIs("#remaining", "10"))
	p.waitJS(10*time.Second, "online as a visitor", `window.couponmesh.state === 'online' && window.couponmesh.anonymous`)
	// From the keyboard, as a screen reader user would.
	p.tabTo("#claim-btn", 20)
	p.press("\r")
	p.waitJS(10*time.Second, "the sign-in screen", `location.pathname === '/signin' && `+shown("#login-form"))
	p.waitJS(5*time.Second, "why", `document.querySelector('#login-reason').textContent.includes('claim')`)
	p.checkScreen("sign-in")
	p.fillSignIn("frank", "shopper")
	p.waitJS(10*time.Second, "back on the coupon", `location.pathname === '/c/latte'`)
	p.waitJS(15*time.Second, "claimed", `/^Claimed! Your code: \S+$/.test(document.querySelector('#claim-result').textContent.trim())`)
	code := strings.TrimPrefix(strings.TrimSpace(p.text("#claim-result")), "Claimed! Your code: ")
	// Claim results and the connection state are announced (live regions).
	if !eval[bool](p, `!!document.querySelector('#claim-result[role=status][aria-live=polite]') && !!document.querySelector('#conn-state[role=status][aria-live=polite]')`) {
		t.Error("the claim result or the connection state is not a live region")
	}
	p.waitJS(5*time.Second, "the QR code of the claim", fmt.Sprintf(`!!document.querySelector('#claim-qr svg[data-qr=%s][role=img]')`, js(code)))
	p.waitJS(5*time.Second, "9 remaining", textIs("#remaining", "9"))
	if got := eval[int](p, `performance.getEntriesByType('navigation').length`); got != 1 {
		t.Errorf("%d page loads, want none after the first", got)
	}
	p.checkScreen("claimed")

	if got := p.claimFramesSent("latte"); got != 1 {
		t.Errorf("%d claim frames sent, want 1", got)
	}
	c, err := client.NewAPI(base, "").Coupon(context.Background(), "latte")
	if err != nil || c.Claimed != 1 {
		t.Errorf("latte on the node: %+v %v, want 1 claim", c, err)
	}
	wallet, err := dial(t, a, "frank", client.Options{}).Wallet(context.Background())
	if err != nil || len(wallet) != 1 || wallet[0].Code != code {
		t.Fatalf("frank's wallet on the node: %+v %v, want the code %s", wallet, err, code)
	}

	// The wallet, from the tab bar: the code and its QR code.
	p.goTo("/wallet")
	p.waitJS(10*time.Second, "the claim in the wallet", fmt.Sprintf(`!!document.querySelector('#wallet [data-claim-code=%s] svg[data-qr=%s]')`, js(code), js(code)))
	p.checkScreen("wallet")
	// Pressing Claim again changes nothing.
	p.goTo("/c/latte")
	p.waitJS(5*time.Second, "the button says claimed", `document.querySelector('#claim-btn').disabled && document.querySelector('#claim-btn').textContent === 'Claimed'`)

	// A visitor asked for the wallet signs in first.
	q := b.newPage("visitor2", desktop)
	q.do(20*time.Second, "open the wallet", chromedp.Navigate(base+"/wallet"))
	q.waitJS(10*time.Second, "asked to sign in", `location.pathname === '/signin' && document.querySelector('#login-reason').textContent.includes('wallet')`)
	b.close()
}

// A merchant creates a coupon with every field (an end time included),
// watches it live, edits its title, sees two claims arrive and withdraws it
// after confirming; a shopper's open page shows each change without a
// reload.
func TestBrowserMerchantRunsADrop(t *testing.T) {
	chromiumPath(t) // fail (or skip with -short) before starting anything
	a := startApp(t, nil)
	base := baseURL(a)

	b := newBrowser(t)
	m := b.newPage("merchant", desktop)
	m.signIn(base, "acme", "merchant")
	m.goTo("/merchant")
	m.waitJS(10*time.Second, "no coupons yet", shown("#my-empty"))
	m.checkScreen("merchant-mine-empty")
	m.goTo("/merchant/new")
	m.waitJS(5*time.Second, "the form", shown("#edit-form"))
	m.checkScreen("merchant-new")
	m.do(10*time.Second, "fill the form",
		chromedp.SetValue(chromedp.ID("f-id"), "drop1"),
		chromedp.SetValue(chromedp.ID("f-title"), "Flash sale: sneakers"),
		chromedp.SetValue(chromedp.ID("f-discount"), "40%"),
		chromedp.SetValue(chromedp.ID("f-description"), "While stocks last."),
		chromedp.SetValue(chromedp.ID("f-quantity"), "3"))
	// Two days ahead in the browser's local time, as a person would type it.
	eval[chromedp.Void](m, `(() => {
		const d = new Date(Date.now() + 2 * 86400e3), p = (n) => String(n).padStart(2, '0');
		document.querySelector('#f-expires').value = d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + 'T' + p(d.getHours()) + ':' + p(d.getMinutes());
	})()`)
	m.click("#edit-submit")
	m.waitJS(10*time.Second, "the live view", `location.pathname === '/merchant/c/drop1' && `+textIs("#live-title", "Flash sale: sneakers"))
	api := client.NewAPI(base, "")
	c, err := api.Coupon(context.Background(), "drop1")
	if err != nil {
		t.Fatal(err)
	}
	if c.Merchant != "acme" || c.Discount != "40%" || c.Description != "While stocks last." || c.Quantity != 3 ||
		c.ExpiresAt.Before(time.Now().Add(47*time.Hour)) || c.ExpiresAt.After(time.Now().Add(49*time.Hour)) {
		t.Fatalf("created %+v, want every field of the form, ending in two days", c)
	}

	// A shopper has the coupon open.
	s := b.newPage("shopper", phone)
	s.login(base, "gina")
	s.do(20*time.Second, "open the coupon", chromedp.Navigate(base+"/c/drop1"))
	s.waitJS(10*time.Second, "3 remaining", textIs("#remaining", "3"))
	s.waitJS(10*time.Second, "online", `window.couponmesh.state === 'online'`)
	eval[chromedp.Void](s, `window.couponmesh.subscribe(['drop1']).then(() => undefined)`)
	eval[chromedp.Void](m, `window.couponmesh.subscribe(['drop1']).then(() => undefined)`)
	m.checkScreen("merchant-live")

	// Edit the title.
	m.goTo("/merchant/c/drop1/edit")
	m.waitJS(10*time.Second, "the form filled in", `document.querySelector('#f-title').value === 'Flash sale: sneakers' && document.querySelector('#f-expires').value !== ''`)
	m.checkScreen("merchant-edit")
	m.do(10*time.Second, "new title", chromedp.SetValue(chromedp.ID("f-title"), "Flash sale: running shoes"))
	m.click("#edit-submit")
	m.waitJS(10*time.Second, "back on the live view", `location.pathname === '/merchant/c/drop1' && `+textIs("#live-title", "Flash sale: running shoes"))
	s.waitJS(10*time.Second, "the shopper sees the new title", textIs("#coupon-title", "Flash sale: running shoes"))
	if c, _ := api.Coupon(context.Background(), "drop1"); c.Title != "Flash sale: running shoes" || c.Quantity != 3 || c.Discount != "40%" {
		t.Errorf("after the edit: %+v", c)
	}

	// Two claims arrive live on both pages.
	for _, u := range []string{"hank", "ines"} {
		if _, err := dial(t, a, u, client.Options{}).Claim(context.Background(), "drop1", "rid-"+u); err != nil {
			t.Fatal(err)
		}
	}
	m.waitJS(10*time.Second, "two claims in the merchant's view", textIs("#live-claimed", "2")+
		` && document.querySelectorAll('#live-claims li').length === 2 && !!document.querySelector('#live-claims li[data-n="1"]') && !!document.querySelector('#live-claims li[data-n="2"]')`)
	m.waitJS(5*time.Second, "the chart drawn", `document.querySelector('#live-chart polyline').getAttribute('points').split(' ').length >= 3`)
	s.waitJS(10*time.Second, "the shopper sees 1 left", textIs("#remaining", "1"))
	m.screenshot("merchant-live-claims")

	// Withdraw, after a confirmation; a cancel first changes nothing.
	m.click("#withdraw-btn")
	m.waitJS(5*time.Second, "the confirmation", `document.querySelector('#withdraw-dialog').open`)
	m.checkScreen("merchant-withdraw-dialog")
	m.press("\r") // the focus is on "Keep it"
	m.waitJS(5*time.Second, "closed", `!document.querySelector('#withdraw-dialog').open`)
	if c, _ := api.Coupon(context.Background(), "drop1"); c.Status != couponmesh.StatusActive {
		t.Fatalf("after a cancel the coupon is %s", c.Status)
	}
	m.click("#withdraw-btn")
	m.waitJS(5*time.Second, "the confirmation", `document.querySelector('#withdraw-dialog').open`)
	m.click("#withdraw-confirm")
	m.waitJS(10*time.Second, "withdrawn in the merchant's view", textIs("#live-status", "withdrawn"))
	s.waitJS(10*time.Second, "withdrawn on the shopper's page", textIs("#coupon-status", "withdrawn")+
		` && document.querySelector('#claim-btn').disabled && document.querySelector('#countdown').textContent === 'Withdrawn by the merchant'`)
	if c, _ := api.Coupon(context.Background(), "drop1"); c.Status != couponmesh.StatusWithdrawn || c.Claimed != 2 {
		t.Errorf("on the node: %+v, want withdrawn with 2 claims", c)
	}
	for _, pg := range []*page{m, s} {
		if got := eval[int](pg, `performance.getEntriesByType('navigation').length`); got != 1 {
			t.Errorf("%s: %d page loads, want every change without a reload", pg.name, got)
		}
	}
	s.screenshot("shopper-withdrawn")
	m.goTo("/merchant")
	m.waitJS(10*time.Second, "my coupons", `!!document.querySelector('#my-coupons [data-coupon-id="drop1"][data-status="withdrawn"]')`)
	m.checkScreen("merchant-mine")
	b.close()
}

// The install prompt is offered from the second use of the app on, with
// the browser's own prompt; "Not now" stops it for good.
func TestBrowserInstallPromptAfterSecondUse(t *testing.T) {
	chromiumPath(t) // fail (or skip with -short) before starting anything
	a := startApp(t, nil)
	base := baseURL(a)
	b := newBrowser(t)
	p := b.newPage("visitor", phone)
	// The event Chromium fires when the app is installable, with a prompt
	// that records its call.
	const fire = `(() => {
		const e = new Event('beforeinstallprompt', {cancelable: true});
		e.prompt = async () => { window.__prompted = (window.__prompted || 0) + 1 };
		e.userChoice = Promise.resolve({outcome: 'accepted', platform: 'web'});
		window.dispatchEvent(e);
		return e.defaultPrevented;
	})()`
	p.do(20*time.Second, "first use", chromedp.Navigate(base+"/"))
	p.waitJS(10*time.Second, "the app", `!!window.couponmesh`)
	eval[bool](p, fire)
	if eval[bool](p, shown("#install-banner")) {
		t.Fatal("install offered on the first use")
	}
	p.do(20*time.Second, "second use", chromedp.Navigate(base+"/"))
	p.waitJS(10*time.Second, "the app", `!!window.couponmesh`)
	if !eval[bool](p, fire) {
		t.Error("the app did not take over the browser's install prompt (preventDefault)")
	}
	p.waitJS(5*time.Second, "install offered", shown("#install-banner"))
	p.checkScreen("install-offered")
	p.click("#install-btn")
	p.waitJS(5*time.Second, "the browser's prompt shown", `window.__prompted === 1 && !(`+shown("#install-banner")+`)`)

	p.do(20*time.Second, "third use", chromedp.Navigate(base+"/"))
	p.waitJS(10*time.Second, "the app", `!!window.couponmesh`)
	eval[bool](p, fire)
	p.waitJS(5*time.Second, "install offered", shown("#install-banner"))
	p.click("#install-later")
	p.do(20*time.Second, "fourth use", chromedp.Navigate(base+"/"))
	p.waitJS(10*time.Second, "the app", `!!window.couponmesh`)
	eval[bool](p, fire)
	if eval[bool](p, shown("#install-banner")) {
		t.Error("install offered again after Not now")
	}
	b.close()
}
