package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

// The browser tests drive Debian's Chromium (apt-get install -y chromium;
// .ci/run installs it) through the DevTools protocol. A missing Chromium is
// a failure, not a skip: only `go test -short` skips them.
const defaultChromium = "/usr/bin/chromium"

// Viewports the app must render well at.
var (
	desktop = viewport{1280, 800, false}
	phone   = viewport{390, 844, true}
)

type viewport struct {
	w, h   int64
	mobile bool
}

// browser is one headless Chromium process with a fresh profile.
type browser struct {
	t     *testing.T
	ctx   context.Context
	close func() // checks the pages' CSP reports, then stops Chromium; safe to call again
	pages []*page
}

func chromiumPath(t *testing.T) string {
	t.Helper()
	path := defaultChromium
	if p := os.Getenv("COUPONMESH_CHROMIUM"); p != "" {
		path = p
	}
	if _, err := os.Stat(path); err != nil {
		if testing.Short() {
			t.Skipf("browser test skipped in -short mode: no Chromium at %s", path)
		}
		t.Fatalf("browser tests need Chromium at %s (%v): install it with `apt-get install -y chromium` "+
			"(.ci/run does), or point COUPONMESH_CHROMIUM at a Chromium or Chrome binary", path, err)
	}
	return path
}

// newBrowser starts Chromium; it is stopped when the test ends.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox,
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		// Without these Chromium calls home, and this closed network
		// refuses its connections.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-pings", true),
		chromedp.WindowSize(int(desktop.w), int(desktop.h)),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	stop := sync.OnceFunc(func() { cancel(); acancel() })
	t.Cleanup(stop)
	start := time.Now()
	if err := chromedp.Do(ctx); err != nil { // starts the browser: no timeout here
		t.Fatalf("start Chromium: %v", err)
	}
	t.Logf("Chromium started in %s", time.Since(start).Round(time.Millisecond))
	b := &browser{t: t, ctx: ctx}
	b.close = sync.OnceFunc(func() {
		if !t.Failed() {
			for _, p := range b.pages {
				if p.ctx.Err() == nil {
					p.checkCSP()
				}
			}
		}
		stop()
	})
	return b
}

// page is a tab in a browser context of its own: its own cookies,
// IndexedDB and service workers, like a separate browser profile.
type page struct {
	t    *testing.T
	name string
	ctx  context.Context
	vp   viewport

	mu     sync.Mutex
	log    []string // console messages, exceptions, WebSocket events: for failures
	wsSent []string // payloads of the WebSocket frames the page sent

	workers map[target.ID]context.Context // attached service workers
}

func (b *browser) newPage(name string, vp viewport) *page {
	t := b.t
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	p := &page{t: t, name: name, ctx: ctx, vp: vp}
	b.pages = append(b.pages, p)
	if err := chromedp.Do(ctx); err != nil { // opens the tab: no timeout here
		t.Fatalf("%s: open tab: %v", name, err)
	}
	if err := chromedp.Listen(ctx, p.record); err != nil {
		t.Fatalf("%s: listen: %v", name, err)
	}
	// Runs before the tab is closed (cleanups run last in, first out).
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		p.mu.Lock()
		t.Logf("%s: browser console:\n\t%s", name, strings.Join(p.log, "\n\t"))
		p.mu.Unlock()
		p.screenshot("failed")
	})
	// Network events (WebSocket frames) and network emulation.
	p.do(5*time.Second, "enable the network domain", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, network.Enable, network.EnableParams{})
		return err
	}))
	// Every document of the tab records the Content-Security-Policy
	// violations it reports; the test fails on any (checked at its end and
	// by checkScreen). DevTools runs this script whatever the policy says.
	p.do(5*time.Second, "watch CSP violations", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: cspWatch})
		return err
	}))
	t.Cleanup(func() {
		if !t.Failed() && p.ctx.Err() == nil { // else b.close checked it
			p.checkCSP()
		}
	})
	p.emulate(vp)
	return p
}

