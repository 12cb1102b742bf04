package main

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
)

// Authorisation against a real node: who may do what comes from the token
// only, a merchant edits only its own coupons, and a user acts only as
// itself. Every op and endpoint is tried with the wrong role or owner.
func TestAuthorisation(t *testing.T) {
	a := startApp(t, nil)
	ctx := context.Background()
	base := baseURL(a)
	api := func(user string, role couponmesh.Role) *client.API {
		return client.NewAPI(base, login(t, base, user, role))
	}
	acme, rival, admin, shopper := api("acme", couponmesh.RoleMerchant), api("rival", couponmesh.RoleMerchant),
		api("root", couponmesh.RoleAdmin), api("eve", couponmesh.RoleShopper)
	anon := client.NewAPI(base, "")
	forged := client.NewAPI(base, forge(t, "acme", "merchant"))

	// A merchant creates coupons as itself, whatever the body says.
	mine, err := acme.CreateCoupon(ctx, couponmesh.CouponSpec{ID: "owned", Title: ptr("Acme's"), Quantity: ptr(5)})
	if err != nil {
		t.Fatal(err)
	}
	if mine.Merchant != "acme" {
		t.Fatalf("merchant %q, want acme", mine.Merchant)
	}
	if _, err := acme.CreateCoupon(ctx, couponmesh.CouponSpec{ID: "spare", Title: ptr("Spare"), Quantity: ptr(5)}); err != nil {
		t.Fatal(err)
	}

	spec := couponmesh.CouponSpec{Title: ptr("Taken over")}
	http := []struct {
		name string
		call func() error
		want couponmesh.Code // "" = allowed
	}{
		{"create: no token", func() error {
			_, err := anon.CreateCoupon(ctx, couponmesh.CouponSpec{Title: ptr("x"), Quantity: ptr(1)})
			return err
		}, couponmesh.CodeUnauthorized},
		{"create: forged token", func() error {
			_, err := forged.CreateCoupon(ctx, couponmesh.CouponSpec{Title: ptr("x"), Quantity: ptr(1)})
			return err
		}, couponmesh.CodeUnauthorized},
		{"create: shopper", func() error {
			_, err := shopper.CreateCoupon(ctx, couponmesh.CouponSpec{Title: ptr("x"), Quantity: ptr(1)})
			return err
		}, couponmesh.CodeForbidden},
		{"create: admin", func() error {
			_, err := admin.CreateCoupon(ctx, couponmesh.CouponSpec{Title: ptr("x"), Quantity: ptr(1)})
			return err
		}, ""},
		{"update: no token", func() error { _, err := anon.UpdateCoupon(ctx, "owned", spec); return err }, couponmesh.CodeUnauthorized},
		{"update: forged token", func() error { _, err := forged.UpdateCoupon(ctx, "owned", spec); return err }, couponmesh.CodeUnauthorized},
		{"update: shopper", func() error { _, err := shopper.UpdateCoupon(ctx, "owned", spec); return err }, couponmesh.CodeForbidden},
		{"update: another merchant", func() error { _, err := rival.UpdateCoupon(ctx, "owned", spec); return err }, couponmesh.CodeForbidden},
		{"update: the owner", func() error {
			_, err := acme.UpdateCoupon(ctx, "owned", couponmesh.CouponSpec{Title: ptr("Acme's, edited")})
			return err
		}, ""},
		{"update: admin", func() error {
			_, err := admin.UpdateCoupon(ctx, "owned", couponmesh.CouponSpec{Quantity: ptr(6)})
			return err
		}, ""},
		{"withdraw: no token", func() error { _, err := anon.WithdrawCoupon(ctx, "owned"); return err }, couponmesh.CodeUnauthorized},
		{"withdraw: shopper", func() error { _, err := shopper.WithdrawCoupon(ctx, "owned"); return err }, couponmesh.CodeForbidden},
		{"withdraw: another merchant", func() error { _, err := rival.WithdrawCoupon(ctx, "owned"); return err }, couponmesh.CodeForbidden},
		{"read: anyone", func() error { _, err := anon.Coupon(ctx, "owned"); return err }, ""},
		{"browse: anyone", func() error { _, err := anon.Browse(ctx, couponmesh.BrowseQuery{Merchant: "acme"}); return err }, ""},
		{"withdraw: admin", func() error { _, err := admin.WithdrawCoupon(ctx, "spare"); return err }, ""},
		{"withdraw: the owner", func() error { _, err := acme.WithdrawCoupon(ctx, "owned"); return err }, ""},
	}
	for _, tc := range http {
		t.Run("HTTP "+tc.name, func(t *testing.T) {
			if got := couponmesh.ErrorCode(tc.call()); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	if got, _ := anon.Coupon(ctx, "owned"); got.Title != "Acme's, edited" || got.Merchant != "acme" {
		t.Fatalf("coupon after the attempts: %+v", got)
	}

	// WebSocket: before auth only a visitor's reads (subscribe,
	// unsubscribe, get: an anonymous session); after it, every op acts as
	// the token's user, and a "user" field in a frame changes nothing.
	open := createCoupon(t, a, "acme", couponmesh.CouponSpec{ID: "open", Title: ptr("Open"), Quantity: ptr(10)})
	raw, err := client.Dial(ctx, wsURL(a), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ops := map[string]map[string]any{
		"claim": {"coupon": open.ID, "rid": "r"}, "follow": {"coupon": open.ID},
		"unfollow": {"coupon": open.ID}, "wallet": nil, "feed": {"after": 0}, // ping is answered before auth
	}
	for op, fields := range map[string]map[string]any{
		"subscribe": {"coupons": []map[string]any{{"id": open.ID}}}, "get": {"coupon": open.ID}, "unsubscribe": {"coupons": []string{open.ID}},
	} {
		t.Run("WS visitor: "+op, func(t *testing.T) {
			if _, err := raw.Do(ctx, op, fields); err != nil {
				t.Fatalf("%s as a visitor: %v, want ok", op, err)
			}
		})
	}
	for op, fields := range ops {
		t.Run("WS before auth: "+op, func(t *testing.T) {
			if _, err := raw.Do(ctx, op, fields); couponmesh.ErrorCode(err) != couponmesh.CodeUnauthorized {
				t.Fatalf("%s before auth: %v, want unauthorized", op, err)
			}
		})
	}
	if _, err := raw.Auth(ctx, forge(t, "victim", "shopper")); couponmesh.ErrorCode(err) != couponmesh.CodeUnauthorized {
		t.Fatalf("auth with a forged token: %v", err)
	}

	eve := dial(t, a, "eve", client.Options{})
	victim := dial(t, a, "victim", client.Options{})
	for _, tc := range []struct {
		op     string
		fields map[string]any
	}{
		{"claim", map[string]any{"coupon": open.ID, "rid": "as-victim", "user": "victim"}},
		{"follow", map[string]any{"coupon": open.ID, "user": "victim"}},
		{"wallet", map[string]any{"user": "victim"}},
		{"feed", map[string]any{"after": 0, "user": "victim"}},
	} {
		t.Run("WS as another user: "+tc.op, func(t *testing.T) {
			res, err := eve.Do(ctx, tc.op, tc.fields)
			if err != nil {
				if couponmesh.ErrorCode(err) != couponmesh.CodeBadRequest {
					t.Fatalf("%s: %v, want bad_request or acting as eve", tc.op, err)
				}
				return
			}
			if tc.op == "claim" {
				var r struct{ Claim couponmesh.Claim }
				if err := json.Unmarshal(res, &r); err != nil || r.Claim.User != "eve" {
					t.Fatalf("claim answered %s, want a claim of eve", res)
				}
			}
		})
	}
	w, err := victim.Wallet(ctx)
	if err != nil || len(w) != 0 {
		t.Fatalf("victim's wallet after eve's attempts: %+v %v", w, err)
	}
	feed, err := victim.Feed(ctx, 0, 100)
	if err != nil || len(feed) != 0 {
		t.Fatalf("victim's feed after eve's attempts: %+v %v", feed, err)
	}
}

// forge signs a token for user with a key the node does not know.
func forge(t *testing.T, user, role string) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss": "couponmesh", "aud": "couponmesh", "sub": user, "role": role,
		"exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(fmt.Sprintf("%032d", 42)))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
