package actors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/couponmesh/couponmesh"
)

// Journal is one activation's view of an entity's journal: the seq it has
// applied, and the pipeline of entries decided but not yet durable. It is
// not safe for concurrent use: it belongs to the grain that owns the entity,
// and every method runs on the grain's goroutine (the writes themselves run
// off it, see Next).
//
// Pipelined commits. A request is a Proposal: Propose decides it at once
// against the state plus the pending entries (Decide, with the next seq)
// and queues its entry; Next hands out every pending entry not yet written
// (consecutive seqs, at most MaxBatch) for one ordered write
// (Store.AppendOrdered), and only one write is in flight at a time; Settle
// takes the write's outcome: each entry written is applied (Apply) and its
// proposal answered (Done) in seq order, so nothing is answered before its
// own entry is durable. Meanwhile new proposals keep being decided and
// queued behind the write, and go out in the next one: one round trip of the
// database per batch instead of per request.
//
// A write that fails (duplicate key: another activation wrote first;
// unknown outcome; database down) makes Settle read the journal after Seq
// (CatchUp, which also finds the entries of ours that did land) and decide
// again every proposal still pending, in order, on the new state. The
// unique _id <entity>#<seq> still decides between activations, and an
// ordered write stops at its first refused entry, so no entry is ever
// written after one that was not. When the journal cannot be read either,
// every pending proposal is answered unavailable and the journal is stale:
// the next Propose catches up first.
//
// A proposal that cannot be decided until the pending entries settle (e.g.
// a claim when pending claims hold the last units: it must not be refused
// sold_out while they could still fail) returns ErrWait and waits; while any
// proposal waits, later ones queue behind it (FIFO), and the waiting ones are
// decided again once nothing is pending.
type Journal struct {
	Store  couponmesh.Store
	Entity string
	Seq    int64 // last entry applied (durable)
	// Apply folds one entry into the grain's state. It is called for entries
	// this activation appends, once durable, and for entries read from the
	// database.
	Apply func(couponmesh.Entry) error
	// Pend and Unpend, if set, let the state see its pending entries: Pend
	// when an entry is decided, Unpend when it leaves the pipeline (just
	// before Apply once durable, or when a failed write drops it to decide
	// it again).
	Pend, Unpend func(couponmesh.Entry)
	// Observe, if set, gets the latency of every write.
	Observe func(time.Duration)
	// Superseded, if set, is called when a write lost to entries another
	// activation wrote: this activation should step aside (passivate).
	Superseded func()
	// MaxBatch bounds the entries of one write (0: DefaultMaxBatch).
	MaxBatch int

	pending    []*Proposal // decided, seqs Seq+1, Seq+2, …; the first inflight are being written
	inflight   int
	waiting    []*Proposal // to decide again once nothing is pending, in order
	stale      bool        // a write failed and the journal could not be read: catch up before deciding
	writeStart time.Time
}

// DefaultMaxBatch is the default Journal.MaxBatch: a multiple of the 100
// documents of one ordered BulkWrite of persistence/mongodb (FerretDB
// stops an ordered insert only within a chunk of 100), so that a full
// batch of a hot grain costs five round trips, not six of which the last
// carries 12 entries (512 did).
const DefaultMaxBatch = 500

// Proposal is one request on a Journal's pipeline.
type Proposal struct {
	// Decide builds the entry for seq on the state plus the pending
	// entries, or refuses with an error (answered as is), or returns
	// ErrWait. It is called again, with another seq, when a write failed
	// before the entry was durable. Entity, Seq and (when zero) At are
	// filled in by the journal.
	Decide func(seq int64) (couponmesh.Entry, error)
	// Done is called once, on the grain's goroutine: with the entry once
	// it is durable and applied, or with the error (Decide's, ErrFenced,
	// or one wrapping couponmesh.ErrUnavailable: the outcome is not known
	// to be a success, never report it as one).
	Done func(couponmesh.Entry, error)

	entry    couponmesh.Entry
	attempts int
}

