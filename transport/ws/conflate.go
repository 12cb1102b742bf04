package ws

import (
	"bytes"
	"encoding/json"

	"github.com/couponmesh/couponmesh/protocol"
)

// Conflation of coupon pushes. A hot coupon changes thousands of times a
// second; a session that has not written the last change yet gets the
// newest instead of both: while a push of coupon X waits in the session's
// send queue, a newer push of X takes its place in the queue (the older is
// never written) and an older or equal one is dropped. Across writer turns
// the session remembers the last version of X it queued, and drops pushes
// older than it: the versions a session writes for a coupon only grow, the
// newest is always written (it is queued unless a newer one is), and a
// watcher that falls behind a hot coupon holds one queue slot for it, not
// one per change (no 1013 because of the rush). Replies (the user's own
// claims included) and feed pushes are never conflated. docs/PROTOCOL.md
// states the rule for clients.

// couponPushPrefix starts every coupon push frame (protocol.CouponPush),
// presencePushPrefix every presence push (protocol.PresencePush): checked
// against the golden pushes (golden_test.go). A
// presence push carries no version: the newest to arrive is the newest
// count, so it replaces one still queued for the same coupon (a session
// watching many coupons whose counts all change at once, e.g. when another
// node's watchers leave, holds one slot per coupon, not one per change).
var (
	couponPushPrefix   = []byte(`{"push":"` + protocol.PushCoupon + `",`)
	presencePushPrefix = []byte(`{"push":"` + protocol.PushPresence + `",`)
)

// presenceKey is the conflation key of a coupon's presence pushes.
const presenceKey = "presence/"

// pushInfo is the coupon and version a push frame carries.
type pushInfo struct {
	frame   []byte
	coupon  string
	version int64
	ok      bool
}

// queuedPush is where a coupon's last push is: queue index i, valid while
// gen is the session's qgen (the writer has not taken the queue since).
type queuedPush struct {
	gen     uint64
	i       int
	version int64
}

// couponPush reports the coupon and version of frame when it is a coupon
// push. The hub sends one frame to every watching session: the last frame
// parsed is remembered (by identity), so a fan-out parses it once.
func (h *Handler) couponPush(frame []byte) (string, int64, bool) {
	presence := bytes.HasPrefix(frame, presencePushPrefix)
	if !presence && !bytes.HasPrefix(frame, couponPushPrefix) {
		return "", 0, false
	}
	if p := h.lastPush.Load(); p != nil && len(p.frame) == len(frame) && &p.frame[0] == &frame[0] {
		return p.coupon, p.version, p.ok
	}
	if presence {
		var d struct {
			Coupon string `json:"coupon"`
		}
		p := &pushInfo{frame: frame}
		if json.Unmarshal(frame, &d) == nil && d.Coupon != "" {
			p.coupon, p.version, p.ok = presenceKey+d.Coupon, h.presenceSeq.Add(1), true
		}
		h.lastPush.Store(p)
		return p.coupon, p.version, p.ok
	}
	var d struct {
		Coupon struct {
			ID      string `json:"id"`
			Version int64  `json:"version"`
		} `json:"coupon"`
	}
	p := &pushInfo{frame: frame}
	if json.Unmarshal(frame, &d) == nil && d.Coupon.ID != "" {
		p.coupon, p.version, p.ok = d.Coupon.ID, d.Coupon.Version, true
	}
	h.lastPush.Store(p)
	return p.coupon, p.version, p.ok
}

// conflateLocked queues or merges the push of coupon at version; it
// reports whether the push was taken care of (merged or dropped) and needs
// no queue slot. s.mu must be held.
func (s *session) conflateLocked(coupon string, version int64, frame []byte) bool {
	q, known := s.pushes[coupon]
	switch {
	case !known:
		return false
	case q.gen == s.qgen && q.i < len(s.queue):
		// Waiting: the newer of the two takes the slot.
		if version > q.version {
			s.queue[q.i] = frame
			q.version = version
			s.pushes[coupon] = q
		}
		s.h.m.conflated.Inc()
		return true
	case version < q.version:
		// Older than what was written already: versions only grow.
		s.h.m.conflated.Inc()
		return true
	}
	return false
}

// recordPushLocked notes that the push of coupon at version is queued at
// the end of the queue. s.mu must be held.
func (s *session) recordPushLocked(coupon string, version int64) {
	if s.pushes == nil {
		s.pushes = make(map[string]queuedPush)
	}
	s.pushes[coupon] = queuedPush{gen: s.qgen, i: len(s.queue) - 1, version: version}
}

// forgetPushes drops what the session remembers of coupons it no longer
// follows.
func (s *session) forgetPushes(ids []string) {
	s.mu.Lock()
	for _, id := range ids {
		delete(s.pushes, id)
		delete(s.pushes, presenceKey+id)
	}
	if len(s.pushes) == 0 {
		s.pushes = nil
	}
	s.mu.Unlock()
}
