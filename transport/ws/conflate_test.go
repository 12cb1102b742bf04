package ws_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/transport/ws"
)

// TestConflationSlowReader: a coupon changes 1,000 times as fast as the
// hub can publish while a session reads slowly through small socket
// buffers, with a send queue of 32 frames: without conflation the session
// would be dropped with 1013. It must receive strictly growing versions
// ending at the last one, stay open, and get the reply to a request it
// sends during the rush (replies are never conflated).
func TestConflationSlowReader(t *testing.T) {
	cfg := ws.LocalConfig()
	cfg.SendQueue = 32
	cfg.PingInterval = time.Minute
	e := newSmallBufferEnv(t, cfg)

	desc := strings.Repeat("d", 2000) // a few pushes fill the socket buffers
	e.svc.Put(couponmesh.Coupon{ID: "hot", Merchant: "m", Title: "t", Quantity: 1000, Description: desc, Version: 1})
	r := e.raw()
	r.auth(e.token("watcher", couponmesh.RoleShopper))
	r.send(`{"id":1,"op":"subscribe","coupons":[{"id":"hot","version":1}]}`)
	if m := r.mustNext(); m["ok"] == nil {
		t.Fatalf("subscribe: %v", m)
	}

	const changes = 1000
	last := int64(changes + 1)
	published := make(chan struct{})
	go func() {
		defer close(published)
		for v := int64(2); v <= last; v++ {
			e.hub.PublishCoupon(couponmesh.Coupon{ID: "hot", Merchant: "m", Title: "t", Quantity: 1000, Claimed: int(v - 1), Description: desc, Version: v})
			if v == changes/2 {
				r.send(`{"id":7,"op":"ping"}`)
			}
		}
	}()
	var versions []int64
	replied := false
	for len(versions) == 0 || versions[len(versions)-1] < last {
		m, err := r.next(ctxT(t))
		if err != nil {
			t.Fatalf("read after %d pushes (last version %d): %v", len(versions), lastOf(versions), err)
		}
		if id, ok := m["id"].(float64); ok && id == 7 {
			replied = true
			continue
		}
		c, _ := m["coupon"].(map[string]any)
		v, _ := c["version"].(float64)
		if m["push"] != "coupon" || v == 0 {
			t.Fatalf("unexpected message %v", m)
		}
		if len(versions) > 0 && int64(v) <= lastOf(versions) {
			t.Fatalf("version %d after %d", int64(v), lastOf(versions))
		}
		versions = append(versions, int64(v))
		time.Sleep(2 * time.Millisecond) // the slow reader
	}
	<-published
	if !replied {
		m := r.mustNext()
		if id, _ := m["id"].(float64); id != 7 {
			t.Fatalf("want the reply to the ping, got %v", m)
		}
	}
	t.Logf("%d changes, %d pushes read, %v conflated", changes, len(versions), e.metric("couponmesh_ws_pushes_conflated_total"))
	if n := e.metric("couponmesh_ws_sessions_dropped_total", "reason", "slow_consumer"); n != 0 {
		t.Fatalf("slow consumer drops: %v", n)
	}
	if e.h.Sessions() != 1 || e.hub.Subscribers("hot") != 1 {
		t.Fatalf("%d sessions, %d subscribers; the watcher must stay", e.h.Sessions(), e.hub.Subscribers("hot"))
	}
	if len(versions) >= changes {
		t.Fatalf("%d pushes for %d changes: nothing was conflated, the reader was not slow", len(versions), changes)
	}
}

// TestManyCouponsChangingAtOnce: a session follows more coupons than its
// send queue holds frames and every one of them changes while it does not
// read (a mass expiry). Their pushes take one place per coupon besides the
// queue's bound, so the session is not dropped and then reads every
// coupon's new state. Counted against the bound, they would drop it (100
// frames waiting, bound 32).
func TestManyCouponsChangingAtOnce(t *testing.T) {
	cfg := ws.LocalConfig()
	cfg.SendQueue = 32
	cfg.PingInterval = time.Minute
	e := newSmallBufferEnv(t, cfg)

	const coupons = 100
	desc := strings.Repeat("d", 2000) // a few pushes fill the socket buffers
	subs := make([]string, coupons)
	for i := range coupons {
		id := fmt.Sprintf("c%d", i)
		e.svc.Put(couponmesh.Coupon{ID: id, Merchant: "m", Title: "t", Quantity: 10, Description: desc, Version: 1})
		subs[i] = fmt.Sprintf(`{"id":%q,"version":1}`, id)
	}
	r := e.slowRaw()
	r.auth(e.token("watcher", couponmesh.RoleShopper))
	r.send(`{"id":1,"op":"subscribe","coupons":[` + strings.Join(subs, ",") + `]}`)
	if m := r.mustNext(); m["ok"] == nil {
		t.Fatalf("subscribe: %v", m)
	}
	for i := range coupons {
		e.hub.PublishCoupon(couponmesh.Coupon{ID: fmt.Sprintf("c%d", i), Merchant: "m", Title: "t", Quantity: 10, Claimed: 1, Description: desc, Version: 2})
	}
	got := map[string]bool{}
	for len(got) < coupons {
		m, err := r.next(ctxT(t))
		if err != nil {
			t.Fatalf("after %d of %d coupons' pushes: %v (dropped: %v)", len(got), coupons, err,
				e.metric("couponmesh_ws_sessions_dropped_total", "reason", "slow_consumer"))
		}
		c, _ := m["coupon"].(map[string]any)
		id, _ := c["id"].(string)
		if v, _ := c["version"].(float64); m["push"] != "coupon" || v != 2 || got[id] {
			t.Fatalf("unexpected message %v", m)
		}
		got[id] = true
	}
	if n := e.metric("couponmesh_ws_sessions_dropped_total", "reason", "slow_consumer"); n != 0 {
		t.Fatalf("slow consumer drops: %v", n)
	}
}
