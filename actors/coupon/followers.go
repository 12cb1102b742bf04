package coupon

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"
)

// followersTTL bounds how long a loaded follower set is used before it is
// read from the database again.
const followersTTL = 30 * time.Second

// followers is a coupon grain's cache of the users who follow it, so that a
// content change does not query the followers index (on the embedded
// database that query cost more than the change itself: docs/BENCHMARKS.md).
//
// It may hold more users than follow (an unfollow that raced a load), never
// fewer than the acknowledged follows: Service.Follow records the follow in
// the database first and tells this activation after, before it answers.
// A load started before that write misses it, so follows told while a load
// runs are added to its result. A user told to a grain that is not the
// activation a later load runs in is in the database that load reads. A
// user grain ignores notices of coupons it does not follow; followersTTL
// bounds what a lost notice (a node dying between the two steps, whose
// client then got no answer) could cost.
//
// The grain tells follows from its mailbox; notices read the set from
// their own goroutines.
type followers struct {
	mu      sync.Mutex
	users   map[string]struct{} // nil until loaded
	at      time.Time           // when the load of users began
	loading chan struct{}       // closed when the running load ends; nil if none runs
	told    map[string]struct{} // follows told while a load runs
}

// list returns the followers, loaded with load when none are cached or they
// are older than followersTTL; one load runs at a time.
func (f *followers) list(ctx context.Context, load func(context.Context) ([]string, error)) ([]string, error) {
	f.mu.Lock()
	for f.users == nil || time.Since(f.at) >= followersTTL {
		if f.loading == nil {
			return f.load(ctx, load) // unlocks
		}
		wait := f.loading
		f.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		f.mu.Lock()
	}
	defer f.mu.Unlock()
	return slices.Collect(maps.Keys(f.users)), nil
}

// load runs with f.mu held and returns with it released.
func (f *followers) load(ctx context.Context, load func(context.Context) ([]string, error)) ([]string, error) {
	done := make(chan struct{})
	f.loading, f.told = done, map[string]struct{}{}
	began := time.Now()
	f.mu.Unlock()

	users, err := load(ctx)

	f.mu.Lock()
	defer f.mu.Unlock()
	defer close(done)
	told := f.told
	f.loading, f.told = nil, nil
	if err != nil {
		return nil, err
	}
	set := make(map[string]struct{}, len(users)+len(told))
	for _, u := range users {
		set[u] = struct{}{}
	}
	maps.Copy(set, told)
	f.users, f.at = set, began
	return slices.Collect(maps.Keys(set)), nil
}

// none records that nobody follows the coupon: it was just created, and a
// follow needs the coupon to exist.
func (f *followers) none() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.users == nil && f.loading == nil {
		f.users, f.at = map[string]struct{}{}, time.Now()
	}
}

// follow adds user (it follows the coupon in the database already).
func (f *followers) follow(user string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.users != nil {
		f.users[user] = struct{}{}
	}
	if f.told != nil {
		f.told[user] = struct{}{}
	}
}

// unfollow removes user (it no longer follows the coupon in the database).
func (f *followers) unfollow(user string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.users, user)
	delete(f.told, user)
}
