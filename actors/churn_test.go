package actors

import (
	"testing"

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
	var none *Churn
	if none.Stale(0) || none.Epoch() != 0 || none.Conflict() {
		t.Fatal("a nil Churn must never ask for validation")
	}
}
