package couponmesh

import (
	"strings"
	"time"
	"unicode/utf8"
)

// Status is the lifecycle state of a coupon as clients see it.
type Status string

// Coupon statuses. Withdrawn wins over expired, expired over scheduled,
// scheduled over sold out.
const (
	StatusScheduled Status = "scheduled" // before StartsAt: visible, not claimable
	StatusActive    Status = "active"
	StatusSoldOut   Status = "sold_out"
	StatusExpired   Status = "expired"
	StatusWithdrawn Status = "withdrawn"
)

// Valid reports whether s is one of the five statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusScheduled, StatusActive, StatusSoldOut, StatusExpired, StatusWithdrawn:
		return true
	}
	return false
}

// Coupon is the state of one coupon as the protocol and the HTTP API show it.
// Version is the seq of the last journal entry applied: it grows by one with
// every change, claims included.
type Coupon struct {
	ID          string    `json:"id"`
	Merchant    string    `json:"merchant"`
	Title       string    `json:"title"`
	Description string    `json:"description"`
	Discount    string    `json:"discount"`
	Quantity    int       `json:"quantity"`
	Claimed     int       `json:"claimed"`
	Remaining   int       `json:"remaining"`
	StartsAt    time.Time `json:"startsAt,omitzero"` // a scheduled drop: claimable from then
	ExpiresAt   time.Time `json:"expiresAt,omitzero"`
	Status      Status    `json:"status"`
	Version     int64     `json:"version"`
	CreatedAt   time.Time `json:"createdAt,omitzero"`
	UpdatedAt   time.Time `json:"updatedAt,omitzero"` // when the change of Version was journaled
	// Watching is the number of signed-in shoppers with a live session
	// subscribed to the coupon, over the whole cluster (presence). Reads of
	// one coupon (get, subscribe, GET /api/coupons/{id}) carry it; it is
	// omitted when 0 and in coupon pushes, browse pages and snapshots,
	// which do not count it. It is not part of the coupon's Version.
	Watching  int  `json:"watching,omitempty"`
	Withdrawn bool `json:"-"`
}

// Refresh recomputes the derived fields (Remaining, Status) at time now.
func (c *Coupon) Refresh(now time.Time) {
	c.Remaining = max(c.Quantity-c.Claimed, 0)
	switch {
	case c.Withdrawn:
		c.Status = StatusWithdrawn
	case !c.ExpiresAt.IsZero() && !now.Before(c.ExpiresAt):
		c.Status = StatusExpired
	case !c.StartsAt.IsZero() && now.Before(c.StartsAt):
		c.Status = StatusScheduled
	case c.Claimed >= c.Quantity:
		c.Status = StatusSoldOut
	default:
		c.Status = StatusActive
	}
}

// CheckClaim returns the domain error that forbids a new claim at time now,
// or nil when one more claim fits.
func (c *Coupon) CheckClaim(now time.Time) error {
	c.Refresh(now)
	switch c.Status {
	case StatusWithdrawn:
		return Errorf(CodeExpired, "coupon %s was withdrawn", c.ID)
	case StatusExpired:
		return Errorf(CodeExpired, "coupon %s expired at %s", c.ID, c.ExpiresAt.UTC().Format(time.RFC3339))
	case StatusScheduled:
		return Errorf(CodeNotStarted, "coupon %s can be claimed from %s", c.ID, c.StartsAt.UTC().Format(time.RFC3339))
	case StatusSoldOut:
		return Errorf(CodeSoldOut, "coupon %s is sold out (%d of %d claimed)", c.ID, c.Claimed, c.Quantity)
	}
	return nil
}

// Limits on coupon fields, checked by CouponSpec.Validate, and on ids
// (ValidID).
const (
	MaxIDLen          = 64
	MaxTitleLen       = 200
	MaxDescriptionLen = 4000
	MaxDiscountLen    = 64
	MaxQuantity       = 10_000_000
)

// MaxRIDLen is the longest idempotency key (rid) of a claim
// (Service.Claim): 1 to MaxRIDLen bytes.
const MaxRIDLen = 64

// CouponSpec is the merchant's input to create a coupon or, with only some
// fields set, to update one. Nil fields are left unchanged by an update.
type CouponSpec struct {
	ID          string     `json:"id,omitempty"`
	Title       *string    `json:"title,omitempty"`
	Description *string    `json:"description,omitempty"`
	Discount    *string    `json:"discount,omitempty"`
	Quantity    *int       `json:"quantity,omitempty"`
	StartsAt    *time.Time `json:"startsAt,omitempty"`
	ExpiresAt   *time.Time `json:"expiresAt,omitempty"`
}

