package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/internal/testutil"
)

// Close codes 1012 and 1013 as the Go SDK sees them, end to end (issue 15).
// The 1012 reason naming the other nodes is checked across real node
// processes in TestClusterDrainUnderLoad.

// smallReadBuffer makes the client's socket buffer small, so that a client
// that stops reading backs up into the server's session queue quickly.
func smallReadBuffer() *http.Client {
	d := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10)
		})
		return errors.Join(err, serr)
	}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

// TestSlowConsumerGets1013: a Go SDK client whose OnCoupon handler blocks
// stops reading; the node drops its session with close 1013 ("try again
// later") instead of queueing without bound, and a healthy subscriber of
// the same coupon gets every version. Once unblocked, the slow client
// reports CloseStatus 1013; with Reconnect it resyncs to the newest state.
func TestSlowConsumerGets1013(t *testing.T) {
	a := startApp(t, func(c *Config) {
		c.WS.SendQueue = 16
		c.WS.RequestRate = -1
	})
	ctx := context.Background()
	// Coupon pushes are conflated (one per coupon waits in a session's
	// queue, beside its bound): the slow sessions also follow every coupon,
	// and the feed pushes of their changes, never conflated, fill the queue.
	var subs []client.Sub
	for i := range 24 {
		c := createCoupon(t, a, "acme", couponmesh.CouponSpec{ID: fmt.Sprintf("slow%d", i), Title: ptr("Slow"), Quantity: ptr(10)})
		subs = append(subs, client.Sub{ID: c.ID})
	}

	block := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(block) }) }
	opts := client.Options{HTTPClient: smallReadBuffer(), OnCoupon: func(couponmesh.Coupon) { <-block }}
	plain := dial(t, a, "slow1", opts)
	opts.Reconnect = true
	opts.Backoff = client.Backoff{Base: 50 * time.Millisecond, Max: time.Second}
	var mu sync.Mutex
	var states []client.State
	newest := map[string]int64{}
	opts.OnCoupon = func(c couponmesh.Coupon) {
		<-block
		mu.Lock()
		newest[c.ID] = c.Version
		mu.Unlock()
	}
	opts.OnState = func(s client.State) { mu.Lock(); states = append(states, s); mu.Unlock() }
	retrying := dial(t, a, "slow2", opts)
	healthy := &latest{}
	watcher := dial(t, a, "healthy", client.Options{OnCoupon: healthy.on})
	t.Cleanup(unblock) // before the clients' Close, which waits for their readers
	for _, c := range []*client.Client{plain, retrying, watcher} {
		if _, err := c.Subscribe(ctx, subs); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []*client.Client{plain, retrying} {
		for _, sub := range subs {
			if _, err := c.Follow(ctx, sub.ID); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.Feed(ctx, 0, 1); err != nil { // the session gets the feed's pushes from now on
			t.Fatal(err)
		}
	}

	// Updates with long descriptions (about 4 KB a push) fill the socket
	// buffers, then the session queues. They go out 8 coupons at a time,
	// each batch once the healthy subscriber has the last one: its queue
	// never holds more than 8 pushes (conflated per coupon), however slowly
	// a busy machine runs it, while the slow sessions' queues collect a
	// feed push per update.
	api := client.NewAPI(baseURL(a), login(t, baseURL(a), "acme", couponmesh.RoleMerchant))
	n := 0
	checkFor(t, 60*time.Second, "both slow sessions dropped", func() error {
		for i := 0; i < len(subs); i += 8 {
			batch := subs[i:min(i+8, len(subs))]
			var last couponmesh.Coupon
			for _, sub := range batch {
				n++
				desc := strings.Repeat(string(rune('a'+n%26)), couponmesh.MaxDescriptionLen)
				c, err := api.UpdateCoupon(ctx, sub.ID, couponmesh.CouponSpec{Description: &desc})
				if err != nil {
					return err
				}
				last = c
			}
			checkFor(t, 40*time.Second, "the healthy subscriber keeps up", func() error {
				if got := healthy.get(last.ID); got.Version < last.Version {
					return fmt.Errorf("%s at version %d, want %d", last.ID, got.Version, last.Version)
				}
				return nil
			})
		}
		if dropped := metricValue(t, a, `couponmesh_ws_sessions_dropped_total{reason="slow_consumer"}`); dropped < 2 {
			return fmt.Errorf("%d updates, %v slow sessions dropped", n, dropped)
		}
		return nil
	})
	t.Logf("%d updates pushed before both slow sessions were dropped", n)
	unblock()

	select {
	case <-plain.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the slow client without Reconnect did not end")
	}
	var ce websocket.CloseError
	if plain.CloseStatus() != websocket.StatusTryAgainLater || !errors.As(plain.Err(), &ce) {
		t.Fatalf("slow client: close status %v (%v), want 1013", plain.CloseStatus(), plain.Err())
	}
	t.Logf("slow client closed with %d %q", ce.Code, ce.Reason)

	for _, sub := range subs {
		want, err := watcher.Get(ctx, sub.ID)
		if err != nil {
			t.Fatal(err)
		}
		checkFor(t, 10*time.Second, "the reconnecting client resyncs "+sub.ID, func() error {
			mu.Lock()
			defer mu.Unlock()
			if newest[sub.ID] != want.Version {
				return fmt.Errorf("version %d, newest %d", newest[sub.ID], want.Version)
			}
			return nil
		})
		if got := healthy.get(sub.ID); got.Version != want.Version {
			t.Errorf("healthy subscriber: %s at version %d, newest %d", sub.ID, got.Version, want.Version)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(states, client.StateReconnecting) {
		t.Errorf("the reconnecting slow client went through states %v, want a reconnect", states)
	}
}

// TestDrainAnswersRequestsInFlight: a drain hands every session over
// without losing a reply. The node sends a draining push; the Go SDK stops
// sending on the session and answers drained; the node answers what it
// received and only then closes with 1012. Eight goroutines keep wallet
// reads in flight on a client without the SDK's retries: every request
// sent is answered, a call made after the push fails with ErrNotSent (never
// sent, so safe to send elsewhere), and the session ends with 1012.
//
// Before the draining push (issue 15) the close frame could cross requests
// on the wire: 2 of 1,625 replies lost in the chaos drain scenario, and this
// test failed about one run in three. On a starved machine the client may
// not answer drained within the grace (DrainGrace): requests it sent after
// the node decided to close are then left unanswered by the 1012 close,
// and since revision 6 of the protocol that means the node never ran them,
// so they too fail with ErrNotSent (once "1071 answered, 7 not sent, 2
// sent and lost" under heavy load, before revision 6).
func TestDrainAnswersRequestsInFlight(t *testing.T) {
	a := startApp(t, func(c *Config) {
		c.WS.RequestRate = -1
		c.Cluster.DrainSpread = Duration(100 * time.Millisecond)
	})
	ctx := context.Background()
	s := dial(t, a, "reader", client.Options{})
	if _, err := s.Wallet(ctx); err != nil {
		t.Fatal(err)
	}
	calls := testutil.StartCallers(8, s.Done(), func() (bool, error) {
		_, err := s.Wallet(ctx)
		if errors.Is(err, client.ErrNotSent) {
			<-s.Done() // the node closes once it has answered the rest
			return true, err
		}
		return false, err
	})
	time.Sleep(300 * time.Millisecond)
	go a.Drain(ctx)
	calls.Wait()
	if s.CloseStatus() != websocket.StatusServiceRestart {
		t.Fatalf("session ended with %v, want 1012", s.Err())
	}
	ok, notSent := calls.OK(), 0
	var lost []error
	for _, err := range calls.Errs() {
		if errors.Is(err, client.ErrNotSent) {
			notSent++
		} else {
			lost = append(lost, err)
		}
	}
	t.Logf("%d requests answered, %d not sent after the draining push, %d sent and lost", ok, notSent, len(lost))
	if ok == 0 {
		t.Fatal("no request was answered before the drain")
	}
	for _, err := range lost[:min(len(lost), 3)] {
		t.Errorf("reply lost at the drain: %v", err)
	}
	if len(lost) > 3 {
		t.Errorf("… %d replies lost in all", len(lost))
	}
}

// TestDrainPushBefore1012: the drain protocol frame by frame, with a raw
// WebSocket client: the draining push comes first; requests sent after it
// (until drained) are still answered; drained is answered; then the close
// 1012, and nothing before it is left unanswered.
func TestDrainPushBefore1012(t *testing.T) {
	a := startApp(t, func(c *Config) { c.Cluster.DrainSpread = Duration(time.Millisecond) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, wsURL(a), &websocket.DialOptions{Subprotocols: []string{client.Subprotocol},
		HTTPHeader: http.Header{"Origin": {"http://localhost"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	send := func(frame string) {
		if err := conn.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
			t.Fatal(err)
		}
	}
	send(fmt.Sprintf(`{"id":1,"op":"auth","token":%q}`, login(t, baseURL(a), "raw", couponmesh.RoleShopper)))
	answered := map[int64]string{} // id → "ok" or the error code
	var push struct {
		Push      string   `json:"push"`
		Addresses []string `json:"addresses"`
	}
	read := func() ([]map[string]json.RawMessage, error) {
		_, b, err := conn.Read(ctx)
		if err != nil {
			return nil, err
		}
		var out []map[string]json.RawMessage
		for _, line := range strings.Split(string(b), "\n") {
			var m map[string]json.RawMessage
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("unreadable message %q: %v", line, err)
			}
			out = append(out, m)
		}
		return out, nil
	}
	note := func(m map[string]json.RawMessage) {
		var id int64
		if json.Unmarshal(m["id"], &id) == nil && id > 0 {
			answered[id] = "ok"
			if e, ok := m["error"]; ok {
				answered[id] = string(e)
			}
		}
	}
	for len(answered) == 0 {
		msgs, err := read()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			note(m)
		}
	}
	go a.Drain(context.Background())
	sawPush := false
	for !sawPush {
		msgs, err := read()
		if err != nil {
			t.Fatalf("no draining push before the end of the session: %v (close %d)", err, websocket.CloseStatus(err))
		}
		for _, m := range msgs {
			note(m)
			if p, ok := m["push"]; ok && string(p) == `"draining"` {
				b, _ := json.Marshal(m)
				if err := json.Unmarshal(b, &push); err != nil {
					t.Fatal(err)
				}
				sawPush = true
			}
		}
	}
	if push.Addresses == nil {
		t.Errorf("draining push without addresses (want a list, empty on a single node)")
	}
	// Requests after the push, then drained: all answered before the close.
	for id := 2; id <= 6; id++ {
		send(fmt.Sprintf(`{"id":%d,"op":"wallet"}`, id))
	}
	send(`{"id":7,"op":"drained"}`)
	for {
		msgs, err := read()
		if err != nil {
			if websocket.CloseStatus(err) != websocket.StatusServiceRestart {
				t.Fatalf("session ended with %v, want 1012", err)
			}
			break
		}
		for _, m := range msgs {
			note(m)
		}
	}
	for id := int64(1); id <= 7; id++ {
		if answered[id] != "ok" {
			t.Errorf("request %d: %q before the 1012 close, want ok", id, answered[id])
		}
	}
}

// TestDrainHandsOverWithoutErrors: node processes, and a Go SDK client with
// Reconnect keeping eight wallet reads in flight on the node being drained:
// on the draining push it moves to the other node at once, sends what was
// not sent yet there, and no call returns an error.
func TestDrainHandsOverWithoutErrors(t *testing.T) {
	c := startCluster(t, 2, "COUPONMESH_CLUSTER_DRAIN_SPREAD=100ms", "COUPONMESH_WS_REQUEST_RATE=-1")
	victim, other := c.nodes[1], c.nodes[0]
	s := victim.sessionOpts(t, "mover", client.Options{Reconnect: true, Addresses: []string{other.ws()}})
	ctx := context.Background()
	calls := testutil.StartCallers(8, nil, func() (bool, error) {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		_, err := s.Wallet(cctx)
		return false, err
	})
	defer calls.Stop()
	time.Sleep(300 * time.Millisecond)
	ctl(t, other, "drain", victim.name, "--wait")
	checkFor(t, 30*time.Second, victim.name+" exited", func() error {
		if err := victim.Ready(); err == nil {
			return errors.New("still ready")
		}
		return nil
	})
	before := calls.OK()
	checkFor(t, 20*time.Second, "calls answered by "+other.name, func() error {
		if ok := calls.OK(); ok < before+16 {
			return fmt.Errorf("%d calls answered since the drain", ok-before)
		}
		return nil
	})
	calls.Stop()
	errs := calls.Errs()
	t.Logf("%d calls answered across the drain, %d errors", calls.OK(), len(errs))
	for _, err := range errs[:min(len(errs), 3)] {
		t.Errorf("client-visible error across the drain: %v", err)
	}
	if s.State() != client.StateConnected {
		t.Errorf("client state %v after the drain, want connected", s.State())
	}
}

// metricValue reads one sample (name with its labels, as /metrics prints
// it) from the node's admin listener; 0 when absent.
func metricValue(t testing.TB, a *App, sample string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + a.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v float64
	for _, line := range strings.Split(readAll(resp.Body), "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			fmt.Sscan(rest, &v)
		}
	}
	return v
}
