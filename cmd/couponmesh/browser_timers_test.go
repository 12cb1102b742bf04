package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
)

// A scheduled drop in the browser (issue 18): a visitor's open page counts
// down to the start with Claim waiting and saying when claims open; at the
// start the node's push makes it active (Claim enabled, a countdown to the
// end), at the end expired, all without a reload. A merchant moves the
// start of another drop from the edit screen.
func TestBrowserScheduledDropStartsAndEndsLive(t *testing.T) {
	chromiumPath(t) // fail (or skip with -short) before starting anything
	a := startApp(t, nil)
	base := baseURL(a)
	// Far enough ahead for the page to load and be checked on a busy machine.
	starts := time.Now().Add(15 * time.Second).UTC().Truncate(time.Second)
	ends := starts.Add(6 * time.Second)
	createCoupon(t, a, "acme", couponmesh.CouponSpec{ID: "drop.noon", Title: ptr("Noon drop: headphones"), Discount: ptr("30%"),
		Quantity: ptr(3), StartsAt: &starts, ExpiresAt: &ends})
	later := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Minute)
	createCoupon(t, a, "acme", couponmesh.CouponSpec{ID: "drop.later", Title: ptr("Evening drop"), Quantity: ptr(5), StartsAt: &later})

	b := newBrowser(t)
	p := b.newPage("visitor", phone)
	p.do(20*time.Second, "open the drop's URL", chromedp.Navigate(base+"/c/drop.noon"))
	p.waitJS(10*time.Second, "the drop", textIs("#coupon-title", "Noon drop: headphones"))
	p.waitJS(10*time.Second, "live as a visitor", `window.couponmesh.state === 'online' && window.couponmesh.subscriptions.has('drop.noon')`)
	eval[chromedp.Void](p, `window.couponmesh.subscribe(['drop.noon']).then(() => undefined)`)
	// Every status the page's client holds, in order, with when it came.
	eval[chromedp.Void](p, `(() => {
		window.__statuses = [[window.couponmesh.coupon('drop.noon').status, Date.now()]];
		window.couponmesh.on('coupon', (c) => {
			const last = window.__statuses[window.__statuses.length - 1][0];
			if (c.id === 'drop.noon' && c.status !== last) window.__statuses.push([c.status, Date.now()]);
		});
	})()`)
	p.waitJS(5*time.Second, "scheduled", textIs("#coupon-status", "scheduled"))
	p.waitJS(5*time.Second, "a countdown to the start", `/^Starts in 00:00:\d\d$/.test(document.querySelector('#countdown').textContent)`)
	p.waitJS(5*time.Second, "Claim waits and says when claims open", `document.querySelector('#claim-btn').disabled && `+shown("#claim-hint")+
		` && document.querySelector('#claim-hint').textContent.startsWith('Claims open at ')`)
	if !eval[bool](p, `document.querySelector('#coupon-view').dataset.status === 'scheduled'`) {
		t.Error("the page's status is not scheduled")
	}
	if time.Until(starts) > 3*time.Second {
		p.checkScreen("scheduled-drop")
	}

	// A claim before the start (here from the SDK of a signed-in shopper's
	// page, as a queued claim sent late would be) is refused with the clear
	// message.
	s := b.newPage("shopper", desktop)
	s.login(base, "olga")
	s.do(20*time.Second, "open the drop", chromedp.Navigate(base+"/c/drop.noon"))
	s.waitJS(10*time.Second, "online, scheduled", `window.couponmesh.state === 'online' && `+textIs("#coupon-status", "scheduled"))
	if time.Until(starts) > time.Second {
		// An answer that did not come in time leaves the claim queued (the
		// SDK resolves {queued: true} and sends it again later): no refusal
		// to check then, and it is taken out of the queue, not sent after
		// the start.
		code := eval[string](s, `window.couponmesh.claim('drop.noon', {rid: 'early'}).then((r) => r.queued ? 'queued' : 'ok', (e) => e.code)`)
		if code == "queued" {
			eval[chromedp.Void](s, `window.couponmesh.claimQueue.remove('early').then(() => undefined)`)
			t.Log("the claim before the start got no answer in time (a busy machine): its refusal is not checked")
		} else if time.Now().Before(starts) && code != string(couponmesh.CodeNotStarted) {
			t.Errorf("a claim before the start answered %q, want %s", code, couponmesh.CodeNotStarted)
		}
		if code == string(couponmesh.CodeNotStarted) {
			s.waitJS(5*time.Second, "the refusal in plain words", `document.querySelector('#claim-result').textContent.startsWith('Not yet: claims open at ')`)
		}
	}

	// The start: active, live.
	p.waitJS(time.Until(starts)+15*time.Second, "active at the start", textIs("#coupon-status", "active")+
		` && !document.querySelector('#claim-btn').disabled && document.querySelector('#claim-hint').hidden`)
	p.waitJS(5*time.Second, "a countdown to the end", `/^Ends in 00:00:0\d$/.test(document.querySelector('#countdown').textContent)`)
	p.screenshot("drop-active")
	s.waitJS(10*time.Second, "active on the shopper's page", textIs("#coupon-status", "active"))
	s.click("#claim-btn")
	s.waitJS(15*time.Second, "claimed after the start", `/^Claimed! Your code: \S+$/.test(document.querySelector('#claim-result').textContent.trim())`)

	// The end: expired, live.
	p.waitJS(time.Until(ends)+15*time.Second, "expired at the end", textIs("#coupon-status", "expired")+
		` && document.querySelector('#claim-btn').disabled && document.querySelector('#countdown').textContent === 'Ended'`)
	p.waitJS(5*time.Second, "2 remaining", textIs("#remaining", "2"))
	p.screenshot("drop-expired")
	var seen []string
	for _, c := range eval[[][]any](p, `window.__statuses`) {
		seen = append(seen, fmt.Sprint(c[0]))
	}
	if fmt.Sprint(seen) != "[scheduled active expired]" {
		t.Errorf("the page went through %v, want scheduled, active, expired", seen)
	}
	for _, pg := range []*page{p, s} {
		if got := eval[int](pg, `performance.getEntriesByType('navigation').length`); got != 1 {
			t.Errorf("%s: %d page loads, want every change without a reload", pg.name, got)
		}
	}
	api := client.NewAPI(base, "")
	if c, err := api.Coupon(context.Background(), "drop.noon"); err != nil || c.Status != couponmesh.StatusExpired || c.Claimed != 1 {
		t.Errorf("on the node: %+v %v, want expired with 1 claim", c, err)
	}

	// A merchant moves the start of the other drop an hour later.
	m := b.newPage("merchant", desktop)
	m.signIn(base, "acme", "merchant")
	m.goTo("/merchant")
	m.waitJS(10*time.Second, "my drops", `!!document.querySelector('#my-coupons [data-coupon-id="drop.later"][data-status="scheduled"]')`)
	m.goTo("/merchant/c/drop.later")
	m.waitJS(10*time.Second, "the live view", textIs("#live-status", "scheduled"))
	m.goTo("/merchant/c/drop.later/edit")
	m.waitJS(10*time.Second, "the start filled in", `document.querySelector('#f-title').value === 'Evening drop' && document.querySelector('#f-starts').value !== ''`)
	eval[chromedp.Void](m, `(() => {
		const f = document.querySelector('#f-starts'), d = new Date(new Date(f.value).getTime() + 3600e3), p = (n) => String(n).padStart(2, '0');
		f.value = d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + 'T' + p(d.getHours()) + ':' + p(d.getMinutes());
	})()`)
	m.click("#edit-submit")
	m.waitJS(10*time.Second, "the live view", `location.pathname === '/merchant/c/drop.later' && `+textIs("#live-status", "scheduled"))
	if c, err := api.Coupon(context.Background(), "drop.later"); err != nil || !c.StartsAt.Equal(later.Add(time.Hour)) || c.Status != couponmesh.StatusScheduled {
		t.Errorf("after the edit: %+v %v, want scheduled from %s", c, err, later.Add(time.Hour))
	}
	b.close()
}
