package actors

import (
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
)

// An entry validated before churn is not served until its grain validates
// again; while a conflict holds (a member declared dead is alive) no entry
// is served, whatever epoch it carries.
func TestLocalCouponsAfterChurn(t *testing.T) {
	churn := NewChurn()
	l := NewLocalCoupons(churn)
	owner := new(int)
	set := func() { l.Set(owner, couponmesh.Coupon{ID: "c1", Quantity: 1, Version: 1}, churn.Epoch()) }
	served := func() bool { _, ok := l.Get("c1"); _, _, okJSON := l.GetJSON("c1"); return ok && okJSON }

	steps := []struct {
		name string
		do   func()
		want bool
	}{
		{"validated now", set, true},
		{"a member joined", func() { churn.Changed(false) }, false},
		{"validated again", set, true},
		{"a member declared dead is alive", func() { churn.Changed(true) }, false},
		{"validated during the conflict", set, false},
		{"the conflict ended", func() { churn.Changed(false) }, false},
		{"validated after it", set, true},
	}
	for _, s := range steps {
		s.do()
		if got := served(); got != s.want {
			t.Fatalf("%s: served %v, want %v", s.name, got, s.want)
		}
	}
	if d := churn.UnsettledFor(); d <= 0 || d > Unsettled {
		t.Fatalf("right after a change the cluster is unsettled for %s, want (0, %s]", d, Unsettled)
	}
	var none *Churn
	none.ReadUnsettled()
	if none.Stale(0) || none.Epoch() != 0 || none.Conflict() || none.UnsettledFor() != 0 {
		t.Fatal("a nil Churn must never ask for validation")
	}
}

// A grain that read its journal in the unsettled window after a change
// must validate once more when the window ends (a dead member's write may
// land after its read): the epoch moves once, from Churn's own timer. A
// window in which no grain read ends without a new epoch, and a read after
// the window asks for nothing.
func TestUnsettledWindowEndsWithOneMoreEpoch(t *testing.T) {
	const window = 100 * time.Millisecond
	waitSettled := func(c *Churn) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for c.UnsettledFor() > 0 {
			if time.Now().After(deadline) {
				t.Fatal("the window never ended")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	c := NewChurnWindow(window)
	c.Changed(false)
	c.ReadUnsettled() // a grain loaded inside the window
	c.Changed(false)  // another change extends the window
	read := c.Epoch()
	c.ReadUnsettled()
	deadline := time.Now().Add(10 * time.Second)
	for !c.Stale(read) {
		if time.Now().After(deadline) {
			t.Fatalf("epoch still %d %s after the window: the grain read in it is never validated again", c.Epoch(), 10*time.Second)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if c.UnsettledFor() > 0 {
		t.Fatal("the epoch moved before the window ended")
	}
	settled := c.Epoch()
	c.settle() // once only
	c.ReadUnsettled()
	if c.Epoch() != settled {
		t.Fatalf("epoch %d after the window ended, want %d (one move per window)", c.Epoch(), settled)
	}

	quiet := NewChurnWindow(window)
	quiet.Changed(false)
	e := quiet.Epoch()
	waitSettled(quiet)
	quiet.settle()
	if quiet.Epoch() != e {
		t.Fatalf("a window without reads moved the epoch to %d, want %d", quiet.Epoch(), e)
	}
}
