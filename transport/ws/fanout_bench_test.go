package ws

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/transport/auth"
	"github.com/couponmesh/couponmesh/transport/transporttest"
)

// BenchmarkFanOutLoopback measures the whole local delivery path: one
// coupon push through the hub (transporttest's, which encodes the push once
// per publish, as a grain does, then walks its sinks and calls Send under
// its lock, as actors/hub does) to every session
// following the coupon, each session's writer goroutine, coder/websocket
// and a loopback TCP socket, until every client has read it. The op is
// "pushes=K pushes published back to back, then wait until every client
// read all K": K=1 is one update at a time, K=16 lets the writers batch
// queued frames. The K pushes are of K different coupons, each followed by
// every session: K pushes of one coupon would be conflated (a session with
// a newer version of a coupon queued sends only that one, docs/PROTOCOL.md).
// Figures:
//
//   - ns/delivery, deliveries/s: the whole op divided by K×sessions;
//   - send_ns/delivery: the wall time of the publishing loop alone (the
//     hub calling Send on every session) while the writers already run;
//   - msgs/frame: messages per WebSocket frame written (the writers'
//     batching; one frame is one write system call);
//   - cpu_ns/delivery: CPU time of the whole process (server and clients,
//     user and system) per delivery, which other load on the machine does
//     not inflate the way it inflates wall time.
//
// The clients run in the benchmark's own process and read with a raw
// coder/websocket Reader into a reused buffer (no JSON decoding), but they
// share the machine's 2 cores with the server, so the figures are a lower
// bound of what the server alone does. Each session is 2 file descriptors
// (both ends of its TCP connection) in this one process: a size that does
// not fit in the open-file limit is skipped: 10,000 sessions do not fit in
// this machine's 20,000, so the large case is 9,000.
func BenchmarkFanOutLoopback(b *testing.B) {
	for _, n := range []int{1_000, 9_000} {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			var lim syscall.Rlimit
			if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(2*n+500) {
				b.Skipf("%d sessions need %d open files; the limit is %d", n, 2*n+500, lim.Cur)
			}
			f := startFanOut(b, n)
			for _, k := range []int{1, maxPushes} {
				b.Run(fmt.Sprintf("pushes=%d", k), func(b *testing.B) { f.run(b, k) })
			}
		})
	}
}

// maxPushes is the largest op: that many pushes back to back.
const maxPushes = 16

// fanOut is a Handler on a loopback server with n authenticated sessions
// subscribed to maxPushes coupons, each with a client that counts what it
// reads.
type fanOut struct {
	n         int
	h         *Handler
	hub       *transporttest.Hub
	coupons   []couponmesh.Coupon // one per push of an op
	delivered atomic.Int64        // messages read by all clients
	want      atomic.Int64        // delivered count at which the current op is done
	done      chan struct{}
}

func startFanOut(b *testing.B, n int) *fanOut {
	f := &fanOut{n: n, hub: transporttest.NewHub(), done: make(chan struct{}, 1)}
	svc := transporttest.NewService(f.hub)
	var subs []string
	for i := range maxPushes {
		c := benchCoupon()
		c.ID = fmt.Sprintf("c%d", i)
		f.coupons = append(f.coupons, svc.Put(c))
		subs = append(subs, fmt.Sprintf(`{"id":%q,"version":0}`, c.ID))
	}
	tokens, err := auth.New(auth.LocalConfig("bench"))
	if err != nil {
		b.Fatal(err)
	}
	tok, _, err := tokens.Issue(couponmesh.Principal{User: "follower", Role: couponmesh.RoleShopper})
	if err != nil {
		b.Fatal(err)
	}
	cfg := LocalConfig()
	// All sessions come from loopback and one user: no per-address or
	// per-user limits; no pings during the run.
	cfg.SessionsPerIP, cfg.HandshakeRate, cfg.SessionsPerUser = -1, -1, -1
	cfg.PingInterval, cfg.AuthTimeout = time.Hour, time.Minute
	h := NewHandler(cfg, svc, f.hub, tokens, nil, slog.New(slog.DiscardHandler))
	f.h = h
	srv := httptest.NewServer(h)
	url := "ws" + strings.TrimPrefix(srv.URL, "http")

	ctx, cancel := context.WithCancel(context.Background())
	conns := make([]*websocket.Conn, n)
	var readers sync.WaitGroup
	b.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.CloseNow()
			}
		}
		cancel()
		readers.Wait()
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		h.Shutdown(sctx)
		srv.Close()
	})

	// Clients dial from 8 source addresses (127.0.0.2-9), so that the
	// TIME_WAIT sockets of repeated runs do not exhaust one address's ports.
	clients := make([]*http.Client, 8)
	for i := range clients {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i))}}
		clients[i] = &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	}
	subscribe := `{"id":2,"op":"subscribe","coupons":[` + strings.Join(subs, ",") + `]}`
	start := time.Now()
	var next atomic.Int64
	var setup sync.WaitGroup
	var failMu sync.Mutex
	var failed error
	for range 32 {
		setup.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				c, err := f.connect(ctx, clients[i%len(clients)], url, tok, subscribe)
				if err != nil {
					failMu.Lock()
					failed = fmt.Errorf("session %d: %w", i, err)
					failMu.Unlock()
					return
				}
				conns[i] = c
				readers.Go(func() { f.read(ctx, c) })
			}
		})
	}
	setup.Wait()
	if failed != nil {
		b.Fatal(failed)
	}
	for _, c := range f.coupons {
		if got := f.hub.Subscribers(c.ID); got != n {
			b.Fatalf("%d sessions subscribed to %s, want %d", got, c.ID, n)
		}
	}
	b.Logf("%d sessions connected, authenticated and subscribed in %v", n, time.Since(start).Round(time.Millisecond))
	return f
}

