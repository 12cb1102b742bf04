package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/allegro/bigcache/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/couponmesh/couponmesh"
)

// Config sizes the cache. Zero fields take the DefaultConfig values.
type Config struct {
	// SizeMB bounds the memory of the snapshot cache and of the browse
	// cache, each (bigcache's HardMaxCacheSize); the oldest entries are
	// evicted beyond it.
	SizeMB int `yaml:"size_mb" env:"SIZE_MB"`
	// Shards of each bigcache (a power of two). An entry larger than
	// SizeMB/Shards cannot be cached.
	Shards int `yaml:"-" env:"-"`
	// SnapshotTTL is how long a snapshot stays cached.
	SnapshotTTL time.Duration `yaml:"snapshot_ttl" env:"SNAPSHOT_TTL"`
	// BrowseTTL bounds how stale a browse page may be (changes made through
	// other nodes show after it at the latest).
	BrowseTTL time.Duration `yaml:"browse_ttl" env:"BROWSE_TTL"`
	// StaleIfDown: while the database is unavailable, a browse page older
	// than BrowseTTL (or invalidated) but younger than this is served
	// rather than an error.
	StaleIfDown time.Duration `yaml:"browse_stale_if_down" env:"BROWSE_STALE_IF_DOWN"`
	// MaxDirty bounds the snapshots waiting to be written behind; beyond
	// it PutSnapshot writes inline.
	MaxDirty int `yaml:"-" env:"-"`
	// FlushInterval is the time between two rounds of writing dirty
	// snapshots: an entity is written once per interval at most.
	FlushInterval time.Duration `yaml:"snapshot_flush" env:"SNAPSHOT_FLUSH"`
	// FlushEntries: a round writes an entity once its snapshot moved this
	// many journal entries since it became dirty (what a reactivation
	// elsewhere replays at most, about, if this node dies)...
	FlushEntries int64 `yaml:"snapshot_flush_entries" env:"SNAPSHOT_FLUSH_ENTRIES"`
	// ... or once it has been dirty for FlushMaxAge (from half of it on,
	// spread by entity).
	FlushMaxAge time.Duration `yaml:"snapshot_flush_max_age" env:"SNAPSHOT_FLUSH_MAX_AGE"`
	// FlushRetry is the pause before writing snapshots again after the
	// database failed.
	FlushRetry time.Duration `yaml:"-" env:"-"`
	// Registerer receives the metrics (nil: not registered).
	Registerer prometheus.Registerer `yaml:"-" env:"-"`
}

// DefaultConfig returns the production defaults.
func DefaultConfig() Config {
	return Config{SizeMB: 256, Shards: 64, SnapshotTTL: 10 * time.Minute, BrowseTTL: 2 * time.Second,
		StaleIfDown: 5 * time.Minute, MaxDirty: 100000, FlushInterval: 2 * time.Second, FlushEntries: 16, FlushMaxAge: 30 * time.Second,
		FlushRetry: 500 * time.Millisecond}
}

// Validate reports settings New would misuse: a shard count that is not a
// power of two (bigcache's requirement). Zero fields are valid (defaults).
func (c Config) Validate() error {
	if c.Shards > 0 && c.Shards&(c.Shards-1) != 0 {
		return fmt.Errorf("shards %d: want a power of two", c.Shards)
	}
	return nil
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.SizeMB <= 0 {
		c.SizeMB = d.SizeMB
	}
	if c.Shards <= 0 {
		c.Shards = d.Shards
	}
	if c.SnapshotTTL <= 0 {
		c.SnapshotTTL = d.SnapshotTTL
	}
	if c.BrowseTTL <= 0 {
		c.BrowseTTL = d.BrowseTTL
	}
	if c.StaleIfDown <= 0 {
		c.StaleIfDown = d.StaleIfDown
	}
	if c.MaxDirty <= 0 {
		c.MaxDirty = d.MaxDirty
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = d.FlushInterval
	}
	if c.FlushEntries <= 0 {
		c.FlushEntries = d.FlushEntries
	}
	if c.FlushMaxAge <= 0 {
		c.FlushMaxAge = d.FlushMaxAge
	}
	if c.FlushRetry <= 0 {
		c.FlushRetry = d.FlushRetry
	}
	return c
}

// Store is a couponmesh.Store that caches snapshots and browse pages of the
// store it wraps. Journal writes (Append, AppendOrdered) and reads pass
// through to it unchanged: a cached snapshot is validated against the
// journal's tail when it is read, so writes need not touch the cache.
type Store struct {
	couponmesh.Store // the database; methods not overridden pass through

	cfg    Config
	snaps  *bigcache.BigCache
	browse *bigcache.BigCache
	m      *metrics
	// gen changes whenever a coupon snapshot is written through this node:
	// browse pages cached under an older generation are misses.
	gen atomic.Uint64
	w   *writer
}

