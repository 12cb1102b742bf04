// Package transporttest provides an in-memory couponmesh.Service and
// couponmesh.Hub for the tests of the transport packages and of the Go
// client SDK. They keep the domain rules that a transport test can observe
// (roles and ownership, claim limits, idempotent claims, feed sequence
// numbers, push fan-out) and nothing else: no persistence, no cluster. The
// real system is tested end to end elsewhere.
//
// Not for production use. Everything here is safe for concurrent use.
package transporttest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/protocol"
)

// Hub is an in-memory couponmesh.Hub. It calls Sink.Send while holding its
// own lock, as a real hub may: a sink that calls back into the hub from Send
// deadlocks here, which is what tests should catch. A sink whose Send
// reports false is removed.
type Hub struct {
	mu    sync.Mutex
	subs  map[string]map[couponmesh.Sink]struct{} // coupon → sinks
	feeds map[string]map[couponmesh.Sink]struct{} // user → sinks
	// SubscribeErr, when set, is returned by Subscribe and Attach.
	SubscribeErr error
}

var _ couponmesh.Hub = (*Hub)(nil)

// NewHub returns an empty hub.
func NewHub() *Hub {
	return &Hub{
		subs:  make(map[string]map[couponmesh.Sink]struct{}),
		feeds: make(map[string]map[couponmesh.Sink]struct{}),
	}
}

func add(m map[string]map[couponmesh.Sink]struct{}, k string, s couponmesh.Sink) {
	set := m[k]
	if set == nil {
		set = make(map[couponmesh.Sink]struct{})
		m[k] = set
	}
	set[s] = struct{}{}
}

func del(m map[string]map[couponmesh.Sink]struct{}, k string, s couponmesh.Sink) {
	if set := m[k]; set != nil {
		delete(set, s)
		if len(set) == 0 {
			delete(m, k)
		}
	}
}

// Attach implements couponmesh.Hub.
func (h *Hub) Attach(ctx context.Context, user string, s couponmesh.Sink) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.SubscribeErr != nil {
		return h.SubscribeErr
	}
	add(h.feeds, user, s)
	return nil
}

// Subscribe implements couponmesh.Hub.
func (h *Hub) Subscribe(ctx context.Context, s couponmesh.Sink, coupon string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.SubscribeErr != nil {
		return h.SubscribeErr
	}
	add(h.subs, coupon, s)
	return nil
}

// Unsubscribe implements couponmesh.Hub.
func (h *Hub) Unsubscribe(s couponmesh.Sink, coupon string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	del(h.subs, coupon, s)
}

// Detach implements couponmesh.Hub.
func (h *Hub) Detach(s couponmesh.Sink) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k := range h.subs {
		del(h.subs, k, s)
	}
	for k := range h.feeds {
		del(h.feeds, k, s)
	}
}

// PublishCoupon sends the push of c to every sink subscribed to c.ID and
// returns how many accepted it.
func (h *Hub) PublishCoupon(c couponmesh.Coupon) int {
	return h.publish(h.subs, c.ID, protocol.CouponPush(c))
}

// PublishFeed sends the push of e to every sink attached to user.
func (h *Hub) PublishFeed(user string, e couponmesh.FeedEntry) int {
	return h.publish(h.feeds, user, protocol.FeedPush(e))
}

func (h *Hub) publish(m map[string]map[couponmesh.Sink]struct{}, k string, frame []byte) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for s := range m[k] {
		if s.Send(frame) {
			n++
		} else {
			del(m, k, s)
		}
	}
	return n
}

// Subscribers returns how many sinks receive the pushes of coupon.
func (h *Hub) Subscribers(coupon string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs[coupon])
}

// Attached returns how many sinks receive the feed of user.
func (h *Hub) Attached(user string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.feeds[user])
}

// Registrations returns how many (coupon or feed, sink) pairs the hub holds.
func (h *Hub) Registrations() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, set := range h.subs {
		n += len(set)
	}
	for _, set := range h.feeds {
		n += len(set)
	}
	return n
}

