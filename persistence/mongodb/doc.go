// Package mongodb implements couponmesh.Store over MongoDB with the official
// driver (go.mongodb.org/mongo-driver/v2). The same code runs against a
// production replica set and against the embedded FerretDB of
// persistence/devdb.
//
// Collections: journal (one document per couponmesh.Entry, _id = entry key,
// unique index on uk = Entry.Unique or the key itself), snapshots (one
// document per entity; coupon snapshots carry top-level browse fields) and
// follows (one document per coupon and user). Concurrent activations of an
// actor are fenced by the journal's unique keys only: no conditional
// (read-modify-write) update is used anywhere, because FerretDB does not make
// them atomic across connections.
//
// It imports the standard library, the domain package and the driver; only
// cmd/ and tests import it (actors see couponmesh.Store).
//
// Appends go through a group commit (commit.go): a bounded queue, BulkWrites
// of up to BatchMaxOps ops (single appends unordered in one BulkWrite; runs
// of AppendOrdered ordered, at most 100 documents per BulkWrite because
// FerretDB 1.24 does not stop an ordered insert beyond its 100-document
// chunks), each caller answered with its own op's result; outcomes that are unknown are retried with the same _id and
// resolved by reading the document back (a per-write token), never reported
// as success. While the database is known to be unreachable (no answer, and
// a ping fails too), every operation fails fast as unavailable until a ping
// succeeds.
//
// Concurrency: a *Store may be used from any number of goroutines. Every
// operation runs under the caller's context and a per-operation timeout
// (Config.OpTimeout); an Append as a whole under WriteTimeout.
package mongodb
