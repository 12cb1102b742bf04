package couponmesh_test

import (
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
)

// Status and the claim rule over a coupon's life: scheduled before
// StartsAt, expired from ExpiresAt, withdrawn above all.
func TestStatusAndClaimOverTime(t *testing.T) {
	start := time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC)
	end := start.Add(time.Hour)
	tests := []struct {
		name   string
		c      couponmesh.Coupon
		at     time.Time
		status couponmesh.Status
		code   couponmesh.Code // of CheckClaim; "" = claimable
	}{
		{"before the start", couponmesh.Coupon{Quantity: 2, StartsAt: start, ExpiresAt: end}, start.Add(-time.Second), couponmesh.StatusScheduled, couponmesh.CodeNotStarted},
		{"at the start", couponmesh.Coupon{Quantity: 2, StartsAt: start, ExpiresAt: end}, start, couponmesh.StatusActive, ""},
		{"sold out", couponmesh.Coupon{Quantity: 2, Claimed: 2, StartsAt: start}, start, couponmesh.StatusSoldOut, couponmesh.CodeSoldOut},
		{"at the end", couponmesh.Coupon{Quantity: 2, StartsAt: start, ExpiresAt: end}, end, couponmesh.StatusExpired, couponmesh.CodeExpired},
		{"no start", couponmesh.Coupon{Quantity: 2}, start, couponmesh.StatusActive, ""},
		{"withdrawn before the start", couponmesh.Coupon{Quantity: 2, StartsAt: start, Withdrawn: true}, start.Add(-time.Hour), couponmesh.StatusWithdrawn, couponmesh.CodeExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.c
			c.Refresh(tt.at)
			if c.Status != tt.status {
				t.Errorf("status %s, want %s", c.Status, tt.status)
			}
			if got := couponmesh.ErrorCode(c.CheckClaim(tt.at)); got != tt.code {
				t.Errorf("claim: %q, want %q", got, tt.code)
			}
		})
	}
}

func TestSpecStartsBeforeExpiry(t *testing.T) {
	now := time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { v := now.Add(d); return &v }
	title, qty := "t", 1
	tests := []struct {
		name   string
		spec   couponmesh.CouponSpec
		on     couponmesh.Coupon // for Apply
		wantOK bool
	}{
		{"start then end", couponmesh.CouponSpec{StartsAt: at(time.Hour), ExpiresAt: at(2 * time.Hour)}, couponmesh.Coupon{}, true},
		{"end before start", couponmesh.CouponSpec{StartsAt: at(2 * time.Hour), ExpiresAt: at(time.Hour)}, couponmesh.Coupon{}, false},
		{"start moved past the end", couponmesh.CouponSpec{StartsAt: at(3 * time.Hour)}, couponmesh.Coupon{ExpiresAt: now.Add(2 * time.Hour)}, false},
		{"start moved earlier", couponmesh.CouponSpec{StartsAt: at(time.Minute)}, couponmesh.Coupon{StartsAt: now.Add(time.Hour), ExpiresAt: now.Add(2 * time.Hour)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec
			spec.Title, spec.Quantity = &title, &qty
			err := spec.Validate(true, now)
			if err == nil {
				c := tt.on
				err = spec.Apply(&c)
				if err == nil && spec.StartsAt != nil && !c.StartsAt.Equal(*spec.StartsAt) {
					t.Fatalf("StartsAt %v after Apply, want %v", c.StartsAt, *spec.StartsAt)
				}
			}
			if (err == nil) != tt.wantOK {
				t.Fatalf("err %v, want ok %v", err, tt.wantOK)
			}
			if err != nil && couponmesh.ErrorCode(err) != couponmesh.CodeBadRequest {
				t.Fatalf("code %s, want bad_request", couponmesh.ErrorCode(err))
			}
		})
	}
}

// Apply keeps a coupon's times to the millisecond, as reminders keep their
// due times (the store's precision), so that a reminder read back from the
// store names the coupon's time exactly.
func TestApplyKeepsTimesToTheMillisecond(t *testing.T) {
	start := time.Date(2030, 5, 1, 12, 0, 0, 123456789, time.FixedZone("x", 3600))
	end := start.Add(time.Hour)
	var c couponmesh.Coupon
	if err := (couponmesh.CouponSpec{StartsAt: &start, ExpiresAt: &end}).Apply(&c); err != nil {
		t.Fatal(err)
	}
	want := time.Date(2030, 5, 1, 11, 0, 0, 123000000, time.UTC)
	if c.StartsAt != want || c.ExpiresAt != want.Add(time.Hour) {
		t.Fatalf("StartsAt %v, ExpiresAt %v; want %v and an hour later, UTC", c.StartsAt, c.ExpiresAt, want)
	}
	r := couponmesh.Reminder{Target: "coupon/c1", Name: "expire", Due: couponmesh.ReminderTime(end)}
	if r.Due != c.ExpiresAt || r.Due.UnixMilli() != end.UnixMilli() {
		t.Fatalf("reminder due %v, coupon ends %v", r.Due, c.ExpiresAt)
	}
}
