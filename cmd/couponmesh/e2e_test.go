package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/internal/testutil"
)

const testSecret = "test-secret-0123456789abcdef0123456789"

// testConfig is the configuration of an in-process test node: the
// defaults, dev mode, the tests' JWT secret, the admin API on a free
// loopback port and a data directory of its own.
func testConfig(t testing.TB) Config {
	t.Helper()
	cfg, err := LoadConfig("", map[string]string{})
	if err != nil && !strings.Contains(err.Error(), "jwt_secret") {
		t.Fatal(err)
	}
	cfg.AdminAddr = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Dev = true
	cfg.JWTSecret = testSecret
	cfg.NodeName = "test"
	return cfg
}

// testLogger is the log of an in-process test node: warnings, and more with
// -v.
func testLogger() *slog.Logger {
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// startApp runs a node in-process on loopback ports with its own embedded
// database.
func startApp(t testing.TB, mod func(*Config)) *App {
	t.Helper()
	cfg := testConfig(t)
	cfg.HTTPAddr, cfg.ClusterAddr = "127.0.0.1:0", "127.0.0.1:0"
	if mod != nil {
		mod(&cfg)
	}
	app, err := Start(context.Background(), cfg, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		app.Stop(ctx)
	})
	return app
}

func baseURL(a *App) string { return "http://" + a.HTTPAddr() }
func wsURL(a *App) string   { return "ws://" + a.HTTPAddr() + "/ws" }

func login(t testing.TB, base, user string, role couponmesh.Role) string {
	t.Helper()
	tok, err := client.DevLogin(context.Background(), base, user, role)
	if err != nil {
		t.Fatalf("dev login %s: %v", user, err)
	}
	return tok
}

// dial opens an authenticated session for user.
func dial(t *testing.T, a *App, user string, opts client.Options) *client.Client {
	t.Helper()
	ctx := context.Background()
	if opts.HTTPHeader == nil {
		opts.HTTPHeader = http.Header{"Origin": {"http://localhost"}}
	}
	c, err := client.Dial(ctx, wsURL(a), opts)
	if err != nil {
		t.Fatalf("dial %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Auth(ctx, login(t, baseURL(a), user, couponmesh.RoleShopper)); err != nil {
		t.Fatalf("auth %s: %v", user, err)
	}
	return c
}

func createCoupon(t testing.TB, a *App, merchant string, spec couponmesh.CouponSpec) couponmesh.Coupon {
	t.Helper()
	api := client.NewAPI(baseURL(a), login(t, baseURL(a), merchant, couponmesh.RoleMerchant))
	c, err := api.CreateCoupon(context.Background(), spec)
	if err != nil {
		t.Fatalf("create coupon: %v", err)
	}
	return c
}

func ptr[T any](v T) *T { return &v }

// checkFor is testutil.CheckFor, under the name the tests of other
// branches of this package still call.
var checkFor = testutil.CheckFor

// latest keeps the newest coupon version a session has seen.
type latest struct {
	mu sync.Mutex
	c  map[string]couponmesh.Coupon
}

func (l *latest) on(c couponmesh.Coupon) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c == nil {
		l.c = map[string]couponmesh.Coupon{}
	}
	if c.Version > l.c[c.ID].Version {
		l.c[c.ID] = c
	}
}

func (l *latest) get(id string) couponmesh.Coupon {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.c[id]
}

