package coupon_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors/coupon"
	"github.com/couponmesh/couponmesh/persistence/devdb"
	"github.com/couponmesh/couponmesh/persistence/mongodb"
)

var store *mongodb.Store

func TestMain(m *testing.M) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "coupon-test")
	if err != nil {
		panic(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	db, err := devdb.Start(ctx, devdb.Config{Addr: "127.0.0.1:0", Dir: dir}, log)
	if err != nil {
		panic(err)
	}
	cfg := mongodb.DefaultConfig()
	cfg.URI = db.URI()
	if store, err = mongodb.Open(ctx, cfg, log); err != nil {
		panic(err)
	}
	code := m.Run()
	_ = store.Close(ctx)
	_ = db.Close()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

var merchant = couponmesh.Principal{User: "shop", Role: couponmesh.RoleMerchant}

func ptr[T any](v T) *T { return &v }

var seq atomic.Int64

// uniq makes ids unique across -count runs over the same database.
func uniq(id string) string { return fmt.Sprintf("%s-%d-%d", id, os.Getpid(), seq.Add(1)) }

func newCoupon(t *testing.T, id string, quantity int) *coupon.Machine {
	t.Helper()
	ctx := context.Background()
	m, err := coupon.Load(ctx, store, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(ctx, merchant, couponmesh.CouponSpec{Title: ptr("Half off"), Quantity: ptr(quantity)}, "r1"); err != nil {
		t.Fatal(err)
	}
	return m
}

// Two activations of one coupon claim over the same journal at once: the
// journal's unique keys must keep the count at the quantity, and the loser
// of each race catches up and decides again.
func TestTwoActivationsNeverOverClaim(t *testing.T) {
	ctx := context.Background()
	const quantity, users = 50, 160
	id := uniq("twin")
	newCoupon(t, id, quantity)
	var ms [2]*coupon.Machine
	for i := range ms {
		m, err := coupon.Load(ctx, store, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		ms[i] = m
	}
	var ok, soldOut atomic.Int32
	var wg sync.WaitGroup
	for i := range ms {
		wg.Go(func() { // each activation is single-threaded, like its actor
			for u := i; u < users; u += 2 {
				user := fmt.Sprintf("u%d", u)
				_, err := ms[i].Claim(ctx, user, "rid")
				for retry := 0; couponmesh.ErrorCode(err) == couponmesh.CodeUnavailable && retry < 20; retry++ {
					_, err = ms[i].Claim(ctx, user, "rid") // starved by the other activation: retry, as a client does
				}
				switch couponmesh.ErrorCode(err) {
				case "":
					ok.Add(1)
				case couponmesh.CodeSoldOut:
					soldOut.Add(1)
				default:
					t.Errorf("claim u%d: %v", u, err)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != quantity || soldOut.Load() != users-quantity {
		t.Fatalf("ok=%d sold_out=%d, want %d and %d", ok.Load(), soldOut.Load(), quantity, users-quantity)
	}
	entries, err := store.Entries(ctx, coupon.Entity(id), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	claims := 0
	for _, e := range entries {
		if e.Type == coupon.EntryClaimed {
			claims++
		}
	}
	if claims != quantity {
		t.Fatalf("journal holds %d claims, want %d", claims, quantity)
	}
	for _, m := range ms {
		if _, err := m.Claim(ctx, "late", "x"); couponmesh.ErrorCode(err) != couponmesh.CodeSoldOut {
			t.Fatalf("late claim: %v, want sold_out", err)
		}
		c := m.Coupon()
		if c.Claimed != quantity || c.Status != couponmesh.StatusSoldOut {
			t.Fatalf("activation sees claimed=%d status=%s", c.Claimed, c.Status)
		}
	}
}

func TestClaimRules(t *testing.T) {
	ctx := context.Background()
	id := uniq("rules")
	m := newCoupon(t, id, 2)
	first, err := m.Claim(ctx, "ann", "rid-1")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, user, rid string
		want            couponmesh.Code
	}{
		{"same rid returns the first answer", "ann", "rid-1", ""},
		{"new rid of the same user", "ann", "rid-2", couponmesh.CodeAlreadyClaimed},
		{"another user", "bob", "rid-1", ""},
		{"sold out", "cid", "rid-1", couponmesh.CodeSoldOut},
		{"retry after sold out still gets its first answer", "ann", "rid-1", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := m.Claim(ctx, tc.user, tc.rid)
			if couponmesh.ErrorCode(err) != tc.want {
				t.Fatalf("err = %v, want code %q", err, tc.want)
			}
			if tc.user == "ann" && err == nil && (got.Code != first.Code || got.N != first.N) {
				t.Fatalf("retry got %+v, want %+v", got, first)
			}
		})
	}
	// A fresh activation (e.g. after passivation) answers the same.
	again, err := coupon.Load(ctx, store, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := again.Claim(ctx, "ann", "rid-1"); err != nil || got.Code != first.Code {
		t.Fatalf("after reload: %+v %v, want %+v", got, err, first)
	}
	if _, err := again.Claim(ctx, "ann", "rid-9"); couponmesh.ErrorCode(err) != couponmesh.CodeAlreadyClaimed {
		t.Fatalf("after reload new rid: %v", err)
	}
}

func TestExpiryWithdrawAndOwnership(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	clock := func() time.Time { return now }
	m, err := coupon.Load(ctx, store, uniq("exp"), clock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(ctx, merchant, couponmesh.CouponSpec{Title: ptr("t"), Quantity: ptr(5), ExpiresAt: ptr(now.Add(time.Hour))}, "r"); err != nil {
		t.Fatal(err)
	}
	other := couponmesh.Principal{User: "rival", Role: couponmesh.RoleMerchant}
	if _, err := m.Update(ctx, other, couponmesh.CouponSpec{Title: ptr("mine")}); couponmesh.ErrorCode(err) != couponmesh.CodeForbidden {
		t.Fatalf("rival update: %v", err)
	}
	if _, err := m.Update(ctx, merchant, couponmesh.CouponSpec{Quantity: ptr(0)}); couponmesh.ErrorCode(err) != couponmesh.CodeBadRequest {
		t.Fatalf("quantity 0: %v", err)
	}
	now = now.Add(2 * time.Hour)
	if _, err := m.Claim(ctx, "ann", "r"); couponmesh.ErrorCode(err) != couponmesh.CodeExpired {
		t.Fatalf("expired claim: %v", err)
	}
	if c, err := m.Withdraw(ctx, couponmesh.Principal{User: "root", Role: couponmesh.RoleAdmin}); err != nil || c.Status != couponmesh.StatusWithdrawn {
		t.Fatalf("admin withdraw: %+v %v", c, err)
	}
	if _, err := m.Create(ctx, merchant, couponmesh.CouponSpec{Title: ptr("t"), Quantity: ptr(1)}, "other"); couponmesh.ErrorCode(err) != couponmesh.CodeBadRequest {
		t.Fatalf("create over existing: %v", err)
	}
}

// A reminder read back from the store has its due time to the millisecond:
// waking the coupon with it must still journal the expiry, once, even when
// the time was given with more precision than that.
func TestWakeWithADueTimeFromTheStore(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	id := uniq("wake")
	m, err := coupon.Load(ctx, store, id, clock)
	if err != nil {
		t.Fatal(err)
	}
	exp := now.Add(time.Hour).Truncate(time.Millisecond).Add(123456 * time.Nanosecond) // sub-millisecond
	spec := couponmesh.CouponSpec{Title: ptr("Ends"), Quantity: ptr(3), ExpiresAt: &exp}
	rs := coupon.Reminders(id, spec)
	if len(rs) != 1 {
		t.Fatalf("reminders %+v, want the expiry", rs)
	}
	if err := store.PutReminder(ctx, rs[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(ctx, merchant, spec, "r1"); err != nil {
		t.Fatal(err)
	}
	stored, err := store.DueReminders(ctx, rs[0].Shard(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var r couponmesh.Reminder
	for _, x := range stored {
		if x.Key() == rs[0].Key() {
			r = x
		}
	}
	if r.Target == "" {
		t.Fatalf("reminder %s not in the store: %+v", rs[0].Key(), stored)
	}
	mu.Lock()
	now = exp.Add(time.Millisecond)
	mu.Unlock()
	for range 2 { // fired twice: one entry
		if err := m.Wake(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := store.Entries(ctx, coupon.Entity(id), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	expired := 0
	for _, e := range entries {
		if e.Type == coupon.EntryExpired {
			expired++
		}
	}
	if expired != 1 || m.Coupon().Status != couponmesh.StatusExpired {
		t.Fatalf("%d expired entries, status %s; want 1, expired (reminder due %s, coupon ends %s)", expired, m.Coupon().Status,
			r.Due.Format(time.RFC3339Nano), m.Coupon().ExpiresAt.Format(time.RFC3339Nano))
	}
}
