package testutil

import (
	"slices"
	"sync"
)

// Callers keeps goroutines calling a function in a loop, as the load of a
// test that drains or kills a node under traffic, and counts what the calls
// returned. Its methods are safe for concurrent use.
type Callers struct {
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup

	mu   sync.Mutex
	ok   int
	errs []error
}

// StartCallers starts n goroutines that each call call in a loop, and
// returns at once. A goroutine ends when Stop is called, when done is
// closed (nil: never), or after a call that reports last; each is checked
// before the next call. A call that returns nil counts in OK, any other
// error is kept, in the order returned, for Errs.
func StartCallers(n int, done <-chan struct{}, call func() (last bool, err error)) *Callers {
	c := &Callers{stop: make(chan struct{})}
	for range n {
		c.wg.Go(func() {
			for {
				select {
				case <-c.stop:
					return
				case <-done:
					return
				default:
				}
				last, err := call()
				c.mu.Lock()
				if err == nil {
					c.ok++
				} else {
					c.errs = append(c.errs, err)
				}
				c.mu.Unlock()
				if last {
					return
				}
			}
		})
	}
	return c
}

// OK returns how many calls have returned nil so far.
func (c *Callers) OK() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ok
}

// Errs returns the errors the calls have returned so far.
func (c *Callers) Errs() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.errs)
}

// Wait waits until every goroutine has ended (done closed, or last
// reported by each).
func (c *Callers) Wait() { c.wg.Wait() }

// Stop ends the goroutines after their current call and waits for them.
func (c *Callers) Stop() {
	c.once.Do(func() { close(c.stop) })
	c.wg.Wait()
}
