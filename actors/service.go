package actors

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/couponmesh/couponmesh"
)

// Service implements couponmesh.Service by calling grains through the
// cluster, wherever they live. Browse reads the coupon views from the store.
type Service struct {
	c     *cluster.Cluster
	store couponmesh.Store
	cfg   CallConfig
	log   *slog.Logger
	local *LocalCoupons // nil: every read goes to the grain
}

var _ couponmesh.Service = (*Service)(nil)

// NewService returns a Service over cluster c.
func NewService(c *cluster.Cluster, store couponmesh.Store, cfg CallConfig, log *slog.Logger) *Service {
	if cfg.Timeout <= 0 {
		cfg = DefaultCallConfig()
	}
	if log == nil {
		log = slog.Default()
	}
	return &Service{c: c, store: store, cfg: cfg, log: log}
}

func (s *Service) call(ctx context.Context, kind, id, method string, payload, out any) error {
	if !couponmesh.ValidID(id) {
		if kind == KindCoupon {
			return couponmesh.Errorf(couponmesh.CodeNotFound, "coupon %q not found", id)
		}
		return couponmesh.Errorf(couponmesh.CodeBadRequest, "invalid user id")
	}
	err := Call(ctx, s.c, s.cfg, kind, id, method, payload, out)
	if e := couponmesh.AsError(err); e != nil && e.Code == couponmesh.CodeInternal {
		s.log.Error("grain call failed", "kind", kind, "id", id, "method", method, "err", err)
	}
	return err
}

// UseLocal makes Coupon answer from l the coupons active on this node
// (GrainConfig.Local of the node's grains).
func (s *Service) UseLocal(l *LocalCoupons) { s.local = l }

// CouponJSONNow implements couponmesh.CouponReaderNow: the coupons whose
// grains are active on this node, from LocalCoupons.
func (s *Service) CouponJSONNow(id string) ([]byte, int64, bool) { return s.local.GetJSON(id) }

var _ couponmesh.CouponReaderNow = (*Service)(nil)

// Coupon implements couponmesh.Service. A coupon whose grain is active on
// this node is read from LocalCoupons; the others from their grain.
func (s *Service) Coupon(ctx context.Context, id string) (couponmesh.Coupon, error) {
	if c, ok := s.local.Get(id); ok {
		return c, nil
	}
	var c couponmesh.Coupon
	return c, s.call(ctx, KindCoupon, id, CouponGet, Empty{}, &c)
}

// CreateCoupon implements couponmesh.Service.
func (s *Service) CreateCoupon(ctx context.Context, p couponmesh.Principal, spec couponmesh.CouponSpec) (couponmesh.Coupon, error) {
	if !p.CanCreateCoupons() {
		return couponmesh.Coupon{}, couponmesh.Errorf(couponmesh.CodeForbidden, "only merchants create coupons")
	}
	if spec.ID == "" {
		spec.ID = "c" + randomID()
	} else if !couponmesh.ValidID(spec.ID) {
		return couponmesh.Coupon{}, spec.Validate(true, timeNow())
	}
	var c couponmesh.Coupon
	return c, s.call(ctx, KindCoupon, spec.ID, CouponCreate, CreateCoupon{Principal: p, Spec: spec, RID: randomID()}, &c)
}

// UpdateCoupon implements couponmesh.Service.
func (s *Service) UpdateCoupon(ctx context.Context, p couponmesh.Principal, id string, spec couponmesh.CouponSpec) (couponmesh.Coupon, error) {
	var c couponmesh.Coupon
	return c, s.call(ctx, KindCoupon, id, CouponUpdate, UpdateCoupon{Principal: p, Spec: spec}, &c)
}

// WithdrawCoupon implements couponmesh.Service.
func (s *Service) WithdrawCoupon(ctx context.Context, p couponmesh.Principal, id string) (couponmesh.Coupon, error) {
	var c couponmesh.Coupon
	return c, s.call(ctx, KindCoupon, id, CouponWithdraw, WithdrawCoupon{Principal: p}, &c)
}

// Browse implements couponmesh.Service.
func (s *Service) Browse(ctx context.Context, q couponmesh.BrowseQuery) (couponmesh.BrowsePage, error) {
	if q.Status != "" && !q.Status.Valid() {
		return couponmesh.BrowsePage{}, couponmesh.Errorf(couponmesh.CodeBadRequest, "unknown status %q", q.Status)
	}
	if q.Limit < 0 || q.Limit > couponmesh.MaxBrowseLimit {
		return couponmesh.BrowsePage{}, couponmesh.Errorf(couponmesh.CodeBadRequest, "limit must be between 1 and %d", couponmesh.MaxBrowseLimit)
	}
	page, err := s.store.BrowseCoupons(ctx, q)
	if err != nil {
		return page, fmt.Errorf("browse: %w", err)
	}
	return page, nil
}

