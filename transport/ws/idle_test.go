package ws_test

import (
	"bytes"
	"fmt"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/internal/testutil"
	"github.com/couponmesh/couponmesh/transport/ws"
)

// sessionGoroutines counts the goroutines running session code.
func sessionGoroutines(t *testing.T) int {
	t.Helper()
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 2); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range strings.Split(buf.String(), "\n\n") {
		if strings.Contains(g, "transport/ws.(*session)") {
			n++
		}
	}
	return n
}

// TestIdleSessionsCostOneGoroutine: an authenticated, subscribed, idle
// session runs its reader and nothing else (a writer runs only while frames
// wait).
func TestIdleSessionsCostOneGoroutine(t *testing.T) {
	cfg := ws.LocalConfig()
	cfg.PingInterval = time.Minute
	e := newEnv(t, cfg)
	e.svc.Put(couponmesh.Coupon{ID: "c1", Merchant: "m", Title: "t", Quantity: 5})
	const n = 20
	for i := range n {
		c := e.login("u"+string(rune('a'+i)), client.Options{})
		if _, err := c.Subscribe(ctxT(t), []client.Sub{{ID: "c1"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Feed(ctxT(t), 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	// A goroutine that every idle session kept (a writer, a pinger) would
	// keep the count at 2n or more; the request goroutines and write turns
	// of the set-up come and go (one was seen 100 ms after the count had
	// dropped to n, so a single sample is not enough).
	testutil.CheckFor(t, 5*time.Second, fmt.Sprintf("%d session goroutines for %d idle sessions", n, n), func() error {
		if got := sessionGoroutines(t); got != n {
			return fmt.Errorf("%d session goroutines", got)
		}
		return nil
	})
}