var _ couponmesh.Store = (*Store)(nil)

// New returns a cache over inner. Close releases it (not inner).
func New(inner couponmesh.Store, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	m := newMetrics(cfg.Registerer)
	mk := func(name string, ttl time.Duration) (*bigcache.BigCache, error) {
		bc := bigcache.DefaultConfig(ttl)
		bc.Shards = cfg.Shards
		bc.HardMaxCacheSize = cfg.SizeMB
		bc.MaxEntriesInWindow = 64 * cfg.Shards
		bc.MaxEntrySize = 1024
		bc.CleanWindow = min(ttl, time.Minute)
		bc.Verbose = false
		bc.Logger = nil
		bc.OnRemoveWithReason = func(_ string, _ []byte, r bigcache.RemoveReason) {
			switch r {
			case bigcache.Expired:
				m.evictions.WithLabelValues(name, "expired").Inc()
			case bigcache.NoSpace:
				m.evictions.WithLabelValues(name, "no_space").Inc()
			}
		}
		return bigcache.New(context.Background(), bc)
	}
	snaps, err := mk("snapshot", cfg.SnapshotTTL)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	browse, err := mk("browse", max(2*cfg.BrowseTTL, cfg.StaleIfDown))
	if err != nil {
		_ = snaps.Close()
		return nil, fmt.Errorf("cache: %w", err)
	}
	s := &Store{Store: inner, cfg: cfg, snaps: snaps, browse: browse, m: m}
	m.registerCapacity(cfg.Registerer, map[string]*bigcache.BigCache{"snapshot": snaps, "browse": browse})
	s.startWriter()
	return s, nil
}

// Close writes the snapshots still dirty (until ctx is done), then releases
// the caches' memory and cleaners. The inner store must still be open.
func (s *Store) Close(ctx context.Context) error {
	close(s.w.quit)
	<-s.w.done
	err := s.Flush(ctx)
	return errors.Join(err, s.snaps.Close(), s.browse.Close())
}

// cachedSnapshot is a snapshot as kept in bigcache; W carries
// Coupon.Withdrawn, which the coupon's JSON omits.
type cachedSnapshot struct {
	Seq    int64              `json:"s"`
	Data   []byte             `json:"d,omitempty"`
	Coupon *couponmesh.Coupon `json:"c,omitempty"`
	W      bool               `json:"w,omitempty"`
}

func (s *Store) keep(snap couponmesh.Snapshot) {
	cs := cachedSnapshot{Seq: snap.Seq, Data: snap.Data, Coupon: snap.Coupon}
	if snap.Coupon != nil {
		cs.W = snap.Coupon.Withdrawn
	}
	b, err := json.Marshal(cs)
	if err == nil {
		err = s.snaps.Set(snap.Entity, b)
	}
	if err != nil {
		// Too large for a shard: not cached; reads go to the database.
		s.m.skipped.WithLabelValues("snapshot").Inc()
		_ = s.snaps.Delete(snap.Entity)
	}
}

// Snapshot returns the cached snapshot of entity when the journal has no
// entry after its seq, else the database's (which it then caches). The
// validation is one point read of the journal; when it fails the error is
// returned (unavailable): an unvalidated snapshot is never served.
func (s *Store) Snapshot(ctx context.Context, entity string) (couponmesh.Snapshot, error) {
	if b, err := s.snaps.Get(entity); err == nil {
		var cs cachedSnapshot
		if err := json.Unmarshal(b, &cs); err == nil {
			next, err := s.Store.Entries(ctx, entity, cs.Seq, 1)
			if err != nil {
				return couponmesh.Snapshot{}, fmt.Errorf("validate cached snapshot %s: %w", entity, err)
			}
			if len(next) == 0 {
				s.m.hits.WithLabelValues("snapshot").Inc()
				s.m.saved.WithLabelValues("snapshot").Inc()
				snap := couponmesh.Snapshot{Entity: entity, Seq: cs.Seq, Data: cs.Data, Coupon: cs.Coupon}
				if snap.Coupon != nil {
					snap.Coupon.Withdrawn = cs.W
				}
				return snap, nil
			}
		}
		// Older than the journal (or undecodable): never served.
		s.m.stale.Inc()
		_ = s.snaps.Delete(entity)
	}
	s.m.misses.WithLabelValues("snapshot").Inc()
	snap, err := s.Store.Snapshot(ctx, entity)
	if err != nil {
		return snap, err
	}
	s.keep(snap)
	return snap, nil
}

