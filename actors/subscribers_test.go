package actors

import (
	"fmt"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh/internal/testutil"
)

// Subscribers keeps each hub's presence count with its lease: the sum
// drops with a lease that runs out or an unregistration, and a ref sent
// before an unregistration (an older Seq) that arrives after it neither
// brings the hub back nor changes a newer count.
func TestSubscribersPresence(t *testing.T) {
	s := Subscribers{Lease: 200 * time.Millisecond}
	s.apply(HubRef{Address: "a", Watching: 3, Seq: 10})
	s.apply(HubRef{Address: "b", Watching: 4, Seq: 10})
	if got := s.Watching(); got != 7 {
		t.Fatalf("watching %d, want 7", got)
	}
	s.apply(HubRef{Address: "a", Watching: 9, Seq: 9}) // older than what a told
	if got := s.Watchers()["a"]; got != 3 {
		t.Fatalf("a's count %d after an older ref, want 3", got)
	}
	s.unregister(HubRef{Address: "b", Seq: 12})
	s.apply(HubRef{Address: "b", Watching: 4, Seq: 11, Refresh: true}) // sent before the unregistration
	if got := s.Watching(); got != 3 {
		t.Fatalf("watching %d after b unregistered (and a late ref of it came), want 3", got)
	}
	s.apply(HubRef{Address: "b", Watching: 1, Seq: 13}) // b registers again
	if got := s.Watching(); got != 4 {
		t.Fatalf("watching %d after b came back, want 4", got)
	}
	s.unregister(HubRef{Address: "b", Seq: 12}) // an unregistration older than b's return
	if got := s.Watching(); got != 4 {
		t.Fatalf("watching %d after an old unregistration, want 4", got)
	}
	if s.NextCountExpiry().IsZero() {
		t.Fatal("no count expiry while hubs count")
	}
	testutil.CheckFor(t, 5*time.Second, "no hub watched once every lease ran out", func() error {
		if n := s.Watching(); n != 0 {
			return fmt.Errorf("watching %d", n)
		}
		return nil
	})
	if s.Len() != 0 || !s.NextCountExpiry().IsZero() {
		t.Fatalf("hubs %d after their leases ran out", s.Len())
	}
}