// cspWatch keeps the page's securitypolicyviolation reports in
// window.__cspViolations.
const cspWatch = `window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
	window.__cspViolations.push(e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') + ' at ' + e.sourceFile + ':' + e.lineNumber);
});`

// checkCSP fails the test if the page reported a CSP violation.
func (p *page) checkCSP() {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.__cspViolations || []`))
	if err != nil {
		p.t.Errorf("%s: read CSP violations: %v", p.name, err)
		return
	}
	for _, s := range v {
		p.t.Errorf("%s: Content-Security-Policy violation: %s", p.name, s)
	}
}

// record runs on the tab's reader goroutine: it must only append.
func (p *page) record(ev any) {
	var line string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		var args []string
		for _, a := range ev.Args {
			if a.Value != nil {
				args = append(args, string(a.Value))
			} else {
				args = append(args, a.Description)
			}
		}
		line = fmt.Sprintf("console.%s %s", ev.Type, strings.Join(args, " "))
	case *runtime.EventExceptionThrown:
		line = "exception: " + ev.ExceptionDetails.Text
		if ev.ExceptionDetails.Exception != nil {
			line += " " + ev.ExceptionDetails.Exception.Description
		}
	case *network.EventWebSocketCreated:
		line = "websocket created " + ev.URL
	case *network.EventWebSocketClosed:
		line = "websocket closed"
	case *network.EventWebSocketFrameError:
		line = "websocket error " + ev.ErrorMessage
	case *network.EventWebSocketFrameSent:
		p.mu.Lock()
		p.wsSent = append(p.wsSent, string(ev.Response.PayloadData))
		p.mu.Unlock()
		return
	default:
		return
	}
	p.mu.Lock()
	p.log = append(p.log, time.Now().Format("15:04:05.000")+" "+line)
	p.mu.Unlock()
}

// claimFramesSent counts the claim requests for coupon the page sent over
// WebSockets (seen by DevTools, so whatever the app thinks it did).
func (p *page) claimFramesSent(coupon string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, f := range p.wsSent {
		var req struct{ Op, Coupon string }
		if json.Unmarshal([]byte(f), &req) == nil && req.Op == "claim" && req.Coupon == coupon {
			n++
		}
	}
	return n
}

// do runs actions with a deadline and fails the test on error.
func (p *page) do(d time.Duration, what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, d)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %s: %v", p.name, what, err)
	}
}

// eval evaluates a JavaScript expression (awaiting a promise) into T.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("%s: eval %s: %v", p.name, expr, err)
	}
	return v
}

// waitJS polls a JavaScript predicate until it is truthy, for at most d.
//
// It polls from the test with Runtime.evaluate, one evaluation of at most
// 2 s at a time, which runs in the page's main world whatever document the
// tab holds. It used chromedp.Poll, which was the cause of the flake of
// TestBrowserOfflineClaimIsQueuedAndSentOnce ("offline after the reload"
// timed out on a busy machine): Poll first waits, with no bound but the
// test's deadline, until chromedp's own bookkeeping of the tab holds an
// execution context and a document root for the top frame, and then runs
// its predicate in that recorded context (chromedp v0.23.0 poll.go runPoll,
// target.go ensureFrame). Both are rebuilt from events after a reload:
// executionContextsCleared (twice for a reload served by the service
// worker: seen here as cleared, cleared, created), executionContextCreated,
// and a DOM.getDocument after DOM.documentUpdated, whose failure leaves the
// root empty until the next document. When those land in another order,
// Poll waits for a context that never comes while the page met the
// predicate long ago, and the first wait after the reload is the one that
// times out. (Inferred from chromedp's code and the events a reload sends;
// 14 runs of the old test under two CPU hogs or beside a second copy all
// passed, so the reordering itself was not caught.) When the wait runs out
// it now says what the page was doing (pageState).
func (p *page) waitJS(d time.Duration, what, predicate string) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	expr := fmt.Sprintf(`(() => { try { return !!(%s) } catch (e) { return false } })()`, predicate)
	var last error
	for {
		ctx, cancel := context.WithTimeout(p.ctx, min(2*time.Second, max(time.Until(deadline), 100*time.Millisecond)))
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if err != nil {
			last = err // e.g. the document went away under the evaluation: try the next one
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: %s: not true within %s (last error: %v); page: %s", p.name, what, d, last, p.pageState())
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-p.ctx.Done():
			p.t.Fatalf("%s: %s: %v", p.name, what, p.ctx.Err())
		}
	}
}

// pageState describes the document on display for a failure message: its
// URL (an error page shows as chrome-error://), load state, whether the app
// booted, its connection state, the browser's network state, and what is
// on screen.
func (p *page) pageState() string {
	ctx, cancel := context.WithTimeout(p.ctx, 3*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		url: location.href, readyState: document.readyState, controlled: !!(navigator.serviceWorker && navigator.serviceWorker.controller),
		onLine: navigator.onLine, booted: !!window.couponmesh, sdk: window.couponmesh ? window.couponmesh.state : null,
		shown: document.querySelector('#conn-state') ? document.querySelector('#conn-state').dataset.state : null,
		view: [...document.querySelectorAll('main > section')].filter((e) => !e.hidden).map((e) => e.id),
	})`))
	if err != nil {
		return "unreadable: " + err.Error()
	}
	return s
}

