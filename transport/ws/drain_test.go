package ws_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
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
	stop := make(chan struct{})
	var mu sync.Mutex
	var ok int
	var errs []error
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := c.Wallet(ctx)
				cancel()
				mu.Lock()
				if err == nil {
					ok++
				} else {
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		})
	}
	testutil.Until(t, 10*time.Second, "calls answered by the first node", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return ok >= 50
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := from.h.Drain(ctx, []string{strings.TrimPrefix(to.url, "ws://")}, 0); err != nil {
		t.Fatalf("drain: %v", err)
	}
	testutil.Until(t, 10*time.Second, "the client on the second node", func() bool { return to.h.Sessions() == 1 })
	mu.Lock()
	before := ok
	mu.Unlock()
	testutil.Until(t, 10*time.Second, "calls answered by the second node", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return ok >= before+50
	})
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for _, err := range errs[:min(len(errs), 3)] {
		t.Errorf("call failed across the drain: %v", err)
	}
	if from.metric("couponmesh_ws_sessions_dropped_total", "reason", "drain") != 1 {
		t.Errorf("the first node's session was not closed by the drain")
	}
}
