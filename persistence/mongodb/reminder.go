package mongodb

import (
	"context"
	"fmt"
	"time"

	"github.com/couponmesh/couponmesh"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
)

// reminderDoc is a couponmesh.Reminder in its shard's collection
// (remindersColl, one per shard).
type reminderDoc struct {
	ID     string    `bson:"_id"` // Reminder.Key
	Due    time.Time `bson:"due"`
	Target string    `bson:"target"`
	Name   string    `bson:"name"`
}

// remindersColl is the name of reminder shard n's collection.
//
// One collection per shard, not one for all with a shard field: the
// embedded database (FerretDB's SQLite backend) pushes only a plain {_id}
// filter down to SQLite, so a shard's read decoded and sorted every
// reminder of every shard. When a node died, the shards that moved each
// loaded that way on their new owners: with 10,000 reminders, ~0.45 s of
// the database's CPU per shard, 7 shards, while the moved coupons' loads
// and expiries waited behind them (`bench timers`, three nodes, one
// killed: sort and decode of these scans were 39% of the devdb's CPU in
// the burst). On MongoDB each collection has its index on due.
func remindersColl(n int) string { return fmt.Sprintf("reminders_%02d", n) }

// legacyRemindersColl is the one collection of every shard that stores
// before the split used; Open moves what it holds (migrateReminders).
const legacyRemindersColl = "reminders"

// PutReminder stores r durably (write concern of the connection). Putting
// the same reminder twice is a no-op.
func (s *Store) PutReminder(ctx context.Context, r couponmesh.Reminder) error {
	if err := s.failFast("put reminder"); err != nil {
		return err
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	doc := toReminderDoc(r)
	_, err := s.reminders[r.Shard()].ReplaceOne(ctx, bson.D{{Key: "_id", Value: doc.ID}}, doc, options.Replace().SetUpsert(true))
	if err != nil && !mongo.IsDuplicateKeyError(err) { // a racing upsert of the same reminder
		return s.unavailable("put reminder "+doc.ID, err)
	}
	return nil
}

func toReminderDoc(r couponmesh.Reminder) reminderDoc {
	return reminderDoc{ID: r.Key(), Due: r.Due.UTC(), Target: r.Target, Name: r.Name}
}

// DeleteReminders removes rs in one round trip (one delete statement per
// reminder, by _id); removing one that is gone is a no-op.
//
// Not one DeleteMany with $in: the embedded database (FerretDB's SQLite
// backend) pushes only a plain {_id: string} filter down to SQLite, so a
// $in read and decoded the whole collection on every call. Under a burst of
// 3,000 expiries those scans were 69% of the database's CPU (a pprof of the
// devdb during `bench timers --coupons 3000`), and at 10,000 reminders they
// starved the journal's commits until the wake-ups timed out.
func (s *Store) DeleteReminders(ctx context.Context, rs ...couponmesh.Reminder) error {
	if len(rs) == 0 {
		return nil
	}
	if err := s.failFast("delete reminders"); err != nil {
		return err
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	var models [couponmesh.ReminderShards][]mongo.WriteModel
	for _, r := range rs {
		n := r.Shard()
		models[n] = append(models[n], mongo.NewDeleteOneModel().SetFilter(bson.D{{Key: "_id", Value: r.Key()}}))
	}
	for n, ms := range models {
		if len(ms) == 0 {
			continue
		}
		if err := s.bulk(ctx, s.reminders[n], ms); err != nil {
			return s.unavailable(fmt.Sprintf("delete %d reminders", len(rs)), err)
		}
	}
	return nil
}

// DueReminders returns up to limit reminders of shard, earliest first
// (index due of the shard's collection).
func (s *Store) DueReminders(ctx context.Context, shard, limit int) ([]couponmesh.Reminder, error) {
	if err := s.failFast("reminders"); err != nil {
		return nil, err
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	if shard < 0 || shard >= couponmesh.ReminderShards {
		return nil, fmt.Errorf("reminders: no shard %d", shard)
	}
	opts := options.Find().SetSort(bson.D{{Key: "due", Value: 1}})
	if limit > 0 {
		opts.SetLimit(int64(limit))
	}
	cur, err := s.reminders[shard].Find(ctx, bson.D{}, opts)
	if err != nil {
		return nil, s.unavailable("reminders", err)
	}
	var docs []reminderDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, s.unavailable("reminders", err)
	}
	out := make([]couponmesh.Reminder, len(docs))
	for i, d := range docs {
		out[i] = couponmesh.Reminder{Target: d.Target, Name: d.Name, Due: d.Due.UTC()}
	}
	return out, nil
}

// migrateReminders moves the reminders of the one collection stores used
// before the split into their shards' collections, a page at a time: one
// unordered bulk upsert per shard, then one bulk delete from the old
// collection, each bounded by OpTimeout (idempotent: a reminder is its
// _id; one moved and not deleted yet is moved again). With the old
// collection empty or absent it costs one read.
func (s *Store) migrateReminders(ctx context.Context, db *mongo.Database) error {
	legacy := db.Collection(legacyRemindersColl, options.Collection().SetReadPreference(readpref.Primary()))
	moved := 0
	for {
		docs, err := func() ([]reminderDoc, error) {
			ctx, cancel := s.op(ctx)
			defer cancel()
			cur, err := legacy.Find(ctx, bson.D{}, options.Find().SetLimit(500))
			if err != nil {
				return nil, err
			}
			var docs []reminderDoc
			return docs, cur.All(ctx, &docs)
		}()
		if err != nil {
			return unavailable("mongodb: read "+legacyRemindersColl, err)
		}
		if len(docs) == 0 {
			if moved > 0 {
				s.log.Info("reminders moved to their shards' collections", "reminders", moved)
			}
			return nil
		}
		var puts [couponmesh.ReminderShards][]mongo.WriteModel
		del := make([]mongo.WriteModel, 0, len(docs))
		for _, d := range docs {
			r := couponmesh.Reminder{Target: d.Target, Name: d.Name, Due: d.Due}
			doc := toReminderDoc(r)
			puts[r.Shard()] = append(puts[r.Shard()], mongo.NewReplaceOneModel().
				SetFilter(bson.D{{Key: "_id", Value: doc.ID}}).SetReplacement(doc).SetUpsert(true))
			del = append(del, mongo.NewDeleteOneModel().SetFilter(bson.D{{Key: "_id", Value: d.ID}}))
		}
		for n, ms := range puts {
			if len(ms) == 0 {
				continue
			}
			if err := s.bulk(ctx, s.reminders[n], ms); err != nil {
				return unavailable("mongodb: move reminders to "+remindersColl(n), err)
			}
		}
		if err := s.bulk(ctx, legacy, del); err != nil {
			return unavailable("mongodb: delete from "+legacyRemindersColl, err)
		}
		moved += len(docs)
	}
}

// bulk runs ms on c, unordered, within OpTimeout.
func (s *Store) bulk(ctx context.Context, c *mongo.Collection, ms []mongo.WriteModel) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	_, err := c.BulkWrite(ctx, ms, options.BulkWrite().SetOrdered(false))
	return err
}
