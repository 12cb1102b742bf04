package ws

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/protocol"
	"github.com/couponmesh/couponmesh/transport/auth"
)

// maxSpareQueue is the largest queue backing array the writer keeps for
// reuse; after a burst a bigger one is left to the garbage collector so that
// idle sessions stay small.
const maxSpareQueue = 8

// session is one WebSocket connection. It is the couponmesh.Sink the hub
// delivers to.
type session struct {
	h     *Handler
	conn  *websocket.Conn
	id    uint64
	since time.Time  // when the connection was accepted
	addr  netip.Addr // the client address its per-address limits count

	// ctx is the parent of every request of the session; it is cancelled
	// when the session ends.
	ctx    context.Context
	cancel context.CancelFunc

	mu          sync.Mutex
	queue       [][]byte // frames waiting for the writer
	closing     bool     // a close was requested or the session ended: Send refuses
	stopped     bool     // closeWhenAnswered decided to close: the reader runs no frame read from now on
	ended       bool     // the reader has returned
	closeCode   websocket.StatusCode
	closeReason string
	principal   couponmesh.Principal  // zero until a successful auth
	anonymous   bool                  // no auth yet, and subscribe, unsubscribe or get used (counted in h.ips)
	deadline    time.Time             // token expiry plus leeway
	subs        map[string]struct{}   // coupons subscribed (or being subscribed)
	drainAck    chan struct{}         // while draining: closed when the client sends drained
	pushes      map[string]queuedPush // coupon → its last push queued (conflate.go); nil until one is
	qgen        uint64                // incremented each time the writer takes the queue

	attachMu sync.Mutex // serializes hub.Attach; guards attached
	attached bool       // hub.Attach done for the feed

	writing  bool           // a writer turn is scheduled or running (guarded by mu)
	writer   sync.WaitGroup // done when the writer turns end
	timer    *time.Timer    // auth deadline, then token expiry
	pinger   *time.Timer    // next keepalive ping
	inflight atomic.Int32
	// handling is true while the reader runs a frame it admitted (admit):
	// set under mu, where admission is ordered against stopped, and cleared
	// once the frame is answered or its request counted in inflight.
	handling atomic.Bool
	pinging  atomic.Bool
	requests sync.WaitGroup

	// Used by the reader goroutine only.
	frames   *rate.Limiter // request rate
	refusals *rate.Limiter // refused frames before a flood close; nil until the first refusal
	bound    string        // the user whose per-node session count this session holds
}

var _ couponmesh.Sink = (*session)(nil)

