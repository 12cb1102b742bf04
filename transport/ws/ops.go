package ws

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/protocol"
)

// opFunc runs one authenticated request. It validates the fields it uses
// before any side effect and returns the ok payload or an error (any error;
// the caller maps it with couponmesh.AsError).
type opFunc func(ctx context.Context, s *session, p couponmesh.Principal, req *request) (any, error)

// ops lists the ops that need an authenticated session, but for those in
// anonymousOps, which an anonymous session may use too; auth and ping are
// answered inline by session.handle.
var ops = map[string]opFunc{
	protocol.OpSubscribe:   opSubscribe,
	protocol.OpUnsubscribe: opUnsubscribe,
	protocol.OpGet:         opGet,
	protocol.OpClaim:       opClaim,
	protocol.OpFollow:      opFollow,
	protocol.OpUnfollow:    opUnfollow,
	protocol.OpWallet:      opWallet,
	protocol.OpFeed:        opFeed,
}

// subscribeParallel bounds the hub and service calls one subscribe request
// runs at once.
const subscribeParallel = 8

func badRequest(format string, args ...any) error {
	return couponmesh.Errorf(couponmesh.CodeBadRequest, format, args...)
}

func checkCoupon(field, id string) error {
	if id == "" {
		return badRequest("%s is required", field)
	}
	if !couponmesh.ValidID(id) {
		return badRequest("%s must be 1-%d characters of letters, digits, '_', '-' or '.'", field, protocol.MaxIDLen)
	}
	return nil
}

// watchingOf reads the presence count of a coupon's JSON.
func watchingOf(coupon json.RawMessage) int {
	var w struct {
		Watching int `json:"watching"`
	}
	_ = json.Unmarshal(coupon, &w)
	return w.Watching
}

