package benchutil_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh/internal/benchutil"
)

func TestMeasureN(t *testing.T) {
	var calls, badWorker atomic.Int64
	r := benchutil.MeasureN(t, 4, 1000, func(w int) error {
		if w < 0 || w >= 4 {
			badWorker.Add(1)
		}
		calls.Add(1)
		return nil
	})
	if r.Ops != 1000 || calls.Load() != 1000 {
		t.Fatalf("%d ops, %d calls, want 1000", r.Ops, calls.Load())
	}
	if badWorker.Load() != 0 {
		t.Errorf("fn got a goroutine index outside 0-3")
	}
	if r.Rate <= 0 || r.P50 > r.P99 || r.P99 > r.Max {
		t.Fatalf("inconsistent result %+v", r)
	}
}

func TestMeasure(t *testing.T) {
	start := time.Now()
	r := benchutil.Measure(t, 2, 50*time.Millisecond, func(int) error {
		time.Sleep(time.Millisecond)
		return nil
	})
	if took := time.Since(start); took < 50*time.Millisecond || took > 5*time.Second {
		t.Fatalf("Measure took %v for 50ms", took)
	}
	if r.Ops < 2 || r.P50 < time.Millisecond {
		t.Fatalf("result %+v: want at least 2 ops of at least 1ms", r)
	}
}
