package bench

import (
	"errors"
	"testing"
	"time"
)

func TestDrainTallyBetween(t *testing.T) {
	var tl drainTally
	t0 := time.Now()
	for i := range 8 {
		tl.errs = append(tl.errs, drainErr{t0.Add(time.Duration(i) * time.Second), errors.New("e").Error()})
	}
	if n, first := tl.between(t0.Add(2*time.Second), t0.Add(5*time.Second)); n != 3 || len(first) != 3 {
		t.Fatalf("between: %d errors, %d shown; want 3, 3", n, len(first))
	}
	if n, first := tl.between(t0, t0.Add(time.Hour)); n != 8 || len(first) != 5 {
		t.Fatalf("between all: %d errors, %d shown; want 8, 5", n, len(first))
	}
}
