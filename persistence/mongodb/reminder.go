package mongodb

import (
	"context"
	"fmt"
	"time"

	"github.com/couponmesh/couponmesh"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// reminderDoc is a couponmesh.Reminder in the reminders collection.
type reminderDoc struct {
	ID     string    `bson:"_id"` // Reminder.Key
	Shard  int       `bson:"shard"`
	Due    time.Time `bson:"due"`
	Target string    `bson:"target"`
	Name   string    `bson:"name"`
}

// PutReminder stores r durably (write concern of the connection). Putting
// the same reminder twice is a no-op.
func (s *Store) PutReminder(ctx context.Context, r couponmesh.Reminder) error {
	if err := s.failFast("put reminder"); err != nil {
		return err
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	id := r.Key()
	doc := reminderDoc{ID: id, Shard: r.Shard(), Due: r.Due.UTC(), Target: r.Target, Name: r.Name}
	_, err := s.reminders.ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}}, doc, options.Replace().SetUpsert(true))
	if err != nil && !mongo.IsDuplicateKeyError(err) { // a racing upsert of the same reminder
		return s.unavailable("put reminder "+id, err)
	}
	return nil
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
	models := make([]mongo.WriteModel, len(rs))
	for i, r := range rs {
		models[i] = mongo.NewDeleteOneModel().SetFilter(bson.D{{Key: "_id", Value: r.Key()}})
	}
	if _, err := s.reminders.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false)); err != nil {
		return s.unavailable(fmt.Sprintf("delete %d reminders", len(rs)), err)
	}
	return nil
}

// DueReminders returns up to limit reminders of shard, earliest first
// (index shard, due).
func (s *Store) DueReminders(ctx context.Context, shard, limit int) ([]couponmesh.Reminder, error) {
	if err := s.failFast("reminders"); err != nil {
		return nil, err
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	opts := options.Find().SetSort(bson.D{{Key: "shard", Value: 1}, {Key: "due", Value: 1}})
	if limit > 0 {
		opts.SetLimit(int64(limit))
	}
	cur, err := s.reminders.Find(ctx, bson.D{{Key: "shard", Value: shard}}, opts)
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
