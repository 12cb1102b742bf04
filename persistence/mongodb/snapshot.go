package mongodb

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/couponmesh/couponmesh"
)

// snapshotDoc is a snapshots document. Coupon snapshots also carry the
// fields browse queries select and sort on, and the coupon itself as JSON
// (exact, with every JSON field) plus Withdrawn, which JSON omits. created is
// CreatedAt to the millisecond (cursors carry the stored value); expires is
// ExpiresAt rounded up to the millisecond and absent when zero.
type snapshotDoc struct {
	ID   string      `bson:"_id"`
	Seq  int64       `bson:"seq"`
	Data bson.Binary `bson:"d"`

	CID       string         `bson:"cid,omitempty"`
	Merchant  string         `bson:"merchant,omitempty"`
	Status    string         `bson:"status,omitempty"`
	Created   *bson.DateTime `bson:"created,omitempty"`
	Expires   *bson.DateTime `bson:"expires,omitempty"`
	Withdrawn bool           `bson:"withdrawn,omitempty"`
	Coupon    string         `bson:"c,omitempty"`
}

func toSnapshotDoc(s couponmesh.Snapshot, now time.Time) (snapshotDoc, error) {
	d := snapshotDoc{ID: s.Entity, Seq: s.Seq, Data: bson.Binary{Data: s.Data}}
	if s.Coupon == nil {
		return d, nil
	}
	c := *s.Coupon
	js, err := json.Marshal(c)
	if err != nil {
		return d, fmt.Errorf("put snapshot %s: %w", s.Entity, err)
	}
	// The stored status is derived at write time; BrowseCoupons allows for
	// expiry passing later without a write.
	c.Refresh(now)
	created := bson.NewDateTimeFromTime(c.CreatedAt)
	d.CID, d.Merchant, d.Status = c.ID, c.Merchant, string(c.Status)
	d.Created = &created
	if !c.ExpiresAt.IsZero() {
		exp := ceilMillis(c.ExpiresAt)
		d.Expires = &exp
	}
	d.Withdrawn = c.Withdrawn
	d.Coupon = string(js)
	return d, nil
}

func (d snapshotDoc) coupon() (*couponmesh.Coupon, error) {
	if d.Coupon == "" {
		return nil, nil
	}
	var c couponmesh.Coupon
	if err := json.Unmarshal([]byte(d.Coupon), &c); err != nil {
		return nil, fmt.Errorf("snapshot %s: decode coupon: %w", d.ID, err)
	}
	c.Withdrawn = d.Withdrawn
	return &c, nil
}

func (d snapshotDoc) snapshot() (couponmesh.Snapshot, error) {
	c, err := d.coupon()
	if err != nil {
		return couponmesh.Snapshot{}, err
	}
	s := couponmesh.Snapshot{Entity: d.ID, Seq: d.Seq, Data: d.Data.Data, Coupon: c}
	if len(s.Data) == 0 {
		s.Data = nil
	}
	return s, nil
}