func isCoupon(entity string) bool { return strings.HasPrefix(entity, "coupon/") }

// cachedPage is a browse page as kept in bigcache.
type cachedPage struct {
	Gen     uint64         `json:"g"`
	At      time.Time      `json:"a"` // read from the database then
	Until   time.Time      `json:"u"` // valid before this instant
	Coupons []cachedCoupon `json:"c"`
	Next    string         `json:"n,omitempty"`
}

type cachedCoupon struct {
	couponmesh.Coupon
	W bool `json:"w,omitempty"`
}

func browseKey(q couponmesh.BrowseQuery) string {
	limit := q.Limit
	if limit <= 0 {
		limit = couponmesh.DefaultBrowseLimit
	}
	limit = min(limit, couponmesh.MaxBrowseLimit)
	return q.Merchant + "\x00" + string(q.Status) + "\x00" + strconv.Itoa(limit) + "\x00" + q.After
}

// BrowseCoupons answers from the cache when a page for q is younger than
// BrowseTTL, was cached after the last coupon snapshot written through this
// node, and
// no coupon on it has expired since; else it reads the database and caches
// the page.
func (s *Store) BrowseCoupons(ctx context.Context, q couponmesh.BrowseQuery) (couponmesh.BrowsePage, error) {
	key := browseKey(q)
	now := time.Now()
	gen := s.gen.Load()
	var old *cachedPage
	if b, err := s.browse.Get(key); err == nil {
		var cp cachedPage
		if json.Unmarshal(b, &cp) == nil {
			if cp.Gen == gen && now.Before(cp.Until) {
				s.m.hits.WithLabelValues("browse").Inc()
				s.m.saved.WithLabelValues("browse").Inc()
				return cp.page(q, now), nil
			}
			old = &cp
		}
	}
	s.m.misses.WithLabelValues("browse").Inc()
	// This node's coupon changes first, so that it reads its own writes.
	// If the database fails that, the read below fails too.
	_ = s.flush(ctx, coupons)
	gen = s.gen.Load()
	page, err := s.Store.BrowseCoupons(ctx, q)
	if err != nil {
		if old != nil && errors.Is(err, couponmesh.ErrUnavailable) && now.Sub(old.At) < s.cfg.StaleIfDown {
			// The database is down: an older page beats no page.
			s.m.staleServed.Inc()
			return old.page(q, now), nil
		}
		return page, err
	}
	// The page changes by itself when one of its coupons expires.
	until := now.Add(s.cfg.BrowseTTL)
	cp := cachedPage{Gen: gen, At: now, Next: page.Next, Coupons: make([]cachedCoupon, len(page.Coupons))}
	for i, c := range page.Coupons {
		cp.Coupons[i] = cachedCoupon{Coupon: c, W: c.Withdrawn}
		if !c.ExpiresAt.IsZero() && c.ExpiresAt.After(now) && c.ExpiresAt.Before(until) {
			until = c.ExpiresAt
		}
	}
	cp.Until = until
	if b, err := json.Marshal(cp); err == nil {
		if s.browse.Set(key, b) != nil {
			s.m.skipped.WithLabelValues("browse").Inc()
		}
	}
	return page, nil
}

// page returns the cached page refreshed at now. Coupons whose status at now
// no longer matches q's (an expiry passed: only on pages served stale) are
// left out.
func (cp *cachedPage) page(q couponmesh.BrowseQuery, now time.Time) couponmesh.BrowsePage {
	page := couponmesh.BrowsePage{Coupons: make([]couponmesh.Coupon, 0, len(cp.Coupons)), Next: cp.Next}
	for _, c := range cp.Coupons {
		cpn := c.Coupon
		cpn.Withdrawn = c.W
		cpn.Refresh(now)
		if q.Status != "" && cpn.Status != q.Status {
			continue
		}
		page.Coupons = append(page.Coupons, cpn)
	}
	return page
}

// Stats are the cache's counters since New.
type Stats struct {
	SnapshotHits, SnapshotMisses, BrowseHits, BrowseMisses, Stale int64
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	return Stats{
		SnapshotHits:   counterValue(s.m.hits.WithLabelValues("snapshot")),
		SnapshotMisses: counterValue(s.m.misses.WithLabelValues("snapshot")),
		BrowseHits:     counterValue(s.m.hits.WithLabelValues("browse")),
		BrowseMisses:   counterValue(s.m.misses.WithLabelValues("browse")),
		Stale:          counterValue(s.m.stale),
	}
}