func newSession(h *Handler, conn *websocket.Conn, id uint64) *session {
	s := &session{
		h:      h,
		conn:   conn,
		id:     id,
		since:  time.Now(),
		frames: rate.NewLimiter(limitOf(h.cfg.RequestRate), h.cfg.RequestBurst),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// serve runs the session's reader in the calling goroutine; the Handler's
// writers (writers.go) write its frames. It returns when the session has
// ended and every request of it has finished.
func (s *session) serve() {
	s.mu.Lock()
	s.timer = time.AfterFunc(s.h.cfg.AuthTimeout, s.onDeadline)
	s.pinger = time.AfterFunc(s.h.cfg.PingInterval, s.onPing)
	s.mu.Unlock()
	err := s.readLoop()
	if s.bound != "" {
		s.h.users.unbind(s.bound, time.Now())
	}

	s.mu.Lock()
	s.ended = true
	s.closing = true
	code := s.closeCode
	anonymous := s.anonymous
	s.anonymous = false
	s.mu.Unlock()
	if anonymous {
		s.h.ips.releaseAnonymous(s.addr)
		s.h.m.anonymous.Dec()
	}
	s.timer.Stop()
	s.pinger.Stop()
	s.conn.CloseNow()
	s.writer.Wait()
	s.cancel()
	s.requests.Wait()
	// After the last request: no Subscribe can register s after this.
	s.h.hub.Detach(s)
	s.logDebug("ws: session ended", slog.Int("close", int(code)), slog.Int("peer_close", int(websocket.CloseStatus(err))))
}

// Send enqueues a frame for the writer and never blocks. It reports false
// when the session is closing or its queue is full (SendQueue frames besides
// one conflated push per coupon and per coupon's presence); in the latter
// case the session is dropped with 1013 and detached from the hub. A coupon push
// replaces a queued older push of the same coupon, and one older than what
// was queued before is dropped (conflate.go). frame is shared and not
// modified.
func (s *session) Send(frame []byte) bool {
	coupon, version, isPush := s.h.couponPush(frame)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return false
	}
	if isPush && s.conflateLocked(coupon, version, frame) {
		s.mu.Unlock()
		return true
	}
	// Conflated pushes hold at most one slot per key of s.pushes (a coupon,
	// its presence): they do not count against SendQueue, so a session
	// following many coupons that all change at once (a mass expiry) is not
	// dropped for it; the queue stays bounded by SendQueue + 2 ×
	// MaxSubscriptions.
	if len(s.queue) >= s.h.cfg.SendQueue+len(s.pushes) {
		s.closeLocked(websocket.StatusTryAgainLater, "slow consumer", dropSlowConsumer)
		s.mu.Unlock()
		// Not inline: the hub may be calling Send under its own lock.
		go s.h.hub.Detach(s)
		return false
	}
	s.queue = append(s.queue, frame)
	if isPush {
		s.recordPushLocked(coupon, version)
	}
	start := s.wakeLocked()
	s.mu.Unlock()
	if start {
		s.h.writers.schedule(s)
	}
	return true
}

// wakeLocked reports whether the caller must schedule a writer turn
// (s.h.writers.schedule(s)) because the session has none coming; s.mu must
// be held. Once the reader has returned no turn is scheduled.
func (s *session) wakeLocked() bool {
	if s.writing || s.ended {
		return false
	}
	s.writing = true
	s.writer.Add(1)
	return true
}

// close asks the writer to flush what is queued (except for a slow
// consumer) and close the connection with code. Only the first close of a
// session counts.
func (s *session) close(code websocket.StatusCode, reason, metric string) {
	s.mu.Lock()
	s.closeLocked(code, reason, metric)
	s.mu.Unlock()
}

// handOver drains the session: it queues the draining push (which names
// the nodes to go to), serves requests until the client answers drained
// (it sends nothing more here) or DrainGrace has passed, then closes with
// 1012 and reason once every request is answered (closeWhenAnswered). A
// client that answers drained loses no reply: what it sent before is
// answered before the close frame, and it sends nothing after. A client
// that kept sending gets no reply to the frames read after the close was
// decided, and none of them was run.
func (s *session) handOver(push []byte, reason string) {
	s.mu.Lock()
	if s.drainAck == nil {
		s.drainAck = make(chan struct{})
	}
	ack := s.drainAck
	s.mu.Unlock()
	if !s.Send(push) {
		return // closing already
	}
	t := time.NewTimer(s.h.cfg.DrainGrace)
	defer t.Stop()
	select {
	case <-ack:
	case <-t.C:
	case <-s.ctx.Done():
		return
	}
	s.closeWhenAnswered(websocket.StatusServiceRestart, reason, dropDrain)
}

// drained records the client's drained: it sends nothing more on this
// session. Without a drain in progress it means nothing.
func (s *session) drained() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drainAck != nil {
		select {
		case <-s.drainAck:
		default:
			close(s.drainAck)
		}
	}
}

