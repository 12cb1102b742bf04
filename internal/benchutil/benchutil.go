package benchutil

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Result summarises one measurement.
type Result struct {
	Ops     int           // operations that completed without error
	Elapsed time.Duration // from the start until the last goroutine returned
	Rate    float64       // Ops per second of Elapsed
	P50     time.Duration // median latency of one operation
	P99     time.Duration
	Max     time.Duration
}

// String formats r as "N ops/s  p50 …  p99 …".
func (r Result) String() string {
	return fmt.Sprintf("%9.0f ops/s  p50 %8v  p99 %8v", r.Rate, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond))
}

// Measure calls fn from goroutines goroutines in a loop until d has passed
// and returns the figures of the calls. fn gets the index of its goroutine
// (0 to goroutines-1) and must be safe for concurrent use across indexes.
// An error from fn is reported with tb.Error and ends that goroutine;
// Measure calls tb.Fatal when no call completed. Call it from the test's
// goroutine.
func Measure(tb testing.TB, goroutines int, d time.Duration, fn func(worker int) error) Result {
	tb.Helper()
	stop := time.Now().Add(d)
	return run(tb, goroutines, func() bool { return time.Now().Before(stop) }, fn)
}

// MeasureN is Measure for a fixed amount of work: n calls of fn in all,
// shared by goroutines goroutines.
func MeasureN(tb testing.TB, goroutines, n int, fn func(worker int) error) Result {
	tb.Helper()
	var taken atomic.Int64
	return run(tb, goroutines, func() bool { return taken.Add(1) <= int64(n) }, fn)
}

func run(tb testing.TB, goroutines int, more func() bool, fn func(int) error) Result {
	tb.Helper()
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	for w := range goroutines {
		wg.Go(func() {
			var lat []time.Duration
			defer func() {
				mu.Lock()
				all = append(all, lat...)
				mu.Unlock()
			}()
			for more() {
				t0 := time.Now()
				if err := fn(w); err != nil {
					tb.Error(err)
					return
				}
				lat = append(lat, time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(all) == 0 {
		tb.Fatal("benchutil: no operation completed")
	}
	slices.Sort(all)
	return Result{
		Ops:     len(all),
		Elapsed: elapsed,
		Rate:    float64(len(all)) / elapsed.Seconds(),
		P50:     all[len(all)/2],
		P99:     all[len(all)*99/100],
		Max:     all[len(all)-1],
	}
}