// js quotes s as a JavaScript string literal.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// textIs is a predicate: the element's trimmed text equals want.
func textIs(sel, want string) string {
	return fmt.Sprintf(`(() => { const e = document.querySelector(%s); return !!e && e.textContent.trim() === %s })()`, js(sel), js(want))
}

// shown is a predicate: the element exists and is not hidden.
func shown(sel string) string {
	return fmt.Sprintf(`(() => { const e = document.querySelector(%s); return !!e && !e.closest('[hidden]') && e.getClientRects().length > 0 })()`, js(sel))
}

func (p *page) text(sel string) string {
	p.t.Helper()
	return eval[string](p, fmt.Sprintf(`(document.querySelector(%s) || {}).textContent || ''`, js(sel)))
}

func (p *page) click(sel string) {
	p.t.Helper()
	p.do(10*time.Second, "click "+sel, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// login opens the app's sign-in screen at base and signs in as a shopper.
func (p *page) login(base, user string) {
	p.t.Helper()
	p.signIn(base, user, "shopper")
}

// signIn opens the sign-in screen at base and signs in through the form.
func (p *page) signIn(base, user, role string) {
	p.t.Helper()
	p.do(20*time.Second, "open the sign-in screen",
		chromedp.Navigate(base+"/signin"),
		chromedp.WaitVisible(chromedp.ID("login-user")))
	p.fillSignIn(user, role)
}

// fillSignIn signs in on the sign-in screen on display.
func (p *page) fillSignIn(user, role string) {
	p.t.Helper()
	p.do(10*time.Second, "sign in",
		chromedp.SetValue(chromedp.ID("login-user"), user),
		chromedp.SetValue(chromedp.ID("login-role"), role),
		chromedp.Click(chromedp.ID("login-btn"), chromedp.NodeVisible))
	p.waitJS(15*time.Second, "online after sign-in", `document.querySelector('#conn-state').dataset.state === 'online' && window.couponmesh.user`)
	p.waitJS(5*time.Second, "signed in as "+user, textIs("#whoami", user+" ("+role+")"))
}

// goTo follows the app link to path (the tab bar, a list entry...): a
// navigation inside the app, without a page load.
func (p *page) goTo(path string) {
	p.t.Helper()
	eval[chromedp.Void](p, fmt.Sprintf(`(() => {
		const a = [...document.querySelectorAll('a[data-link]')].find((a) => a.getAttribute('href') === %s && a.getClientRects().length > 0);
		if (!a) throw new Error('no visible link to ' + %s);
		a.click();
	})()`, js(path), js(path)))
	p.waitJS(5*time.Second, "at "+path, fmt.Sprintf(`location.pathname === %s`, js(path)))
}

// press sends a key (e.g. "\t", "\r") to the focused element, as a person
// at the keyboard would.
func (p *page) press(keys string) {
	p.t.Helper()
	p.do(5*time.Second, fmt.Sprintf("press %q", keys), chromedp.KeyEvent(keys))
}

// tabTo presses Tab until sel has the focus (at most max times) and fails
// when it never does: the element is reachable from the keyboard.
func (p *page) tabTo(sel string, max int) {
	p.t.Helper()
	for range max {
		if eval[bool](p, fmt.Sprintf(`document.activeElement === document.querySelector(%s)`, js(sel))) {
			return
		}
		p.press("\t")
	}
	if !eval[bool](p, fmt.Sprintf(`document.activeElement === document.querySelector(%s)`, js(sel))) {
		p.t.Fatalf("%s: %s not reached with %d Tab presses (focus on %s)", p.name, sel, max,
			eval[string](p, `document.activeElement ? document.activeElement.outerHTML.slice(0, 120) : 'nothing'`))
	}
}

// checkScreen checks the screen on display at both sizes: axe-core finds
// no WCAG 2.1 A or AA violation, every touch target on the phone is at
// least 44 px each way, no CSP violation was reported, and a screenshot
// of each size is kept.
func (p *page) checkScreen(what string) {
	p.t.Helper()
	for _, vp := range []viewport{phone, desktop} {
		p.emulate(vp)
		p.axe(fmt.Sprintf("%s at %dx%d", what, vp.w, vp.h))
		if vp.mobile {
			p.touchTargets(what)
		}
		p.screenshot(fmt.Sprintf("%s-%dx%d", what, vp.w, vp.h))
	}
	p.emulate(p.vp)
	p.checkCSP()
}

// axeSource is axe-core's browser build from webclient/node_modules
// (`npm ci` in webclient/, which `make test` runs first).
var axeSource = sync.OnceValues(func() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	path := filepath.Join(wd, "..", "..", "webclient", "node_modules", "axe-core", "axe.min.js")
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%w: run `npm ci` in webclient/ (make test does)", err)
	}
	return string(b), nil
})

