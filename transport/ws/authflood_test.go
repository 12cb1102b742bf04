package ws_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/couponmesh/couponmesh/transport/ws"
)

// 1,000 sockets that open a session and never authenticate are all closed
// with 1008 within the auth timeout (plus scheduling slack), and none is
// left on the server.
func TestUnauthenticatedSocketsAreAllClosed(t *testing.T) {
	const n = 1000
	cfg := ws.LocalConfig()
	cfg.AuthTimeout = time.Second
	// LocalConfig's 1 s CloseGrace cuts a connection whose close frame is not
	// out by then: on a busy machine some of 1,000 closes at once are not.
	// This test is about the auth timeout; the cut has tests of its own.
	cfg.CloseGrace = 15 * time.Second
	// All from 127.0.0.1: the per-address limits would refuse most of the
	// handshakes first (they have tests of their own).
	cfg.SessionsPerIP, cfg.HandshakeRate = -1, -1
	e := newEnv(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Each socket reads from its handshake on, as a client does (it answers
	// pings meanwhile), until the server closes it.
	ends := make(chan error, n)
	var mu sync.Mutex
	var dialErrs int
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, _, err := websocket.Dial(ctx, e.url, &websocket.DialOptions{Subprotocols: []string{ws.Subprotocol}})
			if err != nil {
				mu.Lock()
				dialErrs++
				mu.Unlock()
				return
			}
			go func() {
				_, _, err := c.Read(ctx)
				ends <- err
			}()
		})
	}
	wg.Wait()
	if dialErrs > 0 {
		t.Fatalf("%d of %d handshakes failed", dialErrs, n)
	}
	opened := time.Now()

	var last time.Duration
	for range n {
		select {
		case err := <-ends:
			if code := websocket.CloseStatus(err); code != websocket.StatusPolicyViolation {
				t.Fatalf("a socket ended with %v (%v), want 1008", code, err)
			}
			last = time.Since(opened)
		case <-ctx.Done():
			t.Fatalf("sockets still open after %s", time.Since(opened))
		}
	}
	t.Logf("%d unauthenticated sockets closed, the last %s after all had opened (auth timeout %s)", n, last.Round(time.Millisecond), cfg.AuthTimeout)
	if last > cfg.AuthTimeout+5*time.Second {
		t.Errorf("the last socket was closed %s after the opening, want within the auth timeout plus 5 s", last)
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.h.Sessions() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if s := e.h.Sessions(); s != 0 {
		t.Errorf("%d sessions left on the server", s)
	}
}
