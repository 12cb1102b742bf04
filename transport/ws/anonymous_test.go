package ws_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/internal/testutil"
	"github.com/couponmesh/couponmesh/transport/ws"
)

// errCode returns the error code of a reply, "" for an ok reply.
func errCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	if e == nil {
		return ""
	}
	code, _ := e["code"].(string)
	return code
}

// nextReply reads until the reply to id (pushes may come first) and returns
// it with the coupon pushes read on the way.
func (r *rawConn) nextReply(id float64) (reply map[string]any, pushes []map[string]any) {
	r.t.Helper()
	for {
		m := r.mustNext()
		if m["id"] == id {
			return m, pushes
		}
		if m["push"] != nil {
			pushes = append(pushes, m)
			continue
		}
		r.t.Fatalf("unexpected message %v while waiting for reply %v", m, id)
	}
}

// A visitor's session that never authenticates may subscribe, unsubscribe
// and get, gets the pushes of what it subscribed to, outlives the auth
// deadline, and is refused everything else; an auth later turns it into a
// normal session that keeps its subscriptions.
func TestAnonymousSession(t *testing.T) {
	cfg := ws.LocalConfig()
	cfg.AuthTimeout = 300 * time.Millisecond
	e := newEnv(t, cfg)
	e.svc.Put(couponmesh.Coupon{ID: "c1", Merchant: "m", Title: "t", Quantity: 10})
	e.svc.Put(couponmesh.Coupon{ID: "c2", Merchant: "m", Title: "u", Quantity: 10})

	r := e.raw()
	r.send(`{"id":1,"op":"get","coupon":"c1"}`)
	if m, _ := r.nextReply(1); m["ok"] == nil {
		t.Fatalf("anonymous get: %v", m)
	}
	r.send(`{"id":2,"op":"subscribe","coupons":[{"id":"c1"},{"id":"c2"},{"id":"gone"}]}`)
	m, _ := r.nextReply(2)
	ok, _ := m["ok"].(map[string]any)
	if ok == nil || len(ok["coupons"].([]any)) != 2 || fmt.Sprint(ok["missing"]) != "[gone]" {
		t.Fatalf("anonymous subscribe: %v", m)
	}
	if got := e.metric("couponmesh_ws_anonymous_sessions"); got != 1 {
		t.Errorf("couponmesh_ws_anonymous_sessions = %v, want 1", got)
	}
	r.send(`{"id":3,"op":"unsubscribe","coupons":["c2"]}`)
	if m, _ := r.nextReply(3); m["ok"] == nil {
		t.Fatalf("anonymous unsubscribe: %v", m)
	}

	// Everything else needs a signed-in user.
	for i, req := range []string{
		`"op":"claim","coupon":"c1","rid":"r1"`, `"op":"follow","coupon":"c1"`, `"op":"unfollow","coupon":"c1"`,
		`"op":"wallet"`, `"op":"feed"`,
	} {
		id := float64(10 + i)
		r.send(fmt.Sprintf(`{"id":%v,%s}`, id, req))
		if m, _ := r.nextReply(id); errCode(m) != string(couponmesh.CodeUnauthorized) {
			t.Errorf("anonymous {%s}: %v, want unauthorized", req, m)
		}
	}
	if c, _ := e.svc.Coupon(ctxT(t), "c1"); c.Claimed != 0 {
		t.Fatalf("an anonymous claim claimed: %+v", c)
	}

	// Past the auth deadline the session is still open, and pushes arrive
	// for c1 only.
	deadline := time.Now().Add(3 * cfg.AuthTimeout)
	for i := 0; time.Now().Before(deadline); i++ {
		id := float64(100 + i)
		r.send(fmt.Sprintf(`{"id":%v,"op":"ping"}`, id))
		if m, _ := r.nextReply(id); m["ok"] == nil {
			t.Fatalf("ping after %d pings: %v", i, m)
		}
		time.Sleep(50 * time.Millisecond) // paces the pings: the deadline is what is waited for
	}
	e.svc.Put(couponmesh.Coupon{ID: "c2", Merchant: "m", Title: "u2", Quantity: 10, Version: 2})
	e.svc.Put(couponmesh.Coupon{ID: "c1", Merchant: "m", Title: "t2", Quantity: 10, Version: 2})
	m = r.mustNext()
	if c, _ := m["coupon"].(map[string]any); m["push"] != "coupon" || c["id"] != "c1" || c["title"] != "t2" {
		t.Fatalf("push after the auth deadline: %v, want c1 version 2 (c2 was unsubscribed)", m)
	}

	// Signing in on the same connection: a normal session, subscriptions
	// kept, the anonymous count given back.
	r.auth(e.token("alice", couponmesh.RoleShopper))
	if got := e.metric("couponmesh_ws_anonymous_sessions"); got != 0 {
		t.Errorf("couponmesh_ws_anonymous_sessions after auth = %v, want 0", got)
	}
	r.send(`{"id":200,"op":"claim","coupon":"c1","rid":"r1"}`)
	reply, pushes := r.nextReply(200)
	if reply["ok"] == nil {
		t.Fatalf("claim after auth: %v", reply)
	}
	for len(pushes) == 0 {
		if m := r.mustNext(); m["push"] == "coupon" {
			pushes = append(pushes, m)
		}
	}
	if c, _ := pushes[0]["coupon"].(map[string]any); c["claimed"] != float64(1) {
		t.Fatalf("push of the claim on the kept subscription: %v", pushes[0])
	}
}

