package bench

import (
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[i] = time.Duration(i+1) * time.Millisecond // 1 … 100 ms
	}
	for _, c := range []struct {
		name string
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{"none", nil, 0.99, 0},
		{"one", []time.Duration{7}, 0.5, 7},
		{"min", ds, 0, time.Millisecond},
		{"p50", ds, 0.50, 50 * time.Millisecond},
		{"p95", ds, 0.95, 95 * time.Millisecond},
		{"p99", ds, 0.99, 99 * time.Millisecond},
		{"max", ds, 1, 100 * time.Millisecond},
		{"p99 of 10", ds[:10], 0.99, 10 * time.Millisecond},
	} {
		if got := quantile(c.in, c.q); got != c.want {
			t.Errorf("%s: quantile(%v) = %v, want %v", c.name, c.q, got, c.want)
		}
	}
}
