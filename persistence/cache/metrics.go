package cache

import (
	"github.com/allegro/bigcache/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

type metrics struct {
	hits, misses, saved, skipped *prometheus.CounterVec
	evictions                    *prometheus.CounterVec
	stale, staleServed           prometheus.Counter
	dirty                        prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "couponmesh_cache_hits_total", Help: "Reads answered from the node-local cache, by cache (snapshot, browse).",
		}, []string{"cache"}),
		misses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "couponmesh_cache_misses_total", Help: "Reads the cache passed to the database, by cache.",
		}, []string{"cache"}),
		saved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "couponmesh_cache_db_reads_saved_total", Help: "Database reads the cache saved, by cache (a snapshot hit still costs one journal point read to validate).",
		}, []string{"cache"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "couponmesh_cache_not_cached_total", Help: "Values too large for a cache shard, by cache.",
		}, []string{"cache"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "couponmesh_cache_evictions_total", Help: "Entries evicted, by cache and reason (expired, no_space).",
		}, []string{"cache", "reason"}),
		stale: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "couponmesh_cache_stale_snapshots_total", Help: "Cached snapshots dropped because the journal had entries after them.",
		}),
		staleServed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "couponmesh_cache_browse_stale_served_total", Help: "Browse pages served past their TTL because the database was unavailable.",
		}),
		dirty: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "couponmesh_cache_dirty_snapshots", Help: "Snapshots kept in the cache and not yet written to the database.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.hits, m.misses, m.saved, m.skipped, m.evictions, m.stale, m.staleServed, m.dirty)
	}
	return m
}

// registerCapacity exports the memory each bigcache holds (its queues'
// capacity, which grows by doubling up to SizeMB and never shrinks).
func (m *metrics) registerCapacity(reg prometheus.Registerer, caches map[string]*bigcache.BigCache) {
	if reg == nil {
		return
	}
	for name, bc := range caches {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "couponmesh_cache_bytes", Help: "Memory held by a cache's queues (bounded by cache.size_mb), by cache.",
			ConstLabels: prometheus.Labels{"cache": name},
		}, func() float64 { return float64(bc.Capacity()) }))
	}
}

func counterValue(c prometheus.Counter) int64 {
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		return 0
	}
	return int64(d.GetCounter().GetValue())
}
