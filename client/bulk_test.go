package client_test

import (
	"testing"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
)

// TestUpdateCoupons: the SDK's bulk update returns one result per spec in
// order (coupon or error), and the request's own errors as errors.
func TestUpdateCoupons(t *testing.T) {
	s := newStack(t)
	ctx := ctxT(t)
	s.svc.Put(couponmesh.Coupon{ID: "a", Merchant: "shop1", Title: "old a", Quantity: 5})
	s.svc.Put(couponmesh.Coupon{ID: "b", Merchant: "shop1", Title: "old b", Quantity: 5})
	s.svc.Put(couponmesh.Coupon{ID: "theirs", Merchant: "shop2", Title: "old", Quantity: 5})
	tok, err := client.DevLogin(ctx, s.base, "shop1", couponmesh.RoleMerchant)
	if err != nil {
		t.Fatal(err)
	}
	api := client.NewAPI(s.base, tok)
	title := func(s string) *string { return &s }
	zero := 0
	res, err := api.UpdateCoupons(ctx, []couponmesh.CouponSpec{
		{ID: "a", Title: title("new a")},
		{ID: "theirs", Title: title("mine")},
		{ID: "b", Quantity: &zero},
		{ID: "nope", Title: title("x")},
		{ID: "b", Title: title("new b")},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		title string
		code  couponmesh.Code
	}{{title: "new a"}, {code: couponmesh.CodeForbidden}, {code: couponmesh.CodeBadRequest}, {code: couponmesh.CodeNotFound}, {title: "new b"}}
	if len(res) != len(want) {
		t.Fatalf("%d results: %+v", len(res), res)
	}
	for i, w := range want {
		r := res[i]
		if w.code != "" && (r.Error == nil || r.Error.Code != w.code || r.Coupon != nil) ||
			w.code == "" && (r.Error != nil || r.Coupon == nil || r.Coupon.Title != w.title) {
			t.Errorf("result %d: %+v %+v, want %q %s", i, r.Coupon, r.Error, w.title, w.code)
		}
	}
	if c, _ := api.Coupon(ctx, "theirs"); c.Title != "old" {
		t.Fatalf("another merchant's coupon changed: %+v", c)
	}
	if _, err := api.UpdateCoupons(ctx, nil); couponmesh.ErrorCode(err) != couponmesh.CodeBadRequest {
		t.Fatalf("no updates: %v", err)
	}
	if _, err := api.UpdateCoupons(ctx, make([]couponmesh.CouponSpec, couponmesh.MaxBulkUpdates+1)); couponmesh.ErrorCode(err) != couponmesh.CodeBadRequest {
		t.Fatalf("too many: %v", err)
	}
	if _, err := (&client.API{BaseURL: s.base}).UpdateCoupons(ctx, []couponmesh.CouponSpec{{ID: "a", Title: title("x")}}); couponmesh.ErrorCode(err) != couponmesh.CodeUnauthorized {
		t.Fatalf("without token: %v", err)
	}
}
