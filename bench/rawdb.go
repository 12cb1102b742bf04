package bench

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The raw database baseline: what the database takes when written
// directly, without a node, for the figures that compare the journal's
// appends with it (bench claims, BenchmarkDurableClaims). The documents
// have the journal's shape so that the database does the same work; they go
// to a database of their own, never the journal.

// RawCollection returns the baseline's collection in database "rawbench"
// of mc, with the journal's unique index on uk.
func RawCollection(ctx context.Context, mc *mongo.Client) (*mongo.Collection, error) {
	raw := mc.Database("rawbench").Collection("journal")
	if _, err := raw.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "uk", Value: 1}}, Options: options.Index().SetUnique(true)}); err != nil {
		return nil, fmt.Errorf("raw index: %w", err)
	}
	return raw, nil
}

// RawBulkRate inserts n journal-like documents (the shape and size of a
// claim entry) into coll in unordered BulkWrites of batch, one after the
// other, and returns the inserts per second. run keeps the documents of
// runs into one collection apart.
func RawBulkRate(ctx context.Context, coll *mongo.Collection, run string, n, batch int) (float64, error) {
	data := []byte(`{"user":"u1042","rid":"k123456","code":"K7Q2-9XWD","n":17}`)
	start := time.Now()
	for i := 0; i < n; i += batch {
		models := make([]mongo.WriteModel, 0, batch)
		for j := i; j < min(i+batch, n); j++ {
			id := "coupon/raw" + run + strconv.Itoa(j%500) + "#" + strconv.Itoa(j)
			models = append(models, mongo.NewInsertOneModel().SetDocument(bson.D{
				{Key: "_id", Value: id}, {Key: "e", Value: "coupon/raw"}, {Key: "seq", Value: int64(j + 1)}, {Key: "t", Value: "claimed"},
				{Key: "uk", Value: "claim/raw" + run + "/" + strconv.Itoa(j)}, {Key: "u", Value: "u1042"},
				{Key: "at", Value: bson.NewDateTimeFromTime(time.Now())}, {Key: "d", Value: bson.Binary{Data: data}},
			}))
		}
		if _, err := coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false)); err != nil {
			return 0, fmt.Errorf("raw BulkWrite: %w", err)
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
