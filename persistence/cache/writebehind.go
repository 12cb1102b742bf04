package cache

import (
	"context"
	"errors"
	"hash/fnv"
	"sync"
	"time"

	"github.com/couponmesh/couponmesh"
)

// Snapshots are written behind: PutSnapshot keeps the snapshot in bigcache
// and marks it dirty; one writer puts the dirty snapshots into the database
// one at a time, the newest per entity only. A snapshot is a read
// optimisation (state = snapshot + the journal after it), so a grain need not
// wait for it. The writer looks every FlushInterval and writes an entity once
// FlushEntries journal entries went by since it became dirty or it has been
// dirty for FlushMaxAge (half to all of it, spread by entity), and every
// dirty one while half of MaxDirty are waiting; browse writes the dirty
// coupons first and Close every dirty one. On FerretDB an upsert costs
// several times an insert and competes with the journal's BulkWrites:
// written inline, snapshots cut durable claims through a node by an order of
// magnitude, and written once per entity and interval they still took half
// of the database in `bench claims` and `bench coupons` (docs/BENCHMARKS.md).
// If the node dies first, the database holds an older snapshot and
// activation replays more of the journal (about FlushEntries point reads):
// slower, never wrong.

// writer is the write-behind state of a Store.
type writer struct {
	mu    sync.Mutex
	dirty map[string]dirtySnap
	wake  chan struct{} // buffered 1
	quit  chan struct{}
	done  chan struct{}
	// flushMu serialises flushes (the writer's and those of BrowseCoupons
	// and Close), so that an older snapshot never overtakes a newer one.
	flushMu sync.Mutex
}

// dirtySnap is the newest snapshot of an entity not yet in the database.
type dirtySnap struct {
	snap     couponmesh.Snapshot
	firstSeq int64     // the seq of the snapshot that made it dirty
	dueAt    time.Time // written by the round after this at the latest
}

// newDirty is d for snap, which makes its entity dirty at now. Entities
// made dirty together (a bulk create) come due spread over the second half
// of FlushMaxAge, not all in one round.
func (s *Store) newDirty(snap couponmesh.Snapshot, now time.Time) dirtySnap {
	h := fnv.New32a()
	h.Write([]byte(snap.Entity))
	half := s.cfg.FlushMaxAge / 2
	spread := time.Duration(float64(half) * float64(h.Sum32()) / (1 << 32))
	return dirtySnap{snap: snap, firstSeq: snap.Seq, dueAt: now.Add(half + spread)}
}

// due reports whether the writer's round writes d now.
func (s *Store) due(d dirtySnap, now time.Time) bool {
	return d.snap.Seq-d.firstSeq >= s.cfg.FlushEntries || !now.Before(d.dueAt)
}

func (s *Store) startWriter() {
	s.w = &writer{dirty: make(map[string]dirtySnap), wake: make(chan struct{}, 1),
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
	d, queued := w.dirty[snap.Entity]
	if queued || len(w.dirty) < s.cfg.MaxDirty {
		if !queued {
			d = s.newDirty(snap, time.Now())
		}
		d.snap = snap
		w.dirty[snap.Entity] = d
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
		// A round every FlushInterval while anything is dirty: snapshots of
		// the same entities pile up in between.
		for pause := s.cfg.FlushInterval; s.dirtyLen() > 0; {
			select {
			case <-w.quit:
				return
			case <-time.After(pause):
			}
			now := time.Now()
			pause = s.cfg.FlushInterval
			pick := func(d dirtySnap) bool { return s.due(d, now) }
			if s.dirtyLen() >= s.cfg.MaxDirty/2 {
				pick = all // before PutSnapshot has to write inline
			}
			if err := s.flush(context.Background(), pick); err != nil {
				// The database is down or slow: what failed is dirty
				// again; try sooner.
				pause = s.cfg.FlushRetry
			}
		}
	}
}

// flush writes the dirty snapshots that pick selects, one at a time, each
// bounded by ctx and the inner store's own timeout. A snapshot that fails
// goes back to dirty unless a newer one arrived meanwhile.
func (s *Store) flush(ctx context.Context, pick func(dirtySnap) bool) error {
	w := s.w
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	w.mu.Lock()
	var batch []dirtySnap
	for ent, d := range w.dirty {
		if !pick(d) {
			continue
		}
		batch = append(batch, d)
		delete(w.dirty, ent)
	}
	w.mu.Unlock()
	var errs []error
	for i, d := range batch {
		snap := d.snap
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

func (s *Store) requeue(ds []dirtySnap) {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, d := range ds {
		if newer, ok := w.dirty[d.snap.Entity]; ok {
			// Keep the newer snapshot, dirty since the older one.
			newer.firstSeq, newer.dueAt = d.firstSeq, d.dueAt
			w.dirty[d.snap.Entity] = newer
		} else {
			w.dirty[d.snap.Entity] = d
		}
	}
}

func all(dirtySnap) bool { return true }

func coupons(d dirtySnap) bool { return isCoupon(d.snap.Entity) }

// Flush writes every dirty snapshot now, until ctx is done.
func (s *Store) Flush(ctx context.Context) error { return s.flush(ctx, all) }