// Service is an in-memory couponmesh.Service that publishes its changes to
// a Hub.
type Service struct {
	Hub *Hub
	Now func() time.Time
	// Hook, when set, runs at the start of every method, outside the
	// service's lock; an error it returns is the method's answer. Tests use
	// it to hold requests in flight.
	Hook func(ctx context.Context, method string) error

	mu      sync.Mutex
	coupons map[string]*couponmesh.Coupon
	order   []string                    // coupon ids, oldest first
	claims  map[string]couponmesh.Claim // user/coupon → claim
	rids    map[string]couponmesh.Claim // user/rid → claim
	follows map[string]map[string]bool  // user → coupons
	feeds   map[string][]couponmesh.FeedEntry
	errs    map[string]error
	nextID  int
}

var _ couponmesh.Service = (*Service)(nil)

// NewService returns an empty service publishing to hub (nil: no pushes).
func NewService(hub *Hub) *Service {
	return &Service{
		Hub:     hub,
		Now:     time.Now,
		coupons: make(map[string]*couponmesh.Coupon),
		claims:  make(map[string]couponmesh.Claim),
		rids:    make(map[string]couponmesh.Claim),
		follows: make(map[string]map[string]bool),
		feeds:   make(map[string][]couponmesh.FeedEntry),
		errs:    make(map[string]error),
	}
}

// FailWith makes every later call of the named method ("Coupon", "Claim", …)
// return err; nil clears it.
func (s *Service) FailWith(method string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		delete(s.errs, method)
	} else {
		s.errs[method] = err
	}
}

func (s *Service) fail(method string) error { return s.errs[method] }

func (s *Service) hook(ctx context.Context, method string) error {
	if s.Hook == nil {
		return nil
	}
	return s.Hook(ctx, method)
}

// Put stores c as is (Refresh applied, CreatedAt defaulted) and publishes it.
// For test setup.
func (s *Service) Put(c couponmesh.Coupon) couponmesh.Coupon {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = s.Now().UTC()
	}
	if c.Version == 0 {
		c.Version = 1
	}
	c.Refresh(s.Now())
	if _, ok := s.coupons[c.ID]; !ok {
		s.order = append(s.order, c.ID)
	}
	cc := c
	s.coupons[c.ID] = &cc
	s.publish(cc)
	return cc
}

// publish is called with s.mu held, so pushes of one coupon leave in
// version order.
func (s *Service) publish(c couponmesh.Coupon) {
	if s.Hub != nil {
		s.Hub.PublishCoupon(c)
	}
	for user, set := range s.follows {
		if set[c.ID] {
			s.appendFeed(user, couponmesh.FeedEntry{Type: couponmesh.FeedCouponChanged, Coupon: c.ID, Change: &c})
		}
	}
}

func (s *Service) appendFeed(user string, e couponmesh.FeedEntry) {
	e.Seq = int64(len(s.feeds[user]) + 1)
	e.At = s.Now().UTC()
	s.feeds[user] = append(s.feeds[user], e)
	if s.Hub != nil {
		s.Hub.PublishFeed(user, e)
	}
}

func notFound(id string) error {
	return couponmesh.Errorf(couponmesh.CodeNotFound, "coupon %s not found", id)
}

