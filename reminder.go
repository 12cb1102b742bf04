package couponmesh

import (
	"hash/fnv"
	"strconv"
	"time"
)

// Reminder is a durable timer: at Due, the grain Target ("coupon/c42") is
// woken with Name ("expire"). Reminders are fired at least once, so the
// target must make a wake-up idempotent (its journal entry is the record);
// one that no longer applies (the expiry moved) does nothing. Each due time
// is a reminder of its own (Key): moving a timer sets a new reminder, and
// the old one fires as a no-op, so a timer is never lost to a change that
// failed half-way.
type Reminder struct {
	Target string    `json:"target"`
	Name   string    `json:"name"`
	Due    time.Time `json:"due"`
}

// ReminderTime is t as a reminder's due time: UTC, to the millisecond (the
// store keeps due times to the millisecond). Coupon times are kept the same
// way, so that a reminder read back from the store names exactly the time it
// was set for.
func ReminderTime(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

// ReminderShards is the fixed number of reminder shards: a reminder lives in
// shard Shard(), owned by the cluster's grain reminders/<shard>.
const ReminderShards = 16

// Key is the reminder's unique key: target, name and due time.
func (r Reminder) Key() string {
	return r.Target + "@" + r.Name + "@" + strconv.FormatInt(r.Due.UnixMilli(), 10)
}

// Shard is the shard that holds the reminder: by its target, so all of a
// grain's reminders share one.
func (r Reminder) Shard() int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(r.Target))
	return int(h.Sum32() % ReminderShards)
}