// axe runs axe-core in the page against WCAG 2.1 A and AA and fails the
// test with every violation found.
func (p *page) axe(what string) {
	p.t.Helper()
	src, err := axeSource()
	if err != nil {
		p.t.Fatalf("axe-core: %v", err)
	}
	if !eval[bool](p, `typeof window.axe === 'object'`) {
		eval[chromedp.Void](p, src+"\n;undefined")
	}
	type violation struct {
		ID, Impact, Help string
		Nodes            []struct {
			Target         []any
			FailureSummary string
		}
	}
	ctx, cancel := context.WithTimeout(p.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[[]violation](`axe.run(document, {
		runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']},
		resultTypes: ['violations'],
	}).then((r) => r.violations)`, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("%s: axe on %s: %v", p.name, what, err)
	}
	for _, x := range v {
		var nodes []string
		for _, n := range x.Nodes {
			nodes = append(nodes, fmt.Sprintf("%v: %s", n.Target, strings.ReplaceAll(n.FailureSummary, "\n", " ")))
		}
		p.t.Errorf("%s: axe on %s: %s (%s): %s\n\t%s", p.name, what, x.ID, x.Impact, x.Help, strings.Join(nodes, "\n\t"))
	}
}

// touchTargets fails the test for every visible control smaller than 44
// px either way.
func (p *page) touchTargets(what string) {
	p.t.Helper()
	small := eval[[]string](p, `[...document.querySelectorAll('a[href], button, input, select, textarea, summary, [role=button], [tabindex]:not([tabindex="-1"])')]
		.filter((e) => !e.closest('[hidden]') && e.getClientRects().length > 0)
		.map((e) => [e, e.getBoundingClientRect()])
		.filter(([e, r]) => r.right > 0 && r.bottom > 0 && r.left < innerWidth && (r.width < 44 || r.height < 44))
		.map(([e, r]) => e.outerHTML.slice(0, 80) + ' ' + Math.round(r.width) + 'x' + Math.round(r.height))`)
	for _, s := range small {
		p.t.Errorf("%s: %s: touch target under 44x44 px: %s", p.name, what, s)
	}
}

// openCoupon clicks the coupon in the list and waits for its counts.
func (p *page) openCoupon(id string, remaining int) {
	p.t.Helper()
	p.waitJS(10*time.Second, "coupon "+id+" listed", shown(fmt.Sprintf(`#coupon-list [data-coupon-id=%s] a`, js(id))))
	p.click(fmt.Sprintf(`#coupon-list [data-coupon-id=%s] a`, js(id)))
	p.waitJS(10*time.Second, "coupon "+id+" shown", shown("#remaining"))
	p.waitJS(10*time.Second, fmt.Sprintf("coupon %s shows %d remaining", id, remaining), textIs("#remaining", fmt.Sprint(remaining)))
}

// connStates records every state the page's SDK client goes through in
// window.__states (the current state first).
func (p *page) recordConnStates() {
	p.t.Helper()
	eval[chromedp.Void](p, `(() => {
		window.__states = [window.couponmesh.state];
		window.couponmesh.on('state', (s) => window.__states.push(s));
	})()`)
}

// screenshotAt switches the page to another viewport for one screenshot.
func (p *page) screenshotAt(vp viewport, what string) {
	p.t.Helper()
	p.emulate(vp)
	p.screenshot(what + fmt.Sprintf("-%dx%d", vp.w, vp.h))
	p.emulate(p.vp)
}

func (p *page) emulate(vp viewport) {
	p.t.Helper()
	opts := []chromedp.EmulateViewportOption{chromedp.EmulateLandscape}
	if vp.mobile {
		opts = []chromedp.EmulateViewportOption{chromedp.EmulatePortrait, chromedp.EmulateMobile, chromedp.EmulateTouch}
	}
	p.do(5*time.Second, "viewport", chromedp.EmulateViewport(vp.w, vp.h, opts...))
}

// screenshot saves a PNG of the viewport as an artifact.
func (p *page) screenshot(what string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Errorf("%s: screenshot %s: %v", p.name, what, err)
		return
	}
	name := fmt.Sprintf("%s-%s-%s.png", p.t.Name(), p.name, what)
	name = regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(name, "_")
	path := filepath.Join(artifactsDir(p.t), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Errorf("save screenshot: %v", err)
		return
	}
	p.t.Logf("screenshot: %s", path)
}

