package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
)

// couponmesh bench drain: three nodes on one devdb and reconnecting
// shoppers claiming, as in failover. After a baseline, one node is drained
// through the admin API (what `ctl drain` and SIGTERM do: its sessions are
// handed to the others with 1012, its grains leave, it exits); once it has
// exited, a fourth node joins and the grains the ring gives it move there.
// Measured around each event: claims that returned an error to the
// application other than sold_out (the SDK resends what was in flight over
// its new connection; anything it hands back is client-visible), and for
// how many seconds the claims' p99 was above twice the baseline's.

// drainPhase is what one event (drain or add) did to the load.
type drainPhase struct {
	Event        string   `json:"event"`
	AtSeconds    float64  `json:"atSeconds"`   // since the load started
	TookSeconds  float64  `json:"tookSeconds"` // drain: until the process exited; add: until every node saw it
	Errors       int      `json:"clientVisibleErrors"`
	FirstErrors  []string `json:"firstErrors,omitempty"`
	SlowSeconds  int      `json:"secondsOverTwiceBaselineP99"`
	WindowsP99Ms []int64  `json:"p99PerSecondMs"` // from the event on
}

// drainResult is the JSON of the drain scenario.
type drainResult struct {
	Scenario      string        `json:"scenario"`
	Time          time.Time     `json:"time"`
	Machine       machine       `json:"machine"`
	Placement     string        `json:"placement"`
	Shoppers      int           `json:"shoppers"`
	Coupons       int           `json:"coupons"`
	Pace          string        `json:"claimPace"`
	BaselineP99Ms float64       `json:"baselineP99Ms"`
	Claims        int           `json:"claimsAcknowledged"`
	Phases        []drainPhase  `json:"phases"`
	LostAcked     int           `json:"lostAcknowledgedClaims"`
	OverClaims    int           `json:"overClaims"`
	Problems      []string      `json:"problems,omitempty"`
	Figures       []benchFigure `json:"figures"`
}

