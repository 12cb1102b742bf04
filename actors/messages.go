package actors

import (
	"time"

	"github.com/couponmesh/couponmesh"
)

// Coupon grain methods and their payloads.
const (
	CouponGet         = "coupon.get"         // {} → Coupon
	CouponCreate      = "coupon.create"      // CreateCoupon → Coupon
	CouponUpdate      = "coupon.update"      // UpdateCoupon → Coupon
	CouponWithdraw    = "coupon.withdraw"    // WithdrawCoupon → Coupon
	CouponClaim       = "coupon.claim"       // ClaimCoupon → Claim
	CouponSubscribe   = "coupon.subscribe"   // HubRef → {}
	CouponUnsubscribe = "coupon.unsubscribe" // HubRef → {}
	CouponFollower    = "coupon.follower"    // FollowerChange → {}: the user's follow is in the database already
)

// User grain methods and their payloads.
const (
	UserClaim         = "user.claim"          // UserClaimCoupon → Claim: admits the write, claims the coupon, records the claim
	UserAdmit         = "user.admit"          // {} → {}: takes a write token (before a claim), or rate_limited
	UserRecordClaim   = "user.record_claim"   // RecordClaim → {}
	UserFollow        = "user.follow"         // CouponRef → {}
	UserUnfollow      = "user.unfollow"       // CouponRef → {}
	UserFollowing     = "user.following"      // {} → []string
	UserWallet        = "user.wallet"         // {} → []Claim
	UserFeed          = "user.feed"           // FeedQuery → []FeedEntry
	UserAttach        = "user.attach"         // HubRef → {}
	UserDetach        = "user.detach"         // HubRef → {}
	UserCouponChanged = "user.coupon_changed" // couponmesh.Coupon → {}
)

// Hub push methods: MessageTypeName is the method, a colon and the key
// (coupon id or user id); MessageData is the encoded push frame.
const (
	PushCoupon = "push.coupon"
	PushFeed   = "push.feed"
	// HubRenew (key: the grain's kind, a slash and its id; no data) tells a
	// hub that the grain it follows is passivating: the hub registers again
	// at once, which activates the grain anew and makes it push its current
	// state, instead of waiting for its next periodic renewal.
	HubRenew = "hub.renew"
)

// CreateCoupon asks a coupon grain to come into existence. RID makes a
// retried create idempotent.
type CreateCoupon struct {
	Principal couponmesh.Principal  `json:"principal"`
	Spec      couponmesh.CouponSpec `json:"spec"`
	RID       string                `json:"rid"`
}

// UpdateCoupon changes the fields Spec sets.
type UpdateCoupon struct {
	Principal couponmesh.Principal  `json:"principal"`
	Spec      couponmesh.CouponSpec `json:"spec"`
}

// WithdrawCoupon ends a coupon.
type WithdrawCoupon struct {
	Principal couponmesh.Principal `json:"principal"`
}

// ClaimCoupon claims one unit for User; RID is the idempotency key.
type ClaimCoupon struct {
	User string `json:"user"`
	RID  string `json:"rid"`
}

// HubRef names a node's hub (its protoactor address). Refresh marks a lease
// renewal: a grain that did not know the hub sends it the current state,
// since the hub may have missed changes while the grain moved.
//
// Presence rides on the same messages: Watching is the hub's count of
// distinct signed-in shoppers with a session subscribed to the coupon on
// its node (0 for user grains and when presence is off), and Seq orders a
// hub's refs to one grain (hubs stamp it from a clock that only grows): a
// ref older than the last one the grain applied from that hub leaves the
// lease and the count alone, so a late registration cannot resurrect a hub
// that unregistered after it. Seq 0 is unordered (always applied).
type HubRef struct {
	Address  string `json:"address"`
	Refresh  bool   `json:"refresh,omitempty"`
	Watching int    `json:"watching,omitempty"`
	Seq      uint64 `json:"seq,omitempty"`
}

// FollowerChange tells a coupon grain that User follows it (or no longer
// does) in the database.
type FollowerChange struct {
	User   string `json:"user"`
	Follow bool   `json:"follow"`
}

// CouponRef names a coupon.
type CouponRef struct {
	Coupon string `json:"coupon"`
}

// UserClaimCoupon asks a user grain to claim Coupon for its user: the
// grain admits the write (its write rate), calls the coupon grain
// (coupon.claim with RID) without holding its mailbox, and answers once the
// claim is in the wallet. Budget is the caller's time left: the coupon call
// gets most of it, so that its outcome still reaches the caller.
//
// user.admit and user.record_claim are the same in steps, the way nodes of
// builds before user.claim claim (during a rolling update).
type UserClaimCoupon struct {
	Coupon string        `json:"coupon"`
	RID    string        `json:"rid"`
	Budget time.Duration `json:"budget"`
}

// RecordClaim adds a durable claim to its user's wallet and feed.
type RecordClaim struct {
	Claim couponmesh.Claim `json:"claim"`
}

// FeedQuery reads a user's feed after a seq.
type FeedQuery struct {
	After int64 `json:"after"`
	Limit int   `json:"limit"`
}

// Empty is the payload of methods without arguments or results.
type Empty struct{}

// Methods every grain answers, handled by the shared Activation (the debug
// console and `couponmesh ctl actors`).
const (
	ActorInspect   = "actor.inspect"   // {} → Inspection; answered even when the state cannot be loaded
	ActorPassivate = "actor.passivate" // {} → {}; the grain stops after answering (it answers what it already holds first)
	ActorPing      = "actor.ping"      // {} → Pong; loads the state first, so it measures an activation too
)
