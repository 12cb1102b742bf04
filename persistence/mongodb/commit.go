package mongodb

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/couponmesh/couponmesh"
)

// Group commit. Append puts its document on a bounded queue and waits; a
// few flushers take what is queued (up to BatchMaxOps, lingering at most
// BatchMaxDelay for more) and write it with one unordered BulkWrite of
// inserts. Each op gets its own result back: nil, duplicate key (fenced out),
// or unavailable.
//
// A batch whose outcome is unknown (timeout, connection lost, write concern
// not satisfied) is retried with backoff, same _id and same per-write token
// tk. A retry that hits a duplicate key may be our own earlier attempt: the
// document is read back by _id, and only a document carrying this op's token
// counts as success. Nothing whose outcome is unknown is ever answered nil.

// appendOp is one Append waiting for its result.
type appendOp struct {
	ctx      context.Context // the caller's, bounded by WriteTimeout
	doc      entryDoc
	unknown  bool       // sent at least once without a known outcome
	done     chan error // buffered 1: the flusher never blocks on it
	enqueued time.Time
}

// committer runs the flushers of one Store.
type committer struct {
	s        *Store
	queue    chan *appendOp
	quit     chan struct{}  // closed by stop: flush what is queued, then exit
	exited   chan struct{}  // closed when every flusher has returned
	wg       sync.WaitGroup // flushers
	retrying sync.WaitGroup // retries of batches with unknown outcomes
	stopped  sync.Once
	closed   atomic.Bool
	// down is set when a BulkWrite failed without an answer from the
	// database, and cleared by the next answer or successful Ping. While
	// it is set, new operations fail fast, so that actors stay responsive
	// during an outage instead of each waiting out its deadline; suspect
	// pings until the database answers.
	down     atomic.Bool
	checking atomic.Bool // a suspect goroutine is pinging

	bulkWrites, ops, retries, readBacks atomic.Int64
}

