package bench

import (
	"testing"
	"time"
)

func TestTimersLateStats(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	got := lateStats(ds)
	if got != (latStats{N: 100, P50: 50, P99: 99, Max: 100}) {
		t.Fatalf("lateStats = %+v, want n 100, p50 50 ms, p99 99 ms, max 100 ms", got)
	}
	if got := lateStats(nil); got != (latStats{}) {
		t.Fatalf("lateStats(nil) = %+v, want zero", got)
	}
}
