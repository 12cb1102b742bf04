package actors

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/couponmesh/couponmesh"
	"github.com/prometheus/client_golang/prometheus"
)

// Reminder methods. RemindMethod is what a target grain receives when one
// of its reminders is due (payload couponmesh.Reminder, reply {} once the
// wake-up is durable or found to be done or moot; an error makes the shard
// try again). The others are the shard grain's.
const (
	RemindMethod  = "actor.remind"     // couponmesh.Reminder → {}
	ReminderSet   = "reminders.set"    // couponmesh.Reminder → {}: a new reminder is in the store
	ReminderTick  = "reminders.tick"   // {} → {}: keeps the shard active; reloads it now and then
	ReminderCheck = "reminders.status" // {} → ShardStatus
)

// ShardStatus is what a reminder shard holds: the debug console's view.
type ShardStatus struct {
	Shard   int                   `json:"shard"`
	Pending int                   `json:"pending"` // in memory (at most the shard's window)
	Next    []couponmesh.Reminder `json:"next"`    // the earliest few
	Firing  int                   `json:"firing"`  // wake-ups in flight
}

// ReminderMetrics are the reminder shards' metrics on a node (the shards
// it holds now).
type ReminderMetrics struct {
	// Pending is the number of reminders each shard on this node holds in
	// memory (at most its window of 1,000; more may wait in the store); a
	// shard that moved to another node is removed.
	Pending *prometheus.GaugeVec
	// Fired counts wake-ups answered by their targets; Retried those that
	// failed and will be tried again, by reason (unavailable: the target's
	// node or the database did not answer in time; error: anything else,
	// e.g. a target whose clock is behind the due time).
	Fired   prometheus.Counter
	Retried *prometheus.CounterVec
	// Lateness is the time from a reminder's due time to its target's
	// answer (the transition durable), for the wake-ups answered.
	Lateness prometheus.Histogram
}

func newReminderMetrics() *ReminderMetrics {
	return &ReminderMetrics{
		Pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "couponmesh_reminders_pending", Help: "Reminders held in memory by each reminder shard on this node (at most 1,000 per shard; more may wait in the store).",
		}, []string{"shard"}),
		Fired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "couponmesh_reminders_fired_total", Help: "Reminder wake-ups answered by their targets (the transition durable, or found done or moot), by the shards on this node.",
		}),
		Retried: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "couponmesh_reminders_retried_total", Help: "Reminder wake-ups that failed and are tried again after a backoff, by reason (unavailable or error).",
		}, []string{"reason"}),
		Lateness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "couponmesh_reminder_lateness_seconds", Help: "From a reminder's due time to its target's answer, for the wake-ups answered.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14), // 10 ms to 82 s
		}),
	}
}

func (m *ReminderMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Pending, m.Fired, m.Retried, m.Lateness}
}

// SetReminders makes reminders durable, then tells their shards (so that
// an earlier one is fired on time without waiting for the shard's next
// reload). A grain calls it before it commits the change that makes the
// reminders apply: a reminder whose change failed fires as a no-op, while a
// change without its reminder could never happen. It returns when the
// reminders are in the store; the notices go out in the background.
func SetReminders(ctx context.Context, c *cluster.Cluster, cfg *GrainConfig, rs ...couponmesh.Reminder) error {
	for _, r := range rs {
		if err := cfg.Store.PutReminder(ctx, r); err != nil {
			return fmt.Errorf("set reminder %s: %w", r.Key(), err)
		}
	}
	if c == nil {
		return nil
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, r := range rs {
			if err := Call(ctx, c, cfg.Call, KindReminders, ShardID(r.Shard()), ReminderSet, r, nil); err != nil {
				cfg.Log.Debug("reminder notice (the shard's next reload finds it)", "reminder", r.Key(), "err", err)
			}
		}
	}()
	return nil
}

// CancelReminders deletes reminders that no longer apply (optional: a
// reminder that fires for nothing is a no-op).
func CancelReminders(ctx context.Context, cfg *GrainConfig, rs ...couponmesh.Reminder) error {
	return cfg.Store.DeleteReminders(ctx, rs...)
}

// ShardID is the identity of reminder shard n.
func ShardID(n int) string { return strconv.Itoa(n) }

// KeepShards activates every reminder shard that owns(kind, id) says this
// node owns (nil: every shard) and keeps it active, every interval and at
// once (topologySettle later) when the cluster's members change, until stop
// is closed: a shard whose node died is up again on its new owner as soon
// as the cluster sees the death (it used to wait for the next interval:
// up to a second more). A tick is a local request.
func KeepShards(c *cluster.Cluster, cfg CallConfig, owns func(kind, id string) bool, interval time.Duration, log *slog.Logger, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		changed := topologyChanged(c)
		var wg sync.WaitGroup
		for n := range couponmesh.ReminderShards {
			id := ShardID(n)
			if owns != nil && !owns(KindReminders, id) {
				continue
			}
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), interval)
				defer cancel()
				if err := Call(ctx, c, cfg, KindReminders, id, ReminderTick, Empty{}, nil); err != nil {
					log.Debug("reminder shard tick", "shard", n, "err", err)
				}
			})
		}
		wg.Wait()
		select {
		case <-stop:
			return
		case <-t.C:
		case <-changed:
			// The placement takes the new members from the same event:
			// let it have them before owns is asked.
			select {
			case <-stop:
				return
			case <-time.After(topologySettle):
			}
		}
	}
}

// topologySettle is how long KeepShards waits after a membership change
// before it activates the shards this node owns now.
const topologySettle = 50 * time.Millisecond
