package actors

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/couponmesh/couponmesh"
)

// LocalCoupons is the state of the coupon grains active on this node, as
// each last committed it, so that Service.Coupon answers reads of them
// without a request through the actor system. A grain sets its entry after
// loading and after every change it commits (before it replies, so a read
// after an acknowledged write sees the write) and removes it when it starts
// to leave. Reads of coupons active elsewhere go to their grain. After
// cluster churn (Churn) an entry set before the grain validated itself is
// not served: the read goes to the grain, which validates first. Safe for
// concurrent use.
type LocalCoupons struct {
	mu    sync.RWMutex
	m     map[string]*localCoupon
	churn *Churn
}

type localCoupon struct {
	c     couponmesh.Coupon
	owner any                           // the activation that set it
	epoch uint64                        // the Churn epoch owner validated c at
	json  atomic.Pointer[encodedCoupon] // c's encoding, made by the first JSON read
	// watching is the coupon's presence count (Coupon.Watching), set by
	// the owner apart from c: it changes without a new version.
	watching atomic.Int64
}

// encodedCoupon is a coupon's JSON with the status it was refreshed to
// (the only derived field that changes with time alone).
type encodedCoupon struct {
	status   couponmesh.Status
	watching int
	b        []byte
}

// NewLocalCoupons returns an empty set whose entries are served while
// churn does not call them stale (nil: always).
func NewLocalCoupons(churn *Churn) *LocalCoupons {
	return &LocalCoupons{m: make(map[string]*localCoupon), churn: churn}
}

// Get returns the coupon id with its derived fields computed now, if an
// activation on this node holds it.
func (l *LocalCoupons) Get(id string) (couponmesh.Coupon, bool) {
	_, c, ok := l.get(id)
	return c, ok
}

// GetJSON is Get encoded as JSON, once per version, status and presence
// count (a read
// of a coupon that did not change since the last one costs no encoding),
// and the coupon's version. The bytes are shared and must not be modified.
func (l *LocalCoupons) GetJSON(id string) ([]byte, int64, bool) {
	e, c, ok := l.get(id)
	if !ok {
		return nil, 0, false
	}
	if enc := e.json.Load(); enc != nil && enc.status == c.Status && enc.watching == c.Watching {
		return enc.b, c.Version, true
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, 0, false // the caller reads through the grain, which reports it
	}
	e.json.Store(&encodedCoupon{status: c.Status, watching: c.Watching, b: b})
	return b, c.Version, true
}

// get returns id's entry and its coupon refreshed now. Entries are replaced,
// never changed, so e needs no lock once found.
func (l *LocalCoupons) get(id string) (e *localCoupon, c couponmesh.Coupon, ok bool) {
	if l == nil {
		return nil, c, false
	}
	l.mu.RLock()
	e, ok = l.m[id]
	l.mu.RUnlock()
	if !ok || l.churn.Stale(e.epoch) {
		return nil, c, false
	}
	c = e.c
	c.Refresh(time.Now())
	c.Watching = int(e.watching.Load())
	return e, c, true
}

// Set records c, validated at Churn epoch epoch, as the state of owner's
// coupon. The presence count set before (SetWatching) is kept.
func (l *LocalCoupons) Set(owner any, c couponmesh.Coupon, epoch uint64) {
	e := &localCoupon{c: c, owner: owner, epoch: epoch}
	l.mu.Lock()
	if old, ok := l.m[c.ID]; ok && old.owner == owner {
		e.watching.Store(old.watching.Load())
	}
	l.m[c.ID] = e
	l.mu.Unlock()
}

// SetWatching records the presence count of owner's coupon id and reports
// whether owner has an entry to record it in. It costs a map read and an
// atomic store.
func (l *LocalCoupons) SetWatching(owner any, id string, watching int) bool {
	l.mu.RLock()
	e, ok := l.m[id]
	l.mu.RUnlock()
	if !ok || e.owner != owner {
		return false
	}
	e.watching.Store(int64(watching))
	return true
}

// Delete removes id's entry if owner set it (a newer activation on this
// node keeps its own).
func (l *LocalCoupons) Delete(owner any, id string) {
	l.mu.Lock()
	if e, ok := l.m[id]; ok && e.owner == owner {
		delete(l.m, id)
	}
	l.mu.Unlock()
}
