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

// The debug console in headless Chromium: it lists the members live, finds
// an actor by identity and shows its state and recent messages, and
// passivates it.
func TestBrowserDebugConsole(t *testing.T) {
	chromiumPath(t)
	a := startApp(t, nil)
	ends := time.Now().Add(time.Hour)
	cp := createCoupon(t, a, "acme", couponmesh.CouponSpec{ID: "c42", Title: ptr("Half price coffee"), Quantity: ptr(10), ExpiresAt: &ends})
	c := dial(t, a, "alice", client.Options{})
	if _, err := c.Claim(context.Background(), cp.ID, "r1"); err != nil {
		t.Fatal(err)
	}

	b := newBrowser(t)
	p := b.newPage("ops", desktop)
	p.do(20*time.Second, "open the console",
		chromedp.Navigate("http://"+a.AdminAddr()+"/debug"),
		chromedp.WaitVisible(chromedp.ID("identity")))
	p.waitJS(10*time.Second, "member listed", shown(`#members tbody tr[data-node="test"]`))
	p.waitJS(5*time.Second, "live", `document.querySelector('#live').dataset.state === 'live'`)
	p.waitJS(5*time.Second, "actor counts", `document.querySelector('#members tbody tr[data-node="test"] td:nth-child(6)').textContent === '1'`)
	p.waitJS(5*time.Second, "chart bar", shown(`#chart .row[data-node="test"] .bar`))

	p.waitJS(5*time.Second, "first page of actors", `[...document.querySelectorAll('#actors tbody a.ident')].map(a => a.textContent).filter(s => !s.startsWith('reminders/')).join() === 'coupon/c42,user/alice'`)
	// Every reminder shard answers, the coupon's holding its expiry next.
	shard := couponmesh.Reminder{Target: "coupon/c42"}.Shard()
	p.waitJS(10*time.Second, "the reminder shards", fmt.Sprintf(`document.querySelectorAll('#reminders tbody tr').length === %d && !document.querySelector('#reminders td.err')`+
		` && document.querySelector('#reminders tr[data-shard="%d"]').textContent.includes('expire coupon/c42')`, couponmesh.ReminderShards, shard))

	p.do(10*time.Second, "search coupon/c42",
		chromedp.SetValue(chromedp.ID("identity"), "coupon/c42"),
		chromedp.Click(chromedp.ID("find"), chromedp.NodeVisible))
	p.waitJS(10*time.Second, "detail shown", textIs("#d-identity", "coupon/c42"))
	p.waitJS(5*time.Second, "owner", textIs("#d-node", "test"))
	p.waitJS(5*time.Second, "state", `document.querySelector('#d-state').textContent.includes('"claimed": 1')`)
	p.waitJS(5*time.Second, "the pending expiry", `/^expire coupon\/c42 at .* \(in /.test(document.querySelector('#d-reminders [data-reminder="expire"]').textContent)`)
	p.waitJS(5*time.Second, "recent claim", `[...document.querySelectorAll('#d-recent tbody tr')].some(tr => tr.textContent.includes('coupon.claim') && tr.textContent.includes('ok'))`)
	p.screenshot("detail")

	p.click(`#sess-form button`)
	p.waitJS(5*time.Second, "sessions listed", `[...document.querySelectorAll('#sessions tbody tr')].some(tr => tr.textContent.includes('alice'))`)

	p.click("#passivate")
	p.waitJS(10*time.Second, "passivated", `document.querySelector('#detail-msg').dataset.state === 'inactive'`)
	if _, ok := a.node.Lookup.Find("coupon", "c42"); ok {
		t.Fatal("coupon/c42 still active after the console passivated it")
	}
	p.click("#probe")
	p.waitJS(10*time.Second, "reactivated by the probe", `document.querySelector('#detail-msg').dataset.state === 'active' && document.querySelector('#action-msg').textContent.startsWith('answered from test')`)
	p.screenshot("probed")
}
