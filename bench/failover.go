package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
)

// couponmesh bench failover: three node processes on one devdb; shoppers
// claim coupons of small quantities through the Go SDK (Reconnect, all three
// addresses); after a warm-up one node is killed with SIGKILL while the
// load goes on. Measured: how long until every identity the dead node held
// answers again from the survivors, how long until each client that lost
// its connection is connected and resynced again, and, read back through
// the API after the run, acknowledged claims that were lost and claims
// beyond a coupon's quantity.

// failoverResult is the JSON of the failover scenario.
type failoverResult struct {
	Scenario  string    `json:"scenario"`
	Time      time.Time `json:"time"`
	Machine   machine   `json:"machine"`
	Placement string    `json:"placement"` // where the node processes ran
	Nodes     int       `json:"nodes"`
	Victim    string    `json:"victim"`
	Shoppers  int       `json:"shoppers"`
	Coupons   int       `json:"coupons"`
	Quantity  int       `json:"quantity"`
	Subs      int       `json:"subscriptionsPerShopper"`
	Racers    int       `json:"racersPerCoupon"` // shoppers claiming the same coupons in the same order
	Pace      string    `json:"claimPace"`
	Warmup    string    `json:"warmup"`
	After     string    `json:"loadAfterKill"`
	Backoff   string    `json:"clientBackoff"`

	DetectedSeconds    float64       `json:"failureDetectedSeconds"` // until the first node listed the victim as gone (-1: never seen)
	VictimCoupons      int           `json:"victimCoupons"`
	VictimUsers        int           `json:"victimUsers"`
	ServedP50Seconds   float64       `json:"servedAgainP50Seconds"`
	ServedMaxSeconds   float64       `json:"servedAgainMaxSeconds"`
	CouponsMaxSeconds  float64       `json:"couponsServedAgainMaxSeconds"`
	UsersMaxSeconds    float64       `json:"usersServedAgainMaxSeconds"`
	ServedMs           []int64       `json:"servedAgainMs"` // each identity of the killed node, sorted
	NotServed          []string      `json:"notServedAgain,omitempty"`
	HomedOnVictim      int           `json:"clientsHomedOnVictim"`
	Affected           int           `json:"clientsThatLostTheirConnection"`
	ResyncP50Seconds   float64       `json:"resyncP50Seconds"`
	ResyncMaxSeconds   float64       `json:"resyncMaxSeconds"`
	NotResynced        int           `json:"clientsNotResynced"`
	ResyncMs           []int64       `json:"resyncMs"` // each client that lost its connection, sorted
	ClaimsOK           int           `json:"claimsAcknowledged"`
	ClaimsSoldOut      int           `json:"claimsSoldOut"`
	ClaimRetries       int           `json:"claimRetries"` // unknown outcomes retried with the same rid
	ClaimsAbandoned    int           `json:"claimsAbandoned"`
	ClaimErrors        []string      `json:"claimErrors,omitempty"` // first few errors that were not sold_out
	OKPerSecBefore     float64       `json:"acknowledgedClaimsPerSecBeforeKill"`
	OKPerSecAfter      float64       `json:"acknowledgedClaimsPerSecAfterKill"`
	ClaimP99BeforeMs   float64       `json:"claimP99BeforeKillMs"`
	ClaimP99AfterMs    float64       `json:"claimP99AfterKillMs"`
	ClaimMaxAfterMs    float64       `json:"claimMaxAfterKillMs"`
	SoldOutCoupons     int           `json:"soldOutCoupons"`
	WalletClaims       int           `json:"claimsInWallets"`
	LostAcked          int           `json:"lostAcknowledgedClaims"`
	OverClaims         int           `json:"overClaims"`
	Problems           []string      `json:"problems,omitempty"` // first few lost or over-claims, described
	VerifySeconds      float64       `json:"verifySeconds"`
	SetupSeconds       float64       `json:"setupSeconds"`
	TotalSeconds       float64       `json:"totalSeconds"`
	NodeCPUPercentLoad float64       `json:"survivorsCpuPercentAfterKill"` // summed over the two survivors, % of one core
	Figures            []benchFigure `json:"figures"`
}

