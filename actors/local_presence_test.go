package actors

import (
	"strings"
	"testing"

	"github.com/couponmesh/couponmesh"
)

// The presence count of a local coupon follows SetWatching without a new
// version, in Get and in GetJSON (whose cached encoding it refreshes), and
// survives the owner's next Set.
func TestLocalCouponsWatching(t *testing.T) {
	l := NewLocalCoupons(nil)
	owner := new(int)
	l.Set(owner, couponmesh.Coupon{ID: "c1", Title: "t", Quantity: 5, Version: 2}, 0)
	if b, _, _ := l.GetJSON("c1"); strings.Contains(string(b), "watching") {
		t.Fatalf("%s: watching before any count", b)
	}
	if !l.SetWatching(owner, "c1", 7) || l.SetWatching(new(int), "c1", 9) || l.SetWatching(owner, "c2", 1) {
		t.Fatal("SetWatching: only the owner of an existing entry sets it")
	}
	if c, _ := l.Get("c1"); c.Watching != 7 {
		t.Fatalf("Get: watching %d, want 7", c.Watching)
	}
	if b, _, _ := l.GetJSON("c1"); !strings.Contains(string(b), `"watching":7`) {
		t.Fatalf("GetJSON %s, want watching 7", b)
	}
	l.Set(owner, couponmesh.Coupon{ID: "c1", Title: "t", Quantity: 5, Claimed: 1, Version: 3}, 0)
	if b, v, _ := l.GetJSON("c1"); !strings.Contains(string(b), `"watching":7`) || v != 3 {
		t.Fatalf("GetJSON after a new version: %s v%d, want watching 7 v3", b, v)
	}
}
