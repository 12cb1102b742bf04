package actors

import "sync/atomic"

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
type Churn struct {
	epoch    atomic.Uint64
	conflict atomic.Bool
}

// NewChurn returns a Churn at epoch 1.
func NewChurn() *Churn {
	c := &Churn{}
	c.epoch.Store(1)
	return c
}

// Changed records a membership event; conflict tells whether a member this
// node declared dead is alive now. Every call starts a new epoch: grains
// validate once more, also when a conflict ends (the other activations have
// stopped writing by then).
func (c *Churn) Changed(conflict bool) {
	c.conflict.Store(conflict)
	c.epoch.Add(1)
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
