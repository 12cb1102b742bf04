package actors

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
)

// GetJSON encodes what Get returns, once per version and status: the
// encoding follows a new version, and expiry alone (no new version).
func TestLocalCouponsJSON(t *testing.T) {
	l := NewLocalCoupons(nil)
	owner := new(int)
	want := func(what string) {
		t.Helper()
		c, ok := l.Get("c1")
		if !ok {
			t.Fatalf("%s: not found", what)
		}
		js, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		got, v, ok := l.GetJSON("c1")
		if !ok || string(got) != string(js) || v != c.Version {
			t.Fatalf("%s: GetJSON %s version %d, want %s version %d", what, got, v, js, c.Version)
		}
	}
	expires := time.Now().Add(300 * time.Millisecond)
	l.Set(owner, couponmesh.Coupon{ID: "c1", Title: "a", Quantity: 2, Version: 1, ExpiresAt: expires}, 0)
	want("first read")
	first, _, _ := l.GetJSON("c1")
	if again, _, _ := l.GetJSON("c1"); &again[0] != &first[0] {
		t.Fatal("the same version and status encoded twice")
	}
	l.Set(owner, couponmesh.Coupon{ID: "c1", Title: "a", Quantity: 2, Claimed: 1, Version: 2, ExpiresAt: expires}, 0)
	want("after a new version")
	time.Sleep(time.Until(expires) + 10*time.Millisecond)
	want("after the expiry")
	if c, _ := l.Get("c1"); c.Status != couponmesh.StatusExpired {
		t.Fatalf("status %s, want expired", c.Status)
	}
	l.Delete(owner, "c1")
	if _, _, ok := l.GetJSON("c1"); ok {
		t.Fatal("GetJSON after Delete")
	}
}
