package chaos_test

import (
	"math"
	"testing"
)

// soakTolerance is how much the mean of the last third of a soak's samples
// may exceed the mean of its middle third and still count as levelled off.
// The first third is left out: it holds the ramp (grains activating, until
// the first ones passivate after actors.passivate_after, 5 minutes by
// default; the Go heap growing to its GC target). A leak of b per minute on
// a base a shows as b·T/3 between the two means over a run of T minutes
// (the middle mean being a + b·T/2), so 5% over 30 minutes catches leaks
// above about 0.55% of the base per minute (a 100 MiB node growing 33 MiB
// an hour); slower leaks need a longer run. A GC sawtooth, averaged over
// 10 minutes of samples, moves the means far less (TestLevelsOff).
const soakTolerance = 0.05

// levelsOff splits samples into thirds and reports the means of the
// middle and the last third and whether the last stays within tol
// (a fraction) of the middle. Fewer than 3 samples never level off.
func levelsOff(samples []float64, tol float64) (middle, last float64, ok bool) {
	n := len(samples)
	if n < 3 {
		return 0, 0, false
	}
	mean := func(s []float64) float64 {
		var sum float64
		for _, v := range s {
			sum += v
		}
		return sum / float64(len(s))
	}
	middle, last = mean(samples[n/3:2*n/3]), mean(samples[2*n/3:])
	return middle, last, last <= middle*(1+tol)
}

func TestLevelsOff(t *testing.T) {
	series := func(n int, f func(i int) float64) []float64 {
		s := make([]float64, n)
		for i := range s {
			s[i] = f(i)
		}
		return s
	}
	const n = 360 // 30 minutes of samples every 5 s
	for _, c := range []struct {
		name    string
		samples []float64
		want    bool
	}{
		// A ramp in the first third, then flat with a GC sawtooth of ±20%.
		{"ramp then sawtooth", series(n, func(i int) float64 {
			base := 100.0
			if i < n/3 {
				base = 40 + 60*float64(i)/float64(n/3)
			}
			return base * (1 + 0.2*math.Sin(float64(i)))
		}), true},
		// Shrinking after the ramp (grains passivating) is levelled off.
		{"shrinks", series(n, func(i int) float64 { return 200 - float64(i)/4 }), true},
		// 100 MiB growing 1 MiB a minute (12 samples): +8.7% third to third.
		{"leak 1%/min", series(n, func(i int) float64 { return 100 + float64(i)/12 }), false},
		// The same leak under the sawtooth.
		{"leak under sawtooth", series(n, func(i int) float64 {
			return (100 + float64(i)/12) * (1 + 0.2*math.Sin(float64(i)))
		}), false},
		{"too few samples", []float64{1, 1}, false},
	} {
		middle, last, ok := levelsOff(c.samples, soakTolerance)
		if ok != c.want {
			t.Errorf("%s: middle %.1f, last %.1f: levels off %v, want %v", c.name, middle, last, ok, c.want)
		}
	}
}
