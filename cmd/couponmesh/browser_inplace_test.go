package main

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
)

// Every list of the app is updated in place, keyed (renderKeyed in
// webclient/src/app/dom.js): a push or a reload never replaces a node that
// is still on screen (a tap between a re-render and the click landed on a
// node that was gone; see TestBrowserOfflineClaimIsQueuedAndSentOnce for the
// coupon list).

// The wallet and the feed keep their entries when a feed push adds one and
// when the wallet is shown again (and read again from the node).
func TestBrowserWalletAndFeedUpdateInPlace(t *testing.T) {
	chromiumPath(t) // fail (or skip with -short) before starting anything
	a := startApp(t, nil)
	base := baseURL(a)
	for _, id := range []string{"cake", "pie", "tart"} {
		createCoupon(t, a, "bakery", couponmesh.CouponSpec{ID: id, Title: ptr("A free " + id), Quantity: ptr(10)})
	}
	b := newBrowser(t)
	p := b.newPage("kim", phone)
	p.login(base, "kim")
	// Kim claims from another session (her other device): the page hears of
	// each claim as a feed push, which renders the feed and the wallet.
	kim := dial(t, a, "kim", client.Options{})
	claim := func(id string) {
		t.Helper()
		if _, err := kim.Claim(context.Background(), id, "kim-"+id); err != nil {
			t.Fatal(err)
		}
	}
	claim("cake")
	p.goTo("/wallet")
	p.waitJS(10*time.Second, "cake in the wallet and the feed", shown(`#wallet [data-coupon="cake"]`)+
		` && document.querySelectorAll('#feed li').length === 1 && !!document.querySelector('#feed li[data-type="claimed"] code')`)
	p.markNodes("#wallet li", "data-coupon")
	p.markNodes("#feed li", "data-seq")

	claim("pie")
	p.waitJS(10*time.Second, "pie pushed into the wallet and the feed", shown(`#wallet [data-coupon="pie"]`)+
		` && document.querySelectorAll('#feed li').length === 2`)
	p.checkNodesKept("after a feed push")
	// Newest first, the entries already there in place.
	if got := eval[string](p, `[...document.querySelectorAll('#wallet li')].map((li) => li.dataset.coupon).join(' ')`); got != "pie cake" {
		t.Errorf("wallet %q, want pie cake", got)
	}
	if got := eval[string](p, `[...document.querySelectorAll('#feed li')].map((li) => li.dataset.seq).join(' ')`); got != "2 1" {
		t.Errorf("feed seqs %q, want 2 1", got)
	}

	p.goTo("/")
	claim("tart")
	p.goTo("/wallet")
	p.waitJS(10*time.Second, "tart in the wallet and the feed", shown(`#wallet [data-coupon="tart"]`)+
		` && document.querySelectorAll('#wallet li').length === 3 && document.querySelectorAll('#feed li').length === 3`)
	p.checkNodesKept("after the wallet was shown again")
	b.close()
}

// The merchant's coupons keep their cards through a push and a reload of
// the list, and the live view keeps its claims and chart as claims arrive.
func TestBrowserMerchantListsUpdateInPlace(t *testing.T) {
	chromiumPath(t) // fail (or skip with -short) before starting anything
	a := startApp(t, nil)
	base := baseURL(a)
	for _, id := range []string{"cake", "pie"} {
		createCoupon(t, a, "bakery", couponmesh.CouponSpec{ID: id, Title: ptr("A free " + id), Quantity: ptr(10)})
	}
	claim := func(user, id string) {
		t.Helper()
		if _, err := dial(t, a, user, client.Options{}).Claim(context.Background(), id, user+"-"+id); err != nil {
			t.Fatal(err)
		}
	}
	b := newBrowser(t)
	m := b.newPage("bakery", desktop)
	m.signIn(base, "bakery", "merchant")
	m.goTo("/merchant")
	m.waitJS(10*time.Second, "my two coupons", `document.querySelectorAll('#my-coupons li').length === 2`)
	eval[chromedp.Void](m, `window.couponmesh.subscribe(['cake', 'pie']).then(() => undefined)`)
	m.markNodes("#my-coupons li", "data-coupon-id")

	claim("lou", "cake")
	m.waitJS(10*time.Second, "the push updates the cake card", textIs(`#my-coupons [data-coupon-id="cake"] .rem`, "1 claimed · 9 of 10 left"))
	m.checkNodesKept("after a coupon push")

	// The live view: its claims and chart stay as more claims arrive.
	m.goTo("/merchant/c/cake")
	m.waitJS(10*time.Second, "the live view", textIs("#live-claimed", "1"))
	eval[chromedp.Void](m, `window.couponmesh.subscribe(['cake']).then(() => undefined)`)
	claim("max", "cake")
	m.waitJS(10*time.Second, "the first claim in the live view", `!!document.querySelector('#live-claims li[data-n="2"]')`)
	m.markNodes("#live-claims li", "data-n")
	m.markNodes("#live-chart polyline", "class")
	claim("ned", "cake")
	m.waitJS(10*time.Second, "the next claim in the live view", textIs("#live-claimed", "3")+
		` && document.querySelectorAll('#live-claims li').length === 2 && document.querySelector('#live-claims li').dataset.n === '3'`)
	m.checkNodesKept("after a claim in the live view")

	// Back to the list, loaded again: a coupon made meanwhile joins the
	// cards already there.
	createCoupon(t, a, "bakery", couponmesh.CouponSpec{ID: "tart", Title: ptr("A free tart"), Quantity: ptr(10)})
	m.goTo("/merchant")
	m.waitJS(10*time.Second, "the list loaded again", `document.querySelectorAll('#my-coupons li').length === 3`+
		` && `+textIs(`#my-coupons [data-coupon-id="cake"] .rem`, "3 claimed · 7 of 10 left"))
	m.checkNodesKept("after the list was loaded again")
	b.close()
}