func newCommitter(s *Store) *committer {
	c := &committer{
		s:      s,
		queue:  make(chan *appendOp, s.cfg.QueueSize),
		quit:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	for range s.cfg.Flushers {
		c.wg.Go(c.flusher)
	}
	// Retries are started by flushers only: once these have returned, no
	// retry starts any more.
	go func() { c.wg.Wait(); c.retrying.Wait(); close(c.exited) }()
	return c
}

// stop makes new appends fail, lets the flushers write what is queued
// (bounded by the OpTimeout of each attempt and each op's own deadline) and
// waits for them until ctx is done.
func (c *committer) stop(ctx context.Context) {
	c.stopped.Do(func() {
		c.closed.Store(true)
		close(c.quit)
	})
	select {
	case <-c.exited:
	case <-ctx.Done():
	}
}

// CommitStats counts the group commit's work since Open.
type CommitStats struct {
	BulkWrites int64 // BulkWrite calls, retries included
	Ops        int64 // appends answered (any result)
	Retries    int64 // BulkWrite attempts after an unknown outcome
	ReadBacks  int64 // documents read back to resolve a duplicate after an unknown outcome
}

// CommitStats returns the counters of the group commit.
func (s *Store) CommitStats() CommitStats {
	c := s.commit
	return CommitStats{BulkWrites: c.bulkWrites.Load(), Ops: c.ops.Load(), Retries: c.retries.Load(), ReadBacks: c.readBacks.Load()}
}

// Append inserts e durably through the group commit. It returns an error
// wrapping couponmesh.ErrDuplicate when e.Key() or e.Unique is taken by
// another write (another activation appended first, or the unique fact
// exists), and one wrapping couponmesh.ErrUnavailable when the outcome is
// not known to be a success within min(ctx, WriteTimeout): the queue stayed
// full (backpressure), or the database did not answer. Unique keys share one
// namespace with entry keys. Append blocks until then; it is safe for
// concurrent use.
func (s *Store) Append(ctx context.Context, e couponmesh.Entry) error {
	key := e.Key()
	c := s.commit
	if c.closed.Load() {
		return fmt.Errorf("append %s: store closed: %w", key, couponmesh.ErrUnavailable)
	}
	if err := s.failFast("append " + key); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	doc := toEntryDoc(e)
	doc.Tok = newToken()
	op := &appendOp{ctx: ctx, doc: doc, done: make(chan error, 1), enqueued: time.Now()}
	select {
	case c.queue <- op:
	case <-ctx.Done():
		s.metrics.QueueTimeouts.Inc()
		return fmt.Errorf("append %s: write queue full: %w: %w", key, couponmesh.ErrUnavailable, ctx.Err())
	case <-c.quit:
		return fmt.Errorf("append %s: store closed: %w", key, couponmesh.ErrUnavailable)
	}
	select {
	case err := <-op.done:
		if err != nil {
			return fmt.Errorf("append %s: %w", key, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("append %s: outcome unknown: %w: %w", key, couponmesh.ErrUnavailable, ctx.Err())
	case <-c.exited:
		// The flushers may have answered just before exiting.
		select {
		case err := <-op.done:
			if err != nil {
				return fmt.Errorf("append %s: %w", key, err)
			}
			return nil
		default:
		}
		return fmt.Errorf("append %s: store closed, outcome unknown: %w", key, couponmesh.ErrUnavailable)
	}
}

func newToken() int64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return int64(binary.LittleEndian.Uint64(b[:]) >> 1)
}

// flusher takes batches off the queue until stop, then drains it.
func (c *committer) flusher() {
	max := c.s.cfg.BatchMaxOps
	batch := make([]*appendOp, 0, max)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		var first *appendOp
		select {
		case first = <-c.queue:
		case <-c.quit:
			c.drain()
			return
		}
		batch = append(batch[:0], first)
		// Take what is queued already, then linger for more.
		lingering := c.s.cfg.BatchMaxDelay > 0
		if lingering {
			linger.Reset(c.s.cfg.BatchMaxDelay)
		}
	fill:
		for len(batch) < max {
			select {
			case op := <-c.queue:
				batch = append(batch, op)
				continue
			default:
			}
			if !lingering {
				break
			}
			select {
			case op := <-c.queue:
				batch = append(batch, op)
			case <-linger.C:
				lingering = false
				break fill
			case <-c.quit:
				break fill
			}
		}
		if lingering {
			linger.Stop()
		}
		c.write(batch)
	}
}

// drain writes what is left on the queue at stop.
func (c *committer) drain() {
	for {
		batch := make([]*appendOp, 0, c.s.cfg.BatchMaxOps)
	take:
		for len(batch) < cap(batch) {
			select {
			case op := <-c.queue:
				batch = append(batch, op)
			default:
				break take
			}
		}
		if len(batch) == 0 {
			return
		}
		c.write(batch)
	}
}

// write sends batch once and answers every op whose result is known. Ops
// whose outcome is unknown are retried by a goroutine of their own, so that
// the flusher goes on with new batches (no head-of-line blocking behind a
// retry).
func (c *committer) write(batch []*appendOp) {
	now := time.Now()
	for _, op := range batch {
		c.s.metrics.QueueWait.Observe(now.Sub(op.enqueued).Seconds())
	}
	if unknown := c.attempt(batch, 0); len(unknown) > 0 {
		// A copy: the flusher reuses batch's array for its next batch.
		unknown = slices.Clone(unknown)
		c.retrying.Go(func() { c.retry(unknown) })
	}
}

// retry sends batch again with backoff until every op has a known result
// or has given up (its context ended: its caller answers unavailable).
func (c *committer) retry(batch []*appendOp) {
	m := c.s.metrics
	b := &backoff.ExponentialBackOff{
		InitialInterval:     c.s.cfg.RetryBackoff,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         c.s.cfg.RetryMaxBackoff,
	}
	for attempt := 1; ; attempt++ {
		// Wait, but not past the last op's deadline.
		wait := b.NextBackOff()
		if left := time.Until(latestDeadline(batch)); left < wait {
			wait = max(left, 0)
		}
		time.Sleep(wait)
		batch = c.dropAbandoned(batch)
		if len(batch) == 0 {
			return
		}
		if c.down.Load() {
			// Confirmed down (a ping failed too): it will not resolve
			// soon. Answer now rather than hold the grains until their
			// deadlines; the outcome stays unknown, which the next
			// append of each entity resolves through its unique key.
			for _, op := range batch {
				c.s.metrics.FastFails.Inc()
				c.answer(op, fmt.Errorf("outcome unknown, database unreachable: %w", couponmesh.ErrUnavailable))
			}
			return
		}
		c.retries.Add(1)
		m.Retries.Inc()
		batch = c.attempt(batch, attempt)
		if len(batch) == 0 {
			return
		}
	}
}

// dropAbandoned removes ops whose callers have stopped waiting.
func (c *committer) dropAbandoned(batch []*appendOp) []*appendOp {
	out := batch[:0]
	for _, op := range batch {
		if op.ctx.Err() != nil {
			c.s.metrics.Abandoned.Inc()
			continue
		}
		out = append(out, op)
	}
	return out
}

// latestDeadline is the deadline of the op that waits longest.
func latestDeadline(batch []*appendOp) time.Time {
	var latest time.Time
	for _, op := range batch {
		if dl, ok := op.ctx.Deadline(); ok && dl.After(latest) {
			latest = dl
		}
	}
	return latest
}

// insertModels is the BulkWrite of batch: one insert per op, in order (a
// write error's index is the op's index in batch).
func insertModels(batch []*appendOp) []mongo.WriteModel {
	models := make([]mongo.WriteModel, len(batch))
	for i, op := range batch {
		models[i] = mongo.NewInsertOneModel().SetDocument(op.doc)
	}
	return models
}

// attempt sends one BulkWrite of batch, answers the ops whose result is
// known and returns the others (outcome unknown).
func (c *committer) attempt(batch []*appendOp, attempt int) []*appendOp {
	s, m := c.s, c.s.metrics
	// One attempt lasts OpTimeout at most, and no longer than the
	// latest-waiting op.
	ctx, cancel := context.WithDeadline(context.Background(), latestDeadline(batch))
	defer cancel()
	ctx, cancel2 := context.WithTimeout(ctx, s.cfg.OpTimeout)
	defer cancel2()

	models := insertModels(batch)
	c.bulkWrites.Add(1)
	m.BulkWrites.Inc()
	m.BatchSize.Observe(float64(len(batch)))
	start := time.Now()
	_, err := s.journal.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
	m.BulkSeconds.Observe(time.Since(start).Seconds())
	if err == nil {
		c.setDown(false)
		for _, op := range batch {
			c.answer(op, nil)
		}
		return nil
	}

	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) {
		c.suspect()
		// Network error, timeout, server selection: nothing is known.
		level := slog.LevelWarn
		if attempt > 0 {
			level = slog.LevelDebug // one warning per batch, not per retry
		}
		s.log.Log(ctx, level, "group commit: batch outcome unknown, retrying", "ops", len(batch), "attempt", attempt, "err", err)
		for _, op := range batch {
			op.unknown = true
		}
		return batch
	}
	c.setDown(false) // the database answered
	perOp := make([]*mongo.BulkWriteError, len(batch))
	for i := range bwe.WriteErrors {
		we := &bwe.WriteErrors[i]
		if we.Index >= 0 && we.Index < len(batch) {
			perOp[we.Index] = we
		}
	}
	var unknown []*appendOp
	for i, op := range batch {
		we := perOp[i]
		switch {
		case we == nil && bwe.WriteConcernError != nil:
			// Written on the primary but not acknowledged by the write
			// concern: not durable as asked. Retrying resolves it.
			op.unknown = true
			unknown = append(unknown, op)
		case we == nil:
			c.answer(op, nil)
		case mongo.IsDuplicateKeyError(we.WriteError):
			if !op.unknown {
				c.answer(op, couponmesh.ErrDuplicate)
				continue
			}
			// Maybe our own earlier attempt: read it back.
			ours, err := c.readBack(ctx, op)
			switch {
			case err != nil:
				unknown = append(unknown, op)
			case ours:
				c.answer(op, nil)
			default:
				c.answer(op, couponmesh.ErrDuplicate)
			}
		default:
			// Refused by the server for this document: not written.
			s.log.Error("group commit: write refused", "key", op.doc.ID, "code", we.Code, "err", we.Message)
			c.answer(op, fmt.Errorf("write refused (code %d): %w", we.Code, couponmesh.ErrUnavailable))
		}
	}
	if bwe.WriteConcernError != nil {
		s.log.Warn("group commit: write concern error, retrying", "ops", len(unknown), "err", bwe.WriteConcernError.Message)
	}
	return unknown
}

