package couponmesh

import "time"

// Role is what a token lets its subject do.
type Role string

// The roles, a closed list.
const (
	RoleShopper  Role = "shopper"
	RoleMerchant Role = "merchant"
	RoleAdmin    Role = "admin"
)

// Valid reports whether r is one of the roles.
func (r Role) Valid() bool { return r == RoleShopper || r == RoleMerchant || r == RoleAdmin }

// Principal is who makes a request: the subject and role of a verified token.
type Principal struct {
	User string
	Role Role
}

// CanCreateCoupons reports whether p may create coupons.
func (p Principal) CanCreateCoupons() bool { return p.Role == RoleMerchant || p.Role == RoleAdmin }

// CanEdit reports whether p may update or withdraw coupon c.
func (p Principal) CanEdit(c Coupon) bool {
	return p.Role == RoleAdmin || p.Role == RoleMerchant && c.Merchant == p.User
}

// Claim is one successful claim: the N-th of its coupon, with the code the
// shopper shows at the till.
type Claim struct {
	Coupon string    `json:"coupon"`
	User   string    `json:"user"`
	N      int       `json:"n"`
	Code   string    `json:"code"`
	At     time.Time `json:"at"`
}

// Feed entry types.
const (
	FeedClaimed       = "claimed"
	FeedFollowed      = "followed"
	FeedUnfollowed    = "unfollowed"
	FeedCouponChanged = "coupon_changed"
)

// FeedEntry is one entry of a user's feed. Seq is the entry's position in the
// user's journal: 1, 2, 3, … with no gaps.
type FeedEntry struct {
	Seq    int64     `json:"seq"`
	Type   string    `json:"type"`
	Coupon string    `json:"coupon"`
	At     time.Time `json:"at"`
	Claim  *Claim    `json:"claim,omitempty"`
	// Change is set on coupon_changed: the coupon as it was after the change.
	Change *Coupon `json:"change,omitempty"`
}

// Feed page sizes.
const (
	DefaultFeedLimit = 100
	MaxFeedLimit     = 500
)