// closeWhenAnswered closes the session with code once every frame the
// reader admitted is answered: it first stops admission (frames read from
// then on are not run, and get no reply), then waits until no frame is
// being handled and no request is in flight, so their replies are queued
// before the close frame. A close with code therefore means that every
// request the client sent and got no reply to was never run (the 1012
// guarantee of docs/PROTOCOL.md, "Drain handover"). If a request is still
// running AnswerSlack past RequestTimeout (an op that ignores its
// context), the session is closed with 1011 instead, whose requests have
// an unknown outcome.
func (s *session) closeWhenAnswered(code websocket.StatusCode, reason, metric string) {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	deadline := time.Now().Add(s.h.cfg.RequestTimeout + AnswerSlack)
	// handling before inflight: a frame the reader finishes counts its
	// request in inflight before it clears handling.
	for s.handling.Load() || s.inflight.Load() > 0 {
		if !time.Now().Before(deadline) {
			s.close(websocket.StatusInternalError, stillRunningReason, dropStillRunning)
			return
		}
		select {
		case <-s.ctx.Done():
			return // the session ended meanwhile
		case <-time.After(5 * time.Millisecond):
		}
	}
	s.close(code, reason, metric)
}

// AnswerSlack is how long past Config.RequestTimeout a drain waits for a
// request whose context has ended to return, before it closes the session
// with 1011 instead of 1012.
const AnswerSlack = time.Second

// stillRunningReason is the 1011 close reason of a session that could not
// be closed with 1012 because a request of it kept running.
const stillRunningReason = "requests still running"

func (s *session) closeLocked(code websocket.StatusCode, reason, metric string) {
	if s.closing {
		return
	}
	s.closing = true
	s.closeCode = code
	s.closeReason = reason
	s.h.m.dropped.WithLabelValues(metric).Inc()
	if s.wakeLocked() {
		s.h.writers.schedule(s)
	}
	// The writer may be stuck in a write to a peer that stopped reading:
	// give it CloseGrace to get the close frame out, then cut the connection.
	time.AfterFunc(s.h.cfg.CloseGrace, func() { s.conn.CloseNow() })
	if code == websocket.StatusTryAgainLater {
		s.h.log.LogAttrs(context.Background(), slog.LevelInfo, "ws: dropping slow consumer",
			slog.Uint64("session", s.id), slog.String("user", s.principal.User), slog.Int("queued", len(s.queue)))
	}
}

// onDeadline runs when the auth deadline or the token expiry passes.
func (s *session) onDeadline() {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.principal.User == "" && s.anonymous:
		// A visitor: no deadline until it authenticates.
	case s.principal.User == "":
		s.closeLocked(websocket.StatusPolicyViolation, "authentication timeout", dropAuthTimeout)
	case !time.Now().Before(s.deadline):
		s.closeLocked(websocket.StatusPolicyViolation, "token expired", dropTokenExpired)
	default:
		// A re-auth moved the deadline while this call was on its way.
		s.timer.Reset(time.Until(s.deadline))
	}
}

// writeTurn writes what is queued, as few frames as BatchBytes allows, and
// reports whether the session needs another turn (more was queued
// meanwhile). When the session is closing and its queue is empty, it starts
// the close handshake in its own goroutine (it waits for the peer) and a
// slow consumer gets only the close frame. Called by the Handler's writers,
// one turn at a time per session.
func (s *session) writeTurn() (again bool) {
	s.mu.Lock()
	q := s.queue
	s.queue = nil
	s.qgen++ // the pushes queued are on their way: none can be replaced
	closing, code, reason := s.closing && !s.ended, s.closeCode, s.closeReason
	if len(q) == 0 && !closing {
		s.writing = false
		s.mu.Unlock()
		s.writer.Done()
		return false
	}
	s.mu.Unlock()

	if len(q) == 0 || closing && code == websocket.StatusTryAgainLater {
		go func() {
			defer s.writer.Done()
			s.conn.Close(code, reason)
		}()
		return false
	}
	if err := s.writeBatch(q); err != nil {
		s.onWriteError(err)
		s.writer.Done()
		return false
	}
	clear(q)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queue == nil && cap(q) <= maxSpareQueue {
		s.queue = q[:0] // reuse the backing array for the next burst
	}
	if len(s.queue) > 0 || s.closing && !s.ended {
		return true
	}
	s.writing = false
	s.writer.Done()
	return false
}

