package mongodb

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/couponmesh/couponmesh"
)

// entryDoc is a journal document. uk is Entry.Unique, or the entry's own key
// when Unique is empty: FerretDB does not honour sparse or partial indexes,
// so every document needs a distinct uk. at is a BSON date (milliseconds);
// ns keeps the nanoseconds within that millisecond so that At round-trips
// exactly. Appends go through the group commit (commit.go).
type entryDoc struct {
	ID   string        `bson:"_id"`
	E    string        `bson:"e"`
	Seq  int64         `bson:"seq"`
	T    string        `bson:"t"`
	UK   string        `bson:"uk"`
	U    string        `bson:"u,omitempty"`
	At   bson.DateTime `bson:"at"`
	NS   int32         `bson:"ns,omitempty"`
	Data bson.Binary   `bson:"d"`
	// Tok is a random token per Append: after a write with an unknown
	// outcome, it tells our own document from another writer's.
	Tok int64 `bson:"tk,omitempty"`
}

func toEntryDoc(e couponmesh.Entry) entryDoc {
	key := e.Key()
	uk := e.Unique
	if uk == "" {
		uk = key
	}
	at := bson.NewDateTimeFromTime(e.At)
	return entryDoc{
		ID:   key,
		E:    e.Entity,
		Seq:  e.Seq,
		T:    e.Type,
		UK:   uk,
		U:    e.User,
		At:   at,
		NS:   int32(e.At.Sub(at.Time())),
		Data: bson.Binary{Data: e.Data},
	}
}

func (d entryDoc) entry() couponmesh.Entry {
	e := couponmesh.Entry{
		Entity: d.E,
		Seq:    d.Seq,
		Type:   d.T,
		User:   d.U,
		At:     d.At.Time().Add(time.Duration(d.NS)).UTC(),
		Data:   d.Data.Data,
	}
	if d.UK != d.ID {
		e.Unique = d.UK
	}
	if len(e.Data) == 0 {
		e.Data = nil
	}
	return e
}

// Entries returns up to limit entries of entity with Seq > after, in seq
// order (limit <= 0: all).
func (s *Store) Entries(ctx context.Context, entity string, after int64, limit int) ([]couponmesh.Entry, error) {
	if err := s.failFast("entries of " + entity); err != nil {
		return nil, err
	}
	// Seqs are contiguous, so the entries after a seq are read by key, one
	// point read each, until the first missing one. FerretDB pushes down only
	// an exact _id filter (anything else scans the whole collection in Go),
	// and MongoDB answers point reads from the _id index. Catch-up reads,
	// the common case, are 0-2 entries. OpTimeout bounds each read, not
	// all of them: a feed page or a catch-up of hundreds of entries is as
	// many round trips, and only the caller's ctx bounds their sum.
	var out []couponmesh.Entry
	for seq := after + 1; limit <= 0 || len(out) < limit; seq++ {
		var d entryDoc
		rctx, cancel := s.op(ctx)
		err := s.journal.FindOne(rctx, bson.D{{Key: "_id", Value: couponmesh.EntryKey(entity, seq)}}).Decode(&d)
		cancel()
		if errors.Is(err, mongo.ErrNoDocuments) {
			break
		}
		if err != nil {
			return nil, s.unavailable("entries of "+entity, err)
		}
		out = append(out, d.entry())
	}
	return out, nil
}