// foShopper is one reconnecting shopper session and what it saw.
type foShopper struct {
	user string
	home int // index of the node it dialed first
	c    *client.Client

	mu     sync.Mutex
	states []foState
	acked  []foClaim
	lat    []foLatency
}

type foState struct {
	at time.Time
	s  client.State
}

// foClaim is an acknowledged claim and when it was sent.
type foClaim struct {
	couponmesh.Claim
	sent time.Time
}

// foLatency is how long one claim attempt took, by when it was sent.
type foLatency struct {
	sent time.Time
	d    time.Duration
}

// failoverFlags are the flags of bench failover.
type failoverFlags struct {
	out, nodeCPUs                              string
	shoppers, ncoupons, quantity, racers, subs int
	pace, warmup, after, window                time.Duration
}

func parseFailoverFlags(args []string) (failoverFlags, error) {
	var f failoverFlags
	fs := flag.NewFlagSet("bench failover", flag.ContinueOnError)
	fs.StringVar(&f.out, "out", "bench-results", "directory for the JSON results")
	fs.StringVar(&f.nodeCPUs, "node-cpus", "", "taskset CPU list for the three nodes (empty: not pinned, they share the machine's cores with the load)")
	fs.IntVar(&f.shoppers, "shoppers", 30, "reconnecting shopper sessions, spread over the three nodes")
	fs.IntVar(&f.ncoupons, "coupons", 300, "coupons (each shopper tries each at most once)")
	fs.IntVar(&f.quantity, "quantity", 5, "quantity of each coupon (small, so that coupons sell out during the run)")
	fs.IntVar(&f.racers, "racers", 10, "shoppers that claim the coupons in the same order, racing for the last of each")
	fs.IntVar(&f.subs, "subs", 5, "coupons each shopper subscribes to (resubscribed after a reconnect)")
	fs.DurationVar(&f.pace, "pace", 100*time.Millisecond, "pause between one shopper's claims (each shopper waits for its answer too)")
	fs.DurationVar(&f.warmup, "warmup", 3*time.Second, "load before the kill")
	fs.DurationVar(&f.after, "after", 8*time.Second, "load after the kill")
	fs.DurationVar(&f.window, "window", 30*time.Second, "how long after the kill identities and clients may take to come back before they count as not back")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if f.shoppers <= 0 || f.racers <= 0 || f.ncoupons <= 0 || f.quantity <= 0 || f.subs < 0 || f.pace <= 0 || f.warmup <= 0 || f.after <= 0 || f.window < f.after {
		return f, errors.New("bench failover: --shoppers, --racers, --coupons, --quantity, --pace, --warmup and --after must be positive, --window at least --after")
	}
	return f, nil
}

// foRun is one failover run: its processes, shoppers and what it measured.
type foRun struct {
	f         failoverFlags
	e         *benchEnv
	nodes     []*benchNode
	ids       []string
	ss        []*foShopper
	victimIdx int
	res       *failoverResult

	stop     chan struct{} // closed to end the load
	tally    foTally
	loadWG   sync.WaitGroup
	started  time.Time // the load started
	killed   time.Time
	deadline time.Time // killed + window
	ended    time.Time // the load ended

	held       []string // identities the victim held
	coupons    []string // their ids, by kind
	users      []string
	userProbes map[string]*client.Client
	probeAPIs  []*client.API
	served     map[string]time.Duration // by identity: from the kill until it answered
}

