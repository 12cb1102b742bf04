package cache

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/couponmesh/couponmesh"
)

// Snapshots are written behind: PutSnapshot keeps the snapshot in bigcache
// and marks it dirty; one writer puts the dirty snapshots into the database
// one at a time, the newest per entity only. A snapshot is a read
// optimisation (state = snapshot + the journal after it), so a grain need not
// wait for it, and an entity snapshotted again before the writer got to it is
// written once. This matters on FerretDB, where an upsert costs several
// times an insert and concurrent upserts slow every other operation: written
// inline, snapshots cut durable claims through a node by an order of
// magnitude (docs/BENCHMARKS.md). If the node dies first, the database holds
// an older snapshot and activation replays more of the journal: slower, never
// wrong.

// writer is the write-behind state of a Store.
type writer struct {
	mu    sync.Mutex
	dirty map[string]couponmesh.Snapshot
	wake  chan struct{} // buffered 1
	quit  chan struct{}
	done  chan struct{}
	// flushMu serialises flushes (the writer's and those of BrowseCoupons
	// and Close), so that an older snapshot never overtakes a newer one.
	flushMu sync.Mutex
}

func (s *Store) startWriter() {
	s.w = &writer{dirty: make(map[string]couponmesh.Snapshot), wake: make(chan struct{}, 1),
		quit: make(chan struct{}), done: make(chan struct{})}
	go s.writeLoop()
}

// PutSnapshot keeps snap in the cache at once and writes it to the database
// behind the caller (newest per entity). It blocks and writes inline only
// when MaxDirty snapshots are waiting already (backpressure); then it returns
// the database's error.
func (s *Store) PutSnapshot(ctx context.Context, snap couponmesh.Snapshot) error {
	s.keep(snap)
	if isCoupon(snap.Entity) {
		// Cached browse pages are older than this coupon now (the next
		// browse writes it first, then reads).
		s.gen.Add(1)
	}
	w := s.w
	w.mu.Lock()
	_, queued := w.dirty[snap.Entity]
	if queued || len(w.dirty) < s.cfg.MaxDirty {
		w.dirty[snap.Entity] = snap
		w.mu.Unlock()
		s.m.dirty.Set(float64(s.dirtyLen()))
		select {
		case w.wake <- struct{}{}:
		default:
		}
		return nil
	}
	w.mu.Unlock()
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	return s.write(ctx, snap)
}

func (s *Store) dirtyLen() int {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	return len(s.w.dirty)
}

// write puts one snapshot into the database; a coupon's invalidates the
// browse pages.
func (s *Store) write(ctx context.Context, snap couponmesh.Snapshot) error {
	err := s.Store.PutSnapshot(ctx, snap)
	if err == nil && isCoupon(snap.Entity) {
		// Browse pages are made of coupon snapshots: this is when they
		// change.
		s.gen.Add(1)
	}
	return err
}

func (s *Store) writeLoop() {
	w := s.w
	defer close(w.done)
	for {
		select {
		case <-w.quit:
			return
		case <-w.wake:
		}
		// Let snapshots of the same entities pile up (each is written
		// once per interval at most): on FerretDB every upsert competes
		// with the journal's BulkWrites.
		select {
		case <-w.quit:
			return
		case <-time.After(s.cfg.FlushInterval):
		}
		if err := s.flush(context.Background(), false); err != nil {
			// The database is down or slow: what failed is dirty again;
			// try later.
			select {
			case <-w.quit:
				return
			case <-time.After(s.cfg.FlushRetry):
			}
			select {
			case w.wake <- struct{}{}:
			default:
			}
		}
	}
}

// flush writes the dirty snapshots (only coupons' if couponsOnly), one at
// a time, each bounded by ctx and the inner store's own timeout. A snapshot
// that fails goes back to dirty unless a newer one arrived meanwhile.
func (s *Store) flush(ctx context.Context, couponsOnly bool) error {
	w := s.w
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	w.mu.Lock()
	var batch []couponmesh.Snapshot
	for ent, snap := range w.dirty {
		if couponsOnly && !isCoupon(ent) {
			continue
		}
		batch = append(batch, snap)
		delete(w.dirty, ent)
	}
	w.mu.Unlock()
	var errs []error
	for i, snap := range batch {
		if err := ctx.Err(); err != nil {
			s.requeue(batch[i:])
			errs = append(errs, err)
			break
		}
		if err := s.write(ctx, snap); err != nil {
			errs = append(errs, err)
			if errors.Is(err, couponmesh.ErrUnavailable) {
				// Not written (or not known to be): again later. The
				// database will fail the rest too.
				s.requeue(batch[i:])
				break
			}
			// Refused for good (cannot be encoded): dropped; the entity
			// replays more of its journal on activation.
			s.m.skipped.WithLabelValues("snapshot").Inc()
		}
	}
	s.m.dirty.Set(float64(s.dirtyLen()))
	return errors.Join(errs...)
}

func (s *Store) requeue(snaps []couponmesh.Snapshot) {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, snap := range snaps {
		if _, newer := w.dirty[snap.Entity]; !newer {
			w.dirty[snap.Entity] = snap
		}
	}
}

// Flush writes every dirty snapshot now, until ctx is done.
func (s *Store) Flush(ctx context.Context) error { return s.flush(ctx, false) }
