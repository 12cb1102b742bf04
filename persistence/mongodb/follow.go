package mongodb

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// followDoc records that user u follows coupon c.
type followDoc struct {
	ID string `bson:"_id"`
	C  string `bson:"c"`
	U  string `bson:"u"`
}

func followID(coupon, user string) string { return coupon + "|" + user }

// AddFollower records that user follows coupon (idempotent).
func (s *Store) AddFollower(ctx context.Context, coupon, user string) error {
	if err := s.failFast("add follower"); err != nil {
		return err
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	id := followID(coupon, user)
	_, err := s.follows.ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}},
		followDoc{ID: id, C: coupon, U: user}, options.Replace().SetUpsert(true))
	// Two racing upserts of one _id may both try the insert: the loser's
	// duplicate key means the follow exists, which is what was asked.
	if err != nil && !mongo.IsDuplicateKeyError(err) {
		return s.unavailable("add follower "+id, err)
	}
	return nil
}

// RemoveFollower deletes the follow of coupon by user (idempotent).
func (s *Store) RemoveFollower(ctx context.Context, coupon, user string) error {
	if err := s.failFast("remove follower"); err != nil {
		return err
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	id := followID(coupon, user)
	if _, err := s.follows.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
		return s.unavailable("remove follower "+id, err)
	}
	return nil
}

// Followers returns the users who follow coupon, sorted.
func (s *Store) Followers(ctx context.Context, coupon string) ([]string, error) {
	if err := s.failFast("followers of " + coupon); err != nil {
		return nil, err
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	opts := options.Find().SetSort(bson.D{{Key: "u", Value: 1}}).SetProjection(bson.D{{Key: "u", Value: 1}})
	cur, err := s.follows.Find(ctx, bson.D{{Key: "c", Value: coupon}}, opts)
	if err != nil {
		return nil, s.unavailable("followers of "+coupon, err)
	}
	var docs []followDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, s.unavailable("followers of "+coupon, err)
	}
	users := make([]string, len(docs))
	for i, d := range docs {
		users[i] = d.U
	}
	return users, nil
}

// FollowersOf returns the users who follow each of coupons (sorted; a
// coupon nobody follows is absent), in one query: on the embedded database
// each query of the follows collection reads all of it (FerretDB's SQLite
// backend pushes down only filters on _id), so one read for many coupons
// costs what one for a single coupon does.
func (s *Store) FollowersOf(ctx context.Context, coupons []string) (map[string][]string, error) {
	out := map[string][]string{}
	if len(coupons) == 0 {
		return out, nil
	}
	if err := s.failFast("followers of many"); err != nil {
		return nil, err
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	opts := options.Find().SetSort(bson.D{{Key: "c", Value: 1}, {Key: "u", Value: 1}}).SetProjection(bson.D{{Key: "c", Value: 1}, {Key: "u", Value: 1}})
	cur, err := s.follows.Find(ctx, bson.D{{Key: "c", Value: bson.D{{Key: "$in", Value: coupons}}}}, opts)
	if err != nil {
		return nil, s.unavailable("followers of many", err)
	}
	var docs []followDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, s.unavailable("followers of many", err)
	}
	for _, d := range docs {
		out[d.C] = append(out[d.C], d.U)
	}
	return out, nil
}