func benchFailover(ctx context.Context, args []string) (err error) {
	f, err := parseFailoverFlags(args)
	if err != nil {
		return err
	}
	t0 := time.Now()
	res := failoverResult{
		Scenario: "failover", Machine: describeMachine(f.nodeCPUs), Nodes: 3,
		Shoppers: f.shoppers, Racers: f.racers, Coupons: f.ncoupons, Quantity: f.quantity, Subs: min(f.subs, f.ncoupons),
		Pace: f.pace.String(), Warmup: f.warmup.String(), After: f.after.String(),
		Backoff:         fmt.Sprintf("client.DefaultBackoff (base %s, max %s)", client.DefaultBackoff.Base, client.DefaultBackoff.Max),
		DetectedSeconds: -1,
	}
	if f.nodeCPUs == "" {
		res.Placement = "not pinned: the three nodes, the devdb and the load share all cores"
	} else {
		res.Placement = "the three nodes pinned to CPUs " + f.nodeCPUs + " (taskset); the devdb and the load wherever the bench runs"
	}
	e, err := newBenchEnv(f.out, f.nodeCPUs)
	if err != nil {
		return err
	}
	defer e.close()
	nodes, _, _, ids, err := startThree(ctx, e, "fo", f.ncoupons, f.quantity)
	if err != nil {
		return err
	}
	ss, err := dialFoShoppers(ctx, e, nodes, ids, "fs", f.shoppers, res.Subs)
	defer closeFoShoppers(ss)
	if err != nil {
		return err
	}
	res.SetupSeconds = time.Since(t0).Seconds()

	r := &foRun{f: f, e: e, nodes: nodes, ids: ids, ss: ss, victimIdx: 1, res: &res}
	res.Victim = r.victim().name
	if err := r.warmUp(ctx); err != nil {
		return err
	}
	err = r.prepareProbes(ctx)
	defer func() {
		for _, c := range r.userProbes {
			c.Close()
		}
	}()
	if err != nil {
		return err
	}
	if err := r.killAndProbe(ctx); err != nil {
		return err
	}
	r.tallyServed()
	r.tallyResynced()
	r.tallyClaims()

	// Read everything back through the API of a survivor.
	v0 := time.Now()
	if err := foVerify(ctx, &res, ss, r.probeAPIs[0], ids); err != nil {
		return err
	}
	res.VerifySeconds = time.Since(v0).Seconds()
	res.Time = time.Now().UTC()
	res.TotalSeconds = time.Since(t0).Seconds()
	return r.report()
}

func (r *foRun) victim() *benchNode { return r.nodes[r.victimIdx] }

// warmUp starts the load and returns after the warm-up: each shopper
// claims the coupons once each, in the order of its group of racers, until
// r.stop; an unknown outcome is retried with the same rid (as the SDK's
// documentation says) until retryEnd.
func (r *foRun) warmUp(ctx context.Context) error {
	r.stop = make(chan struct{})
	r.started = time.Now()
	retryEnd := r.started.Add(r.f.warmup + r.f.after + 10*time.Second)
	groups := max(1, len(r.ss)/r.f.racers)
	for i, s := range r.ss {
		k := (i % groups) * len(r.ids) / groups
		order := append(slices.Clone(r.ids[k:]), r.ids[:k]...)
		r.loadWG.Go(func() { s.claimAll(order, r.f.pace, r.stop, retryEnd, &r.tally) })
	}
	select {
	case <-time.After(r.f.warmup):
		return nil
	case <-ctx.Done():
		close(r.stop)
		r.loadWG.Wait()
		return ctx.Err()
	}
}

// prepareProbes lists what the victim holds and readies, before the kill,
// a probe on the survivors for each identity: a session per user, an API
// client per survivor for the coupons.
func (r *foRun) prepareProbes(ctx context.Context) error {
	held, err := foActors(ctx, r.victim())
	if err != nil {
		return err
	}
	r.held = held
	survivors := []*benchNode{r.nodes[0], r.nodes[2]}
	for _, ident := range held {
		kind, id, _ := strings.Cut(ident, "/")
		switch kind {
		case "coupon":
			r.coupons = append(r.coupons, id)
		case "user":
			r.users = append(r.users, id)
		}
	}
	r.res.VictimCoupons, r.res.VictimUsers = len(r.coupons), len(r.users)
	r.userProbes = make(map[string]*client.Client, len(r.users))
	for i, u := range r.users {
		c, err := client.Dial(ctx, survivors[i%len(survivors)].ws(), client.Options{
			Token: func(context.Context) (string, error) { return r.e.token(u, couponmesh.RoleShopper) },
		})
		if err != nil {
			return fmt.Errorf("probe session of user %s: %w", u, err)
		}
		r.userProbes[u] = c
	}
	r.probeAPIs = make([]*client.API, len(survivors))
	for i, n := range survivors {
		r.probeAPIs[i] = client.NewAPI(n.base(), "")
		r.probeAPIs[i].HTTPClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	}
	for _, s := range r.ss {
		if s.home == r.victimIdx {
			r.res.HomedOnVictim++
		}
	}
	return nil
}

