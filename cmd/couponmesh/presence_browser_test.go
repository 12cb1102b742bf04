package main

import (
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
)

// TestBrowserPresence: a shopper on a coupon's page sees "1 watching"
// (herself); when a second shopper opens the coupon in another browser,
// the first page changes to "2 watching" by itself, and the coupon card
// in the list shows the count too.
func TestBrowserPresence(t *testing.T) {
	chromiumPath(t) // fail (or skip with -short) before starting anything
	a := startApp(t, nil)
	base := baseURL(a)
	createCoupon(t, a, "acme", couponmesh.CouponSpec{ID: "tacos", Title: ptr("Taco Tuesday"), Discount: ptr("3 for 2"), Quantity: ptr(20)})

	b := newBrowser(t)
	alice := b.newPage("alice", desktop)
	alice.login(base, "alice")
	alice.openCoupon("tacos", 20)
	alice.waitJS(10*time.Second, "alice sees herself watching", textIs("#watching", "1 watching")+` && `+shown("#watching"))

	bob := b.newPage("bob", phone)
	bob.login(base, "bob")
	bob.waitJS(10*time.Second, "bob's card shows two watching", textIs(`#coupon-list [data-coupon-id="tacos"] .watching`, "2 watching"))
	bob.openCoupon("tacos", 20)
	bob.waitJS(10*time.Second, "bob's page shows two watching", textIs("#watching", "2 watching"))
	alice.waitJS(10*time.Second, "alice's page changes to two watching", textIs("#watching", "2 watching"))
	alice.screenshot("presence")
}
