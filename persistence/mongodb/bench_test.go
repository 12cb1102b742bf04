package mongodb_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/internal/benchutil"
	"github.com/couponmesh/couponmesh/persistence/mongodb"
)

// BenchmarkGroupCommitVsRawBulk measures, against the same database in the
// same run: the raw insert rate of unordered BulkWrites of 256 journal-like
// documents from one writer (the best this database does), and durable
// appends through the group commit from 200 concurrent writers, each
// waiting for its own append (as grains do). Run with -benchtime 1x: one
// iteration is one measurement of each.
func BenchmarkGroupCommitVsRawBulk(b *testing.B) {
	for _, flushers := range []int{1, 2} {
		b.Run(fmt.Sprintf("flushers=%d", flushers), func(b *testing.B) { benchGroupCommit(b, flushers) })
	}
}

func benchGroupCommit(b *testing.B, flushers int) {
	const n, batch, writers = 20000, 256, 200
	s := openStore(b, func(c *mongodb.Config) { c.Flushers = flushers })
	client, err := mongo.Connect(options.Client().ApplyURI(testDB.URI()))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	raw := client.Database(s.Database()).Collection("journal")
	ctx := context.Background()
	data := []byte(`{"user":"shopper-0042","rid":"r-0123456789","code":"K7Q2-9XWD","n":17}`)
	round := 0
	for b.Loop() {
		round++
		// Raw: the same documents the store writes (uk unique index included).
		start := time.Now()
		for i := 0; i < n; i += batch {
			models := make([]mongo.WriteModel, 0, batch)
			for j := i; j < min(i+batch, n); j++ {
				id := fmt.Sprintf("raw%d/%d#1", round, j)
				models = append(models, mongo.NewInsertOneModel().SetDocument(bson.D{
					{Key: "_id", Value: id}, {Key: "e", Value: "coupon/raw"}, {Key: "seq", Value: int64(1)}, {Key: "t", Value: "claimed"},
					{Key: "uk", Value: id}, {Key: "at", Value: bson.NewDateTimeFromTime(time.Now())}, {Key: "d", Value: bson.Binary{Data: data}},
					{Key: "tk", Value: int64(j)},
				}))
			}
			if _, err := raw.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false)); err != nil {
				b.Fatal(err)
			}
		}
		rawRate := float64(n) / time.Since(start).Seconds()

		// Group commit: writers x sequential appends.
		before := s.CommitStats()
		seqs := make([]int64, writers) // the last seq of each writer's entity
		r := benchutil.MeasureN(b, writers, n, func(w int) error {
			seqs[w]++
			e := couponmesh.Entry{Entity: fmt.Sprintf("coupon/b%d-%d", round, w), Seq: seqs[w], Type: "claimed", At: time.Now(), Data: data}
			return s.Append(ctx, e)
		})
		rate := r.Rate
		st := s.CommitStats()
		calls := st.BulkWrites - before.BulkWrites
		b.ReportMetric(rawRate, "raw_inserts/s")
		b.ReportMetric(rate, "appends/s")
		b.ReportMetric(100*rate/rawRate, "%_of_raw")
		b.ReportMetric(float64(n)/float64(calls), "appends/BulkWrite")
		b.ReportMetric(float64(r.P99.Microseconds()), "append_p99_µs")
		fmt.Printf("group commit vs raw BulkWrite: raw %.0f inserts/s (batches of %d, 1 writer); group commit (%d flushers) %.0f durable appends/s (%d writers, %d BulkWrite calls, %.0f per call) = %.0f%% of raw; append p50 %v p99 %v\n",
			rawRate, batch, flushers, rate, writers, calls, float64(n)/float64(calls), 100*rate/rawRate, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond))
	}
}
