package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
)

// Bad input against a real node: each case gets a clear error and the
// session (or the node) keeps working.
func TestBadInputAgainstNode(t *testing.T) {
	a := startApp(t, nil)
	ctx := context.Background()
	cp := createCoupon(t, a, "acme", couponmesh.CouponSpec{Title: ptr("Real"), Quantity: ptr(3)})
	errs := make(chan *couponmesh.Error, 4)
	c := dial(t, a, "eve", client.Options{OnError: func(e *couponmesh.Error) { errs <- e }})

	ops := []struct {
		name   string
		op     string
		fields map[string]any
		want   couponmesh.Code
	}{
		{"unknown op", "steal", nil, couponmesh.CodeBadRequest},
		{"claim without rid", "claim", map[string]any{"coupon": cp.ID}, couponmesh.CodeBadRequest},
		{"claim without coupon", "claim", map[string]any{"rid": "r"}, couponmesh.CodeBadRequest},
		{"get of a missing coupon", "get", map[string]any{"coupon": "nope"}, couponmesh.CodeNotFound},
		{"get of an invalid id", "get", map[string]any{"coupon": "../x"}, couponmesh.CodeBadRequest},
		{"follow of a missing coupon", "follow", map[string]any{"coupon": "nope"}, couponmesh.CodeNotFound},
		{"feed with negative after", "feed", map[string]any{"after": -1}, couponmesh.CodeBadRequest},
		{"subscribe with a bad list", "subscribe", map[string]any{"coupons": "c1"}, couponmesh.CodeBadRequest},
	}
	for _, tc := range ops {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Do(ctx, tc.op, tc.fields)
			if got := couponmesh.ErrorCode(err); got != tc.want {
				t.Fatalf("%s: %v, want %s", tc.op, err, tc.want)
			}
			if e := couponmesh.AsError(err); e.Message == "" {
				t.Fatal("error without a message")
			}
		})
	}
	t.Run("malformed JSON", func(t *testing.T) {
		if err := c.WriteRaw(ctx, []byte(`{"id":1,"op":`)); err != nil {
			t.Fatal(err)
		}
		select {
		case e := <-errs:
			if e.Code != couponmesh.CodeBadRequest {
				t.Fatalf("got %v", e)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no error reply")
		}
	})
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("session died after bad input: %v", err)
	}

	t.Run("no auth", func(t *testing.T) {
		raw, err := client.Dial(ctx, wsURL(a), client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		if _, err := raw.Claim(ctx, cp.ID, "r"); couponmesh.ErrorCode(err) != couponmesh.CodeUnauthorized {
			t.Fatalf("claim before auth: %v", err)
		}
		if _, err := raw.Auth(ctx, "not-a-token"); couponmesh.ErrorCode(err) != couponmesh.CodeUnauthorized {
			t.Fatalf("bad token: %v", err)
		}
	})
	t.Run("oversized frame closes 1009", func(t *testing.T) {
		big := dial(t, a, "bob", client.Options{})
		_ = big.WriteRaw(ctx, []byte(`{"id":1,"op":"ping","pad":"`+strings.Repeat("x", 20<<10)+`"}`))
		select {
		case <-big.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("not closed")
		}
		if got := big.CloseStatus(); got != websocket.StatusMessageTooBig {
			t.Fatalf("close status %d, want 1009", got)
		}
	})
	t.Run("HTTP authorisation", func(t *testing.T) {
		shopper := client.NewAPI(baseURL(a), login(t, baseURL(a), "eve", couponmesh.RoleShopper))
		if _, err := shopper.CreateCoupon(ctx, couponmesh.CouponSpec{Title: ptr("x"), Quantity: ptr(1)}); couponmesh.ErrorCode(err) != couponmesh.CodeForbidden {
			t.Fatalf("shopper creates a coupon: %v", err)
		}
		rival := client.NewAPI(baseURL(a), login(t, baseURL(a), "rival", couponmesh.RoleMerchant))
		if _, err := rival.UpdateCoupon(ctx, cp.ID, couponmesh.CouponSpec{Title: ptr("mine")}); couponmesh.ErrorCode(err) != couponmesh.CodeForbidden {
			t.Fatalf("rival merchant edits: %v", err)
		}
		if _, err := rival.WithdrawCoupon(ctx, cp.ID); couponmesh.ErrorCode(err) != couponmesh.CodeForbidden {
			t.Fatalf("rival merchant withdraws: %v", err)
		}
		anon := client.NewAPI(baseURL(a), "")
		if _, err := anon.CreateCoupon(ctx, couponmesh.CouponSpec{Title: ptr("x"), Quantity: ptr(1)}); couponmesh.ErrorCode(err) != couponmesh.CodeUnauthorized {
			t.Fatalf("no token: %v", err)
		}
		bad := client.NewAPI(baseURL(a), login(t, baseURL(a), "acme", couponmesh.RoleMerchant))
		if _, err := bad.CreateCoupon(ctx, couponmesh.CouponSpec{Title: ptr("x"), Quantity: ptr(0)}); couponmesh.ErrorCode(err) != couponmesh.CodeBadRequest {
			t.Fatalf("quantity 0: %v", err)
		}
	})
}