// Snapshot returns the snapshot of entity as last put (Coupon as given, not
// refreshed), or an error wrapping couponmesh.ErrNotFound.
func (s *Store) Snapshot(ctx context.Context, entity string) (couponmesh.Snapshot, error) {
	if err := s.failFast("snapshot " + entity); err != nil {
		return couponmesh.Snapshot{}, err
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	var d snapshotDoc
	if err := s.snapshots.FindOne(ctx, bson.D{{Key: "_id", Value: entity}}).Decode(&d); err != nil {
		return couponmesh.Snapshot{}, s.readErr("snapshot "+entity, err)
	}
	return d.snapshot()
}

// PutSnapshot replaces the snapshot of snap.Entity unconditionally (a plain
// upsert: a stale snapshot may win a race, which costs replay only).
func (s *Store) PutSnapshot(ctx context.Context, snap couponmesh.Snapshot) error {
	// A snapshot only saves replay: while the database is known to be
	// down, do not hold the actor up for OpTimeout.
	if err := s.failFast("put snapshot " + snap.Entity); err != nil {
		return err
	}
	d, err := toSnapshotDoc(snap, time.Now())
	if err != nil {
		return err
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	_, err = s.snapshots.ReplaceOne(ctx, bson.D{{Key: "_id", Value: snap.Entity}}, d, options.Replace().SetUpsert(true))
	if err != nil {
		return s.unavailable("put snapshot "+snap.Entity, err)
	}
	return nil
}

// BrowseCoupons lists coupon snapshots newest first (by CreatedAt, then by
// id descending), filtered by merchant and by the status at the time of the
// call. q.After resumes strictly after the page that returned it as Next; a
// malformed cursor is a bad_request *couponmesh.Error. Coupons come back
// refreshed at the time of the call.
func (s *Store) BrowseCoupons(ctx context.Context, q couponmesh.BrowseQuery) (couponmesh.BrowsePage, error) {
	if err := s.failFast("browse coupons"); err != nil {
		return couponmesh.BrowsePage{}, err
	}
	limit := q.Limit
	if limit <= 0 {
		limit = couponmesh.DefaultBrowseLimit
	}
	limit = min(limit, couponmesh.MaxBrowseLimit)
	// A whole millisecond, so that the filter on expires (rounded up to the
	// millisecond) and Refresh agree on what has expired.
	nowMs := bson.NewDateTimeFromTime(time.Now())
	now := nowMs.Time()

	and := bson.A{bson.D{{Key: "cid", Value: bson.D{{Key: "$exists", Value: true}}}}}
	if q.Merchant != "" {
		and = append(and, bson.D{{Key: "merchant", Value: q.Merchant}})
	}
	if q.Status != "" {
		and = append(and, statusFilter(q.Status, nowMs))
	}
	if q.After != "" {
		created, id, err := parseCursor(q.After)
		if err != nil {
			return couponmesh.BrowsePage{}, err
		}
		and = append(and, bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: "created", Value: bson.D{{Key: "$lt", Value: created}}}},
			bson.D{{Key: "created", Value: created}, {Key: "cid", Value: bson.D{{Key: "$lt", Value: id}}}},
		}}})
	}
	opts := options.Find().
		SetSort(bson.D{{Key: "created", Value: -1}, {Key: "cid", Value: -1}}).
		SetLimit(int64(limit + 1)).
		SetProjection(bson.D{{Key: "d", Value: 0}})

	ctx, cancel := s.op(ctx)
	defer cancel()
	cur, err := s.browse.Find(ctx, bson.D{{Key: "$and", Value: and}}, opts)
	if err != nil {
		return couponmesh.BrowsePage{}, s.unavailable("browse coupons", err)
	}
	var docs []snapshotDoc
	if err := cur.All(ctx, &docs); err != nil {
		return couponmesh.BrowsePage{}, s.unavailable("browse coupons", err)
	}

	page := couponmesh.BrowsePage{Coupons: make([]couponmesh.Coupon, 0, min(len(docs), limit))}
	for i, d := range docs {
		if i == limit {
			page.Next = formatCursor(*docs[limit-1].Created, docs[limit-1].CID)
			break
		}
		if d.Created == nil {
			return couponmesh.BrowsePage{}, fmt.Errorf("browse coupons: snapshot %s has no created", d.ID)
		}
		c, err := d.coupon()
		if err != nil {
			return couponmesh.BrowsePage{}, err
		}
		c.Refresh(now)
		page.Coupons = append(page.Coupons, *c)
	}
	return page, nil
}

// statusFilter selects coupons whose status at now is st. The stored status
// is the one at the last snapshot, and expiry passes without a write.
func statusFilter(st couponmesh.Status, now bson.DateTime) bson.D {
	switch st {
	case couponmesh.StatusActive:
		return bson.D{
			{Key: "status", Value: string(couponmesh.StatusActive)},
			{Key: "$or", Value: bson.A{
				bson.D{{Key: "expires", Value: bson.D{{Key: "$exists", Value: false}}}},
				bson.D{{Key: "expires", Value: bson.D{{Key: "$gt", Value: now}}}},
			}},
		}
	case couponmesh.StatusExpired:
		return bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: "status", Value: string(couponmesh.StatusExpired)}},
			bson.D{
				{Key: "status", Value: bson.D{{Key: "$in", Value: bson.A{string(couponmesh.StatusActive), string(couponmesh.StatusSoldOut)}}}},
				{Key: "expires", Value: bson.D{{Key: "$lte", Value: now}}},
			},
		}}}
	case couponmesh.StatusSoldOut:
		// Sold out until it expires.
		return bson.D{
			{Key: "status", Value: string(couponmesh.StatusSoldOut)},
			{Key: "$or", Value: bson.A{
				bson.D{{Key: "expires", Value: bson.D{{Key: "$exists", Value: false}}}},
				bson.D{{Key: "expires", Value: bson.D{{Key: "$gt", Value: now}}}},
			}},
		}
	default:
		return bson.D{{Key: "status", Value: string(st)}}
	}
}

// A cursor is the (created, cid) of the last coupon of a page: created in
// milliseconds as stored, so that it compares exactly with the documents.
func formatCursor(created bson.DateTime, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(int64(created), 10) + "|" + id))
}

func parseCursor(s string) (bson.DateTime, string, error) {
	bad := couponmesh.Errorf(couponmesh.CodeBadRequest, "invalid browse cursor")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return 0, "", bad
	}
	ms, id, ok := strings.Cut(string(b), "|")
	if !ok || id == "" {
		return 0, "", bad
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return 0, "", bad
	}
	return bson.DateTime(n), id, nil
}

// ceilMillis rounds t up to a BSON date: for a whole millisecond n,
// ceilMillis(t) <= n exactly when !t.After(n).
func ceilMillis(t time.Time) bson.DateTime {
	d := bson.NewDateTimeFromTime(t)
	if d.Time().Before(t) {
		d++
	}
	return d
}