// onPing sends a keepalive ping and schedules the next one, until the
// session ends.
func (s *session) onPing() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return // the close handshake has its own bound (CloseGrace)
	}
	s.startPing()
	s.pinger.Reset(s.h.cfg.PingInterval)
}

var batchPool = sync.Pool{New: func() any { return bytes.NewBuffer(make([]byte, 0, BatchBytes)) }}

// writeBatch writes q as few text frames as BatchBytes allows, messages
// separated by '\n'. A lone message is written as is, without a copy.
func (s *session) writeBatch(q [][]byte) error {
	ctx := context.Background() // no per-write timer; CloseGrace and pings bound a stuck write
	for len(q) > 0 {
		if len(q) == 1 || len(q[0])+1+len(q[1]) > BatchBytes {
			if err := s.conn.Write(ctx, websocket.MessageText, q[0]); err != nil {
				return err
			}
			s.h.m.framesOut.Inc()
			s.h.m.messagesOut.Inc()
			q = q[1:]
			continue
		}
		buf := batchPool.Get().(*bytes.Buffer)
		buf.Reset()
		n := 0
		for n < len(q) && (n == 0 || buf.Len()+1+len(q[n]) <= BatchBytes) {
			if n > 0 {
				buf.WriteByte('\n')
			}
			buf.Write(q[n])
			n++
		}
		err := s.conn.Write(ctx, websocket.MessageText, buf.Bytes())
		if buf.Cap() <= 2*BatchBytes {
			batchPool.Put(buf)
		}
		if err != nil {
			return err
		}
		s.h.m.framesOut.Inc()
		s.h.m.messagesOut.Add(float64(n))
		q = q[n:]
	}
	return nil
}

func (s *session) onWriteError(err error) {
	s.mu.Lock()
	ended := s.ended
	if !s.closing {
		s.closing = true
		s.h.m.dropped.WithLabelValues(dropWriteError).Inc()
	}
	s.mu.Unlock()
	if !ended {
		s.logDebug("ws: write failed", slog.Any("err", err))
	}
	s.conn.CloseNow()
}

// startPing sends one WebSocket ping from a short-lived goroutine, so that
// waiting for the pong never delays queued frames. A ping still waiting for
// its pong is not doubled.
func (s *session) startPing() {
	if !s.pinging.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer s.pinging.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), s.h.cfg.PingTimeout)
		err := s.conn.Ping(ctx)
		cancel()
		if err == nil {
			return
		}
		s.mu.Lock()
		closing := s.closing
		s.closing = true
		s.mu.Unlock()
		if closing {
			// The server is closing the session: its close frame is on its
			// way (CloseGrace bounds it); cutting the connection now would
			// lose it.
			return
		}
		s.h.m.dropped.WithLabelValues(dropPingTimeout).Inc()
		s.logDebug("ws: no pong", slog.Any("err", err))
		s.conn.CloseNow()
	}()
}

var readPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readLoop reads client frames until the connection fails or closes. A
// frame over ReadLimit makes the library close the session with 1009 (also
// when it comes in fragments: the limit applies to the whole message).
// Only frames admitted (admit) are run; the others are read and dropped.
func (s *session) readLoop() error {
	ctx := context.Background() // no per-read timer; closing the conn ends a read
	for {
		typ, r, err := s.conn.Reader(ctx)
		if err != nil {
			return err
		}
		buf := readPool.Get().(*bytes.Buffer)
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			readPool.Put(buf)
			return err
		}
		if s.admit() {
			s.serveFrame(typ, buf.Bytes())
			s.handling.Store(false)
		}
		if buf.Cap() <= 2*int(s.h.cfg.ReadLimit) {
			readPool.Put(buf)
		}
	}
}

// admit reports whether the reader may run the frame it has just read, and
// marks it as being handled (handling) if so. Under mu: a close decided
// before (closing, or stopped by closeWhenAnswered) refuses the frame; one
// decided after sees handling and waits for the frame's reply. It takes
// the place of the closing check the reader made per frame: no lock is
// added to the read path, only two atomic stores.
func (s *session) admit() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.stopped {
		return false // what still arrives is not run
	}
	s.handling.Store(true)
	return true
}

