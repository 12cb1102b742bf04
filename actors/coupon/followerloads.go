package coupon

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/couponmesh/couponmesh"
)

const (
	loadBatch = 256 // coupons per follower read
	loadsMax  = 2   // follower reads in flight on a node
)

// followerLoads batches the follower reads of a node's coupon grains:
// a grain whose follower set is missing or old reads it before it tells
// followers of a change, and at an expiry burst that was one read per
// coupon (10,000 due within a second: as many finds, the most frequent
// command on the embedded database during the burst, `bench timers`
// --profile-dir). Reads wait in one queue; at most loadsMax run at once,
// each taking up to loadBatch coupons queued (none waits for a batch to
// fill: the first read goes at once, the next take what queued meanwhile).
// Safe for concurrent use.
type followerLoads struct {
	store   couponmesh.Store
	timeout time.Duration // of one read

	mu      sync.Mutex
	queue   []string                       // coupons in the order asked, each once
	waiting map[string][]chan followersRes // by coupon
	running int
}

type followersRes struct {
	users []string
	err   error
}

func newFollowerLoads(store couponmesh.Store, timeout time.Duration) *followerLoads {
	return &followerLoads{store: store, timeout: timeout, waiting: map[string][]chan followersRes{}}
}

// followers returns the users who follow coupon, read in a batch with
// other grains' reads; it blocks until the read is done or ctx ends. A
// read the database did not answer in time is tried again (jittered
// backoff) until ctx ends: a failed read fails every coupon of its batch,
// and a coupon whose followers are not read tells them nothing.
func (l *followerLoads) followers(ctx context.Context, coupon string) ([]string, error) {
	return backoff.Retry(ctx, func() ([]string, error) {
		users, err := l.once(ctx, coupon)
		if err != nil && !errors.Is(err, couponmesh.ErrUnavailable) {
			return nil, backoff.Permanent(err)
		}
		return users, err
	}, backoff.WithBackOff(&backoff.ExponentialBackOff{InitialInterval: 250 * time.Millisecond, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: 5 * time.Second}), backoff.WithMaxElapsedTime(0))
}

func (l *followerLoads) once(ctx context.Context, coupon string) ([]string, error) {
	ch := make(chan followersRes, 1)
	l.mu.Lock()
	if _, ok := l.waiting[coupon]; !ok {
		l.queue = append(l.queue, coupon)
	}
	l.waiting[coupon] = append(l.waiting[coupon], ch)
	if l.running < loadsMax {
		l.running++
		go l.run()
	}
	l.mu.Unlock()
	select {
	case r := <-ch:
		return r.users, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// run reads batches until the queue is empty.
func (l *followerLoads) run() {
	for {
		l.mu.Lock()
		n := min(len(l.queue), loadBatch)
		if n == 0 {
			l.running--
			l.mu.Unlock()
			return
		}
		batch := l.queue[:n:n]
		l.queue = l.queue[n:]
		waiters := make([][]chan followersRes, n)
		for i, c := range batch {
			waiters[i] = l.waiting[c]
			delete(l.waiting, c)
		}
		l.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
		users, err := l.store.FollowersOf(ctx, batch)
		cancel()
		for i, c := range batch {
			for _, ch := range waiters[i] {
				ch <- followersRes{users: users[c], err: err} // buffered: never blocks
			}
		}
	}
}
