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
// node owns (nil: every shard) and keeps it active, every interval, until
// stop is closed: a shard whose node died is up again on its new owner
// within an interval of the cluster seeing the death. A tick is a local
// request.
func KeepShards(c *cluster.Cluster, cfg CallConfig, owns func(kind, id string) bool, interval time.Duration, log *slog.Logger, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
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
		}
	}
}