// serveFrame runs one admitted frame: its reply is queued, or its request
// counted in inflight, when it returns. Every frame takes a token of the
// session's request rate first.
func (s *session) serveFrame(typ websocket.MessageType, b []byte) {
	switch {
	case !s.frames.Allow():
		s.refuse(typ, b)
	case typ != websocket.MessageText:
		s.h.m.requests.WithLabelValues("invalid", string(couponmesh.CodeBadRequest)).Inc()
		s.Send(errorFrame(0, couponmesh.Errorf(couponmesh.CodeBadRequest, "binary frames are not supported: send JSON text frames")))
	default:
		s.handle(b)
	}
}

// floodReason is the 1008 close reason of a session that kept sending over
// its request rate.
const floodReason = "rate limit exceeded: too many requests"

// refuse answers a frame over the session's request rate with rate_limited
// (echoing its id when it has one) without running it, and closes the
// session with 1008 once it has been refused more than FloodRefusals frames
// within FloodWindow.
func (s *session) refuse(typ websocket.MessageType, b []byte) {
	s.h.m.limited.Inc()
	var id int64
	op := "invalid"
	if typ == websocket.MessageText {
		req, _ := decodeRequest(b)
		id, op = req.ID, knownOp(req.Op)
	}
	s.h.m.requests.WithLabelValues(op, string(couponmesh.CodeRateLimited)).Inc()
	s.Send(errorFrame(id, couponmesh.Errorf(couponmesh.CodeRateLimited,
		"too many requests: at most %g per second per session (bursts of %d); slow down", s.h.cfg.RequestRate, s.h.cfg.RequestBurst)))
	if s.refusals == nil {
		per := s.h.cfg.FloodWindow.Seconds() / float64(s.h.cfg.FloodRefusals)
		s.refusals = rate.NewLimiter(rate.Limit(1/per), s.h.cfg.FloodRefusals)
	}
	if !s.refusals.Allow() {
		s.close(websocket.StatusPolicyViolation, floodReason, dropFlood)
		if s.bound != "" {
			// Reconnecting would bring a fresh bucket: the user's next
			// sessions on this node wait for FloodWindow.
			s.h.users.penalize(s.bound, time.Now())
		}
		s.h.log.LogAttrs(context.Background(), slog.LevelInfo, "ws: closing a flooding session",
			slog.Uint64("session", s.id), slog.String("user", s.user()))
	}
}

// knownOp returns op for the metric label when it is an op of the
// protocol, else "unknown" (the label never takes client text).
func knownOp(op string) string {
	if _, ok := ops[op]; ok || op == "ping" || op == "auth" || op == protocol.OpDrained {
		return op
	}
	if op == "" {
		return "invalid"
	}
	return "unknown"
}