// Coupon implements couponmesh.Service.
func (s *Service) Coupon(ctx context.Context, id string) (couponmesh.Coupon, error) {
	if err := s.hook(ctx, "Coupon"); err != nil {
		return couponmesh.Coupon{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail("Coupon"); err != nil {
		return couponmesh.Coupon{}, err
	}
	c, ok := s.coupons[id]
	if !ok {
		return couponmesh.Coupon{}, notFound(id)
	}
	c.Refresh(s.Now())
	return *c, nil
}

// CreateCoupon implements couponmesh.Service.
func (s *Service) CreateCoupon(ctx context.Context, p couponmesh.Principal, spec couponmesh.CouponSpec) (couponmesh.Coupon, error) {
	if err := s.hook(ctx, "CreateCoupon"); err != nil {
		return couponmesh.Coupon{}, err
	}
	if !p.CanCreateCoupons() {
		return couponmesh.Coupon{}, couponmesh.Errorf(couponmesh.CodeForbidden, "only merchants and admins create coupons")
	}
	if err := spec.Validate(true, s.Now()); err != nil {
		return couponmesh.Coupon{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail("CreateCoupon"); err != nil {
		return couponmesh.Coupon{}, err
	}
	if spec.ID == "" {
		s.nextID++
		spec.ID = "c" + strconv.Itoa(s.nextID)
	}
	if _, ok := s.coupons[spec.ID]; ok {
		return couponmesh.Coupon{}, couponmesh.Errorf(couponmesh.CodeBadRequest, "coupon %s exists already", spec.ID)
	}
	c := couponmesh.Coupon{ID: spec.ID, Merchant: p.User, Version: 1, CreatedAt: s.Now().UTC()}
	if err := spec.Apply(&c); err != nil {
		return couponmesh.Coupon{}, err
	}
	c.Refresh(s.Now())
	s.coupons[c.ID] = &c
	s.order = append(s.order, c.ID)
	s.publish(c)
	return c, nil
}

func (s *Service) editable(p couponmesh.Principal, id string) (*couponmesh.Coupon, error) {
	c, ok := s.coupons[id]
	if !ok {
		return nil, notFound(id)
	}
	if !p.CanEdit(*c) {
		return nil, couponmesh.Errorf(couponmesh.CodeForbidden, "coupon %s belongs to another merchant", id)
	}
	return c, nil
}

// UpdateCoupon implements couponmesh.Service.
func (s *Service) UpdateCoupon(ctx context.Context, p couponmesh.Principal, id string, spec couponmesh.CouponSpec) (couponmesh.Coupon, error) {
	if err := s.hook(ctx, "UpdateCoupon"); err != nil {
		return couponmesh.Coupon{}, err
	}
	if err := spec.Validate(false, s.Now()); err != nil {
		return couponmesh.Coupon{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail("UpdateCoupon"); err != nil {
		return couponmesh.Coupon{}, err
	}
	c, err := s.editable(p, id)
	if err != nil {
		return couponmesh.Coupon{}, err
	}
	next := *c
	if err := spec.Apply(&next); err != nil {
		return couponmesh.Coupon{}, err
	}
	next.Version++
	next.Refresh(s.Now())
	*c = next
	s.publish(next)
	return next, nil
}

// WithdrawCoupon implements couponmesh.Service.
func (s *Service) WithdrawCoupon(ctx context.Context, p couponmesh.Principal, id string) (couponmesh.Coupon, error) {
	if err := s.hook(ctx, "WithdrawCoupon"); err != nil {
		return couponmesh.Coupon{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail("WithdrawCoupon"); err != nil {
		return couponmesh.Coupon{}, err
	}
	c, err := s.editable(p, id)
	if err != nil {
		return couponmesh.Coupon{}, err
	}
	if !c.Withdrawn {
		c.Withdrawn = true
		c.Version++
	}
	c.Refresh(s.Now())
	s.publish(*c)
	return *c, nil
}

// Browse implements couponmesh.Service. The cursor is an offset.
func (s *Service) Browse(ctx context.Context, q couponmesh.BrowseQuery) (couponmesh.BrowsePage, error) {
	if err := s.hook(ctx, "Browse"); err != nil {
		return couponmesh.BrowsePage{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail("Browse"); err != nil {
		return couponmesh.BrowsePage{}, err
	}
	limit := q.Limit
	if limit == 0 {
		limit = couponmesh.DefaultBrowseLimit
	}
	skip := 0
	if q.After != "" {
		n, err := strconv.Atoi(q.After)
		if err != nil || n < 0 {
			return couponmesh.BrowsePage{}, couponmesh.Errorf(couponmesh.CodeBadRequest, "after is not a cursor from a previous page")
		}
		skip = n
	}
	var match []couponmesh.Coupon
	for _, id := range slices.Backward(s.order) {
		c := *s.coupons[id]
		c.Refresh(s.Now())
		if q.Merchant != "" && c.Merchant != q.Merchant || q.Status != "" && c.Status != q.Status {
			continue
		}
		match = append(match, c)
	}
	page := couponmesh.BrowsePage{Coupons: []couponmesh.Coupon{}}
	if skip < len(match) {
		end := min(skip+limit, len(match))
		page.Coupons = append(page.Coupons, match[skip:end]...)
		if end < len(match) {
			page.Next = strconv.Itoa(end)
		}
	}
	return page, nil
}

// Claim implements couponmesh.Service.
func (s *Service) Claim(ctx context.Context, user, coupon, rid string) (couponmesh.Claim, error) {
	if err := s.hook(ctx, "Claim"); err != nil {
		return couponmesh.Claim{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail("Claim"); err != nil {
		return couponmesh.Claim{}, err
	}
	if cl, ok := s.rids[user+"/"+rid]; ok {
		return cl, nil
	}
	c, ok := s.coupons[coupon]
	if !ok {
		return couponmesh.Claim{}, notFound(coupon)
	}
	if _, ok := s.claims[user+"/"+coupon]; ok {
		return couponmesh.Claim{}, couponmesh.Errorf(couponmesh.CodeAlreadyClaimed, "%s has claimed coupon %s already", user, coupon)
	}
	if err := c.CheckClaim(s.Now()); err != nil {
		return couponmesh.Claim{}, err
	}
	c.Claimed++
	c.Version++
	c.Refresh(s.Now())
	cl := couponmesh.Claim{Coupon: coupon, User: user, N: c.Claimed, Code: fmt.Sprintf("%s-%04d", coupon, c.Claimed), At: s.Now().UTC()}
	s.claims[user+"/"+coupon] = cl
	s.rids[user+"/"+rid] = cl
	s.appendFeed(user, couponmesh.FeedEntry{Type: couponmesh.FeedClaimed, Coupon: coupon, Claim: &cl})
	s.publish(*c)
	return cl, nil
}

// Follow implements couponmesh.Service.
func (s *Service) Follow(ctx context.Context, user, coupon string) (couponmesh.Coupon, error) {
	if err := s.hook(ctx, "Follow"); err != nil {
		return couponmesh.Coupon{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail("Follow"); err != nil {
		return couponmesh.Coupon{}, err
	}
	c, ok := s.coupons[coupon]
	if !ok {
		return couponmesh.Coupon{}, notFound(coupon)
	}
	if s.follows[user] == nil {
		s.follows[user] = make(map[string]bool)
	}
	if !s.follows[user][coupon] {
		s.follows[user][coupon] = true
		s.appendFeed(user, couponmesh.FeedEntry{Type: couponmesh.FeedFollowed, Coupon: coupon})
	}
	c.Refresh(s.Now())
	return *c, nil
}

// Unfollow implements couponmesh.Service.
func (s *Service) Unfollow(ctx context.Context, user, coupon string) error {
	if err := s.hook(ctx, "Unfollow"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail("Unfollow"); err != nil {
		return err
	}
	if s.follows[user][coupon] {
		delete(s.follows[user], coupon)
		s.appendFeed(user, couponmesh.FeedEntry{Type: couponmesh.FeedUnfollowed, Coupon: coupon})
	}
	return nil
}

// Following implements couponmesh.Service.
func (s *Service) Following(ctx context.Context, user string) ([]string, error) {
	if err := s.hook(ctx, "Following"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id := range s.follows[user] {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// Wallet implements couponmesh.Service.
func (s *Service) Wallet(ctx context.Context, user string) ([]couponmesh.Claim, error) {
	if err := s.hook(ctx, "Wallet"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail("Wallet"); err != nil {
		return nil, err
	}
	var out []couponmesh.Claim
	for _, e := range s.feeds[user] {
		if e.Type == couponmesh.FeedClaimed && e.Claim != nil {
			out = append(out, *e.Claim)
		}
	}
	return out, nil
}

// Feed implements couponmesh.Service.
func (s *Service) Feed(ctx context.Context, user string, after int64, limit int) ([]couponmesh.FeedEntry, error) {
	if err := s.hook(ctx, "Feed"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail("Feed"); err != nil {
		return nil, err
	}
	f := s.feeds[user]
	if after >= int64(len(f)) {
		return nil, nil
	}
	f = f[after:]
	if len(f) > limit {
		f = f[:limit]
	}
	return slices.Clone(f), nil
}
