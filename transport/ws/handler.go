package ws

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/protocol"
	"github.com/couponmesh/couponmesh/transport/auth"
)

// Handler serves protocol v1 sessions. It is an http.Handler for the path
// /ws; every method is safe for concurrent use.
type Handler struct {
	cfg    Config
	svc    couponmesh.Service
	hub    couponmesh.Hub
	tokens *auth.Tokens
	log    *slog.Logger
	m      *metrics

	nextID  atomic.Uint64
	count   atomic.Int64
	ips     *ipLimits
	users   userLimits
	writers *writers
	// lastPush is the coupon push frame parsed last (conflate.go).
	lastPush    atomic.Pointer[pushInfo]
	presenceSeq atomic.Int64 // orders presence pushes for conflation (conflate.go)

	mu       sync.Mutex
	sessions map[*session]struct{}
	closing  bool
	handoff  string        // while draining: the 1012 close reason (other nodes)
	drained  chan struct{} // closed when closing and no session is left
}

// NewHandler returns a Handler that answers requests with svc, registers
// pushes with hub and checks tokens with tokens. Zero cfg fields take their
// defaults. Metrics are registered on reg (nil: not registered; collectors
// already registered by another Handler on the same registry are shared).
// log nil means slog.Default().
func NewHandler(cfg Config, svc couponmesh.Service, hub couponmesh.Hub, tokens *auth.Tokens, reg prometheus.Registerer, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.Default()
	}
	cfg = cfg.withDefaults()
	return &Handler{
		cfg:      cfg,
		ips:      newIPLimits(cfg),
		writers:  newWriters(),
		users:    userLimits{max: cfg.SessionsPerUser, cooldown: cfg.FloodWindow, users: make(map[string]*userState)},
		svc:      svc,
		hub:      hub,
		tokens:   tokens,
		log:      log,
		m:        newMetrics(reg),
		sessions: make(map[*session]struct{}),
		drained:  make(chan struct{}),
	}
}

// Sessions returns the number of open sessions.
func (h *Handler) Sessions() int { return int(h.count.Load()) }

// ServeHTTP upgrades the request to a WebSocket session and returns; the
// session runs in its own goroutine, so that the request and what net/http
// held for it are freed. It refuses cross-origin requests not allowed by
// Config.OriginPatterns (403), a client address over its handshake rate or
// session count (429, before the upgrade) and, after Shutdown, every request
// (503).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	closing, handoff := h.closing, h.handoff
	h.mu.Unlock()
	if closing && handoff == "" {
		http.Error(w, "node is shutting down", http.StatusServiceUnavailable)
		return
	}
	addr := ipKey(clientAddr(r, h.cfg.TrustedProxies))
	if refused := h.ips.admit(addr, time.Now()); refused != "" {
		h.m.refused.WithLabelValues(refused).Inc()
		h.log.LogAttrs(r.Context(), slog.LevelDebug, "ws: upgrade refused", slog.String("client", addr.String()), slog.String("reason", refused))
		msg := "too many WebSocket handshakes from your address: retry later"
		if refused == refusedIPSessions {
			msg = "too many WebSocket sessions from your address"
		}
		w.Header().Set("Retry-After", "1")
		writeHTTPError(w, http.StatusTooManyRequests, couponmesh.Errorf(couponmesh.CodeRateLimited, "%s", msg))
		return
	}
	conn, err := websocket.Accept(hijackBuffers{w}, r, &websocket.AcceptOptions{
		Subprotocols:   []string{Subprotocol},
		OriginPatterns: h.cfg.OriginPatterns,
	})
	if err != nil {
		// Accept has written the HTTP error.
		h.ips.release(addr)
		h.log.LogAttrs(r.Context(), slog.LevelDebug, "ws: upgrade refused", slog.String("remote", r.RemoteAddr), slog.Any("err", err))
		return
	}
	go h.run(conn, addr, handoff)
}

// run serves one upgraded connection until its session ends.
func (h *Handler) run(conn *websocket.Conn, addr netip.Addr, handoff string) {
	defer h.ips.release(addr)
	if conn.Subprotocol() != Subprotocol {
		h.m.dropped.WithLabelValues(dropBadSubprotocol).Inc()
		conn.Close(websocket.StatusProtocolError, "subprotocol "+Subprotocol+" required")
		return
	}
	conn.SetReadLimit(h.cfg.ReadLimit)

	s := newSession(h, conn, h.nextID.Add(1))
	s.addr = addr
	if !h.add(s) {
		if handoff != "" {
			h.m.dropped.WithLabelValues(dropDrain).Inc()
			conn.Close(websocket.StatusServiceRestart, handoff)
			return
		}
		conn.Close(websocket.StatusGoingAway, "node is shutting down")
		return
	}
	h.m.sessions.Inc()
	h.count.Add(1)
	defer func() {
		h.count.Add(-1)
		h.m.sessions.Dec()
		h.remove(s)
	}()
	s.serve()
}