// BatchResult is the outcome of a write of the entries Next returned: the
// message a grain sends itself when the write ends, for Settle.
type BatchResult struct {
	Written int   // entries known durable, a prefix
	Err     error // why the rest was not written (nil: all were)
}

// MaxCommitAttempts bounds how often a proposal is decided again after
// losing a write to another activation before answering unavailable.
const MaxCommitAttempts = 16

// ErrFenced is returned (to Done, or by Commit) when the entry's Unique key
// is taken while this activation is up to date: the decision was made
// elsewhere (e.g. the user's claim exists already).
var ErrFenced = errors.New("unique key taken")

// ErrWait, returned by Decide, asks to decide the proposal again once no
// entry is pending.
var ErrWait = errors.New("wait for the pending entries")

// ErrBusy is returned by CatchUp while entries are pending or in flight.
var ErrBusy = errors.New("journal: entries pending")

// Load restores state from the snapshot (if any, through restore) and the
// journal entries after it.
func (j *Journal) Load(ctx context.Context, restore func(couponmesh.Snapshot) error) error {
	snap, err := j.Store.Snapshot(ctx, j.Entity)
	switch {
	case err == nil:
		if err := restore(snap); err != nil {
			return fmt.Errorf("restore %s: %w", j.Entity, err)
		}
		j.Seq = snap.Seq
	case errors.Is(err, couponmesh.ErrNotFound):
	default:
		return fmt.Errorf("load snapshot %s: %w", j.Entity, err)
	}
	_, err = j.CatchUp(ctx)
	return err
}

// Idle reports whether nothing is pending, waiting or in flight.
func (j *Journal) Idle() bool {
	return len(j.pending) == 0 && len(j.waiting) == 0 && j.inflight == 0
}

// Pending returns the entries decided and not yet durable, in seq order.
func (j *Journal) Pending() []couponmesh.Entry {
	out := make([]couponmesh.Entry, len(j.pending))
	for i, p := range j.pending {
		out[i] = p.entry
	}
	return out
}

// CatchUp applies the entries appended after Seq (by another activation) and
// reports how many there were.
//
// It must be called only when the journal is Idle, and returns ErrBusy
// without reading otherwise: entries after Seq may then be this
// activation's own, still in flight, and would be applied twice. A busy
// journal needs no separate validation: a write that succeeds proves that
// nothing was written after Seq, and one that fails catches up by itself
// (Settle) before anything more is decided.
func (j *Journal) CatchUp(ctx context.Context) (int, error) {
	if len(j.pending) > 0 || j.inflight > 0 {
		return 0, ErrBusy
	}
	n := 0
	for {
		entries, err := j.Store.Entries(ctx, j.Entity, j.Seq, 1000)
		if err != nil {
			return n, fmt.Errorf("read journal %s: %w", j.Entity, err)
		}
		for _, e := range entries {
			if e.Seq != j.Seq+1 {
				return n, fmt.Errorf("journal %s: gap at seq %d (got %d)", j.Entity, j.Seq+1, e.Seq)
			}
			if err := j.Apply(e); err != nil {
				return n, fmt.Errorf("apply %s: %w", e.Key(), err)
			}
			j.Seq = e.Seq
			n++
		}
		if len(entries) < 1000 {
			j.stale = false
			return n, nil
		}
	}
}

// Validate applies the entries another activation appended after Seq, if
// any, and reports how many: one point read of the next key when there are
// none (what the cache does to validate a snapshot). Grains call it through
// State.Validate after cluster churn. Like CatchUp it returns ErrBusy,
// without reading, while the journal is not Idle.
func (j *Journal) Validate(ctx context.Context) (int, error) {
	if !j.Idle() {
		return 0, ErrBusy
	}
	next, err := j.Store.Entries(ctx, j.Entity, j.Seq, 1)
	if err != nil {
		return 0, fmt.Errorf("validate %s: %w", j.Entity, unavailable(err))
	}
	if len(next) == 0 {
		j.stale = false // nothing after Seq: the state is the journal's
		return 0, nil
	}
	n, err := j.CatchUp(ctx)
	if err != nil {
		return n, unavailable(err)
	}
	return n, nil
}