// handle decodes and dispatches one request. b is not retained.
func (s *session) handle(b []byte) {
	req, derr := decodeRequest(b)
	if derr != nil {
		s.h.m.requests.WithLabelValues("invalid", string(derr.Code)).Inc()
		s.Send(errorFrame(req.ID, derr))
		return
	}
	switch req.Op {
	case "ping":
		s.answer(req.ID, req.Op, empty{}, nil)
		return
	case protocol.OpDrained:
		// Its reply is queued before the close frame.
		s.answer(req.ID, req.Op, empty{}, nil)
		s.drained()
		return
	case "auth":
		res, refused, err := s.auth(&req)
		s.answer(req.ID, req.Op, res, err)
		switch refused {
		case refusedUserSessions:
			s.close(websocket.StatusPolicyViolation, userSessionsReason, dropUserSessions)
		case refusedUserFlooded:
			s.close(websocket.StatusPolicyViolation, userFloodedReason, dropUserFlooded)
		}
		return
	}
	op, ok := ops[req.Op]
	if !ok {
		s.h.m.requests.WithLabelValues("unknown", string(couponmesh.CodeBadRequest)).Inc()
		s.Send(errorFrame(req.ID, couponmesh.Errorf(couponmesh.CodeBadRequest, "unknown op %q", req.Op)))
		return
	}
	p, err := s.authorized()
	if err != nil && anonymousOps[req.Op] {
		err = s.beAnonymous(err)
	}
	if err != nil {
		s.answer(req.ID, req.Op, nil, err)
		return
	}
	if req.Op == "get" && s.getNow(&req) {
		return
	}
	if int(s.inflight.Add(1)) > s.h.cfg.MaxInflight {
		s.inflight.Add(-1)
		s.answer(req.ID, req.Op, nil, couponmesh.Errorf(couponmesh.CodeRateLimited,
			"too many requests in flight: at most %d per session, wait for replies", s.h.cfg.MaxInflight))
		return
	}
	s.requests.Add(1)
	go func() {
		defer s.requests.Done()
		defer s.inflight.Add(-1)
		ctx, cancel := context.WithTimeout(s.ctx, s.h.cfg.RequestTimeout)
		res, err := op(ctx, s, p, &req)
		cancel()
		s.answer(req.ID, req.Op, res, err)
	}()
}

// getNow answers a get inline when the service has the coupon at hand
// (couponmesh.CouponReaderNow), and reports whether it did.
func (s *session) getNow(req *request) bool {
	r, ok := s.h.svc.(couponmesh.CouponReaderNow)
	if !ok || checkCoupon("coupon", req.Coupon) != nil {
		return false
	}
	c, _, ok := r.CouponJSONNow(req.Coupon)
	if ok {
		s.h.m.requests.WithLabelValues(req.Op, "ok").Inc()
		s.Send(couponFrame(req.ID, c))
	}
	return ok
}

// answer queues the reply to request id and counts it.
func (s *session) answer(id int64, op string, res any, err error) {
	if err == nil {
		frame, encErr := okFrame(id, res)
		if encErr == nil {
			s.h.m.requests.WithLabelValues(op, "ok").Inc()
			s.Send(frame)
			return
		}
		err = encErr
	}
	e := couponmesh.AsError(err)
	if e.Code == couponmesh.CodeInternal {
		s.logError("ws: request failed", err, slog.String("op", op), slog.Int64("id", id))
	}
	s.h.m.requests.WithLabelValues(op, string(e.Code)).Inc()
	s.Send(errorFrame(id, e))
}

// Close reasons (1008) of a session whose auth was refused for its user:
// the user holds Config.SessionsPerUser sessions on the node already, or is
// cooling down after one of its sessions was closed for flooding.
const (
	userSessionsReason = "too many sessions of this user on this node"
	userFloodedReason  = "rate limit exceeded: this user flooded, retry later"
)

