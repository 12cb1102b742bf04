// Package testutil holds the helpers that the tests of several packages
// share: polling for a condition with a deadline (CheckFor, Until) instead
// of sleeping, and goroutines calling a function in a loop that count what
// it returned (Callers: the load of the drain tests).
//
// It imports the standard library and github.com/cenkalti/backoff/v5 only,
// so that the tests of every package (the domain, actors/, transport/,
// client/, persistence/, cluster/, cmd/) may import it without breaking the
// rules of layout_test.go. Its functions are safe for concurrent use by
// several tests; each must be called from the goroutine running its test,
// since it may call t.Fatalf.
package testutil