// artifactsDir is $COUPONMESH_ARTIFACTS, or artifacts/ at the repository
// root (ignored by git).
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("COUPONMESH_ARTIFACTS")
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		root := wd
		for {
			if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
				break
			}
			up := filepath.Dir(root)
			if up == root {
				root = wd
				break
			}
			root = up
		}
		dir = filepath.Join(root, "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifacts dir: %v", err)
	}
	return dir
}

// markNodes marks the nodes on screen that match sel, each named by its
// attribute attr, for checkNodesKept; it fails the test when none match.
func (p *page) markNodes(sel, attr string) {
	p.t.Helper()
	n := eval[int](p, fmt.Sprintf(`(() => {
		const m = window.__kept || (window.__kept = {});
		m[%[1]s] = {attr: %[2]s, nodes: [...document.querySelectorAll(%[1]s)]};
		return m[%[1]s].nodes.length;
	})()`, js(sel), js(attr)))
	if n == 0 {
		p.t.Fatalf("%s: nothing on screen matches %s to mark", p.name, sel)
	}
}

// checkNodesKept fails the test unless every node marked by markNodes is
// still the one on screen for its selector and name (updated in place, not
// replaced).
func (p *page) checkNodesKept(when string) {
	p.t.Helper()
	gone := eval[map[string][]string](p, `Object.fromEntries(Object.entries(window.__kept || {}).map(([sel, {attr, nodes}]) => [sel,
		nodes.filter((n) => !n.isConnected || document.querySelector(sel + '[' + attr + '="' + CSS.escape(n.getAttribute(attr)) + '"]') !== n)
			.map((n) => n.getAttribute(attr))]).filter(([, names]) => names.length > 0))`)
	for sel, names := range gone {
		p.t.Errorf("%s: the nodes %s of %v were replaced %s, want them updated in place", p.name, sel, names, when)
	}
}
