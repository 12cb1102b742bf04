// Package cache is a node-local cache layered over a couponmesh.Store (the
// MongoDB store in production), off the Go heap in allegro/bigcache:
//
//   - Snapshots of actors, kept when they are put (on passivation and
//     periodically while active) and read through. They are written to the
//     database behind the caller (writebehind.go): newest per entity, by one
//     writer, once FlushEntries journal entries went by or after FlushMaxAge
//     (checked every FlushInterval); browse writes the dirty coupons first,
//     Close writes what is left. A cached snapshot is
//     served only after a journal-tail read (Entries(entity, seq, 1), one
//     point read by _id) finds no entry after its seq: a snapshot older than
//     the journal, e.g. because another activation on another node wrote
//     behind this cache's back, is dropped and the database's is read
//     instead (DESIGN invariant 5). When the tail cannot be read, the cache
//     answers the database's error: it never serves unvalidated state.
//   - Browse pages (BrowseCoupons), read through with a TTL, never kept
//     past the earliest expiry among their coupons, and invalidated when a
//     coupon snapshot is written through this node. While the database is
//     unavailable, a page up to StaleIfDown old is served rather than an
//     error. Browse pages are made of
//     coupon snapshots, not journal entries: the database's answer changes
//     only when a snapshot is written (at once after a create, update or
//     withdrawal, within the snapshot delay after claims), so that is the
//     event that invalidates. Invalidating on every append would only
//     re-read the same snapshots, empty the cache under claim load, and stop
//     it from serving while the database is down.
//
// Everything else passes through. Hits, misses, evictions, stale drops and
// database reads saved are Prometheus metrics.
//
// It imports the standard library, the domain package, bigcache and
// client_golang; only cmd/ and tests import it.
//
// Concurrency: a *Store may be used from any number of goroutines, like the
// store it wraps.
package cache
