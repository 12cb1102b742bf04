package actors

import (
	"sync"
	"sync/atomic"
	"time"
)

// Churn tells the grains of a node when an activation may have missed
// writes of another activation of its identity: a member joined, left or was
// declared dead, this node's view changed late, or a member this node
// declared dead is still alive (a healed partition, a paused process). It is
// an epoch that every such event bumps, plus a conflict flag that holds
// while a member this node declared dead is seen alive (it may still be
// writing until it exits).
//
// A grain records the epoch it last validated at (its load counts) and,
// while the epoch is newer or a conflict holds, validates itself against the
// journal before it answers (Activation). In steady state that is one atomic
// load per request. A nil *Churn never asks for validation. Safe for
// concurrent use.
//
// After every change the cluster is also unsettled for a while
// (UnsettledFor): a write that a dead member sent before it died can still
// land in the database after a grain here read its journal. A grain that
// loads or validates in that window says so (ReadUnsettled), and when the
// window ends Churn bumps its epoch once more, from one node-wide timer: every
// such grain validates again before its next answer, and a grain with
// watchers and no requests does so at its hubs' next lease renewal (a
// request like any other), which pushes what it finds. No message is sent
// to a grain for it: protoactor's ReceiveTimeout is not safe against a
// message that arrives as the timeout fires (a data race inside the
// library), so the grains get no more messages than they would anyway.
type Churn struct {
	epoch    atomic.Uint64
	conflict atomic.Bool
	until    atomic.Int64 // unix nanos: the end of the unsettled window
	read     atomic.Bool  // a grain read its journal in the current window
	window   time.Duration

	mu    sync.Mutex
	timer *time.Timer // fires at the end of the window (settle)
}

// Unsettled is how long after a membership change a write of another
// activation may still land: a dead member's last write queued in the
// database, whose own timeout the database does not know.
const Unsettled = 3 * time.Second

// NewChurn returns a Churn at epoch 1 with an unsettled window of
// Unsettled.
func NewChurn() *Churn { return NewChurnWindow(Unsettled) }

// NewChurnWindow returns a Churn at epoch 1 whose unsettled window lasts d
// after each change (tests shorten it).
func NewChurnWindow(d time.Duration) *Churn {
	c := &Churn{window: d}
	c.epoch.Store(1)
	return c
}

// Changed records a membership event; conflict tells whether a member this
// node declared dead is alive now. Every call starts a new epoch: grains
// validate once more, also when a conflict ends (the other activations have
// stopped writing by then). It also opens (or extends) the unsettled
// window.
func (c *Churn) Changed(conflict bool) {
	c.conflict.Store(conflict)
	end := time.Now().Add(c.window)
	c.until.Store(end.UnixNano())
	c.epoch.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer == nil {
		c.timer = time.AfterFunc(c.window, c.settle)
	} else {
		c.timer.Reset(c.window) // the last change's window is the one that ends
	}
}

// UnsettledFor returns how long writes of other activations may still land
// after the last change (0 when settled or for a nil Churn).
func (c *Churn) UnsettledFor() time.Duration {
	if c == nil {
		return 0
	}
	return max(0, time.Until(time.Unix(0, c.until.Load())))
}

// ReadUnsettled is called by a grain after it loaded or validated its
// state: if that was inside the unsettled window, the epoch moves once more
// when the window ends, so the grain reads its journal again then. Call it
// after the read, never before.
func (c *Churn) ReadUnsettled() {
	if c.UnsettledFor() == 0 {
		return
	}
	c.read.Store(true)
	if c.UnsettledFor() == 0 {
		// The window ended between the check and the flag: settle may have
		// run already and missed the flag.
		c.settle()
	}
}

// settle ends an unsettled window: if a grain read its journal in it, every
// grain validates once more.
func (c *Churn) settle() {
	if d := c.UnsettledFor(); d > 0 {
		// A change extended the window after the timer fired: its Reset
		// brings settle back.
		return
	}
	if c.read.CompareAndSwap(true, false) {
		c.epoch.Add(1)
	}
}

// Epoch returns the current epoch (0 for a nil Churn).
func (c *Churn) Epoch() uint64 {
	if c == nil {
		return 0
	}
	return c.epoch.Load()
}

// Stale reports whether state validated at epoch may miss writes made
// elsewhere.
func (c *Churn) Stale(validated uint64) bool {
	if c == nil {
		return false
	}
	return c.conflict.Load() || validated < c.epoch.Load()
}

// Conflict reports whether a member this node declared dead is alive.
func (c *Churn) Conflict() bool { return c != nil && c.conflict.Load() }
