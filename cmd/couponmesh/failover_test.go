package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/internal/history"
	"github.com/couponmesh/couponmesh/internal/testutil"
)

// shopper is a reconnecting client that follows a few coupons, reads its
// feed, and claims coupons in order, retrying a claim whose outcome is
// unknown with the same rid, as the SDK documentation says.
type shopper struct {
	user   string
	home   *proc
	c      *client.Client
	seen   latest
	follow []string

	mu        sync.Mutex
	feed      []int64 // seqs delivered by OnFeed, in order
	acked     []couponmesh.Claim
	ackedAt   []time.Time // when each acked claim started
	errs      []error
	states    []stateAt // every connection state change
	connected time.Time // last StateConnected
}

// stateAt is a client state change and when it came.
type stateAt struct {
	at time.Time
	s  client.State
}

func newShopper(t *testing.T, c *tcluster, i int, follow []string) *shopper {
	t.Helper()
	home := c.nodes[i%len(c.nodes)]
	var addrs []string
	for _, p := range c.nodes {
		if p != home {
			addrs = append(addrs, p.ws())
		}
	}
	s := &shopper{user: fmt.Sprintf("shopper%d", i), home: home, follow: follow}
	s.dial(t, home.base(), home.ws(), client.Options{Addresses: addrs})
	return s
}

// dial connects the shopper to url (reconnecting to opts.Addresses too),
// with a token from the dev login at base, follows its coupons and reads its
// feed so far.
func (s *shopper) dial(t *testing.T, base, url string, opts client.Options) {
	t.Helper()
	ctx := context.Background()
	tok, err := client.DevLogin(ctx, base, s.user, couponmesh.RoleShopper)
	if err != nil {
		t.Fatal(err)
	}
	opts.Reconnect = true
	opts.Token = func(context.Context) (string, error) { return tok, nil }
	opts.Backoff = client.Backoff{Base: 50 * time.Millisecond, Max: time.Second}
	opts.OnCoupon = s.seen.on
	opts.OnFeed = func(e couponmesh.FeedEntry) {
		s.mu.Lock()
		s.feed = append(s.feed, e.Seq)
		s.mu.Unlock()
	}
	opts.OnState = func(st client.State) {
		now := time.Now()
		s.mu.Lock()
		s.states = append(s.states, stateAt{now, st})
		if st == client.StateConnected {
			s.connected = now
		}
		s.mu.Unlock()
	}
	if s.c, err = client.Dial(ctx, url, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.c.Close() })
	for _, id := range s.follow {
		if _, err := s.c.Follow(ctx, id); err != nil {
			t.Fatalf("%s follows %s: %v", s.user, id, err)
		}
	}
	entries, err := s.c.Feed(ctx, 0, 500)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	for _, e := range entries {
		s.feed = append(s.feed, e.Seq)
	}
	s.mu.Unlock()
}

// reconnected reports whether the shopper ever lost its connection.
func (s *shopper) reconnected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.ContainsFunc(s.states, func(x stateAt) bool { return x.s == client.StateReconnecting })
}

// outages returns how long each loss of the connection after since lasted
// (reconnecting until connected again).
func (s *shopper) outages(since time.Time) []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []time.Duration
	var down time.Time
	for _, tr := range s.states {
		switch {
		case tr.at.Before(since):
		case tr.s != client.StateConnected && down.IsZero():
			down = tr.at
		case tr.s == client.StateConnected && !down.IsZero():
			out = append(out, tr.at.Sub(down))
			down = time.Time{}
		}
	}
	return out
}

// claimAll claims each coupon once, pacing the claims, until stop, and
// records every attempt in hist. Errors carry when the claim was sent, to
// place them in the node logs.
func (s *shopper) claimAll(hist *history.Recorder, coupons []string, pace time.Duration, stop <-chan struct{}) {
	via := "balancer"
	if s.home != nil {
		via = s.home.name
	}
	for k, id := range coupons {
		select {
		case <-stop:
			return
		case <-time.After(pace):
		}
		rid := fmt.Sprintf("%s-%d", s.user, k)
		for {
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			cl, err := hist.Claim(ctx, s.c, via, s.user, id, rid)
			cancel()
			code := couponmesh.ErrorCode(err)
			s.mu.Lock()
			switch {
			case err == nil:
				s.acked = append(s.acked, cl)
				s.ackedAt = append(s.ackedAt, start)
			case code == couponmesh.CodeSoldOut:
			default:
				s.errs = append(s.errs, fmt.Errorf("claim %s (rid %s) sent %s, answered after %s: %w",
					id, rid, start.UTC().Format("15:04:05.000"), time.Since(start).Round(time.Millisecond), err))
			}
			s.mu.Unlock()
			if code != couponmesh.CodeUnavailable && !errors.Is(err, context.DeadlineExceeded) {
				break
			}
			time.Sleep(100 * time.Millisecond) // unknown outcome: retry with the same rid
		}
	}
}