func opSubscribe(ctx context.Context, s *session, _ couponmesh.Principal, req *request) (any, error) {
	if len(req.Coupons) == 0 || string(req.Coupons) == "null" {
		return nil, badRequest("coupons is required: a list of {\"id\":…,\"version\":…}")
	}
	var list []protocol.Sub
	if err := json.Unmarshal(req.Coupons, &list); err != nil {
		return nil, badRequest("coupons must be a list of {\"id\":string,\"version\":integer}")
	}
	seen := make(map[string]bool, len(list))
	uniq := list[:0]
	for i, c := range list {
		if err := checkCoupon("coupons["+itoa(i)+"].id", c.ID); err != nil {
			return nil, err
		}
		if c.Version < 0 {
			return nil, badRequest("coupons[%d].version must be >= 0", i)
		}
		if !seen[c.ID] {
			seen[c.ID] = true
			uniq = append(uniq, c)
		}
	}
	list = uniq

	ids := make([]string, len(list))
	for i, c := range list {
		ids[i] = c.ID
	}
	added, err := s.reserve(ids...)
	if err != nil {
		return nil, err
	}

	type result struct {
		coupon  json.RawMessage
		version int64
		missing bool
		err     error
	}
	res := make([]result, len(list))
	forEach(len(list), subscribeParallel, func(i int) {
		id := list[i].ID
		// Subscribe first: the snapshot read afterwards then misses no change.
		if err := s.h.hub.Subscribe(ctx, s, id); err != nil {
			res[i].err = err
			return
		}
		c, v, err := couponJSON(ctx, s.h.svc, id)
		switch {
		case couponmesh.ErrorCode(err) == couponmesh.CodeNotFound:
			res[i].missing = true
		case err != nil:
			res[i].err = err
		default:
			res[i].coupon, res[i].version = c, v
		}
	})

	out := protocol.SubscribeReply[json.RawMessage]{Coupons: []json.RawMessage{}}
	var firstErr error
	var drop []string // newly reserved ids to give back
	for i, r := range res {
		id := list[i].ID
		switch {
		case r.err != nil:
			if firstErr == nil {
				firstErr = r.err
			}
		case r.missing:
			out.Missing = append(out.Missing, id)
			if added[id] {
				drop = append(drop, id)
			}
		case r.version > list[i].Version || list[i].Version == 0:
			out.Coupons = append(out.Coupons, r.coupon)
		default:
			if n := watchingOf(r.coupon); n > 0 {
				if out.Watching == nil {
					out.Watching = make(map[string]int)
				}
				out.Watching[id] = n
			}
		}
	}
	if firstErr != nil {
		// All or nothing for what this request added.
		drop = drop[:0]
		for id := range added {
			drop = append(drop, id)
		}
	}
	s.release(drop...)
	if firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// couponJSON returns id's coupon as encoding/json encodes it, and its
// version: from the service's memory when it has the coupon at hand
// (couponmesh.CouponReaderNow: no encoding while it does not change),
// else read and encoded.
func couponJSON(ctx context.Context, svc couponmesh.Service, id string) (json.RawMessage, int64, error) {
	if r, ok := svc.(couponmesh.CouponReaderNow); ok {
		if b, v, ok := r.CouponJSONNow(id); ok {
			return b, v, nil
		}
	}
	c, err := svc.Coupon(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	b, err := json.Marshal(c)
	return b, c.Version, err
}

func opUnsubscribe(_ context.Context, s *session, _ couponmesh.Principal, req *request) (any, error) {
	if len(req.Coupons) == 0 || string(req.Coupons) == "null" {
		return nil, badRequest("coupons is required: a list of coupon ids")
	}
	var ids []string
	if err := json.Unmarshal(req.Coupons, &ids); err != nil {
		return nil, badRequest("coupons must be a list of coupon ids (strings)")
	}
	for i, id := range ids {
		if err := checkCoupon("coupons["+itoa(i)+"]", id); err != nil {
			return nil, err
		}
	}
	s.release(ids...)
	return empty{}, nil
}

func opGet(ctx context.Context, s *session, _ couponmesh.Principal, req *request) (any, error) {
	if err := checkCoupon("coupon", req.Coupon); err != nil {
		return nil, err
	}
	c, err := s.h.svc.Coupon(ctx, req.Coupon)
	if err != nil {
		return nil, err
	}
	return protocol.CouponReply{Coupon: c}, nil
}

func opClaim(ctx context.Context, s *session, p couponmesh.Principal, req *request) (any, error) {
	if err := checkCoupon("coupon", req.Coupon); err != nil {
		return nil, err
	}
	if req.Rid == "" {
		return nil, badRequest("rid is required: an idempotency key of 1-%d characters", protocol.MaxRIDLen)
	}
	if len(req.Rid) > protocol.MaxRIDLen {
		return nil, badRequest("rid must be at most %d characters", protocol.MaxRIDLen)
	}
	c, err := s.h.svc.Claim(ctx, p.User, req.Coupon, req.Rid)
	if err != nil {
		return nil, err
	}
	return protocol.ClaimReply{Claim: c}, nil
}

// opFollow subscribes before it records the follow, so that the coupon it
// answers with (read by Follow) is not older than the pushes that follow.
func opFollow(ctx context.Context, s *session, p couponmesh.Principal, req *request) (any, error) {
	if err := checkCoupon("coupon", req.Coupon); err != nil {
		return nil, err
	}
	added, err := s.reserve(req.Coupon)
	if err != nil {
		return nil, err
	}
	undo := func() {
		if added[req.Coupon] {
			s.release(req.Coupon)
		}
	}
	if err := s.h.hub.Subscribe(ctx, s, req.Coupon); err != nil {
		undo()
		return nil, err
	}
	c, err := s.h.svc.Follow(ctx, p.User, req.Coupon)
	if err != nil {
		undo()
		return nil, err
	}
	return protocol.CouponReply{Coupon: c}, nil
}

func opUnfollow(ctx context.Context, s *session, p couponmesh.Principal, req *request) (any, error) {
	if err := checkCoupon("coupon", req.Coupon); err != nil {
		return nil, err
	}
	if err := s.h.svc.Unfollow(ctx, p.User, req.Coupon); err != nil {
		return nil, err
	}
	s.release(req.Coupon)
	return empty{}, nil
}

func opWallet(ctx context.Context, s *session, p couponmesh.Principal, _ *request) (any, error) {
	claims, err := s.h.svc.Wallet(ctx, p.User)
	if err != nil {
		return nil, err
	}
	if claims == nil {
		claims = []couponmesh.Claim{}
	}
	return protocol.WalletReply{Claims: claims}, nil
}

// opFeed attaches the session to the user's feed before it reads the
// entries after req.After, so that no entry falls between the page and the
// pushes (an entry may come twice: clients dedupe by seq).
func opFeed(ctx context.Context, s *session, p couponmesh.Principal, req *request) (any, error) {
	if req.After < 0 {
		return nil, badRequest("after must be >= 0")
	}
	limit := req.Limit
	switch {
	case limit == 0:
		limit = protocol.DefaultFeedLimit
	case limit < 0 || limit > protocol.MaxFeedLimit:
		return nil, badRequest("limit must be between 1 and %d", protocol.MaxFeedLimit)
	}
	if err := s.attach(ctx, p.User); err != nil {
		return nil, err
	}
	entries, err := s.h.svc.Feed(ctx, p.User, req.After, limit)
	if err != nil {
		return nil, err
	}
	if entries == nil {
		entries = []couponmesh.FeedEntry{}
	}
	return protocol.FeedReply{Entries: entries}, nil
}

// attach registers s for the feed pushes of user once per session.
func (s *session) attach(ctx context.Context, user string) error {
	s.attachMu.Lock()
	defer s.attachMu.Unlock()
	if s.attached {
		return nil
	}
	if err := s.h.hub.Attach(ctx, user, s); err != nil {
		return err
	}
	s.attached = true
	return nil
}

// reserve records ids as subscribed by s, refusing the whole call when the
// session would exceed MaxSubscriptions. It returns the ids it added (those
// not already subscribed).
func (s *session) reserve(ids ...string) (map[string]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subs == nil {
		s.subs = make(map[string]struct{}, len(ids))
	}
	added := make(map[string]bool)
	for _, id := range ids {
		if _, ok := s.subs[id]; !ok {
			added[id] = true
		}
	}
	limit := s.h.cfg.MaxSubscriptions
	if s.anonymous {
		limit = s.h.cfg.AnonymousSubscriptions
	}
	if len(s.subs)+len(added) > limit {
		return nil, badRequest("too many subscriptions: a session may hold at most %d", limit)
	}
	for id := range added {
		s.subs[id] = struct{}{}
	}
	return added, nil
}

// release unsubscribes s from ids at the hub and forgets them.
func (s *session) release(ids ...string) {
	if len(ids) == 0 {
		return
	}
	for _, id := range ids {
		s.h.hub.Unsubscribe(s, id)
	}
	s.mu.Lock()
	for _, id := range ids {
		delete(s.subs, id)
	}
	s.mu.Unlock()
	s.forgetPushes(ids)
}

// forEach calls fn(0..n-1), at most par at a time, and returns when all
// calls have.
func forEach(n, par int, fn func(i int)) {
	if n <= 1 || par <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(par, n) {
		wg.Go(func() {
			for i := range next {
				fn(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

func itoa(i int) string {
	return string(appendInt(nil, i))
}

func appendInt(b []byte, i int) []byte {
	if i >= 10 {
		b = appendInt(b, i/10)
	}
	return append(b, byte('0'+i%10))
}
