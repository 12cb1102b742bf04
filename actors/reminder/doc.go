// Package reminder hosts the reminder shards: the grains that fire durable
// timers (couponmesh.Reminder) on time, cluster-wide.
//
// Reminders live in the store, each in one of couponmesh.ReminderShards
// shards. Shard n is the grain reminders/n, placed by the cluster like any
// grain, so a dead node's shards move with its other identities;
// actors.KeepShards on every node activates the shards it owns and keeps
// them active. A shard keeps its earliest reminders (up to a window) in
// memory, sleeps until the first is due, and wakes each target grain with
// actors.RemindMethod, at most maxFiring at a time per lane (the member
// that owns the target; Shard.lane), off its mailbox; once a
// target answered, the reminder is deleted. A target that fails is tried
// again after a backoff; a reminder due while the database is down fires
// when it is back. Firing is at least once: targets make wake-ups
// idempotent with a journal entry.
//
// Messages: actors.ReminderSet (a new reminder, from actors.SetReminders),
// actors.ReminderTick (keep-alive; reloads from the store every
// reloadEvery, which also finds reminders whose notice was lost),
// actors.ReminderCheck (ShardStatus, for the console) and the shared
// Activation methods (actor.inspect shows the same view).
//
// It may import the domain package, actors and protoactor-go.
package reminder