// checkFeed reports a gap or a repeat in the feed the shopper received, or
// that it does not end at last (the user's last seq in the database; 0:
// not checked).
func (s *shopper) checkFeed(last int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := history.CheckFeed(s.feed, last); err != nil {
		return fmt.Errorf("%s: %w", s.user, err)
	}
	return nil
}

// checkFinal waits until the shopper has the newest state of every coupon
// it follows and its feed holds every entry of its user's journal, read
// from the database through j; the feed it received must have no gap.
func (s *shopper) checkFinal(t *testing.T, auditor *client.Client, j history.Journal) {
	t.Helper()
	ctx := context.Background()
	var end int64
	testutil.CheckFor(t, 10*time.Second, s.user+" has the final state", func() error {
		for _, id := range s.follow {
			want, err := auditor.Get(ctx, id)
			if err != nil {
				return err
			}
			if got := s.seen.get(id); got.Version != want.Version {
				return fmt.Errorf("%s: version %d, newest %d", id, got.Version, want.Version)
			}
		}
		var err error
		if end, err = history.FeedEnd(ctx, j, s.user); err != nil {
			return err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if end > 0 && (len(s.feed) == 0 || s.feed[len(s.feed)-1] != end) {
			return fmt.Errorf("feed ends at %v, the user's journal at %d", s.feed[max(len(s.feed)-1, 0):], end)
		}
		return nil
	})
	if err := s.checkFeed(end); err != nil {
		t.Error(err)
	}
}

// checkFinalAll runs checkFinal for every shopper, with a session of
// auditor on p and the journal of c's database.
func checkFinalAll(t *testing.T, c *tcluster, p *proc, auditor string, shoppers []*shopper) {
	t.Helper()
	a := p.session(t, auditor)
	journal := openJournal(t, c.db)
	for _, s := range shoppers {
		s.checkFinal(t, a, journal)
	}
}

func ackedByUser(shoppers []*shopper) map[string][]couponmesh.Claim {
	out := make(map[string][]couponmesh.Claim)
	for _, s := range shoppers {
		s.mu.Lock()
		out[s.user] = slices.Clone(s.acked)
		s.mu.Unlock()
	}
	return out
}

// Kill -9 of one of three nodes while shoppers on every node claim: every
// acknowledged claim is kept (read from the journal itself, and through
// the grains), no coupon is over-claimed and no unit granted twice (12
// shoppers claim each coupon of 8 units: all sell out), the shoppers of the
// dead node reconnect to the others and end with the newest state of the
// coupons they follow and a gap-free feed.
func TestClusterKillNodeUnderClaims(t *testing.T) {
	c := startCluster(t, 3)
	coupons := createCoupons(t, c.nodes[0], "k", 40, 8)
	var hist history.Recorder
	victim := c.nodes[1]
	var shoppers []*shopper
	for i := range 12 {
		shoppers = append(shoppers, newShopper(t, c, i, []string{coupons[i%40], coupons[(i+13)%40]}))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range shoppers {
		wg.Go(func() { s.claimAll(&hist, coupons, 40*time.Millisecond, stop) })
	}
	// Kill when about a third of the 320 claims the coupons allow are in:
	// the shoppers go through the coupons in the same order, so the dead
	// node's coupons further on are still to be claimed (a fixed 1.5 s
	// sometimes left none: the shoppers had passed them all).
	testutil.CheckFor(t, 20*time.Second, "100 claims acknowledged", func() error {
		n := 0
		for _, s := range shoppers {
			s.mu.Lock()
			n += len(s.acked)
			s.mu.Unlock()
		}
		if n < 100 {
			return fmt.Errorf("%d acknowledged", n)
		}
		return nil
	})
	owned := map[string]bool{}
	for _, id := range victim.actors(t, "coupon") {
		owned[id] = true
	}
	victim.kill(t)
	killed := time.Now()
	wg.Wait()
	close(stop)

	// The first claim on an identity the dead node held that started after
	// the kill and succeeded.
	var first time.Duration = -1
	for _, s := range shoppers {
		s.mu.Lock()
		for i, cl := range s.acked {
			if owned["coupon/"+cl.Coupon] && s.ackedAt[i].After(killed) {
				if d := cl.At.Sub(killed); first < 0 || d < first {
					first = d
				}
			}
		}
		s.mu.Unlock()
	}
	var resynced time.Duration
	for _, s := range shoppers {
		if s.home == victim {
			s.mu.Lock()
			resynced = max(resynced, s.connected.Sub(killed))
			s.mu.Unlock()
		}
	}
	t.Logf("kill -9 of %s (held %d coupons): first successful claim on one of them %s after the kill; its shoppers reconnected within %s",
		victim.name, len(owned), first.Round(time.Millisecond), resynced.Round(time.Millisecond))
	if first < 0 {
		t.Error("no claim on an identity of the dead node succeeded after the kill")
	}

	errs := 0
	for _, s := range shoppers {
		s.mu.Lock()
		errs += len(s.errs)
		s.mu.Unlock()
	}
	t.Logf("claims retried after unknown outcomes: %d", errs)
	verifyAcked(t, c.nodes[0], ackedByUser(shoppers), coupons)
	checkHistory(t, c.db, coupons, &hist, true)
	checkFinalAll(t, c, c.nodes[2], "auditor2", shoppers)
	if d := duplicates(c.owners("coupon")); len(d) > 0 {
		t.Errorf("identities activated on several nodes: %v", d)
	}
}

// rawShopper claims over a session without the SDK's retries (no
// Reconnect), so that every error and every reply lost with a connection
// is seen where it happens. On a 1012 close it moves to the first node the
// close reason names, as a client without the SDK would, and sends the
// claim again with the same rid. A claim refused with client.ErrNotSent
// (the node had sent its draining push, so the SDK did not send it) is a
// definite "not applied": it waits for the 1012 close and is sent again
// with the same rid on the next node.
type rawShopper struct {
	user string
	node *proc
	c    *client.Client

	mu      sync.Mutex
	reasons []string // of the 1012 closes received
	errs    []error  // error replies (but sold_out)
	notSent []error  // claims not sent: the node was draining (resend-safe)
	lost    []error  // claims sent whose reply never came: the connection closed first
}

func (s *rawShopper) claimAll(t *testing.T, c *tcluster, hist *history.Recorder, coupons []string, pace time.Duration) {
	for k, id := range coupons {
		time.Sleep(pace)
		rid := fmt.Sprintf("%s-%d", s.user, k)
		for {
			select {
			case <-s.c.Done(): // closed between two claims: no claim was in flight
				if !s.move(t, c) {
					return
				}
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := hist.Claim(ctx, s.c, s.node.name, s.user, id, rid)
			cancel()
			if err == nil || couponmesh.ErrorCode(err) == couponmesh.CodeSoldOut {
				break
			}
			// An error reply, or a claim in flight when the connection
			// closed (its reply lost): the same rid again.
			err = fmt.Errorf("claim %s (rid %s) on %s: %w", id, rid, s.node.name, err)
			s.mu.Lock()
			switch {
			case errors.Is(err, client.ErrNotSent):
				s.notSent = append(s.notSent, err)
			case errors.Is(err, client.ErrClosed):
				s.lost = append(s.lost, err)
			default:
				s.errs = append(s.errs, err)
			}
			s.mu.Unlock()
			wait := 100 * time.Millisecond
			if errors.Is(err, client.ErrNotSent) {
				// The node closes with 1012 once it has answered what it
				// got (DrainGrace, then RequestTimeout at most).
				wait = 30 * time.Second
			}
			select {
			case <-s.c.Done():
			case <-time.After(wait):
			}
		}
	}
}

// move follows the 1012 close that ended the session to the first node its
// reason names; it reports false (and fails t) on any other end.
func (s *rawShopper) move(t *testing.T, c *tcluster) bool {
	var ce websocket.CloseError
	if s.c.CloseStatus() != websocket.StatusServiceRestart || !errors.As(s.c.Err(), &ce) {
		t.Errorf("%s: the session on %s ended with %v, want a 1012 close", s.user, s.node.name, s.c.Err())
		return false
	}
	s.mu.Lock()
	s.reasons = append(s.reasons, ce.Reason)
	s.mu.Unlock()
	next, _, _ := strings.Cut(ce.Reason, ",")
	i := slices.IndexFunc(c.nodes, func(p *proc) bool { return p.http == next })
	if i < 0 {
		t.Errorf("%s: 1012 reason %q names no node", s.user, ce.Reason)
		return false
	}
	s.node = c.nodes[i]
	s.c = s.node.session(t, s.user)
	return true
}

// Drain of a node under load (ctl drain through another node's admin
// API): no shopper sees an error, the drained node's shoppers end up on the
// other nodes, and the node exits 0. Errors are counted twice: at the
// reconnecting SDK shoppers (which retry unavailable and lost replies, so a
// short error is invisible to them) and at shoppers without the SDK's
// retries, which see every error reply and every reply lost with a
// connection, and get the 1012 close with the other nodes' addresses.
// Demand exceeds supply (12 shoppers, 6 units a coupon): every coupon sells
// out, and the journal holds exactly what the shoppers were told.
func TestClusterDrainUnderLoad(t *testing.T) {
	c := startCluster(t, 3)
	coupons := createCouponsVia(t, merchantAPI(t, c.nodes[0]), "d", 80, 6)
	victim := c.nodes[2]
	var hist history.Recorder
	var shoppers []*shopper
	for i := range 9 {
		shoppers = append(shoppers, newShopper(t, c, i, []string{coupons[i%40]}))
	}
	var raws []*rawShopper
	for i := range 3 {
		user := fmt.Sprintf("raw%d", i)
		raws = append(raws, &rawShopper{user: user, node: victim, c: victim.session(t, user)})
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// 80 claims 60 ms apart: about 5 s, through the drain, within a user's
	// write burst (100).
	for _, s := range shoppers {
		wg.Go(func() { s.claimAll(&hist, coupons, 60*time.Millisecond, stop) })
	}
	for _, s := range raws {
		wg.Go(func() { s.claimAll(t, c, &hist, coupons, 60*time.Millisecond) })
	}
	time.Sleep(time.Second)
	start := time.Now()
	out := ctl(t, c.nodes[0], "drain", victim.name, "--wait")
	t.Logf("ctl drain: %s", out)
	exited := make(chan error, 1)
	go func() { exited <- victim.Err() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("drained node exited with %v, want 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("drained node still running 30 s after ctl drain")
	}
	drain := time.Since(start)
	wg.Wait()
	close(stop)

	t.Logf("drain of %s took %s", victim.name, drain.Round(time.Millisecond))
	for _, s := range shoppers {
		s.mu.Lock()
		for _, err := range s.errs {
			t.Errorf("%s (home %s): client-visible error: %v", s.user, s.home.name, err)
		}
		s.mu.Unlock()
	}
	others := []string{c.nodes[0].http, c.nodes[1].http}
	for _, s := range raws {
		s.mu.Lock()
		for _, err := range s.errs {
			t.Errorf("%s (no SDK retries): client-visible error: %v", s.user, err)
		}
		// The drain handover (draining push, the SDK's drained, then 1012
		// once every request received is answered) loses no reply: a
		// claim sent and left unanswered at the close is a failure. One
		// the SDK did not send after the draining push is no error.
		for _, err := range s.lost {
			t.Errorf("%s (no SDK retries): reply lost at the drain: %v", s.user, err)
		}
		t.Logf("%s: %d claims not sent after the draining push (sent again on the next node)", s.user, len(s.notSent))
		if len(s.reasons) != 1 {
			t.Errorf("%s got %d 1012 closes, want 1", s.user, len(s.reasons))
		}
		for _, r := range s.reasons {
			for _, o := range others {
				if !strings.Contains(r, o) {
					t.Errorf("%s: 1012 reason %q does not name %s", s.user, r, o)
				}
			}
		}
		t.Logf("%s: 1012 reasons %q, ended on %s", s.user, s.reasons, s.node.name)
		s.mu.Unlock()
	}
	var moved int
	for _, s := range shoppers {
		if s.home == victim {
			if !s.reconnected() {
				t.Errorf("%s was on the drained node and never reconnected", s.user)
			}
			moved++
		}
		if err := s.c.Ping(context.Background()); err != nil {
			t.Errorf("%s after the drain: %v", s.user, err)
		}
	}
	sessions := 0
	ms, err := c.nodes[0].members()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Status == "alive" {
			sessions += m.Sessions
		}
	}
	t.Logf("%d shoppers moved off %s; %d sessions on the remaining nodes", moved, victim.name, sessions)
	if sessions < len(shoppers)+len(raws) {
		t.Errorf("%d sessions on the remaining nodes, want at least %d", sessions, len(shoppers)+len(raws))
	}
	verifyAcked(t, c.nodes[0], ackedByUser(shoppers), coupons)
	checkHistory(t, c.db, coupons, &hist, true)
	checkFinalAll(t, c, c.nodes[1], "auditor3", shoppers)
}