// killAndProbe kills the victim with SIGKILL (reaped here, so that close
// skips it), probes every identity it held until it answers from a
// survivor and the first survivor until it lists the victim as gone, and
// ends the load --after the kill. It returns once the probes are done (or
// the window is over).
func (r *foRun) killAndProbe(ctx context.Context) error {
	nodes, victim := r.nodes, r.victim()
	survCPU0 := cpuTime(nodes[0].cmd.Process.Pid) + cpuTime(nodes[2].cmd.Process.Pid)
	if err := victim.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("kill %s: %w", victim.name, err)
	}
	r.killed = time.Now()
	_ = victim.cmd.Wait()
	r.deadline = r.killed.Add(r.f.window)

	var (
		pmu    sync.Mutex
		probes sync.WaitGroup
	)
	r.served = make(map[string]time.Duration, len(r.held))
	probe := func(ident string, read func(context.Context) error) {
		probes.Go(func() {
			for time.Now().Before(r.deadline) && ctx.Err() == nil {
				pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err := read(pctx)
				cancel()
				if err == nil {
					pmu.Lock()
					r.served[ident] = time.Since(r.killed)
					pmu.Unlock()
					return
				}
				time.Sleep(25 * time.Millisecond)
			}
		})
	}
	for i, id := range r.coupons {
		a := r.probeAPIs[i%len(r.probeAPIs)]
		probe("coupon/"+id, func(c context.Context) error { _, err := a.Coupon(c, id); return err })
	}
	for _, u := range r.users {
		c := r.userProbes[u]
		probe("user/"+u, func(ctx context.Context) error { _, err := c.Wallet(ctx); return err })
	}
	probes.Go(func() {
		for time.Now().Before(r.deadline) && ctx.Err() == nil {
			if foDead(ctx, nodes[0], victim.name) {
				pmu.Lock()
				r.res.DetectedSeconds = time.Since(r.killed).Seconds()
				pmu.Unlock()
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	select {
	case <-time.After(r.f.after):
	case <-ctx.Done():
	}
	close(r.stop)
	r.loadWG.Wait()
	r.ended = time.Now()
	r.res.NodeCPUPercentLoad = 100 * (cpuTime(nodes[0].cmd.Process.Pid) + cpuTime(nodes[2].cmd.Process.Pid) - survCPU0).Seconds() / r.ended.Sub(r.killed).Seconds()
	probes.Wait()
	return ctx.Err()
}

// tallyServed: when each identity of the victim answered again.
func (r *foRun) tallyServed() {
	res := r.res
	var servedTimes []time.Duration
	for _, ident := range r.held {
		kind, _, _ := strings.Cut(ident, "/")
		if kind != "coupon" && kind != "user" {
			continue
		}
		d, ok := r.served[ident]
		if !ok {
			res.NotServed = append(res.NotServed, ident)
			continue
		}
		servedTimes = append(servedTimes, d)
		if kind == "coupon" {
			res.CouponsMaxSeconds = max(res.CouponsMaxSeconds, d.Seconds())
		} else {
			res.UsersMaxSeconds = max(res.UsersMaxSeconds, d.Seconds())
		}
	}
	slices.Sort(servedTimes)
	res.ServedP50Seconds = quantile(servedTimes, 0.5).Seconds()
	res.ServedMaxSeconds = quantile(servedTimes, 1).Seconds()
	res.ServedMs = msList(servedTimes)
}

// tallyResynced waits (until the window is over) for the clients that lost
// their connection after the kill to reach their next StateConnected (the
// SDK reports it once the new connection is authenticated, resubscribed
// and the feed read), and records how long each took.
func (r *foRun) tallyResynced() {
	for time.Now().Before(r.deadline) {
		if _, _, pending := foResync(r.ss, r.killed); pending == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	resync, affected, pending := foResync(r.ss, r.killed)
	r.res.Affected, r.res.NotResynced = affected, pending
	slices.Sort(resync)
	r.res.ResyncP50Seconds = quantile(resync, 0.5).Seconds()
	r.res.ResyncMaxSeconds = quantile(resync, 1).Seconds()
	r.res.ResyncMs = msList(resync)
}

// tallyClaims: the claim outcomes, rates and latencies before and after
// the kill.
func (r *foRun) tallyClaims() {
	res := r.res
	r.tally.mu.Lock()
	res.ClaimsSoldOut, res.ClaimRetries, res.ClaimsAbandoned, res.ClaimErrors = r.tally.soldOut, r.tally.retries, r.tally.abandoned, r.tally.errs
	r.tally.mu.Unlock()
	var before, afterLat []time.Duration
	var okBefore, okAfter int
	for _, s := range r.ss {
		s.mu.Lock()
		res.ClaimsOK += len(s.acked)
		for _, c := range s.acked {
			if c.sent.Before(r.killed) {
				okBefore++
			} else {
				okAfter++
			}
		}
		for _, l := range s.lat {
			if l.sent.Before(r.killed) {
				before = append(before, l.d)
			} else {
				afterLat = append(afterLat, l.d)
			}
		}
		s.mu.Unlock()
	}
	res.OKPerSecBefore = float64(okBefore) / r.killed.Sub(r.started).Seconds()
	res.OKPerSecAfter = float64(okAfter) / r.ended.Sub(r.killed).Seconds()
	slices.Sort(before)
	slices.Sort(afterLat)
	res.ClaimP99BeforeMs, res.ClaimP99AfterMs, res.ClaimMaxAfterMs = ms(quantile(before, 0.99)), ms(quantile(afterLat, 0.99)), ms(quantile(afterLat, 1))
}

// report sets the figures, writes the result and prints the summary.
func (r *foRun) report() error {
	res, window := r.res, r.f.window
	notBack := func(n int) string {
		if n == 0 {
			return ""
		}
		return fmt.Sprintf("; %d not back within %s (counted as %s)", n, window, window)
	}
	servedFig := atMost("kill -9 of 1 of 3 nodes: its actors serve again", res.ServedMaxSeconds, "s", 3)
	servedFig.Note = fmt.Sprintf("all %d coupon and %d user identities the killed node held, probed from the survivors (first successful read)%s",
		res.VictimCoupons, res.VictimUsers, notBack(len(res.NotServed)))
	if len(res.NotServed) > 0 {
		servedFig.Value = window.Seconds()
	}
	resyncFig := atMost("kill -9 of 1 of 3 nodes: clients resynced", res.ResyncMaxSeconds, "s", 5)
	resyncFig.Note = fmt.Sprintf("slowest of the %d clients that lost their connection, until connected, resubscribed and the feed read again (SDK StateConnected)%s", res.Affected, notBack(res.NotResynced))
	if res.NotResynced > 0 {
		resyncFig.Value = window.Seconds()
	}
	lostFig := atMost("kill -9 of 1 of 3 nodes: lost acknowledged claims", float64(res.LostAcked), "claims", 0)
	lostFig.Note = fmt.Sprintf("%d acknowledged claims checked against the wallets and the coupons", res.ClaimsOK)
	overFig := atMost("kill -9 of 1 of 3 nodes: over-claims", float64(res.OverClaims), "claims", 0)
	overFig.Note = fmt.Sprintf("%d coupons of quantity %d, %d sold out", res.Coupons, res.Quantity, res.SoldOutCoupons)
	res.Figures = []benchFigure{servedFig, resyncFig, lostFig, overFig}
	path, err := r.e.writeResult("failover", res)
	if err != nil {
		return err
	}
	fmt.Printf("failover: kill -9 of %s (held %d coupons, %d users; failure detected after %.2f s): its actors serve again after %.2f s (p50 %.2f s; target ≤ 3 s); %d of %d clients lost their connection, resynced after %.2f s (p50 %.2f s; target ≤ 5 s)%s; lost acknowledged claims %d (target 0); over-claims %d (target 0); %d claims acknowledged, %d sold out of %d coupons; %s [%s]\n",
		r.victim().name, res.VictimCoupons, res.VictimUsers, res.DetectedSeconds, res.ServedMaxSeconds, res.ServedP50Seconds,
		res.Affected, res.Shoppers, res.ResyncMaxSeconds, res.ResyncP50Seconds, notBack(res.NotResynced+len(res.NotServed)),
		res.LostAcked, res.OverClaims, res.ClaimsOK, res.SoldOutCoupons, res.Coupons, res.Placement, path)
	for _, p := range res.Problems {
		fmt.Printf("failover: %s\n", p)
	}
	if res.LostAcked > 0 || res.OverClaims > 0 {
		r.e.keepLogs = true
	}
	return nil
}

// dial connects the shopper to its home node with the other two as
// Addresses, subscribes to subs coupons and reads its feed (so that a
// reconnect resyncs both).
func (s *foShopper) dial(ctx context.Context, e *benchEnv, nodes []*benchNode, ids []string, subs int) error {
	var addrs []string
	for i, n := range nodes {
		if i != s.home {
			addrs = append(addrs, n.ws())
		}
	}
	user := s.user
	c, err := client.Dial(ctx, nodes[s.home].ws(), client.Options{
		Reconnect: true,
		Addresses: addrs,
		Token:     func(context.Context) (string, error) { return e.token(user, couponmesh.RoleShopper) },
		OnState: func(st client.State) {
			now := time.Now()
			s.mu.Lock()
			s.states = append(s.states, foState{now, st})
			s.mu.Unlock()
		},
	})
	if err != nil {
		return err
	}
	s.c = c
	var sub []client.Sub
	for k := range subs {
		sub = append(sub, client.Sub{ID: ids[(len(s.user)*7+k*13+s.home)%len(ids)]})
	}
	sub = slices.CompactFunc(sub, func(a, b client.Sub) bool { return a.ID == b.ID })
	if len(sub) > 0 {
		if _, err := c.Subscribe(ctx, sub); err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
	}
	if _, err := c.Feed(ctx, 0, 500); err != nil {
		return fmt.Errorf("feed: %w", err)
	}
	return nil
}

// foTally counts the claim outcomes of all shoppers.
type foTally struct {
	mu        sync.Mutex
	soldOut   int
	retries   int
	abandoned int
	errs      []string
}

func (t *foTally) add(soldOut, retry, abandoned bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case soldOut:
		t.soldOut++
	case retry:
		t.retries++
	case abandoned:
		t.abandoned++
	}
	if err != nil && !soldOut && len(t.errs) < 10 {
		t.errs = append(t.errs, err.Error())
	}
}

// claimAll claims each coupon of order once, pace apart, until stop. A
// claim whose outcome is unknown (unavailable, or no answer in time) is
// sent again with the same rid until it has an answer or retryEnd passes.
func (s *foShopper) claimAll(order []string, pace time.Duration, stop <-chan struct{}, retryEnd time.Time, t *foTally) {
	for k, id := range order {
		select {
		case <-stop:
			return
		case <-time.After(pace):
		}
		rid := s.user + "-" + strconv.Itoa(k)
		for {
			sent := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			cl, err := s.c.Claim(ctx, id, rid)
			cancel()
			d := time.Since(sent)
			code := couponmesh.ErrorCode(err)
			unknown := code == couponmesh.CodeUnavailable || errors.Is(err, context.DeadlineExceeded)
			s.mu.Lock()
			s.lat = append(s.lat, foLatency{sent, d})
			if err == nil {
				s.acked = append(s.acked, foClaim{cl, sent})
			}
			s.mu.Unlock()
			if err == nil {
				break
			}
			giveUp := unknown && time.Now().After(retryEnd)
			if err != nil {
				err = fmt.Errorf("%s claims %s (rid %s) sent %s, answered after %s: %w",
					s.user, id, rid, sent.UTC().Format("15:04:05.000"), d.Round(time.Millisecond), err)
			}
			t.add(code == couponmesh.CodeSoldOut, unknown && !giveUp, giveUp, err)
			if !unknown || giveUp {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	<-stop
}

// foResync returns, for each shopper that went StateReconnecting at or
// after killed, the time from killed to its next StateConnected; affected
// counts those shoppers and pending those not connected again yet.
func foResync(ss []*foShopper, killed time.Time) (resync []time.Duration, affected, pending int) {
	for _, s := range ss {
		s.mu.Lock()
		lost, back := false, false
		for _, st := range s.states {
			if st.at.Before(killed) {
				continue
			}
			if st.s == client.StateReconnecting && !lost {
				lost = true
			}
			if st.s == client.StateConnected && lost {
				resync = append(resync, st.at.Sub(killed))
				back = true
				break
			}
		}
		s.mu.Unlock()
		if lost {
			affected++
			if !back {
				pending++
			}
		}
	}
	return resync, affected, pending
}

// foVerify reads back every shopper's wallet (through its own session) and
// every coupon (through api) and counts acknowledged claims that are not
// there and claims beyond a coupon's quantity.
func foVerify(ctx context.Context, res *failoverResult, ss []*foShopper, api *client.API, ids []string) error {
	problem := func(format string, a ...any) {
		if len(res.Problems) < 10 {
			res.Problems = append(res.Problems, fmt.Sprintf(format, a...))
		}
	}
	holders := make(map[string]map[int][]string) // coupon → claim number → users whose wallet has it
	wallets := make(map[string]map[string]int)   // user → coupon → claim number
	for _, s := range ss {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		w, err := s.c.Wallet(wctx)
		cancel()
		if err != nil {
			return fmt.Errorf("wallet of %s: %w", s.user, err)
		}
		have := make(map[string]int, len(w))
		for _, c := range w {
			have[c.Coupon] = c.N
			if holders[c.Coupon] == nil {
				holders[c.Coupon] = make(map[int][]string)
			}
			holders[c.Coupon][c.N] = append(holders[c.Coupon][c.N], s.user)
			res.WalletClaims++
		}
		wallets[s.user] = have
	}
	state := make(map[string]couponmesh.Coupon, len(ids))
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		first error
		sem   = make(chan struct{}, 16)
	)
	for _, id := range ids {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			c, err := api.Coupon(cctx, id)
			cancel()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if first == nil {
					first = fmt.Errorf("read coupon %s: %w", id, err)
				}
				return
			}
			state[id] = c
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	for _, s := range ss {
		s.mu.Lock()
		acked := slices.Clone(s.acked)
		s.mu.Unlock()
		for _, c := range acked {
			cp := state[c.Coupon]
			switch n, ok := wallets[s.user][c.Coupon]; {
			case !ok || n != c.N:
				res.LostAcked++
				problem("lost: %s's acknowledged claim #%d of %s (sent %s) is not in the wallet (wallet: #%d)", s.user, c.N, c.Coupon, c.sent.UTC().Format("15:04:05.000"), n)
			case c.N > cp.Claimed:
				res.LostAcked++
				problem("lost: %s's acknowledged claim #%d of %s, but the coupon counts %d claims", s.user, c.N, c.Coupon, cp.Claimed)
			case len(holders[c.Coupon][c.N]) > 1:
				res.LostAcked++
				problem("lost: claim #%d of %s is in the wallets of %v: the number was given twice", c.N, c.Coupon, holders[c.Coupon][c.N])
			}
		}
	}
	for _, id := range ids {
		cp := state[id]
		inWallets := 0
		for _, us := range holders[id] {
			inWallets += len(us)
		}
		if over := max(cp.Claimed, inWallets) - cp.Quantity; over > 0 {
			res.OverClaims += over
			problem("over-claim: %s has quantity %d, the coupon counts %d claims, the wallets hold %d", id, cp.Quantity, cp.Claimed, inWallets)
		}
		if cp.Claimed >= cp.Quantity {
			res.SoldOutCoupons++
		}
	}
	return nil
}

// dialFoShoppers connects n reconnecting shoppers PREFIX0 …, shopper i to
// node i%3 first with the other two as addresses, each subscribed to subs
// coupons of ids. The shoppers already dialed are returned on an error too,
// for closeFoShoppers.
func dialFoShoppers(ctx context.Context, e *benchEnv, nodes []*benchNode, ids []string, prefix string, n, subs int) ([]*foShopper, error) {
	ss := make([]*foShopper, 0, n)
	for i := range n {
		s := &foShopper{user: prefix + strconv.Itoa(i), home: i % len(nodes)}
		if err := s.dial(ctx, e, nodes, ids, subs); err != nil {
			return ss, fmt.Errorf("shopper %s: %w", s.user, err)
		}
		ss = append(ss, s)
	}
	return ss, nil
}

func closeFoShoppers(ss []*foShopper) {
	for _, s := range ss {
		s.c.Close()
	}
}