// Claim implements couponmesh.Service with one call to the user grain
// (user.claim): it admits the write (the user's write rate, across sessions
// and nodes: rate_limited when over), has the coupon grain make the claim
// durable, and answers once the claim is in the wallet and feed. If that
// last step fails the answer is unavailable: the claim stands, and the
// client's retry with the same rid gets it again and records it.
//
// The user grain calls the coupon grain off its mailbox (the user grain
// must not queue behind a hot coupon), and the coupon grain never waits on
// user grains (a hot coupon serves thousands of users). One call instead of
// three (admit, claim, record) saves two cross-node messages of the four to
// six a claim costs in a cluster (docs/BENCHMARKS.md).
func (s *Service) Claim(ctx context.Context, user, coupon, rid string) (couponmesh.Claim, error) {
	if rid == "" || len(rid) > couponmesh.MaxRIDLen {
		return couponmesh.Claim{}, couponmesh.Errorf(couponmesh.CodeBadRequest, "rid must be 1-%d characters", couponmesh.MaxRIDLen)
	}
	if !couponmesh.ValidID(coupon) {
		return couponmesh.Claim{}, couponmesh.Errorf(couponmesh.CodeNotFound, "coupon %q not found", coupon)
	}
	budget := s.cfg.Timeout
	if dl, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(dl))
	}
	var cl couponmesh.Claim
	err := s.call(ctx, KindUser, user, UserClaim, UserClaimCoupon{Coupon: coupon, RID: rid, Budget: budget}, &cl)
	if IsUnknownMethod(err) {
		return s.claimInSteps(ctx, user, coupon, rid)
	}
	return cl, err
}

// claimInSteps is Claim for a user grain on a node of a build before
// user.claim (a rolling update): admit, claim, record, three calls.
func (s *Service) claimInSteps(ctx context.Context, user, coupon, rid string) (couponmesh.Claim, error) {
	if err := s.call(ctx, KindUser, user, UserAdmit, Empty{}, nil); err != nil {
		return couponmesh.Claim{}, err
	}
	var cl couponmesh.Claim
	if err := s.call(ctx, KindCoupon, coupon, CouponClaim, ClaimCoupon{User: user, RID: rid}, &cl); err != nil {
		return cl, err
	}
	if err := s.call(ctx, KindUser, user, UserRecordClaim, RecordClaim{Claim: cl}, nil); err != nil {
		return couponmesh.Claim{}, RecordClaimFailed(coupon, user, err)
	}
	return cl, nil
}

// RecordClaimFailed is the error of a durable claim that did not make it
// into the wallet (answered unavailable, or err's own code).
func RecordClaimFailed(coupon, user string, err error) error {
	return fmt.Errorf("record claim %s of %s: %w", coupon, user, err)
}

// Follow implements couponmesh.Service.
func (s *Service) Follow(ctx context.Context, user, coupon string) (couponmesh.Coupon, error) {
	c, err := s.Coupon(ctx, coupon)
	if err != nil {
		return c, err
	}
	if err := s.call(ctx, KindUser, user, UserFollow, CouponRef{Coupon: coupon}, nil); err != nil {
		return c, err
	}
	// The coupon grain keeps its followers; it learns of the follow before
	// the follow is acknowledged (a retry of a failed one tells it again).
	return c, s.call(ctx, KindCoupon, coupon, CouponFollower, FollowerChange{User: user, Follow: true}, nil)
}

// Unfollow implements couponmesh.Service.
func (s *Service) Unfollow(ctx context.Context, user, coupon string) error {
	if !couponmesh.ValidID(coupon) {
		return couponmesh.Errorf(couponmesh.CodeBadRequest, "invalid coupon id")
	}
	if err := s.call(ctx, KindUser, user, UserUnfollow, CouponRef{Coupon: coupon}, nil); err != nil {
		return err
	}
	// Best effort, off the reply's path: a coupon grain that still counts
	// the user sends notices the user grain ignores.
	go func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = s.call(ctx, KindCoupon, coupon, CouponFollower, FollowerChange{User: user}, nil)
	}()
	return nil
}

// Following implements couponmesh.Service.
func (s *Service) Following(ctx context.Context, user string) ([]string, error) {
	var out []string
	return out, s.call(ctx, KindUser, user, UserFollowing, Empty{}, &out)
}

// Wallet implements couponmesh.Service.
func (s *Service) Wallet(ctx context.Context, user string) ([]couponmesh.Claim, error) {
	out := []couponmesh.Claim{}
	return out, s.call(ctx, KindUser, user, UserWallet, Empty{}, &out)
}

// Feed implements couponmesh.Service.
func (s *Service) Feed(ctx context.Context, user string, after int64, limit int) ([]couponmesh.FeedEntry, error) {
	if after < 0 || limit < 0 || limit > couponmesh.MaxFeedLimit {
		return nil, couponmesh.Errorf(couponmesh.CodeBadRequest, "after must be >= 0 and limit between 0 and %d", couponmesh.MaxFeedLimit)
	}
	out := []couponmesh.FeedEntry{}
	return out, s.call(ctx, KindUser, user, UserFeed, FeedQuery{After: after, Limit: limit}, &out)
}

func randomID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}
