package couponmesh

import "context"

// Service is what the transport layer may ask of the system. The actors
// package implements it over the cluster; every method may be called
// concurrently. Errors are *Error (use AsError on anything else).
type Service interface {
	// Coupon returns the current state of a coupon, or not_found.
	Coupon(ctx context.Context, id string) (Coupon, error)
	// CreateCoupon creates a coupon for merchant p (an admin may create one too).
	// An empty spec.ID gets a fresh id.
	CreateCoupon(ctx context.Context, p Principal, spec CouponSpec) (Coupon, error)
	// UpdateCoupon changes the fields spec sets; only the coupon's merchant or an admin.
	UpdateCoupon(ctx context.Context, p Principal, id string, spec CouponSpec) (Coupon, error)
	// WithdrawCoupon ends a coupon for good; only its merchant or an admin.
	WithdrawCoupon(ctx context.Context, p Principal, id string) (Coupon, error)
	// Browse lists coupons, newest first.
	Browse(ctx context.Context, q BrowseQuery) (BrowsePage, error)

	// Claim claims one unit of coupon for user. It answers only after the
	// claim is durable. The same (user, rid) always gets the first answer
	// that was a success; a user's second claim of a coupon with another rid
	// gets already_claimed. rid is 1 to MaxRIDLen bytes (else bad_request).
	Claim(ctx context.Context, user, coupon, rid string) (Claim, error)
	// Follow records that user follows coupon (idempotent) and returns the coupon.
	Follow(ctx context.Context, user, coupon string) (Coupon, error)
	// Unfollow removes coupon from what user follows (idempotent).
	Unfollow(ctx context.Context, user, coupon string) error
	// Following lists the coupons user follows.
	Following(ctx context.Context, user string) ([]string, error)
	// Wallet lists user's claims, oldest first.
	Wallet(ctx context.Context, user string) ([]Claim, error)
	// Feed returns up to limit entries of user's feed with seq > after, in order.
	Feed(ctx context.Context, user string, after int64, limit int) ([]FeedEntry, error)
}

// CouponReaderNow is implemented by a Service that can answer some coupon
// reads at once, without blocking (actors.Service: the coupons whose grains
// are active on this node). ok is false when it cannot; the caller then uses
// Coupon. The transport answers such gets inline instead of in a goroutine
// of their own, and puts the bytes in get and subscribe replies as they are.
type CouponReaderNow interface {
	// CouponJSONNow returns the coupon as encoding/json encodes it, its
	// derived fields computed now, and its version. The bytes are shared:
	// callers must not modify them.
	CouponJSONNow(id string) (json []byte, version int64, ok bool)
}

// Sink receives push frames for one session. Send must not block: it
// enqueues the frame or reports false when the session's bounded queue is
// full (the session is then dropped and resyncs on reconnect). The frame is
// shared between sinks and must not be modified.
type Sink interface {
	Send(frame []byte) bool
}

// Viewer is implemented by a Sink that belongs to a session: Viewer
// returns the signed-in user it serves, or "" for an anonymous session. A
// hub that counts presence counts distinct viewers per coupon; sinks that
// are not Viewers, and anonymous ones, are not counted.
type Viewer interface {
	Viewer() string
}

// Identifier is implemented by a Hub that counts presence: Identify tells
// it that sink s now serves user (an anonymous session signed in; its
// subscriptions are kept). Safe for concurrent use.
type Identifier interface {
	Identify(s Sink, user string)
}

// Hub is the node-local fan-out: actors send one push per node, the hub hands
// the same encoded frame to every local sink that wants it. Safe for
// concurrent use.
type Hub interface {
	// Attach delivers the feed pushes of user to s until Detach. Like
	// Subscribe, it returns once the user's actor knows this node, so that a
	// feed read afterwards misses no entry.
	Attach(ctx context.Context, user string, s Sink) error
	// Subscribe delivers the pushes of coupon to s until Unsubscribe or Detach.
	// It returns once the owning actor knows this node follows the coupon, so
	// that a snapshot read afterwards misses no change.
	Subscribe(ctx context.Context, s Sink, coupon string) error
	// Unsubscribe stops the pushes of coupon to s.
	Unsubscribe(s Sink, coupon string)
	// Detach removes every registration of s.
	Detach(s Sink)
}
