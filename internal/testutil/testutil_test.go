package testutil_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh/internal/testutil"
)

// fakeT records a failure instead of ending the goroutine for real, so that
// the test can see CheckFor fail.
type fakeT struct {
	testing.TB
	mu     sync.Mutex
	failed string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.failed = strings.TrimSpace(fmt.Sprintf(format, args...))
	f.mu.Unlock()
}

func TestCheckForReturnsOnceTheConditionHolds(t *testing.T) {
	calls := 0
	testutil.CheckFor(t, 5*time.Second, "third call", func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if calls != 3 {
		t.Fatalf("%d calls, want 3", calls)
	}
}

func TestCheckForFailsWithTheLastError(t *testing.T) {
	f := &fakeT{TB: t}
	start := time.Now()
	n := 0
	testutil.CheckFor(f, 200*time.Millisecond, "never", func() error {
		n++
		return fmt.Errorf("call %d", n)
	})
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %s for a 200ms deadline", took)
	}
	if want := fmt.Sprintf("never: still failing after 200ms: call %d", n); f.failed != want {
		t.Fatalf("failure %q, want %q", f.failed, want)
	}
	if n < 2 {
		t.Fatalf("%d calls in 200ms", n)
	}
}

func TestUntil(t *testing.T) {
	f := &fakeT{TB: t}
	testutil.Until(f, 100*time.Millisecond, "false", func() bool { return false })
	if f.failed == "" {
		t.Fatal("Until did not fail on a condition that never held")
	}
	ok := false
	testutil.Until(t, time.Second, "true", func() bool { ok = !ok; return !ok })
}

// TestCallers: the goroutines count the calls that returned nil and keep
// the errors; one that reports last ends, Stop ends the others, and a
// closed done ends them all before their next call.
func TestCallers(t *testing.T) {
	boom := errors.New("boom")
	var mu sync.Mutex
	n := 0
	c := testutil.StartCallers(4, nil, func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		if n == 3 {
			return true, boom
		}
		return false, nil
	})
	testutil.Until(t, 10*time.Second, "calls", func() bool { return c.OK() >= 100 })
	c.Stop()
	if errs := c.Errs(); len(errs) != 1 || !errors.Is(errs[0], boom) {
		t.Fatalf("errors %v, want the one boom", errs)
	}
	mu.Lock()
	calls := n
	mu.Unlock()
	if got := c.OK() + len(c.Errs()); got != calls {
		t.Fatalf("%d calls counted, %d made", got, calls)
	}

	done := make(chan struct{})
	close(done)
	c = testutil.StartCallers(4, done, func() (bool, error) {
		t.Error("called after done was closed")
		return true, nil
	})
	c.Wait()
}
