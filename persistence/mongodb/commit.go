package mongodb

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/couponmesh/couponmesh"
)

// Group commit. Append and AppendOrdered put their documents (one op) on a
// bounded queue and wait; a few flushers take what is queued (up to
// BatchMaxOps ops, lingering at most BatchMaxDelay for more) and write it
// with one ordered BulkWrite of inserts. Each op gets its own result back:
// how many of its documents are written, and for the first one that is
// not: duplicate key (fenced out) or unavailable.
//
// Ordered, because an op of AppendOrdered holds consecutive seqs of one
// entity, and an unordered write could store seq k+1 after seq k lost to
// another activation (a decision made on state that never was). An ordered
// BulkWrite stops at its first write error: the documents before it are
// written, the op that failed is answered, and the ops after it are sent
// again at once in the next BulkWrite of the same attempt. On FerretDB an
// ordered insert costs what an unordered one does (one transaction for the
// batch, then one by one only after an error); duplicates are rare (churn,
// retried notices), so the extra round trip is too.
//
// A batch whose outcome is unknown (timeout, connection lost, write concern
// not satisfied) is retried with backoff, same _id and same per-op token
// tk. A retry that hits a duplicate key may be our own earlier attempt: the
// document is read back by _id, and only a document carrying this op's token
// counts as success. Every attempt writes a prefix of an op's remaining
// documents, so when the op's last document is ours, all of them are. Nothing
// whose outcome is unknown is ever answered as written.

// appendOp is one Append or AppendOrdered waiting for its result.
type appendOp struct {
	ctx      context.Context // the caller's, bounded by WriteTimeout
	docs     []entryDoc      // in order; docs[:n] are known written
	n        int             // owned by the flusher or retrier holding the op
	tok      int64           // the write token of every doc
	unknown  bool            // docs[n:] were sent at least once without a known outcome
	done     chan opResult   // buffered 1: the flusher never blocks on it
	enqueued time.Time
}

// opResult is an op's answer: n documents written, err about docs[n].
type opResult struct {
	n   int
	err error
}

// newOp builds the op that AppendOrdered queues for entries.
func newOp(ctx context.Context, entries []couponmesh.Entry) *appendOp {
	op := &appendOp{ctx: ctx, docs: make([]entryDoc, len(entries)), tok: newToken(), done: make(chan opResult, 1), enqueued: time.Now()}
	for i, e := range entries {
		op.docs[i] = toEntryDoc(e)
		op.docs[i].Tok = op.tok
	}
	return op
}

// committer runs the flushers of one Store.
type committer struct {
	s        *Store
	queue    chan *appendOp
	quit     chan struct{}   // closed by stop: flush what is queued, then exit
	probeCtx context.Context // cancelled by stop: ends suspect's pings
	endProbe context.CancelFunc
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

	bulkWrites, ops, retries, readBacks, unknown atomic.Int64
}