// ValidID reports whether id may name a coupon or a user: 1 to MaxIDLen
// characters from [A-Za-z0-9_.-].
func ValidID(id string) bool {
	if id == "" || len(id) > MaxIDLen {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// Validate checks the spec for a create (every field but Description
// required) or an update (what is set must be valid). Errors are bad_request.
func (s CouponSpec) Validate(create bool, now time.Time) error {
	if s.ID != "" && !ValidID(s.ID) {
		return Errorf(CodeBadRequest, "id must be 1-%d characters of letters, digits, '_', '-' or '.'", MaxIDLen)
	}
	if create {
		switch {
		case s.Title == nil:
			return Errorf(CodeBadRequest, "title is required")
		case s.Quantity == nil:
			return Errorf(CodeBadRequest, "quantity is required")
		}
	}
	if s.Title != nil && (strings.TrimSpace(*s.Title) == "" || utf8.RuneCountInString(*s.Title) > MaxTitleLen) {
		return Errorf(CodeBadRequest, "title must be 1-%d characters", MaxTitleLen)
	}
	if s.Description != nil && utf8.RuneCountInString(*s.Description) > MaxDescriptionLen {
		return Errorf(CodeBadRequest, "description must be at most %d characters", MaxDescriptionLen)
	}
	if s.Discount != nil && utf8.RuneCountInString(*s.Discount) > MaxDiscountLen {
		return Errorf(CodeBadRequest, "discount must be at most %d characters", MaxDiscountLen)
	}
	if s.Quantity != nil && (*s.Quantity < 1 || *s.Quantity > MaxQuantity) {
		return Errorf(CodeBadRequest, "quantity must be between 1 and %d", MaxQuantity)
	}
	if create && s.ExpiresAt != nil && !s.ExpiresAt.After(now) {
		return Errorf(CodeBadRequest, "expiresAt must be in the future")
	}
	if s.StartsAt != nil && s.ExpiresAt != nil && !s.ExpiresAt.After(*s.StartsAt) {
		return Errorf(CodeBadRequest, "expiresAt must be after startsAt")
	}
	return nil
}

// Apply sets the fields of c that s sets, the times to the millisecond
// (ReminderTime). It does not check them: call Validate first. Lowering the quantity below the claims made is refused.
func (s CouponSpec) Apply(c *Coupon) error {
	if s.Quantity != nil && *s.Quantity < c.Claimed {
		return Errorf(CodeBadRequest, "quantity %d is below the %d claims already made", *s.Quantity, c.Claimed)
	}
	starts, expires := c.StartsAt, c.ExpiresAt
	if s.StartsAt != nil {
		starts = ReminderTime(*s.StartsAt)
	}
	if s.ExpiresAt != nil {
		expires = ReminderTime(*s.ExpiresAt)
	}
	if !starts.IsZero() && !expires.IsZero() && !expires.After(starts) {
		return Errorf(CodeBadRequest, "expiresAt must be after startsAt")
	}
	if s.StartsAt != nil {
		c.StartsAt = starts
	}
	if s.Title != nil {
		c.Title = *s.Title
	}
	if s.Description != nil {
		c.Description = *s.Description
	}
	if s.Discount != nil {
		c.Discount = *s.Discount
	}
	if s.Quantity != nil {
		c.Quantity = *s.Quantity
	}
	if s.ExpiresAt != nil {
		c.ExpiresAt = expires
	}
	return nil
}

// BrowseQuery selects coupons for GET /api/coupons, newest first.
type BrowseQuery struct {
	Merchant string
	Status   Status // empty: any
	Limit    int    // 1..MaxBrowseLimit; 0 means DefaultBrowseLimit
	After    string // the Next cursor of the previous page
}

// Browse page sizes.
const (
	DefaultBrowseLimit = 20
	MaxBrowseLimit     = 100
)

// BrowsePage is one page of a browse query. Next is empty on the last page.
type BrowsePage struct {
	Coupons []Coupon `json:"coupons"`
	Next    string   `json:"next,omitempty"`
}

// MaxBulkUpdates is the most coupon updates one bulk update request
// (POST /api/coupons/bulk-update) may carry.
const MaxBulkUpdates = 100

// BulkUpdateResult is the outcome of one item of a bulk update, at the
// item's place in the request: ID is the item's id as sent, and exactly one
// of Coupon (the coupon after the update, durable) and Error (what this item
// got, as the single update would answer it) is set.
type BulkUpdateResult struct {
	ID     string  `json:"id"`
	Coupon *Coupon `json:"coupon,omitempty"`
	Error  *Error  `json:"error,omitempty"`
}
