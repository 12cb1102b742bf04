package mongodb

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/couponmesh/couponmesh"
)

// batchSize is BatchMaxOps of configs/node.yaml: the largest group commit
// batch.
const batchSize = 256

// claimEntries returns n claim entries of n coupons, shaped as a coupon
// grain appends them (a unique (coupon, user) key, a small JSON payload).
func claimEntries(n int) []couponmesh.Entry {
	at := time.Now()
	es := make([]couponmesh.Entry, n)
	for i := range es {
		user := fmt.Sprintf("shopper-%05d", i)
		es[i] = couponmesh.Entry{
			Entity: fmt.Sprintf("coupon/c%04d", i), Seq: int64(17 + i), Type: "claimed",
			Unique: fmt.Sprintf("claim/c%04d/%s", i, user), User: user, At: at,
			Data: []byte(`{"user":"` + user + `","rid":"r-0123456789","code":"K7Q2-9XWD","n":17}`),
		}
	}
	return es
}

// newOps builds the ops that Append queues for es: the journal document, its
// write token and the op with its answer channel.
func newOps(ctx context.Context, es []couponmesh.Entry) []*appendOp {
	ops := make([]*appendOp, len(es))
	for i, e := range es {
		ops[i] = newOp(ctx, []couponmesh.Entry{e})
	}
	return ops
}

// BenchmarkBatchAssembly measures what the group commit builds for one
// batch of 256 claim appends, without the database, in three steps: the
// ops that Append queues (entryDoc, token, op), the flusher's write models
// (insertModels), and the BSON encoding of each document, which the driver
// does inside BulkWrite (bson.Marshal stands in for its encoder). ns/append
// and allocs/append divide the per-batch figures by 256.
func BenchmarkBatchAssembly(b *testing.B) {
	es := claimEntries(batchSize)
	ctx := context.Background()
	ops := newOps(ctx, es)
	perAppend := func(b *testing.B, iters int) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(iters*batchSize), "ns/append")
	}
	b.Run("ops", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			newOps(ctx, es)
			n++
		}
		perAppend(b, n)
	})
	b.Run("models", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			insertModels(ops, 0)
			n++
		}
		perAppend(b, n)
	})
	b.Run("bson", func(b *testing.B) {
		b.ReportAllocs()
		bytes, n := 0, 0
		for b.Loop() {
			bytes = 0
			for _, op := range ops {
				raw, err := bson.Marshal(op.docs[0])
				if err != nil {
					b.Fatal(err)
				}
				bytes += len(raw)
			}
			n++
		}
		perAppend(b, n)
		b.ReportMetric(float64(bytes)/batchSize, "bytes/doc")
	})
}