// errNotYetMajority: our document is on the primary but not yet
// majority-committed; the outcome stays unknown.
var errNotYetMajority = errors.New("written, not yet majority-committed")

// readBack reports whether the journal document with op's _id is op's own
// (same token). No such document means the duplicate was the Unique key of
// another document: not ours. With write concern majority, only a
// majority-committed document counts as ours; one visible on the primary
// only leaves the outcome unknown (an error).
func (c *committer) readBack(ctx context.Context, op *appendOp) (bool, error) {
	c.readBacks.Add(1)
	// read reports whether a document with op's _id exists and is op's.
	read := func(coll *mongo.Collection) (found, ours bool, err error) {
		var d struct {
			Tok int64 `bson:"tk"`
		}
		err = coll.FindOne(ctx, bson.D{{Key: "_id", Value: op.doc.ID}}).Decode(&d)
		if errors.Is(err, mongo.ErrNoDocuments) {
			return false, false, nil
		}
		if err != nil {
			return false, false, err
		}
		return true, d.Tok == op.doc.Tok, nil
	}
	if maj := c.s.journalMajority; maj != nil {
		found, ours, err := read(maj)
		if err != nil || found {
			return ours, err
		}
	}
	_, ours, err := read(c.s.journal)
	switch {
	case err != nil:
		return false, err
	case ours && c.s.journalMajority != nil:
		return false, errNotYetMajority
	}
	return ours, nil
}