// Buffer sizes of an upgraded connection. net/http's are 4 KiB each and
// held for the whole session; a session's frames are small (a push is a few
// hundred bytes, a batch of them larger than either buffer goes out in two
// writes either way), so smaller buffers cut the memory of an idle session.
const (
	connReadBuffer  = 1 << 10
	connWriteBuffer = 2 << 10
)

// hijackBuffers hands websocket.Accept the hijacked connection with buffers
// of connReadBuffer and connWriteBuffer bytes instead of net/http's.
type hijackBuffers struct{ http.ResponseWriter }

func (w hijackBuffers) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w hijackBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// What the client sent after its handshake is buffered already: it must
	// stay in the new reader's buffer (websocket.Accept reads the rest of
	// the stream from c).
	br := bufio.NewReaderSize(c, connReadBuffer)
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(b)), c), max(n, connReadBuffer))
		if _, err := br.Peek(n); err != nil {
			c.Close()
			return nil, nil, err
		}
	}
	return c, bufio.NewReadWriter(br, bufio.NewWriterSize(c, connWriteBuffer)), nil
}

// writeHTTPError answers a refused upgrade with the HTTP API's error body.
func writeHTTPError(w http.ResponseWriter, status int, e *couponmesh.Error) {
	b, _ := json.Marshal(struct {
		Error *couponmesh.Error `json:"error"`
	}{e})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func (h *Handler) add(s *session) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return false
	}
	h.sessions[s] = struct{}{}
	return true
}

func (h *Handler) remove(s *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.sessions, s)
	if h.closing && len(h.sessions) == 0 {
		select {
		case <-h.drained:
		default:
			close(h.drained)
		}
	}
}

// Drain hands every session over to other nodes, spread evenly over spread
// so that the other nodes are not stampeded: each session gets a draining
// push listing others (host:port of their public listeners), is served
// until its client answers drained or Config.DrainGrace has passed, and is
// closed with 1012 (service restart) and a reason listing others (as many
// as fit in a close frame) once its requests are answered (handOver; 1011
// instead if one is still running AnswerSlack past Config.RequestTimeout).
// Drain waits until every session has ended or ctx is done. New sessions are
// closed with 1012 at once. Shutdown ends what is left.
func (h *Handler) Drain(ctx context.Context, others []string, spread time.Duration) error {
	reason := HandoffReason(others)
	push := protocol.DrainingPush(others)
	h.mu.Lock()
	h.closing, h.handoff = true, reason
	open := make([]*session, 0, len(h.sessions))
	for s := range h.sessions {
		open = append(open, s)
	}
	h.mu.Unlock()
	h.log.Info("ws: draining sessions", "sessions", len(open), "spread", spread, "to", reason)
	start := time.Now()
	for i, s := range open {
		// Session i closes at i/n of the spread.
		if d := time.Until(start.Add(spread * time.Duration(i) / time.Duration(len(open)))); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		go s.handOver(push, reason)
	}
	h.mu.Lock()
	left := len(h.sessions)
	h.mu.Unlock()
	if left == 0 {
		return nil
	}
	select {
	case <-h.drained:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// HandoffReason is the 1012 close reason naming other nodes: addresses
// separated by commas, as many as fit in the 123 bytes of a close reason.
func HandoffReason(others []string) string {
	reason := ""
	for _, a := range others {
		next := a
		if reason != "" {
			next = reason + "," + a
		}
		if len(next) > 123 {
			break
		}
		reason = next
	}
	if reason == "" {
		return "node draining"
	}
	return reason
}

// Shutdown refuses new sessions, closes every open session with 1001 (going
// away) and waits until they have ended or ctx is done; then it cuts the
// connections left and returns ctx.Err().
func (h *Handler) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closing = true
	open := make([]*session, 0, len(h.sessions))
	for s := range h.sessions {
		open = append(open, s)
	}
	if len(h.sessions) == 0 {
		select {
		case <-h.drained:
		default:
			close(h.drained)
		}
	}
	h.mu.Unlock()

	for _, s := range open {
		s.close(websocket.StatusGoingAway, "server shutting down", dropShutdown)
	}
	select {
	case <-h.drained:
		return nil
	case <-ctx.Done():
		h.mu.Lock()
		for s := range h.sessions {
			s.conn.CloseNow()
		}
		h.mu.Unlock()
		return ctx.Err()
	}
}
