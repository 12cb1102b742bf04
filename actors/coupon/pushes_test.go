package coupon

import (
	"testing"
	"time"
)

// The claim push interval grows with the watchers (the frames a push
// costs) up to claimPushMaxInterval; nobody counted watching: no wait.
func TestClaimPushInterval(t *testing.T) {
	for _, c := range []struct {
		watchers, budget int
		want             time.Duration
	}{
		{0, 0, 0},
		{1, 0, 100 * time.Microsecond},
		{100, 0, 10 * time.Millisecond},
		{1000, 0, 100 * time.Millisecond},
		{5000, 0, claimPushMaxInterval},
		{50000, 0, claimPushMaxInterval},
		{1, 4, 250 * time.Millisecond},
		{100, 1000, 100 * time.Millisecond},
	} {
		if got := claimPushInterval(c.watchers, c.budget); got != c.want {
			t.Errorf("claimPushInterval(%d, %d) = %s, want %s", c.watchers, c.budget, got, c.want)
		}
	}
}