// auth verifies req.Token and binds the session to its principal. A later
// auth must name the same user; it refreshes the expiry (and the role). The
// first successful auth counts the session against its user's
// SessionsPerUser; when the user is over it, or cooling down after a flood,
// auth answers rate_limited and refused says which (the caller closes the
// session). Called by the reader goroutine only.
func (s *session) auth(req *request) (_ any, refused string, _ error) {
	if req.Token == "" {
		return nil, "", couponmesh.Errorf(couponmesh.CodeBadRequest, "token is required")
	}
	p, exp, err := s.h.tokens.Verify(req.Token)
	if err != nil {
		return nil, "", err
	}
	s.mu.Lock()
	cur := s.principal.User
	s.mu.Unlock()
	if cur != "" && cur != p.User {
		return nil, "", couponmesh.Errorf(couponmesh.CodeForbidden,
			"session is authenticated as %q: open a new connection for another user", cur)
	}
	if s.bound == "" {
		switch refused, wait := s.h.users.bind(p.User, time.Now()); refused {
		case refusedUserSessions:
			return nil, refused, couponmesh.Errorf(couponmesh.CodeRateLimited,
				"too many sessions: a user may hold at most %d on one node; close another session first", s.h.cfg.SessionsPerUser)
		case refusedUserFlooded:
			return nil, refused, couponmesh.Errorf(couponmesh.CodeRateLimited,
				"a session of this user was closed for flooding: retry in %v", wait.Round(time.Second)+time.Second)
		}
		s.bound = p.User
	}
	signedIn := false
	defer func() {
		// After s.mu is released: the hub takes its lock, then s.mu.
		if id, ok := s.h.hub.(couponmesh.Identifier); ok && signedIn {
			id.Identify(s, p.User) // its subscriptions count it from now on
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.anonymous {
		// A visitor signed in: a normal session from now on, its
		// subscriptions kept.
		signedIn = true
		s.anonymous = false
		s.h.ips.releaseAnonymous(s.addr)
		s.h.m.anonymous.Dec()
		s.frames.SetLimit(limitOf(s.h.cfg.RequestRate))
		s.frames.SetBurst(s.h.cfg.RequestBurst)
	}
	s.principal = p
	s.deadline = exp.Add(auth.Leeway)
	s.timer.Reset(time.Until(s.deadline))
	return protocol.AuthReply{User: p.User, Role: p.Role, ExpiresAt: exp}, "", nil
}

// anonymousOps are the ops a session may use without authenticating: a
// visitor reads coupons and gets their pushes, nothing else.
var anonymousOps = map[string]bool{"subscribe": true, "unsubscribe": true, "get": true}

// beAnonymous makes a session that never authenticated anonymous (once) and
// returns nil, or returns notAuthed when the session did authenticate (its
// token expired: it must re-auth), or rate_limited when its client address
// holds Config.AnonymousPerIP anonymous sessions already. An anonymous
// session has no auth deadline and the anonymous request rate and
// subscription limit. Called by the reader goroutine only.
func (s *session) beAnonymous(notAuthed error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.principal.User != "":
		return notAuthed
	case s.anonymous:
		return nil
	case !s.h.ips.admitAnonymous(s.addr):
		return couponmesh.Errorf(couponmesh.CodeRateLimited,
			"too many anonymous sessions from your address (at most %d per node): sign in (auth) or close another one", s.h.cfg.AnonymousPerIP)
	}
	s.anonymous = true
	s.h.m.anonymous.Inc()
	s.frames.SetLimit(limitOf(s.h.cfg.AnonymousRequestRate))
	s.frames.SetBurst(s.h.cfg.AnonymousRequestBurst)
	return nil
}

// authorized returns the session's principal, or unauthorized before a
// successful auth or after the token has expired.
func (s *session) authorized() (couponmesh.Principal, error) {
	s.mu.Lock()
	p, deadline := s.principal, s.deadline
	s.mu.Unlock()
	if p.User == "" {
		return p, couponmesh.Errorf(couponmesh.CodeUnauthorized, "not authenticated: send {\"op\":\"auth\",\"token\":…} first")
	}
	if !time.Now().Before(deadline) {
		return p, couponmesh.Errorf(couponmesh.CodeUnauthorized, "token expired: send auth with a fresh token")
	}
	return p, nil
}

// Viewer implements couponmesh.Viewer: the signed-in user, "" while the
// session is anonymous (presence counts signed-in shoppers only).
func (s *session) Viewer() string { return s.user() }

func (s *session) user() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.principal.User
}

func (s *session) logDebug(msg string, attrs ...slog.Attr) {
	if !s.h.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	attrs = append(attrs, slog.Uint64("session", s.id), slog.String("user", s.user()))
	s.h.log.LogAttrs(context.Background(), slog.LevelDebug, msg, attrs...)
}

func (s *session) logError(msg string, err error, attrs ...slog.Attr) {
	attrs = append(attrs, slog.Uint64("session", s.id), slog.String("user", s.user()), slog.Any("err", err))
	s.h.log.LogAttrs(context.Background(), slog.LevelError, msg, attrs...)
}