// A session that sends nothing is still closed at the auth deadline: only
// a visitor that asks for something stays.
func TestSilentSessionStillClosedAtAuthDeadline(t *testing.T) {
	cfg := ws.LocalConfig()
	cfg.AuthTimeout = 200 * time.Millisecond
	e := newEnv(t, cfg)
	r := e.raw()
	r.send(`{"id":1,"op":"ping"}`) // ping is no visit
	r.mustNext()
	if got := r.closeStatus(); got != websocket.StatusPolicyViolation {
		t.Fatalf("close %v, want 1008", got)
	}
}

// Anonymous sessions have their own limits: so many per client address,
// a lower request rate, fewer subscriptions.
func TestAnonymousLimits(t *testing.T) {
	cfg := ws.LocalConfig()
	cfg.AnonymousPerIP = 2
	cfg.AnonymousRequestRate = 1
	cfg.AnonymousRequestBurst = 6
	cfg.AnonymousSubscriptions = 3
	e := newEnv(t, cfg)
	e.svc.Put(couponmesh.Coupon{ID: "c1", Merchant: "m", Title: "t", Quantity: 10})

	// Per address: the third visitor is refused, and stays a session that
	// may still sign in.
	a, b, c := e.raw(), e.raw(), e.raw()
	for i, r := range []*rawConn{a, b} {
		r.send(`{"id":1,"op":"get","coupon":"c1"}`)
		if m, _ := r.nextReply(1); m["ok"] == nil {
			t.Fatalf("visitor %d: %v", i, m)
		}
	}
	c.send(`{"id":1,"op":"get","coupon":"c1"}`)
	m, _ := c.nextReply(1)
	if errCode(m) != string(couponmesh.CodeRateLimited) || !strings.Contains(fmt.Sprint(m), "anonymous sessions") {
		t.Fatalf("third visitor from one address: %v, want rate_limited", m)
	}
	c.auth(e.token("carol", couponmesh.RoleShopper))
	c.send(`{"id":2,"op":"get","coupon":"c1"}`)
	if m, _ := c.nextReply(2); m["ok"] == nil {
		t.Fatalf("signed-in get: %v", m)
	}
	// One visitor signs in: its slot is free for another visitor.
	b.auth(e.token("bob", couponmesh.RoleShopper))
	d := e.raw()
	d.send(`{"id":1,"op":"get","coupon":"c1"}`)
	if m, _ := d.nextReply(1); m["ok"] == nil {
		t.Fatalf("visitor after another signed in: %v", m)
	}
	// A visitor that leaves frees its slot too.
	a.c.Close(websocket.StatusNormalClosure, "")
	testutil.Until(t, 5*time.Second, "a's slot given back", func() bool {
		r := e.raw()
		r.send(`{"id":1,"op":"get","coupon":"c1"}`)
		m, _ := r.nextReply(1)
		r.c.CloseNow()
		return m["ok"] != nil
	})

	// Subscriptions: 3 at most.
	d.send(`{"id":2,"op":"subscribe","coupons":[{"id":"c1"},{"id":"x1"},{"id":"x2"},{"id":"x3"}]}`)
	if m, _ := d.nextReply(2); errCode(m) != string(couponmesh.CodeBadRequest) || !strings.Contains(fmt.Sprint(m), "at most 3") {
		t.Fatalf("4 subscriptions of a visitor: %v, want bad_request", m)
	}
	// Request rate: the burst of 6 (2 taken already), then refusals.
	limited := 0
	for i := range 10 {
		id := float64(10 + i)
		d.send(fmt.Sprintf(`{"id":%v,"op":"get","coupon":"c1"}`, id))
		if m, _ := d.nextReply(id); errCode(m) == string(couponmesh.CodeRateLimited) {
			limited++
		}
	}
	if limited < 5 {
		t.Fatalf("%d of 10 quick gets refused, want at least 5 (rate 1/s, burst 6)", limited)
	}
	// The signed-in session has the normal rate.
	for i := range 10 {
		id := float64(10 + i)
		c.send(fmt.Sprintf(`{"id":%v,"op":"get","coupon":"c1"}`, id))
		if m, _ := c.nextReply(id); m["ok"] == nil {
			t.Fatalf("signed-in get %d: %v", i, m)
		}
	}
}