// Down reports whether the database is known to be unreachable: the last
// write attempt got no answer, and no ping has succeeded since.
func (s *Store) Down() bool { return s.commit.down.Load() }

// failFast returns an unavailable error for what while the database is
// known to be down.
func (s *Store) failFast(what string) error {
	if !s.commit.down.Load() {
		return nil
	}
	s.metrics.FastFails.Inc()
	return fmt.Errorf("%s: database unreachable: %w", what, couponmesh.ErrUnavailable)
}

func (c *committer) setDown(down bool) {
	if c.down.Swap(down) == down {
		return
	}
	if down {
		c.s.log.Warn("database unreachable: operations fail fast until a ping succeeds")
		c.s.metrics.Down.Set(1)
	} else {
		c.s.log.Info("database reachable again")
		c.s.metrics.Down.Set(0)
	}
}

// suspect is called when an operation got no answer (network error or
// timeout). A timeout alone may be an overloaded database rather than a
// dead one, so a ping decides: if it fails too, the database is down, and
// it is pinged every ProbeInterval until it answers.
func (c *committer) suspect() {
	if !c.checking.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer c.checking.Store(false)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), c.s.cfg.OpTimeout)
			err := c.s.client.Ping(ctx, nil)
			cancel()
			if err == nil {
				c.setDown(false)
				return
			}
			c.setDown(true)
			select {
			case <-c.quit:
				return
			case <-time.After(c.s.cfg.ProbeInterval):
			}
		}
	}()
}

func (c *committer) answer(op *appendOp, err error) {
	c.ops.Add(1)
	op.done <- err
}