func benchDrain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench drain", flag.ContinueOnError)
	out := fs.String("out", "bench-results", "directory for the JSON results")
	shoppers := fs.Int("shoppers", 30, "reconnecting shopper sessions, spread over the three nodes")
	ncoupons := fs.Int("coupons", 300, "coupons (each shopper tries each at most once)")
	quantity := fs.Int("quantity", 1000, "quantity of each coupon")
	pace := fs.Duration("pace", 100*time.Millisecond, "pause between one shopper's claims")
	baseline := fs.Duration("baseline", 4*time.Second, "load before the drain (its last 3 s are the baseline)")
	settleFor := fs.Duration("after", 6*time.Second, "load after each event has completed")
	keepLogs := fs.Bool("keep-logs", false, "keep the processes' logs (their directory is printed at the end)")
	logLevel := fs.String("log-level", "warn", "log level of the nodes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *shoppers <= 0 || *ncoupons <= 0 || *quantity <= 0 || *pace <= 0 || *baseline < 3*time.Second || *settleFor <= 0 {
		return errors.New("bench drain: --shoppers, --coupons, --quantity, --pace and --after must be positive, --baseline at least 3s")
	}
	res := drainResult{
		Scenario: "drain", Machine: describeMachine(""), Shoppers: *shoppers, Coupons: *ncoupons, Pace: pace.String(),
		Placement: "not pinned: the nodes, the devdb and the load share all cores",
	}
	e, err := newBenchEnv(*out, "")
	if err != nil {
		return err
	}
	e.keepLogs, e.logLevel = *keepLogs, *logLevel
	defer e.close()
	nodes, _, tok, ids, err := startThree(ctx, e, "dr", *ncoupons, *quantity)
	if err != nil {
		return err
	}
	ss, err := dialFoShoppers(ctx, e, nodes, ids, "ds", *shoppers, 5)
	defer closeFoShoppers(ss)
	if err != nil {
		return err
	}

	stop := make(chan struct{})
	var (
		tally  drainTally
		loadWG sync.WaitGroup
		start  = time.Now()
	)
	for i, s := range ss {
		k := i * len(ids) / len(ss)
		order := append(slices.Clone(ids[k:]), ids[:k]...)
		loadWG.Go(func() { s.claimEach(order, *pace, stop, &tally) })
	}
	stopLoad := func() {
		close(stop)
		loadWG.Wait()
	}
	wait := func(d time.Duration) error {
		select {
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			stopLoad()
			return ctx.Err()
		}
	}
	if err := wait(*baseline); err != nil {
		return err
	}

	// Drain n2 through n1's admin API, as `ctl drain n2` does.
	victim := nodes[1]
	drainAt := time.Now()
	if err := adminCall(ctx, nodes[0].admin, http.MethodPost, "/admin/api/drain", DrainRequest{Node: victim.name}, nil); err != nil {
		stopLoad()
		return fmt.Errorf("drain %s: %w", victim.name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- victim.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			stopLoad()
			return fmt.Errorf("drained %s exited: %w", victim.name, err)
		}
	case <-time.After(60 * time.Second):
		stopLoad()
		return fmt.Errorf("drained %s still running after 60s", victim.name)
	}
	drained := time.Now()
	if err := wait(*settleFor); err != nil {
		return err
	}

	// Add n4.
	addAt := time.Now()
	n4, err := e.startMember(ctx, "n4", nodes[0].cluster)
	if err != nil {
		stopLoad()
		return err
	}
	live := []*benchNode{nodes[0], nodes[2], n4}
	if err := foWaitMembers(ctx, live, 3, 30*time.Second); err != nil {
		stopLoad()
		return err
	}
	added := time.Now()
	if err := wait(*settleFor); err != nil {
		return err
	}
	end := time.Now()
	stopLoad()

	// Baseline: the claims sent in the last 3 s before the drain.
	lats := func(from, to time.Time) []time.Duration {
		var d []time.Duration
		for _, s := range ss {
			s.mu.Lock()
			for _, l := range s.lat {
				if !l.sent.Before(from) && l.sent.Before(to) {
					d = append(d, l.d)
				}
			}
			s.mu.Unlock()
		}
		slices.Sort(d)
		return d
	}
	base := quantile(lats(drainAt.Add(-3*time.Second), drainAt), 0.99)
	res.BaselineP99Ms = ms(base)
	phase := func(event string, at, done, until time.Time) drainPhase {
		p := drainPhase{Event: event, AtSeconds: at.Sub(start).Seconds(), TookSeconds: done.Sub(at).Seconds()}
		for w := at; w.Before(until); w = w.Add(time.Second) {
			p99 := quantile(lats(w, w.Add(time.Second)), 0.99)
			p.WindowsP99Ms = append(p.WindowsP99Ms, p99.Milliseconds())
			if p99 > 2*base {
				p.SlowSeconds++
			}
		}
		p.Errors, p.FirstErrors = tally.between(at, until)
		return p
	}
	res.Phases = []drainPhase{phase("drain", drainAt, drained, addAt), phase("add", addAt, added, end)}
	for _, s := range ss {
		res.Claims += len(s.acked)
	}
	vr := failoverResult{}
	if err := foVerify(ctx, &vr, ss, client.NewAPI(nodes[0].base(), tok), ids); err != nil {
		return err
	}
	res.LostAcked, res.OverClaims, res.Problems = vr.LostAcked, vr.OverClaims, vr.Problems

	for _, p := range res.Phases {
		errs := atMost(p.Event+" a node under load: client-visible errors", float64(p.Errors), "errors", 0)
		errs.Note = fmt.Sprintf("claims answered with an error other than sold_out, from %d reconnecting shoppers, until %.0f s after it completed", *shoppers, settleFor.Seconds())
		slow := atMost(p.Event+" a node under load: seconds with claim p99 over 2× the baseline", float64(p.SlowSeconds), "s", 5)
		slow.Note = fmt.Sprintf("baseline p99 %.0f ms; per second from the %s on: %v ms; it took %.1f s", res.BaselineP99Ms, p.Event, p.WindowsP99Ms, p.TookSeconds)
		res.Figures = append(res.Figures, errs, slow)
	}
	res.Figures = append(res.Figures,
		atMost("drain and add: lost acknowledged claims", float64(res.LostAcked), "claims", 0),
		atMost("drain and add: over-claims", float64(res.OverClaims), "claims", 0))
	res.Time = time.Now().UTC()
	path, err := e.writeResult("drain", res)
	if err != nil {
		return err
	}
	for _, p := range res.Phases {
		fmt.Printf("drain: %s of a node under load (%d shoppers, took %.1f s): %d client-visible errors (target 0); %d s with claim p99 over 2× baseline %.0f ms (target ≤ 5 s); p99 per second %v ms\n",
			p.Event, *shoppers, p.TookSeconds, p.Errors, p.SlowSeconds, res.BaselineP99Ms, p.WindowsP99Ms)
		for _, fe := range p.FirstErrors {
			fmt.Printf("drain:   %s\n", fe)
		}
	}
	fmt.Printf("drain: %d claims acknowledged; lost acknowledged claims %d, over-claims %d (targets 0) [%s]\n", res.Claims, res.LostAcked, res.OverClaims, path)
	return nil
}

// drainTally records the client-visible errors with when their claim was
// sent (a claim sent during a phase counts for it, however long it took).
type drainTally struct {
	mu   sync.Mutex
	errs []drainErr
}

type drainErr struct {
	at  time.Time
	err string
}

func (t *drainTally) add(sent time.Time, err error) {
	t.mu.Lock()
	t.errs = append(t.errs, drainErr{sent, err.Error()})
	t.mu.Unlock()
}

// between counts the errors in [from, to) and returns the first few.
func (t *drainTally) between(from, to time.Time) (int, []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, first := 0, []string(nil)
	for _, e := range t.errs {
		if !e.at.Before(from) && e.at.Before(to) {
			n++
			if len(first) < 5 {
				first = append(first, e.err)
			}
		}
	}
	return n, first
}

// claimEach claims each coupon of order once, pace apart, until stop; a
// claim that returns an error other than sold_out is recorded as
// client-visible and not retried.
func (s *foShopper) claimEach(order []string, pace time.Duration, stop <-chan struct{}, t *drainTally) {
	for k, id := range order {
		select {
		case <-stop:
			return
		case <-time.After(pace):
		}
		sent := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cl, err := s.c.Claim(ctx, id, s.user+"-"+strconv.Itoa(k))
		cancel()
		s.mu.Lock()
		s.lat = append(s.lat, foLatency{sent, time.Since(sent)})
		if err == nil {
			s.acked = append(s.acked, foClaim{cl, sent})
		}
		s.mu.Unlock()
		if err != nil && couponmesh.ErrorCode(err) != couponmesh.CodeSoldOut {
			t.add(sent, fmt.Errorf("%s claims %s sent %s, answered after %s: %w", s.user, id, sent.UTC().Format("15:04:05.000"), time.Since(sent).Round(time.Millisecond), err))
		}
	}
	<-stop
}
