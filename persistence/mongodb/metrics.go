package mongodb

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the store's group commit.
type Metrics struct {
	BulkWrites    prometheus.Counter
	BatchSize     prometheus.Histogram
	BulkSeconds   prometheus.Histogram
	QueueWait     prometheus.Histogram
	Retries       prometheus.Counter
	QueueTimeouts prometheus.Counter
	Abandoned     prometheus.Counter
	FastFails     prometheus.Counter
	Down          prometheus.Gauge
}

// NewMetrics registers the store metrics on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		BulkWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "couponmesh_store_bulk_writes_total", Help: "BulkWrite calls of the journal group commit, retries included.",
		}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "couponmesh_store_batch_size", Help: "Journal appends per BulkWrite.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		BulkSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "couponmesh_store_bulk_write_seconds", Help: "Latency of one BulkWrite of the group commit.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		QueueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "couponmesh_store_queue_wait_seconds", Help: "Time an append waited in the group commit queue.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		Retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "couponmesh_store_bulk_retries_total", Help: "BulkWrite attempts repeated after an unknown outcome.",
		}),
		QueueTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "couponmesh_store_queue_full_total", Help: "Appends answered unavailable because the bounded queue stayed full until their deadline.",
		}),
		Abandoned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "couponmesh_store_appends_abandoned_total", Help: "Appends whose caller gave up (unavailable) before their outcome was known.",
		}),
		FastFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "couponmesh_store_fast_fails_total", Help: "Writes answered unavailable at once because the database is known to be unreachable.",
		}),
		Down: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "couponmesh_store_down", Help: "1 while the last write attempt got no answer from the database.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.BulkWrites, m.BatchSize, m.BulkSeconds, m.QueueWait, m.Retries, m.QueueTimeouts, m.Abandoned, m.FastFails, m.Down)
	}
	return m
}