// connect opens one session, authenticates it and subscribes it.
func (f *fanOut) connect(ctx context.Context, hc *http.Client, url, tok, subscribe string) (*websocket.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(dctx, url, &websocket.DialOptions{Subprotocols: []string{Subprotocol}, HTTPClient: hc})
	if err != nil {
		return nil, err
	}
	for _, req := range []string{`{"id":1,"op":"auth","token":"` + tok + `"}`, subscribe} {
		if err := c.Write(dctx, websocket.MessageText, []byte(req)); err != nil {
			c.CloseNow()
			return nil, err
		}
		_, reply, err := c.Read(dctx)
		if err != nil || !bytes.Contains(reply, []byte(`"ok":`)) {
			c.CloseNow()
			return nil, fmt.Errorf("%s: %q, %v", req[:20], reply, err)
		}
	}
	return c, nil
}

// read counts the messages of every frame (several when the writer batched
// them, '\n'-separated) without decoding them, until the connection ends.
func (f *fanOut) read(ctx context.Context, c *websocket.Conn) {
	buf := make([]byte, 4096)
	for {
		_, r, err := c.Reader(ctx)
		if err != nil {
			return
		}
		msgs := int64(1)
		for {
			m, err := r.Read(buf)
			msgs += int64(bytes.Count(buf[:m], []byte{'\n'}))
			if err == io.EOF {
				break
			}
			if err != nil {
				return
			}
		}
		if f.delivered.Add(msgs) == f.want.Load() {
			select {
			case f.done <- struct{}{}:
			default: // an op that failed left its signal unread
			}
		}
	}
}

// op publishes k pushes and waits until every client has read them; it
// returns how long publishing took.
func (f *fanOut) op(b *testing.B, k int) time.Duration {
	f.want.Add(int64(k * f.n))
	t0 := time.Now()
	for i := range k {
		c := &f.coupons[i]
		c.Version++
		if got := f.hub.PublishCoupon(*c); got != f.n {
			b.Fatalf("%d sessions took the push, want %d", got, f.n)
		}
	}
	publish := time.Since(t0)
	select {
	case <-f.done:
	case <-time.After(60 * time.Second):
		b.Fatalf("after 60 s, %d of %d messages read", f.delivered.Load(), f.want.Load())
	}
	return publish
}

func (f *fanOut) run(b *testing.B, k int) {
	// One push before the timer: the first writes of a session grow its
	// goroutines' stacks and allocate its buffers.
	f.op(b, 1)
	b.ReportAllocs()
	var publish time.Duration
	ops := 0
	cpu0, frames0 := cpuTime(), counter(f.h.m.framesOut)
	for b.Loop() {
		publish += f.op(b, k)
		ops++
	}
	cpu, frames := cpuTime()-cpu0, counter(f.h.m.framesOut)-frames0
	deliveries := float64(ops * k * f.n)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/deliveries, "ns/delivery")
	b.ReportMetric(deliveries/b.Elapsed().Seconds(), "deliveries/s")
	b.ReportMetric(float64(publish.Nanoseconds())/deliveries, "send_ns/delivery")
	b.ReportMetric(float64(cpu.Nanoseconds())/deliveries, "cpu_ns/delivery")
	b.ReportMetric(deliveries/frames, "msgs/frame")
}

func counter(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

// cpuTime is the user and system CPU time used by the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