func newCommitter(s *Store) *committer {
	c := &committer{
		s:      s,
		queue:  make(chan *appendOp, s.cfg.QueueSize),
		quit:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	c.probeCtx, c.endProbe = context.WithCancel(context.Background())
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
		c.endProbe()
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
	Unknown    int64 // appends whose write had an unknown outcome (then retried, or answered unavailable)
}

// CommitStats returns the counters of the group commit.
func (s *Store) CommitStats() CommitStats {
	c := s.commit
	return CommitStats{BulkWrites: c.bulkWrites.Load(), Ops: c.ops.Load(), Retries: c.retries.Load(), ReadBacks: c.readBacks.Load(), Unknown: c.unknown.Load()}
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
	_, err := s.AppendOrdered(ctx, []couponmesh.Entry{e})
	return err
}

// AppendOrdered inserts entries durably and in order through the group
// commit (one op of the batch: usually one round trip for all of them), as
// couponmesh.Store specifies: it returns how many are known written, and
// the error of the first that is not (wrapping couponmesh.ErrDuplicate or
// couponmesh.ErrUnavailable, as for Append). When the caller's deadline
// ends first it returns 0 with an unavailable error. Safe for concurrent
// use.
func (s *Store) AppendOrdered(ctx context.Context, entries []couponmesh.Entry) (int, error) {
	if len(entries) == 0 {
		return 0, nil
	}
	key := entries[0].Key()
	if len(entries) > 1 {
		key += ".." + strconv.FormatInt(entries[len(entries)-1].Seq, 10)
	}
	c := s.commit
	if c.closed.Load() {
		return 0, fmt.Errorf("append %s: store closed: %w", key, couponmesh.ErrUnavailable)
	}
	if err := s.failFast("append " + key); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	op := newOp(ctx, entries)
	select {
	case c.queue <- op:
	case <-ctx.Done():
		s.metrics.QueueTimeouts.Inc()
		return 0, fmt.Errorf("append %s: write queue full: %w: %w", key, couponmesh.ErrUnavailable, ctx.Err())
	case <-c.quit:
		return 0, fmt.Errorf("append %s: store closed: %w", key, couponmesh.ErrUnavailable)
	}
	result := func(r opResult) (int, error) {
		if r.err != nil {
			return r.n, fmt.Errorf("append %s: %w", op.docs[r.n].ID, r.err)
		}
		return r.n, nil
	}
	select {
	case r := <-op.done:
		return result(r)
	case <-ctx.Done():
		return 0, fmt.Errorf("append %s: outcome unknown: %w: %w", key, couponmesh.ErrUnavailable, ctx.Err())
	case <-c.exited:
		// The flushers may have answered just before exiting.
		select {
		case r := <-op.done:
			return result(r)
		default:
		}
		return 0, fmt.Errorf("append %s: store closed, outcome unknown: %w", key, couponmesh.ErrUnavailable)
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
		c.unknown.Add(int64(len(unknown)))
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

// orderedChunk bounds the documents of one ordered BulkWrite. FerretDB
// 1.24 inserts in chunks of 100 documents and, in ordered mode, goes on
// with the next chunk after a chunk stopped at an error (msg_insert.go): a
// seq after a refused one could be written. Within one chunk it stops.
const orderedChunk = 100

// insertModels is the BulkWrite of batch: the documents of every op not
// yet known written, op after op, in order, at most limit (0: all).
// owner[i] is the index in batch of the op that models[i] belongs to.
func insertModels(batch []*appendOp, limit int) (models []mongo.WriteModel, owner []int) {
	for bi, op := range batch {
		for _, d := range op.docs[op.n:] {
			if limit > 0 && len(models) == limit {
				return models, owner
			}
			models = append(models, mongo.NewInsertOneModel().SetDocument(d))
			owner = append(owner, bi)
		}
	}
	return models, owner
}

// attempt writes batch once (the ops with one document left in one
// unordered BulkWrite, the runs of several in ordered ones), answers the
// ops whose result is known and returns the others (outcome unknown).
func (c *committer) attempt(batch []*appendOp, attempt int) []*appendOp {
	// One attempt lasts OpTimeout at most, and no longer than the
	// latest-waiting op.
	ctx, cancel := context.WithDeadline(context.Background(), latestDeadline(batch))
	defer cancel()
	ctx, cancel2 := context.WithTimeout(ctx, c.s.cfg.OpTimeout)
	defer cancel2()
	var singles, runs []*appendOp
	for _, op := range batch {
		if len(op.docs)-op.n == 1 {
			singles = append(singles, op)
		} else {
			runs = append(runs, op)
		}
	}
	var unknown []*appendOp
	if len(singles) > 0 {
		unknown = c.bulk(ctx, singles, false, attempt)
	}
	if len(runs) > 0 && ctx.Err() == nil {
		unknown = append(unknown, c.bulk(ctx, runs, true, attempt)...)
	} else {
		unknown = append(unknown, runs...)
	}
	return unknown
}

// bulk writes the ops of batch with BulkWrites until each is answered or
// its outcome is unknown, and returns the unknown ones. Unordered (every
// op has one document left): one BulkWrite, each error is its op's.
// Ordered: the documents before the first error are written, those after
// it were not tried and go again in the next BulkWrite, as do those past
// orderedChunk.
func (c *committer) bulk(ctx context.Context, batch []*appendOp, ordered bool, attempt int) []*appendOp {
	s, m := c.s, c.s.metrics
	limit := 0
	if ordered {
		limit = orderedChunk
	}
	var unknown []*appendOp
	for len(batch) > 0 {
		if ctx.Err() != nil {
			return append(unknown, batch...)
		}
		models, owner := insertModels(batch, limit)
		c.bulkWrites.Add(1)
		m.BulkWrites.Inc()
		m.BatchSize.Observe(float64(len(models)))
		start := time.Now()
		_, err := s.appends.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(ordered))
		m.BulkSeconds.Observe(time.Since(start).Seconds())
		var bwe mongo.BulkWriteException
		switch {
		case err == nil:
			c.setDown(false)
		case !errors.As(err, &bwe):
			c.suspect(s.writer)
			// Network error, timeout, server selection: nothing is known.
			level := slog.LevelWarn
			if attempt > 0 {
				level = slog.LevelDebug // one warning per batch, not per retry
			}
			s.log.Log(ctx, level, "group commit: batch outcome unknown, retrying", "ops", len(batch), "attempt", attempt, "err", err)
			for _, op := range batch {
				op.unknown = true
			}
			return append(unknown, batch...)
		case bwe.WriteConcernError != nil:
			c.setDown(false) // the database answered
			// Written on the primary (up to the first write error, if
			// ordered) but not acknowledged by the write concern: not
			// durable as asked. Retrying resolves it, reading back what
			// it meets.
			s.log.Warn("group commit: write concern error, retrying", "ops", len(batch), "err", bwe.WriteConcernError.Message)
			for _, op := range batch {
				op.unknown = true
			}
			return append(unknown, batch...)
		default:
			c.setDown(false) // the database answered
		}
		// Which models failed; ordered: only the first, and nothing after
		// it was tried.
		stop := len(models)
		failed := make(map[int]*mongo.BulkWriteError)
		for i := range bwe.WriteErrors {
			we := &bwe.WriteErrors[i]
			if we.Index < 0 || we.Index >= len(models) {
				continue
			}
			if ordered {
				if we.Index < stop {
					stop = we.Index
					clear(failed)
					failed[we.Index] = we
				}
				continue
			}
			failed[we.Index] = we
		}
		errOf := make(map[int]*mongo.BulkWriteError, len(failed)) // by op
		for i := range stop {
			if we, ok := failed[i]; ok {
				errOf[owner[i]] = we
				continue
			}
			batch[owner[i]].n++
		}
		if we, ok := failed[stop]; ok {
			errOf[owner[stop]] = we
		}
		var rest []*appendOp
		for bi, op := range batch {
			if we, ok := errOf[bi]; ok {
				switch c.failed(ctx, op, we) {
				case failUnknown:
					unknown = append(unknown, op)
				case failAgain:
					rest = append(rest, op)
				}
				continue
			}
			if op.n == len(op.docs) {
				c.answer(op, nil)
				continue
			}
			rest = append(rest, op) // after the error or the chunk: not tried
		}
		batch = rest
	}
	return unknown
}

// What became of an op whose document a write error stopped.
const (
	failAnswered = iota // answered (duplicate, refused, or all written)
	failAgain           // the document was ours: send the rest again
	failUnknown         // could not tell: retry later
)

// failed handles the write error we of op's next document (docs[op.n]).
func (c *committer) failed(ctx context.Context, op *appendOp, we *mongo.BulkWriteError) int {
	if !mongo.IsDuplicateKeyError(we.WriteError) {
		// Refused by the server for this document: not written.
		c.s.log.Error("group commit: write refused", "key", op.docs[op.n].ID, "code", we.Code, "err", we.Message)
		c.answer(op, fmt.Errorf("write refused (code %d): %w", we.Code, couponmesh.ErrUnavailable))
		return failAnswered
	}
	if !op.unknown {
		c.answer(op, couponmesh.ErrDuplicate)
		return failAnswered
	}
	// Maybe our own earlier attempt: read it back.
	ours, err := c.readBack(ctx, op, op.docs[op.n])
	switch {
	case err != nil:
		return failUnknown
	case !ours:
		c.answer(op, couponmesh.ErrDuplicate)
		return failAnswered
	}
	// Our attempts wrote a prefix of the op's documents: find its end by
	// bisection (docs[lo] is ours, docs[hi] is not known to be).
	lo, hi := op.n, len(op.docs)
	for lo+1 < hi {
		mid := (lo + hi) / 2
		if ours, err := c.readBack(ctx, op, op.docs[mid]); err == nil && ours {
			lo = mid
		} else {
			hi = mid
		}
	}
	op.n = lo + 1
	if op.n == len(op.docs) {
		c.answer(op, nil)
		return failAnswered
	}
	return failAgain
}

// errNotYetMajority: our document is on the primary but not yet
// majority-committed; the outcome stays unknown.
var errNotYetMajority = errors.New("written, not yet majority-committed")

// readBack reports whether the journal document with doc's _id is op's own
// (same token). No such document means the duplicate was the Unique key of
// another document: not ours. With write concern majority, only a
// majority-committed document counts as ours; one visible on the primary
// only leaves the outcome unknown (an error).
func (c *committer) readBack(ctx context.Context, op *appendOp, doc entryDoc) (bool, error) {
	c.readBacks.Add(1)
	// read reports whether a document with op's _id exists and is op's.
	read := func(coll *mongo.Collection) (found, ours bool, err error) {
		var d struct {
			Tok int64 `bson:"tk"`
		}
		err = coll.FindOne(ctx, bson.D{{Key: "_id", Value: doc.ID}}).Decode(&d)
		if errors.Is(err, mongo.ErrNoDocuments) {
			return false, false, nil
		}
		if err != nil {
			return false, false, err
		}
		return true, d.Tok == op.tok, nil
	}
	if maj := c.s.appendsMajority; maj != nil {
		found, ours, err := read(maj)
		if err != nil || found {
			return ours, err
		}
	}
	_, ours, err := read(c.s.appends)
	switch {
	case err != nil:
		return false, err
	case ours && c.s.appendsMajority != nil:
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

// suspect is called when an operation of client got no answer (network
// error or timeout). A timeout alone may be an overloaded database rather
// than a dead one, so a ping decides: if it fails too, the database is
// down, and it is pinged every ProbeInterval until it answers. The ping
// goes through the client that failed: its pool was cleared and its
// driver waits for the server to be seen again, where the other client
// may still hold connections the server closed (a ping on one fails at
// once): after a database kill -9 and restart, pinging the reads' client
// when an append failed declared the database down, and 421 claims were
// answered unavailable in the chaos suite against 0 before.
func (c *committer) suspect(client *mongo.Client) {
	if !c.checking.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer c.checking.Store(false)
		for {
			ctx, cancel := context.WithTimeout(c.probeCtx, c.s.cfg.OpTimeout)
			err := client.Ping(ctx, nil)
			cancel()
			if c.closed.Load() {
				return // the store is closing: nothing to report any more
			}
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
	op.done <- opResult{n: op.n, err: err}
}
