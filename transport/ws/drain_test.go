package ws_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/internal/testutil"
	"github.com/couponmesh/couponmesh/transport/ws"
)

// TestDrainWithoutDrainedClosesAfterGrace: a client that does not know the
// draining push (it never answers drained) is still served during
// DrainGrace, then closed with 1012 and the addresses as the reason.
func TestDrainWithoutDrainedClosesAfterGrace(t *testing.T) {
	cfg := ws.LocalConfig()
	cfg.DrainGrace = 300 * time.Millisecond
	e := newEnv(t, cfg)
	r := e.raw()
	r.auth(e.token("old", couponmesh.RoleShopper))
	start := time.Now()
	go e.h.Drain(context.Background(), []string{"b:8080", "c:8080"}, 0)
	push := r.mustNext()
	if push["push"] != "draining" || fmt.Sprint(push["addresses"]) != "[b:8080 c:8080]" {
		t.Fatalf("first message after the drain: %v, want the draining push naming b:8080 and c:8080", push)
	}
	r.send(`{"id":1,"op":"ping"}`)
	if m := r.mustNext(); m["id"] != float64(1) || m["ok"] == nil {
		t.Fatalf("ping after the draining push: %v, want its ok reply", m)
	}
	_, err := r.next(ctxT(t))
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusServiceRestart || ce.Reason != "b:8080,c:8080" {
		t.Fatalf("session ended with %v, want 1012 naming b:8080,c:8080", err)
	}
	if d := time.Since(start); d < cfg.DrainGrace {
		t.Errorf("closed %s after the drain began, before the grace of %s", d, cfg.DrainGrace)
	}
}

// TestDrainedClosesBeforeGrace: once the client answers drained, the node
// closes as soon as what it received is answered, without waiting out the
// grace.
func TestDrainedClosesBeforeGrace(t *testing.T) {
	cfg := ws.LocalConfig()
	cfg.DrainGrace = time.Minute
	e := newEnv(t, cfg)
	r := e.raw()
	r.auth(e.token("new", couponmesh.RoleShopper))
	go e.h.Drain(context.Background(), nil, 0)
	if push := r.mustNext(); push["push"] != "draining" || fmt.Sprint(push["addresses"]) != "[]" {
		t.Fatalf("first message after the drain: %v, want the draining push with no address", push)
	}
	for id := 1; id <= 5; id++ {
		r.send(fmt.Sprintf(`{"id":%d,"op":"wallet"}`, id))
	}
	r.send(`{"id":6,"op":"drained"}`)
	answered := map[float64]bool{}
	for {
		m, err := r.next(ctxT(t))
		if err != nil {
			if websocket.CloseStatus(err) != websocket.StatusServiceRestart {
				t.Fatalf("session ended with %v, want 1012", err)
			}
			break
		}
		if m["ok"] == nil {
			t.Fatalf("unexpected message %v", m)
		}
		answered[m["id"].(float64)] = true
	}
	for id := 1; id <= 6; id++ {
		if !answered[float64(id)] {
			t.Errorf("request %d not answered before the 1012 close", id)
		}
	}
}

