package actors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/couponmesh/couponmesh"
)

// Journal is one activation's view of an entity's journal: the seq it has
// applied, and the fenced append loop. It is not safe for concurrent use: it
// belongs to the grain that owns the entity.
type Journal struct {
	Store  couponmesh.Store
	Entity string
	Seq    int64 // last entry applied
	// Apply folds one entry into the grain's state. It is called for entries
	// this activation appends and for entries read from the database.
	Apply func(couponmesh.Entry) error
	// Observe, if set, gets the latency of every append.
	Observe func(time.Duration)
	// Superseded, if set, is called when an append lost to entries another
	// activation wrote: this activation should step aside (passivate).
	Superseded func()
}

// MaxCommitAttempts bounds how often a commit reloads after losing an append
// to another activation before answering unavailable.
const MaxCommitAttempts = 16

// ErrFenced is returned by Commit when the entry's Unique key is taken while
// this activation is up to date: the decision was made elsewhere (e.g. the
// user's claim exists already).
var ErrFenced = errors.New("unique key taken")

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

// CatchUp applies the entries appended after Seq (by another activation) and
// reports how many there were.
func (j *Journal) CatchUp(ctx context.Context) (int, error) {
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
			return n, nil
		}
	}
}

// Validate applies the entries another activation appended after Seq, if
// any, and reports how many: one point read of the next key when there are
// none (what the cache does to validate a snapshot). Grains call it through
// State.Validate after cluster churn.
func (j *Journal) Validate(ctx context.Context) (int, error) {
	next, err := j.Store.Entries(ctx, j.Entity, j.Seq, 1)
	if err != nil {
		return 0, fmt.Errorf("validate %s: %w", j.Entity, unavailable(err))
	}
	if len(next) == 0 {
		return 0, nil
	}
	n, err := j.CatchUp(ctx)
	if err != nil {
		return n, unavailable(err)
	}
	return n, nil
}

// Commit appends the entry that build decides on at seq Seq+1 and applies it.
// build sees the current state and returns a domain error to refuse. When the
// append loses (duplicate key), Commit catches up with the journal and asks
// build again, so that the decision is always made on the newest state. If
// nothing new was found, the Unique key was the conflict: ErrFenced.
//
// The entry is durable when Commit returns nil. On a database error the
// outcome is unknown and the error wraps couponmesh.ErrUnavailable; the
// caller must not report success.
func (j *Journal) Commit(ctx context.Context, build func(seq int64) (couponmesh.Entry, error)) (couponmesh.Entry, error) {
	for range MaxCommitAttempts {
		e, err := build(j.Seq + 1)
		if err != nil {
			return couponmesh.Entry{}, err
		}
		e.Entity, e.Seq = j.Entity, j.Seq+1
		if e.At.IsZero() {
			e.At = time.Now().UTC()
		}
		start := time.Now()
		err = j.Store.Append(ctx, e)
		if j.Observe != nil {
			j.Observe(time.Since(start))
		}
		if err == nil {
			if err := j.Apply(e); err != nil {
				return e, fmt.Errorf("apply %s: %w", e.Key(), err)
			}
			j.Seq = e.Seq
			return e, nil
		}
		if !errors.Is(err, couponmesh.ErrDuplicate) {
			return couponmesh.Entry{}, fmt.Errorf("append %s: %w", e.Key(), unavailable(err))
		}
		n, cerr := j.CatchUp(ctx)
		if cerr != nil {
			return couponmesh.Entry{}, unavailable(cerr)
		}
		if n == 0 {
			return couponmesh.Entry{}, ErrFenced
		}
		if j.Superseded != nil {
			j.Superseded()
		}
	}
	return couponmesh.Entry{}, fmt.Errorf("journal %s: lost %d appends in a row: %w", j.Entity, MaxCommitAttempts, couponmesh.ErrUnavailable)
}

func unavailable(err error) error {
	if errors.Is(err, couponmesh.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", couponmesh.ErrUnavailable, err)
}