// Stale reports whether a write failed and the journal could not be read
// since: entries after Seq may be durable (an unknown outcome), and the
// state may lag behind them until Validate or the next proposal.
func (j *Journal) Stale() bool { return j.stale }

// Propose decides p now (or queues it behind waiting proposals). ctx
// bounds the catch-up a stale journal does first.
func (j *Journal) Propose(ctx context.Context, p *Proposal) {
	if len(j.waiting) > 0 {
		j.waiting = append(j.waiting, p)
		return
	}
	if j.stale {
		if _, err := j.CatchUp(ctx); err != nil {
			p.Done(couponmesh.Entry{}, unavailable(err))
			return
		}
	}
	j.decide(p)
}

// decide asks p for its entry and queues it; it reports false when p went
// waiting.
func (j *Journal) decide(p *Proposal) bool {
	seq := j.Seq + int64(len(j.pending)) + 1
	e, err := p.Decide(seq)
	switch {
	case errors.Is(err, ErrWait) && len(j.pending) == 0:
		p.Done(couponmesh.Entry{}, fmt.Errorf("journal %s: a proposal waits with nothing pending: %w", j.Entity, couponmesh.ErrUnavailable))
		return true
	case errors.Is(err, ErrWait):
		j.waiting = append(j.waiting, p)
		return false
	case err != nil:
		p.Done(couponmesh.Entry{}, err)
		return true
	}
	e.Entity, e.Seq = j.Entity, seq
	if e.At.IsZero() {
		e.At = time.Now().UTC()
	}
	p.entry = e
	j.pending = append(j.pending, p)
	if j.Pend != nil {
		j.Pend(e)
	}
	return true
}

// Next returns the pending entries to write now (consecutive seqs, at most
// MaxBatch) and marks them in flight, or nil when a write is in flight
// already or nothing is pending. The caller writes them off the grain's
// goroutine (WriteBatch) and hands the outcome to Settle.
func (j *Journal) Next() []couponmesh.Entry {
	if j.inflight > 0 || len(j.pending) == 0 {
		return nil
	}
	max := j.MaxBatch
	if max <= 0 {
		max = DefaultMaxBatch
	}
	n := min(len(j.pending), max)
	out := make([]couponmesh.Entry, n)
	for i, p := range j.pending[:n] {
		out[i] = p.entry
	}
	j.inflight = n
	j.writeStart = time.Now()
	return out
}

// WriteBatch writes entries in order to store: what a grain runs off its
// mailbox for the entries of Next. Safe for concurrent use.
func WriteBatch(ctx context.Context, store couponmesh.Store, entries []couponmesh.Entry) *BatchResult {
	n, err := store.AppendOrdered(ctx, entries)
	if err == nil && n < len(entries) {
		err = fmt.Errorf("%d of %d entries written: %w", n, len(entries), couponmesh.ErrUnavailable)
	}
	return &BatchResult{Written: n, Err: err}
}