// TestDrainHandoverGoSDK: a Go SDK client with Reconnect keeping eight
// requests in flight on a node that drains moves to the node the draining
// push names, and none of its calls fails: what it had sent is answered
// by the old node, what it had not is sent to the new one. The grace is a
// minute: the drain ends within the test's 10 s only because the SDK
// answers drained.
func TestDrainHandoverGoSDK(t *testing.T) {
	cfg := ws.LocalConfig()
	cfg.RequestRate = -1 // eight callers in a loop
	cfg.DrainGrace = time.Minute
	from, to := newEnv(t, cfg), newEnv(t, cfg)
	tok := from.token("mover", couponmesh.RoleShopper)
	c := from.dial(client.Options{Reconnect: true, Token: func(context.Context) (string, error) { return tok, nil }})
	calls := testutil.StartCallers(8, nil, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := c.Wallet(ctx)
		return false, err
	})
	defer calls.Stop()
	testutil.Until(t, 10*time.Second, "calls answered by the first node", func() bool { return calls.OK() >= 50 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := from.h.Drain(ctx, []string{strings.TrimPrefix(to.url, "ws://")}, 0); err != nil {
		t.Fatalf("drain: %v", err)
	}
	testutil.Until(t, 10*time.Second, "the client on the second node", func() bool { return to.h.Sessions() == 1 })
	before := calls.OK()
	testutil.Until(t, 10*time.Second, "calls answered by the second node", func() bool { return calls.OK() >= before+50 })
	calls.Stop()
	errs := calls.Errs()
	for _, err := range errs[:min(len(errs), 3)] {
		t.Errorf("call failed across the drain: %v", err)
	}
	if from.metric("couponmesh_ws_sessions_dropped_total", "reason", "drain") != 1 {
		t.Errorf("the first node's session was not closed by the drain")
	}
}

// TestDrain1012RunsNothingUnanswered: a client that ignores the draining
// push (as one of an earlier revision does) and keeps twelve wallet reads
// in flight until the session ends. The close is 1012, and every request
// the service ran was answered before it: a request left without a reply
// was never run, so a client may send it again anywhere (docs/PROTOCOL.md,
// "Drain handover", revision 6). The service counts the reads it runs, each
// taking 20 to 60 ms (uneven, so that they do not end together), so that
// requests are in flight at every moment and frames keep arriving after
// the node decided to close. Before revision 6 the node waited for a
// moment without requests in flight, which this client hardly ever gives,
// and closed at RequestTimeout with requests running.
func TestDrain1012RunsNothingUnanswered(t *testing.T) {
	cfg := ws.LocalConfig()
	cfg.RequestRate = -1
	cfg.DrainGrace = 100 * time.Millisecond
	cfg.RequestTimeout = time.Second
	e := newEnv(t, cfg)
	var ran atomic.Int64
	e.svc.Hook = func(ctx context.Context, method string) error {
		if method == "Wallet" {
			n := ran.Add(1)
			time.Sleep(time.Duration(20+10*(n%5)) * time.Millisecond) // the read's work, not a wait for anything
		}
		return nil
	}
	r := e.raw()
	r.auth(e.token("ignorer", couponmesh.RoleShopper))

	const window = 12 // below MaxInflight (16): no request is refused for it
	slots := make(chan struct{}, window)
	for range window {
		slots <- struct{}{}
	}
	done := make(chan struct{})
	var sent atomic.Int64
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(done)
	ctx := ctxT(t)
	wg.Go(func() {
		for id := 1; id <= 100_000; id++ {
			select {
			case <-slots:
			case <-done:
				return
			}
			if r.c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"id":%d,"op":"wallet"}`, id)) != nil {
				return // the session ended
			}
			sent.Add(1)
		}
	})

	var answered, refused int64
	pushed, draining := false, false
	drainDone := make(chan struct{})
	var closeErr error
	for {
		m, err := r.next(ctx)
		if err != nil {
			closeErr = err
			break
		}
		if p, ok := m["push"]; ok {
			pushed = pushed || p == "draining"
			continue // ignored, as by a client that does not know it
		}
		switch {
		case m["ok"] != nil:
			answered++
		case m["error"].(map[string]any)["code"] == string(couponmesh.CodeRateLimited):
			refused++ // answered, and not run
		default:
			t.Fatalf("unexpected reply %v", m)
		}
		slots <- struct{}{}
		if answered >= 50 && !draining {
			draining = true
			go func() {
				defer close(drainDone)
				e.h.Drain(context.Background(), []string{"b:8080"}, 0)
			}()
		}
	}
	if websocket.CloseStatus(closeErr) != websocket.StatusServiceRestart {
		t.Fatalf("session ended with %v, want 1012", closeErr)
	}
	if !pushed {
		t.Errorf("no draining push before the 1012 close")
	}
	// Every request of the session has finished once it has ended.
	<-drainDone
	testutil.Until(t, 10*time.Second, "the session ended", func() bool { return e.h.Sessions() == 0 })
	t.Logf("%d wallet reads sent, %d run, %d answered ok, %d refused", sent.Load(), ran.Load(), answered, refused)
	if ran.Load() != answered {
		t.Errorf("the service ran %d wallet reads, %d were answered before the 1012 close: %d ran without a reply", ran.Load(), answered, ran.Load()-answered)
	}
}

// TestDrainStuckRequestCloses1011: a request whose op ignores its context
// and is still running a second past RequestTimeout keeps the drain from
// closing with 1012 (which says every unanswered request never ran): the
// session is closed with 1011 instead, the client having answered drained.
func TestDrainStuckRequestCloses1011(t *testing.T) {
	cfg := ws.LocalConfig()
	cfg.RequestTimeout = 200 * time.Millisecond
	cfg.DrainGrace = time.Minute
	e := newEnv(t, cfg)
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the handler's Shutdown, which waits for the request
	e.svc.Hook = func(ctx context.Context, method string) error {
		if method == "Wallet" {
			entered <- struct{}{}
			<-release // ignores ctx
		}
		return nil
	}
	r := e.raw()
	r.auth(e.token("stuck", couponmesh.RoleShopper))
	r.send(`{"id":1,"op":"wallet"}`)
	select {
	case <-entered:
	case <-ctxT(t).Done():
		t.Fatal("the wallet read never ran")
	}
	go e.h.Drain(context.Background(), nil, 0)
	if push := r.mustNext(); push["push"] != "draining" {
		t.Fatalf("first message after the drain: %v, want the draining push", push)
	}
	r.send(`{"id":2,"op":"drained"}`)
	if m := r.mustNext(); m["id"] != float64(2) || m["ok"] == nil {
		t.Fatalf("reply to drained: %v", m)
	}
	_, err := r.next(ctxT(t))
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusInternalError || ce.Reason != "requests still running" {
		t.Fatalf("session ended with %v, want 1011 \"requests still running\"", err)
	}
	unblock()
	if n := e.metric("couponmesh_ws_sessions_dropped_total", "reason", "requests_running"); n != 1 {
		t.Errorf("sessions dropped with requests running: %v, want 1", n)
	}
	if n := e.metric("couponmesh_ws_sessions_dropped_total", "reason", "drain"); n != 0 {
		t.Errorf("sessions closed by the drain with 1012: %v, want 0", n)
	}
}
