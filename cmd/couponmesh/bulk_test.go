package main

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors/coupon"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/internal/testutil"
)

// TestBulkUpdateThroughNode sends one bulk update over real HTTP to a node
// with its embedded database: each item that was answered with a coupon is
// the last entry of that coupon's journal, read from the database (not
// through the grains or the cache), and reached a subscriber as a push; the
// refused items (another merchant's coupon, an unknown one, an invalid
// quantity) wrote nothing.
func TestBulkUpdateThroughNode(t *testing.T) {
	a := startApp(t, nil)
	ctx := context.Background()
	const n = 12
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("bulk%d", i)
		createCoupon(t, a, "acme", couponmesh.CouponSpec{ID: ids[i], Title: ptr("old"), Quantity: ptr(10)})
	}
	createCoupon(t, a, "rival", couponmesh.CouponSpec{ID: "rival1", Title: ptr("theirs"), Quantity: ptr(10)})

	seen := &latest{}
	shopper := dial(t, a, "watcher", client.Options{OnCoupon: seen.on})
	subs := make([]client.Sub, n)
	for i, id := range ids {
		subs[i] = client.Sub{ID: id}
	}
	if _, err := shopper.Subscribe(ctx, subs); err != nil {
		t.Fatal(err)
	}

	specs := make([]couponmesh.CouponSpec, 0, n+4)
	for i, id := range ids {
		specs = append(specs, couponmesh.CouponSpec{ID: id, Title: ptr(fmt.Sprintf("new %d", i))})
	}
	specs = append(specs,
		couponmesh.CouponSpec{ID: "rival1", Title: ptr("mine now")},
		couponmesh.CouponSpec{ID: "nope", Title: ptr("x")},
		couponmesh.CouponSpec{ID: ids[1], Quantity: ptr(0)},
		couponmesh.CouponSpec{ID: ids[0], Title: ptr("newer 0"), Quantity: ptr(7)}, // after its first item
	)
	api := client.NewAPI(baseURL(a), login(t, baseURL(a), "acme", couponmesh.RoleMerchant))
	res, err := api.UpdateCoupons(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	want := func(i int) (title string, version int64, code couponmesh.Code) {
		switch {
		case i == 0:
			return "new 0", 2, ""
		case i < n:
			return fmt.Sprintf("new %d", i), 2, ""
		case i == n:
			return "", 0, couponmesh.CodeForbidden
		case i == n+1:
			return "", 0, couponmesh.CodeNotFound
		case i == n+2:
			return "", 0, couponmesh.CodeBadRequest
		}
		return "newer 0", 3, ""
	}
	for i, r := range res {
		title, version, code := want(i)
		if r.ID != specs[i].ID {
			t.Errorf("result %d: id %q, want %q", i, r.ID, specs[i].ID)
		}
		if code != "" {
			if r.Error == nil || r.Error.Code != code || r.Coupon != nil {
				t.Errorf("result %d (%s): %+v %+v, want %s", i, r.ID, r.Coupon, r.Error, code)
			}
			continue
		}
		if r.Error != nil || r.Coupon == nil || r.Coupon.Title != title || r.Coupon.Version != version {
			t.Errorf("result %d (%s): %+v %+v, want %q version %d", i, r.ID, r.Coupon, r.Error, title, version)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// The journal in the database: what each coupon was answered is its
	// last entry; the refused items appended nothing.
	last := map[string]couponmesh.Coupon{}
	for _, r := range res {
		if r.Coupon != nil {
			last[r.ID] = *r.Coupon
		}
	}
	last["rival1"] = couponmesh.Coupon{ID: "rival1", Title: "theirs", Version: 1}
	for id, c := range last {
		entries, err := a.mongo.Entries(ctx, coupon.Entity(id), 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(entries)) != c.Version {
			t.Errorf("coupon %s: %d journal entries, answered version %d", id, len(entries), c.Version)
			continue
		}
		e := entries[len(entries)-1]
		var d struct {
			Coupon couponmesh.Coupon `json:"coupon"`
		}
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatalf("coupon %s entry %d: %v", id, e.Seq, err)
		}
		if d.Coupon.Title != c.Title || c.Version > 1 && e.Type != coupon.EntryUpdated {
			t.Errorf("coupon %s: last entry %s %s title %q, answered %q", id, e.Key(), e.Type, d.Coupon.Title, c.Title)
		}
	}
	if q := last[ids[0]].Quantity; q != 7 {
		t.Errorf("coupon %s: quantity %d, want 7", ids[0], q)
	}
	for _, id := range ids {
		testutil.CheckFor(t, 10*time.Second, "push of "+id, func() error {
			if got := seen.get(id); got.Version != last[id].Version || got.Title != last[id].Title {
				return fmt.Errorf("last push %q version %d, want %q version %d", got.Title, got.Version, last[id].Title, last[id].Version)
			}
			return nil
		})
	}
}
