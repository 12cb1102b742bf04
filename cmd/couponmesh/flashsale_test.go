package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors/coupon"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/persistence/faultproxy"
	"github.com/couponmesh/couponmesh/persistence/mongodb"
)

// TestHotCouponBatchUnknownOutcome: 500 shoppers claim one coupon of 300
// units at once, so that its grain writes its claims in pipelined batches.
// The reply to the first journal write is cut after the server applied it
// (faultproxy.CutReplyTo), then the database goes down until the grain
// has answered unavailable: the write's outcome stays unknown to the node,
// and its grain cannot catch up either. Shoppers retry unavailable answers with the same rid, as the SDKs
// do. Read straight from the database afterwards: exactly 300 claims with
// n 1..300, no user twice, every ok answer is in the journal with the code
// its shopper was told, and no shopper told sold_out holds a claim (a retried
// rid gets its first answer, not a second decision).
func TestHotCouponBatchUnknownOutcome(t *testing.T) {
	db, p := proxiedDB(t)
	a := startApp(t, func(c *Config) {
		c.MongoURI = "mongodb://" + p.Addr() + "/"
		c.Actors.RequestTimeout = Duration(30 * time.Second)
		c.Mongo.OpTimeout, c.Mongo.WriteTimeout = time.Second, time.Second
	})
	const shoppers, quantity = 500, 300
	id := createCoupon(t, a, "acme", couponmesh.CouponSpec{ID: "hot", Title: ptr("Drop"), Quantity: ptr(quantity)}).ID

	type answer struct {
		claim   couponmesh.Claim
		code    couponmesh.Code
		retries int
	}
	answers := make([]answer, shoppers)
	// Activate every grain first, so that the database's next replies are
	// those of the claims' writes.
	for i := range shoppers {
		if _, err := a.svc.Wallet(t.Context(), fmt.Sprintf("s%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.svc.Coupon(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	direct := openStoreAt(t, db.URI()) // the database, not through the proxy
	var unavailable atomic.Int64
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range shoppers {
		wg.Go(func() {
			<-start
			user, rid := fmt.Sprintf("s%03d", i), fmt.Sprintf("rid-%03d", i)
			for attempt := 0; ; attempt++ {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				cl, err := a.svc.Claim(ctx, user, id, rid)
				cancel()
				code := couponmesh.ErrorCode(err)
				if code != couponmesh.CodeUnavailable || attempt == 40 {
					answers[i] = answer{claim: cl, code: code, retries: attempt}
					return
				}
				unavailable.Add(1)
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
	before := a.mongo.CommitStats()
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()
	// The first journal write of the claims reaches the server and its
	// reply is cut (the outcome is unknown to the node); as soon as its entry is in
	// the database, the database goes down (every connection closed, new
	// ones too) until the grain has answered unavailable, so that the
	// retries of that write and the grain's catch-up fail as well.
	// The journal's insert command, not whatever comes first on some
	// connection: with the pool's idle connections (pool_min) and its
	// heartbeats armed too, CutNextReply cut a validation read and cleared
	// the pool, and no write had an unknown outcome (a busy make test).
	p.CutReplyTo([]byte("insert\x00\x08\x00\x00\x00journal\x00"))
	close(start)
	deadline := time.Now().Add(20 * time.Second)
	for {
		es, err := direct.Entries(t.Context(), coupon.Entity(id), 1, 1)
		if err == nil && len(es) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no claim reached the database: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	p.SetMode(faultproxy.Down)
	for unavailable.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	p.SetMode(faultproxy.Forward)
	<-allDone
	st := a.mongo.CommitStats()
	t.Logf("commit stats during the claims: %d BulkWrites, %d ops, %d of unknown outcome, %d retries, %d read-backs",
		st.BulkWrites-before.BulkWrites, st.Ops-before.Ops, st.Unknown-before.Unknown, st.Retries-before.Retries, st.ReadBacks-before.ReadBacks)

	ok, soldOut, retried := 0, 0, 0
	acked := map[string]couponmesh.Claim{}
	for i, an := range answers {
		if an.retries > 0 {
			retried++
		}
		switch an.code {
		case "":
			ok++
			acked[fmt.Sprintf("s%03d", i)] = an.claim
		case couponmesh.CodeSoldOut:
			soldOut++
		default:
			t.Errorf("shopper %d: %s after %d retries", i, an.code, an.retries)
		}
	}
	t.Logf("%d ok, %d sold out, %d shoppers retried after unavailable", ok, soldOut, retried)
	// Unknown, not Retries: when the database is confirmed down before the
	// retry's backoff ends, the ops are answered unavailable without one.
	if st.Unknown == before.Unknown || retried == 0 {
		t.Error("no write had an unknown outcome, or no shopper saw it: the test did not test it")
	}
	if ok != quantity || soldOut != shoppers-quantity {
		t.Errorf("%d ok and %d sold out, want %d and %d", ok, soldOut, quantity, shoppers-quantity)
	}
	checkClaimsJournal(t, db.URI(), id, quantity, acked)
}

// checkClaimsJournal reads coupon id's journal straight from the database
// (a store of its own) and checks it holds exactly want claims, n 1..want
// in order, no user twice, and that acked (user → claim told ok) matches it
// both ways.
func checkClaimsJournal(t *testing.T, uri, id string, want int, acked map[string]couponmesh.Claim) {
	t.Helper()
	s := openStoreAt(t, uri)
	entries, err := s.Entries(t.Context(), coupon.Entity(id), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := coupon.Claims(entries)
	if err != nil {
		t.Error(err)
	}
	for u, d := range claims {
		cl, ok := acked[u]
		switch {
		case !ok:
			t.Errorf("the journal holds a claim by %s, who was not told ok", u)
		case cl.Code != d.Code || cl.N != d.N:
			t.Errorf("%s was told %s/%d, the journal holds %s/%d", u, cl.Code, cl.N, d.Code, d.N)
		}
	}
	if len(claims) != want {
		t.Errorf("the journal holds %d claims of %s, want %d", len(claims), id, want)
	}
	for u := range acked {
		if _, ok := claims[u]; !ok {
			t.Errorf("%s was told ok, the journal has no claim of theirs", u)
		}
	}
}

// openStoreAt opens a store of its own on uri (to read what the database
// holds, past any node's memory), closed when the test ends.
func openStoreAt(t testing.TB, uri string) *mongodb.Store {
	t.Helper()
	cfg := mongodb.DefaultConfig()
	cfg.URI = uri
	s, err := mongodb.Open(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// TestClaimPushesOfAWatchedCoupon: a change of a watched coupon's claimed
// count alone is pushed at most once per claim push interval (here 250 ms:
// one watcher, a budget of 4 frames a second), the newest count still
// reaches the watcher after the last claim (from the grain's timer), the
// versions it receives only grow, and the claim that sells the coupon out
// is pushed (a change of status: never held, pushes.go). Pushed after every claim (29 claims one
// after another), the watcher would get about one push per claim.
func TestClaimPushesOfAWatchedCoupon(t *testing.T) {
	const budget, interval = 4, 250 * time.Millisecond
	a := startApp(t, func(c *Config) { c.Actors.ClaimPushBudget = budget })
	const quantity = 30
	id := createCoupon(t, a, "acme", couponmesh.CouponSpec{ID: "watched", Title: ptr("Drop"), Quantity: ptr(quantity)}).ID

	type push struct {
		at      time.Time
		version int64
		claimed int
		status  couponmesh.Status
	}
	var (
		mu     sync.Mutex
		pushes []push
	)
	w := dial(t, a, "watcher", client.Options{OnCoupon: func(c couponmesh.Coupon) {
		if c.ID != id {
			return
		}
		mu.Lock()
		pushes = append(pushes, push{at: time.Now(), version: c.Version, claimed: c.Claimed, status: c.Status})
		mu.Unlock()
	}})
	if _, err := w.Subscribe(t.Context(), []client.Sub{{ID: id}}); err != nil {
		t.Fatal(err)
	}
	// The grain counts the watcher (the hub's presence report).
	checkFor(t, 10*time.Second, "the grain counts the watcher", func() error {
		c, err := a.svc.Coupon(t.Context(), id)
		if err == nil && c.Watching != 1 {
			err = fmt.Errorf("watching %d", c.Watching)
		}
		return err
	})
	lastPushed := func() push {
		mu.Lock()
		defer mu.Unlock()
		if len(pushes) == 0 {
			return push{}
		}
		return pushes[len(pushes)-1]
	}

	start := time.Now()
	for i := range quantity - 1 {
		if _, err := a.svc.Claim(t.Context(), fmt.Sprintf("u%02d", i), id, fmt.Sprintf("r%02d", i)); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	checkFor(t, 10*time.Second, "the last count pushed after the claims", func() error {
		if p := lastPushed(); p.claimed != quantity-1 {
			return fmt.Errorf("last push says %d claimed", p.claimed)
		}
		return nil
	})
	mu.Lock()
	during := 0
	for _, p := range pushes {
		if p.claimed > 0 {
			during++
		}
	}
	mu.Unlock()
	// The claims' pushes span elapsed plus at most one interval.
	if most := int((elapsed+interval)/interval) + 2; during > most {
		t.Errorf("%d claim pushes for %d claims in %s: want at most %d (one per %s)", during, quantity-1, elapsed, most, interval)
	}
	t.Logf("%d claims in %s: %d pushes", quantity-1, elapsed, during)

	// The last unit: its state (sold out) reaches the watcher.
	if _, err := a.svc.Claim(t.Context(), "last", id, "r-last"); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, "the sold-out state pushed", func() error {
		if p := lastPushed(); p.status != couponmesh.StatusSoldOut || p.claimed != quantity {
			return fmt.Errorf("last push: %+v", p)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(pushes); i++ {
		if pushes[i].version <= pushes[i-1].version {
			t.Errorf("push %d has version %d after %d", i, pushes[i].version, pushes[i-1].version)
		}
	}
}
