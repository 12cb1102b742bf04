package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/cluster/clustertest"
	"github.com/couponmesh/couponmesh/internal/testutil"
)

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(b)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testAddr returns a free 127.0.0.1 address no other call in this test
// process got (clustertest.FreeAddr).
func testAddr(t testing.TB) string {
	t.Helper()
	addr, err := clustertest.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// startLoneNode starts a node alone, on its embedded database in dir.
func startLoneNode(t *testing.T, dir string) *proc {
	t.Helper()
	cfg := procConfig(t, "restart", "", "COUPONMESH_LOG_LEVEL=warn")
	cfg.Gossip, cfg.DataDir = "127.0.0.1:0", dir
	return startProc(t, cfg)
}

// session is a shopper session of user on p with the default options.
func (p *proc) session(t testing.TB, user string) *client.Client {
	t.Helper()
	return p.sessionOpts(t, user, client.Options{})
}

// Kill -9 of a real node process loses nothing acknowledged: coupons,
// claims, follows and the feed come back, and the feed resumes without gaps.
func TestKilledNodeRestartsWithEverything(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	p := startLoneNode(t, dir)

	mtok, err := client.DevLogin(ctx, "http://"+p.http, "acme", couponmesh.RoleMerchant)
	if err != nil {
		t.Fatal(err)
	}
	api := client.NewAPI("http://"+p.http, mtok)
	for _, id := range []string{"k1", "k2"} {
		if _, err := api.CreateCoupon(ctx, couponmesh.CouponSpec{ID: id, Title: ptr("Coupon " + id), Quantity: ptr(5)}); err != nil {
			t.Fatal(err)
		}
	}
	rita := p.session(t, "rita")
	if _, err := rita.Follow(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	claims := map[string]couponmesh.Claim{}
	for _, id := range []string{"k1", "k2"} {
		cl, err := rita.Claim(ctx, id, "rid-"+id)
		if err != nil {
			t.Fatal(err)
		}
		claims[id] = cl
	}
	if _, err := api.UpdateCoupon(ctx, "k1", couponmesh.CouponSpec{Title: ptr("Coupon k1, better")}); err != nil {
		t.Fatal(err)
	}
	var feed []couponmesh.FeedEntry
	testutil.CheckFor(t, 10*time.Second, "feed with the change of k1", func() error {
		feed, err = rita.Feed(ctx, 0, 0)
		if err != nil || len(feed) != 4 {
			return fmt.Errorf("%d entries, err %v", len(feed), err)
		}
		return nil
	})
	k1, err := api.Coupon(ctx, "k1")
	if err != nil {
		t.Fatal(err)
	}

	p.kill(t)
	p = startLoneNode(t, dir)
	rita = p.session(t, "rita")
	api.BaseURL = "http://" + p.http

	after, err := api.Coupon(ctx, "k1")
	if err != nil || after.Version != k1.Version || after.Claimed != 1 || after.Title != "Coupon k1, better" {
		t.Fatalf("k1 after restart: %+v %v, want %+v", after, err, k1)
	}
	wallet, err := rita.Wallet(ctx)
	if err != nil || len(wallet) != 2 {
		t.Fatalf("wallet after restart: %+v %v", wallet, err)
	}
	for _, w := range wallet {
		if w.Code != claims[w.Coupon].Code {
			t.Fatalf("wallet entry %+v, want %+v", w, claims[w.Coupon])
		}
	}
	again, err := rita.Feed(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(again, feed, func(a, b couponmesh.FeedEntry) bool {
		return a.Seq == b.Seq && a.Type == b.Type && a.Coupon == b.Coupon
	}) {
		t.Fatalf("feed after restart:\n%+v\nwant\n%+v", again, feed)
	}
	tail, err := rita.Feed(ctx, 2, 0)
	if err != nil || len(tail) != 2 || tail[0].Seq != 3 || tail[1].Seq != 4 {
		t.Fatalf("feed after seq 2: %+v %v", tail, err)
	}
	// Following survived: a change of k1 still reaches rita's feed.
	if _, err := api.UpdateCoupon(ctx, "k1", couponmesh.CouponSpec{Quantity: ptr(6)}); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, "feed entry 5 after restart", func() error {
		e, err := rita.Feed(ctx, 4, 0)
		if err != nil || len(e) != 1 || e[0].Type != couponmesh.FeedCouponChanged {
			return fmt.Errorf("%+v %v", e, err)
		}
		return nil
	})
	// Claims continue from the journal: same rid, same answer; a new user is n=2.
	if cl, err := rita.Claim(ctx, "k1", "rid-k1"); err != nil || cl.Code != claims["k1"].Code {
		t.Fatalf("retried claim after restart: %+v %v", cl, err)
	}
	if cl, err := p.session(t, "sam").Claim(ctx, "k1", "x"); err != nil || cl.N != 2 {
		t.Fatalf("new claim after restart: %+v %v", cl, err)
	}
}