// 200 shoppers claim a coupon of quantity 50 at once over WebSockets.
func TestConcurrentClaimsNeverOverClaim(t *testing.T) {
	a := startApp(t, nil)
	const quantity, shoppers = 50, 200
	cp := createCoupon(t, a, "acme", couponmesh.CouponSpec{ID: "hot", Title: ptr("Hot deal"), Quantity: ptr(quantity)})

	ctx := context.Background()
	seen := make([]*latest, shoppers)
	sessions := make([]*client.Client, shoppers)
	var wg sync.WaitGroup
	for i := range shoppers {
		seen[i] = &latest{}
		wg.Go(func() {
			c := dial(t, a, fmt.Sprintf("s%03d", i), client.Options{OnCoupon: seen[i].on})
			if _, err := c.Subscribe(ctx, []client.Sub{{ID: cp.ID}}); err != nil {
				t.Errorf("subscribe: %v", err)
			}
			sessions[i] = c
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	var ok, soldOut, retries atomic.Int32
	start := make(chan struct{})
	for i, c := range sessions {
		wg.Go(func() {
			<-start
			// A claim answered unavailable (the grain's queue outlasted the
			// call's deadline on a loaded machine) has an unknown outcome: a
			// client retries it with the same rid, as the protocol says.
			_, err := c.Claim(ctx, cp.ID, fmt.Sprintf("rid-%d", i))
			for n := 0; n < 5 && couponmesh.ErrorCode(err) == couponmesh.CodeUnavailable; n++ {
				retries.Add(1)
				_, err = c.Claim(ctx, cp.ID, fmt.Sprintf("rid-%d", i))
			}
			switch couponmesh.ErrorCode(err) {
			case "":
				ok.Add(1)
			case couponmesh.CodeSoldOut:
				soldOut.Add(1)
			default:
				t.Errorf("claim %d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	t.Logf("ok=%d sold_out=%d (claims retried after unavailable: %d)", ok.Load(), soldOut.Load(), retries.Load())
	if ok.Load() != quantity || soldOut.Load() != shoppers-quantity {
		t.Fatalf("ok=%d sold_out=%d, want %d and %d", ok.Load(), soldOut.Load(), quantity, shoppers-quantity)
	}
	if claims := journalClaims(t, ctx, a.store, cp.ID); claims != quantity {
		t.Fatalf("journal holds %d claims, want %d", claims, quantity)
	}
	for i := range seen {
		testutil.CheckFor(t, 5*time.Second, fmt.Sprintf("subscriber %d's last push", i), func() error {
			if c := seen[i].get(cp.ID); c.Claimed != quantity || c.Status != couponmesh.StatusSoldOut {
				return fmt.Errorf("claimed=%d status=%s", c.Claimed, c.Status)
			}
			return nil
		})
	}
}

func TestClaimIsIdempotentPerRequestID(t *testing.T) {
	a := startApp(t, nil)
	cp := createCoupon(t, a, "acme", couponmesh.CouponSpec{Title: ptr("Once"), Quantity: ptr(10)})
	ctx := context.Background()
	c := dial(t, a, "ann", client.Options{})
	first, err := c.Claim(ctx, cp.ID, "r-1")
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Claim(ctx, cp.ID, "r-1")
	if err != nil || again != first {
		t.Fatalf("retry: %+v %v, want %+v", again, err, first)
	}
	// Another session of the same user, same rid: still the first answer.
	c2 := dial(t, a, "ann", client.Options{})
	if again, err := c2.Claim(ctx, cp.ID, "r-1"); err != nil || again.Code != first.Code {
		t.Fatalf("retry from another session: %+v %v", again, err)
	}
	if _, err := c.Claim(ctx, cp.ID, "r-2"); couponmesh.ErrorCode(err) != couponmesh.CodeAlreadyClaimed {
		t.Fatalf("new rid: %v, want already_claimed", err)
	}
	w, err := c.Wallet(ctx)
	if err != nil || len(w) != 1 || w[0].Code != first.Code {
		t.Fatalf("wallet: %+v %v", w, err)
	}
	got, err := c.Get(ctx, cp.ID)
	if err != nil || got.Claimed != 1 {
		t.Fatalf("coupon after retries: %+v %v", got, err)
	}
}

// Followers get pushes of changes and feed entries; the feed has no gaps.
func TestFollowPushesAndFeed(t *testing.T) {
	a := startApp(t, nil)
	cp := createCoupon(t, a, "acme", couponmesh.CouponSpec{Title: ptr("Follow me"), Quantity: ptr(10)})
	ctx := context.Background()
	var pushes latest
	feed := make(chan couponmesh.FeedEntry, 100)
	c := dial(t, a, "fay", client.Options{OnCoupon: pushes.on, OnFeed: func(e couponmesh.FeedEntry) { feed <- e }})
	if _, err := c.Feed(ctx, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Follow(ctx, cp.ID); err != nil {
		t.Fatal(err)
	}
	api := client.NewAPI(baseURL(a), login(t, baseURL(a), "acme", couponmesh.RoleMerchant))
	if _, err := api.UpdateCoupon(ctx, cp.ID, couponmesh.CouponSpec{Title: ptr("Follow me, now 2 for 1")}); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, "push of the update", func() error {
		if got := pushes.get(cp.ID); got.Title != "Follow me, now 2 for 1" {
			return fmt.Errorf("title %q", got.Title)
		}
		return nil
	})
	want := []string{couponmesh.FeedFollowed, couponmesh.FeedCouponChanged, couponmesh.FeedClaimed}
	var got []couponmesh.FeedEntry
	for len(got) < len(want) {
		if len(got) == 2 { // the change notice is asynchronous: claim once it is in
			if _, err := c.Claim(ctx, cp.ID, "r"); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case e := <-feed:
			got = append(got, e)
		case <-time.After(5 * time.Second):
			t.Fatalf("feed pushes: got %+v, want types %v", got, want)
		}
	}
	for i, e := range got {
		if e.Seq != int64(i+1) || e.Type != want[i] {
			t.Fatalf("feed push %d: seq %d type %s, want seq %d type %s", i, e.Seq, e.Type, i+1, want[i])
		}
	}
	entries, err := c.Feed(ctx, 1, 0)
	if err != nil || len(entries) != 2 || entries[0].Seq != 2 {
		t.Fatalf("feed after 1: %+v %v", entries, err)
	}
}

// The coupon grain keeps its followers: a user who follows after the set
// was loaded gets the next change in the feed, and an unfollow ends it.
func TestFollowAfterFollowersLoaded(t *testing.T) {
	a := startApp(t, nil)
	cp := createCoupon(t, a, "acme", couponmesh.CouponSpec{Title: ptr("v1"), Quantity: ptr(10)})
	ctx := context.Background()
	api := client.NewAPI(baseURL(a), login(t, baseURL(a), "acme", couponmesh.RoleMerchant))
	gus, fay := dial(t, a, "gus", client.Options{}), dial(t, a, "fay", client.Options{})
	update := func(title string) {
		t.Helper()
		if _, err := api.UpdateCoupon(ctx, cp.ID, couponmesh.CouponSpec{Title: ptr(title)}); err != nil {
			t.Fatal(err)
		}
	}
	// feedIs waits until c's feed shows these entries: type, or type@title.
	feedIs := func(c *client.Client, who string, want ...string) {
		t.Helper()
		testutil.CheckFor(t, 5*time.Second, who+"'s feed", func() error {
			entries, err := c.Feed(ctx, 0, 0)
			if err != nil {
				return err
			}
			var got []string
			for _, e := range entries {
				if e.Change != nil {
					got = append(got, e.Type+"@"+e.Change.Title)
				} else {
					got = append(got, e.Type)
				}
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("%v, want %v", got, want)
			}
			return nil
		})
	}
	changed := func(title string) string { return couponmesh.FeedCouponChanged + "@" + title }

	if _, err := gus.Follow(ctx, cp.ID); err != nil {
		t.Fatal(err)
	}
	update("v2") // the grain loads its followers: gus
	feedIs(gus, "gus", couponmesh.FeedFollowed, changed("v2"))

	if _, err := fay.Follow(ctx, cp.ID); err != nil {
		t.Fatal(err)
	}
	update("v3")
	feedIs(fay, "fay", couponmesh.FeedFollowed, changed("v3"))

	if err := fay.Unfollow(ctx, cp.ID); err != nil {
		t.Fatal(err)
	}
	update("v4")
	feedIs(gus, "gus", couponmesh.FeedFollowed, changed("v2"), changed("v3"), changed("v4"))
	feedIs(fay, "fay", couponmesh.FeedFollowed, changed("v3"), couponmesh.FeedUnfollowed)
}

func readAll(r io.Reader) string { b, _ := io.ReadAll(r); return string(b) }

// An idle grain passivates and the next request reactivates it from the
// database with the same state.
func TestIdleGrainPassivatesAndReactivates(t *testing.T) {
	a := startApp(t, func(c *Config) { c.Actors.PassivateAfter = 300 * time.Millisecond })
	ctx := context.Background()
	cp := createCoupon(t, a, "acme", couponmesh.CouponSpec{Title: ptr("Sleepy"), Quantity: ptr(4)})
	c := dial(t, a, "pat", client.Options{})
	claim, err := c.Claim(ctx, cp.ID, "r1")
	if err != nil {
		t.Fatal(err)
	}
	activations := func() int {
		resp, err := http.Get("http://" + a.AdminAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		for _, line := range strings.Split(readAll(resp.Body), "\n") {
			if strings.HasPrefix(line, `couponmesh_activations_total{kind="coupon"}`) {
				var n int
				fmt.Sscan(strings.Fields(line)[1], &n)
				return n
			}
		}
		return 0
	}
	if n := activations(); n != 1 {
		t.Fatalf("coupon activations = %d, want 1", n)
	}
	time.Sleep(time.Second) // past the idle timeout
	got, err := c.Get(ctx, cp.ID)
	if err != nil || got.Claimed != 1 || got.Version != 2 {
		t.Fatalf("after passivation: %+v %v", got, err)
	}
	if n := activations(); n != 2 {
		t.Fatalf("coupon activations = %d, want 2 (passivated, then reactivated)", n)
	}
	if again, err := c.Claim(ctx, cp.ID, "r1"); err != nil || again.Code != claim.Code {
		t.Fatalf("idempotent claim after reactivation: %+v %v", again, err)
	}
}

// A grain that is watched when its idle period ends stays while watched and
// passivates once its watchers left. (With protoactor's ReceiveTimeout,
// which stays off once it fired, such a grain stayed in memory for good.)
func TestWatchedGrainPassivatesAfterWatchersLeave(t *testing.T) {
	a := startApp(t, func(c *Config) { c.Actors.PassivateAfter = 300 * time.Millisecond })
	cp := createCoupon(t, a, "acme", couponmesh.CouponSpec{Title: ptr("Watched"), Quantity: ptr(4)})
	c := dial(t, a, "wes", client.Options{})
	if _, err := c.Subscribe(context.Background(), []client.Sub{{ID: cp.ID}}); err != nil {
		t.Fatal(err)
	}
	live := func() bool {
		var res struct {
			Actors []ActorInfo `json:"actors"`
		}
		if st := adminDo(t, a.AdminAddr(), http.MethodGet, "/admin/api/actors?kind=coupon", &res); st != http.StatusOK {
			t.Fatalf("actors: status %d", st)
		}
		return slices.ContainsFunc(res.Actors, func(ai ActorInfo) bool { return ai.Identity == "coupon/"+cp.ID })
	}
	testutil.Until(t, 10*time.Second, "the coupon grain active", live)
	time.Sleep(time.Second) // several idle periods while watched
	if !live() {
		t.Fatal("the watched coupon grain passivated")
	}
	c.Close()
	testutil.Until(t, 15*time.Second, "the coupon grain passivated after its watcher left", func() bool { return !live() })
}

// Reads of a coupon active on this node are answered from the state its
// grain published (actors.LocalCoupons), not through the actor system: a
// read after an acknowledged claim sees it, and concurrent readers never see
// the version go back.
func TestLocalReadsSeeAcknowledgedWrites(t *testing.T) {
	a := startApp(t, nil)
	ctx := context.Background()
	cp := createCoupon(t, a, "acme", couponmesh.CouponSpec{Title: ptr("Fresh"), Quantity: ptr(40)})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			last := int64(0)
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := a.svc.Coupon(ctx, cp.ID)
				if err != nil {
					t.Error(err)
					return
				}
				if c.Version < last {
					t.Errorf("version went back from %d to %d", last, c.Version)
					return
				}
				last = c.Version
			}
		})
	}
	for i := range 40 {
		if _, err := a.svc.Claim(ctx, fmt.Sprintf("reader%02d", i), cp.ID, "r"); err != nil {
			t.Fatal(err)
		}
		c, err := a.svc.Coupon(ctx, cp.ID)
		if err != nil || c.Claimed != i+1 || c.Remaining != 40-i-1 {
			t.Fatalf("read after claim %d: claimed %d remaining %d, %v", i+1, c.Claimed, c.Remaining, err)
		}
	}
	close(stop)
	wg.Wait()
	if c, _ := a.svc.Coupon(ctx, cp.ID); c.Status != couponmesh.StatusSoldOut {
		t.Fatalf("status %q after the last claim, want sold_out", c.Status)
	}
}
