package testutil

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Tick is how long CheckFor and Until wait between two calls of the
// condition.
const Tick = 20 * time.Millisecond

// CheckFor calls cond on the caller's goroutine, at once and then every
// Tick, until it returns nil. When it still returns an error once d has
// passed, CheckFor fails the test with t.Fatalf, naming what and cond's last
// error. It must be called from the test's goroutine.
func CheckFor(t testing.TB, d time.Duration, what string, cond func() error) {
	t.Helper()
	// Not t.Context: it is cancelled before the cleanups, which may poll too.
	_, err := backoff.Retry(context.Background(), func() (struct{}, error) { return struct{}{}, cond() },
		backoff.WithBackOff(backoff.NewConstantBackOff(Tick)), backoff.WithMaxElapsedTime(d))
	if err != nil {
		t.Fatalf("%s: still failing after %s: %v", what, d, err)
	}
}

// errNotYet is what Until reports for a condition that never held.
var errNotYet = errors.New("condition not met")

// Until is CheckFor for a condition that has no error to tell: it fails the
// test when cond has not returned true within d.
func Until(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	CheckFor(t, d, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}