// Settle takes the outcome of the write Next started: the entries written
// are applied and their proposals answered, in seq order; after a failure
// the journal catches up and decides the rest again (see Journal). ctx
// bounds the catch-up.
func (j *Journal) Settle(ctx context.Context, r *BatchResult) {
	if j.inflight == 0 {
		return // not ours (a result from before a reload)
	}
	if j.Observe != nil {
		j.Observe(time.Since(j.writeStart))
	}
	written := min(max(r.Written, 0), j.inflight)
	refused := written < j.inflight // the write stopped at an entry of its own
	err := r.Err
	if err == nil && written < j.inflight {
		err = fmt.Errorf("%d of %d entries written: %w", written, j.inflight, couponmesh.ErrUnavailable)
	}
	for range written {
		p := j.pending[0]
		j.pending[0] = nil // the slot stays in the backing array: let p (and its Done) go
		j.pending = j.pending[1:]
		j.inflight--
		if j.Unpend != nil {
			j.Unpend(p.entry)
		}
		if aerr := j.Apply(p.entry); aerr != nil {
			// Durable but not understood: a bug. Read it again later.
			j.stale = true
			p.Done(couponmesh.Entry{}, fmt.Errorf("apply %s: %w", p.entry.Key(), aerr))
			continue
		}
		j.Seq = p.entry.Seq
		p.Done(p.entry, nil)
	}
	if err == nil {
		j.inflight = 0
		j.decideWaiting()
		return
	}
	redo := j.pending
	j.pending, j.inflight = nil, 0
	if j.Unpend != nil {
		for i := len(redo) - 1; i >= 0; i-- {
			j.Unpend(redo[i].entry)
		}
	}
	dup := errors.Is(err, couponmesh.ErrDuplicate)
	caught, cerr := j.CatchUp(ctx)
	if cerr != nil {
		// Not known what is durable: answer unavailable (clients retry
		// with the same rid) and catch up before deciding again.
		j.stale = true
		fail := unavailable(fmt.Errorf("%w (after: %w)", cerr, err))
		waiting := j.waiting
		j.waiting = nil
		for _, p := range append(redo, waiting...) {
			p.Done(couponmesh.Entry{}, fail)
		}
		return
	}
	if dup && caught > 0 && j.Superseded != nil {
		j.Superseded()
	}
	if dup && caught == 0 && refused {
		// Up to date, yet refused: the entry's Unique key is taken.
		p := redo[0]
		redo = redo[1:]
		p.Done(couponmesh.Entry{}, ErrFenced)
	}
	if !dup {
		err = unavailable(err)
	}
	for i, p := range redo {
		if p.attempts++; p.attempts >= MaxCommitAttempts {
			p.Done(couponmesh.Entry{}, fmt.Errorf("journal %s: lost %d writes in a row: %w", j.Entity, p.attempts, unavailable(err)))
			continue
		}
		if len(j.waiting) > 0 {
			j.waiting = append(j.waiting, redo[i:]...)
			break
		}
		j.decide(p)
	}
	j.decideWaiting()
}

// decideWaiting decides the waiting proposals again, in order, once
// nothing is pending.
func (j *Journal) decideWaiting() {
	if len(j.pending) > 0 || len(j.waiting) == 0 {
		return
	}
	w := j.waiting
	j.waiting = nil
	for i, p := range w {
		if !j.decide(p) {
			j.waiting = append(j.waiting, w[i+1:]...)
			return
		}
	}
}

// Run writes what is pending and settles it inline until nothing is
// pending: the pipeline for callers without a mailbox (tests, tools). It
// blocks for the writes.
func (j *Journal) Run(ctx context.Context) {
	for {
		es := j.Next()
		if es == nil {
			return
		}
		j.Settle(ctx, WriteBatch(ctx, j.Store, es))
	}
}

// Commit decides one entry with build (see Proposal.Decide), writes it and
// applies it, inline: Propose and Run. The entry is durable when Commit
// returns nil; an error wrapping couponmesh.ErrUnavailable means the
// outcome is unknown and the caller must not report success. Only for a
// journal no grain pipelines on (it blocks until the write ends).
func (j *Journal) Commit(ctx context.Context, build func(seq int64) (couponmesh.Entry, error)) (couponmesh.Entry, error) {
	var (
		out  couponmesh.Entry
		err  error
		done bool
	)
	j.Propose(ctx, &Proposal{Decide: build, Done: func(e couponmesh.Entry, e2 error) { out, err, done = e, e2, true }})
	j.Run(ctx)
	if !done {
		return couponmesh.Entry{}, fmt.Errorf("journal %s: still pending: %w", j.Entity, couponmesh.ErrUnavailable)
	}
	return out, err
}

func unavailable(err error) error {
	if errors.Is(err, couponmesh.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", couponmesh.ErrUnavailable, err)
}
