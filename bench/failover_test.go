package bench

import (
	"testing"
	"time"

	"github.com/couponmesh/couponmesh/client"
)

func TestFailoverResync(t *testing.T) {
	k := time.Unix(1000, 0) // the kill
	at := func(ms int) time.Time { return k.Add(time.Duration(ms) * time.Millisecond) }
	shop := func(states ...foState) *foShopper { return &foShopper{states: states} }
	ss := []*foShopper{
		// connected before the kill, never lost it: not affected
		shop(foState{at(-5000), client.StateConnected}),
		// lost at the kill, back 2.5 s later
		shop(foState{at(-5000), client.StateConnected}, foState{at(3), client.StateReconnecting}, foState{at(2500), client.StateConnected}),
		// a reconnect before the kill does not count
		shop(foState{at(-3000), client.StateReconnecting}, foState{at(-2000), client.StateConnected},
			foState{at(10), client.StateReconnecting}, foState{at(1200), client.StateConnected}),
		// lost and not back yet
		shop(foState{at(-5000), client.StateConnected}, foState{at(5), client.StateReconnecting}),
	}
	resync, affected, pending := foResync(ss, k)
	if affected != 3 || pending != 1 {
		t.Fatalf("affected %d pending %d, want 3 and 1", affected, pending)
	}
	if len(resync) != 2 || resync[0] != 2500*time.Millisecond || resync[1] != 1200*time.Millisecond {
		t.Fatalf("resync %v, want [2.5s 1.2s]", resync)
	}
}

func TestCouponsFigures(t *testing.T) {
	res := couponsResult{Coupons: 2000, TargetP99ms: 100, TargetRate: 8000, Rates: []couponsRate{
		{Rate: 1000, Updates: 5000, Achieved: 999, P99ms: 20},
		{Rate: 2000, Updates: 10000, Achieved: 1990, P99ms: 60},
		{Rate: 4000, Updates: 20000, Achieved: 3000, P99ms: 50},           // fell short of the rate
		{Rate: 8000, Updates: 40000, Achieved: 7900, P99ms: 90, Drops: 1}, // a drop
	}}
	fs := couponsFigures(res)
	if fs[0].Value != 2000 || fs[0].met() {
		t.Errorf("highest rate held %v (met %v), want 2000, not met", fs[0].Value, fs[0].met())
	}
	if fs[1].Value != 90 || !fs[1].met() {
		t.Errorf("p99 at the top rate %v (met %v), want 90, met", fs[1].Value, fs[1].met())
	}
	if _, err := parseRates("1000, 2e3", 1e5); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"", "0", "-1", "x", "1,2e6"} {
		if _, err := parseRates(bad, 1e5); err == nil {
			t.Errorf("parseRates(%q) accepted", bad)
		}
	}
}
