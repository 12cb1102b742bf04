package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors/coupon"
	"github.com/couponmesh/couponmesh/client"
)

// claimsResult is the JSON of the claims scenario.
type claimsResult struct {
	Scenario    string    `json:"scenario"`
	Time        time.Time `json:"time"`
	Machine     machine   `json:"machine"`
	Users       int       `json:"users"`
	Coupons     int       `json:"coupons"`
	Quantity    int       `json:"quantityPerCoupon"`
	Claims      int       `json:"claims"` // attempted
	Concurrency int       `json:"concurrency"`
	Sources     int       `json:"sources"`
	DurationCap string    `json:"durationCap"`

	OK             int            `json:"ok"`
	Errors         map[string]int `json:"errorsByCode"` // sold_out is expected: the quantity is below the claims per coupon on purpose
	FirstError     string         `json:"firstError,omitempty"`
	Seconds        float64        `json:"claimSeconds"`
	ClaimsPerSec   float64        `json:"durableClaimsPerSec"`
	Appends        int64          `json:"journalAppends"` // group commit appends during the claims (node metrics)
	BulkWrites     int64          `json:"bulkWrites"`
	AppendsPerBulk float64        `json:"appendsPerBulkWrite"`
	AppendsPerSec  float64        `json:"journalAppendsPerSec"`
	BulkWriteMs    float64        `json:"bulkWriteMeanMs"`   // the node's BulkWrites, mean duration
	QueueWaitMs    float64        `json:"appendQueueWaitMs"` // an append's mean wait for its BulkWrite
	P50ms          float64        `json:"claimReplyP50ms"`
	P95ms          float64        `json:"claimReplyP95ms"`
	P99ms          float64        `json:"claimReplyP99ms"`
	MaxMs          float64        `json:"claimReplyMaxMs"`
	NodeCPUPercent float64        `json:"nodeCpuPercent"`
	DBCPUPercent   float64        `json:"dbCpuPercent"`
	BenchCPU       float64        `json:"benchCpuPercent"`

	RawDocs       int     `json:"rawInsertsPerRun"`
	RawBatch      int     `json:"rawBatch"`
	RawBefore     float64 `json:"rawInsertsPerSecBefore"`
	RawAfter      float64 `json:"rawInsertsPerSecAfter"`
	RawPerSec     float64 `json:"rawInsertsPerSec"` // mean of before and after
	RawBatchMs    float64 `json:"rawBulkWriteMeanMs"`
	AppendsPctRaw float64 `json:"appendsPercentOfRaw"`
	ClaimsPctRaw  float64 `json:"claimsPercentOfRaw"`

	// Checked after the run: the claims in the database's journal per
	// coupon against the coupon's quantity, its claimed count as the grain
	// answers it, and the claims acknowledged to the bench.
	JournalClaims int `json:"journalClaims"`
	OverClaimed   int `json:"couponsOverClaimed"`
	LostAcked     int `json:"acknowledgedClaimsMissing"`
	// GrainAhead: coupons whose grain counts more claims than the journal
	// holds (a claim counted that is not durable). GrainBehind: fewer, i.e.
	// appends whose caller gave up (unavailable) and that were written
	// after all; the grain learns of them when it next loses an append.
	GrainAhead  int `json:"couponsGrainAheadOfJournal"`
	GrainBehind int `json:"couponsGrainBehindJournal"`

	Figures []benchFigure `json:"figures"`
}

// benchClaims: U shoppers, each with its own WebSocket session (from several
// source addresses), claim across C coupons through the Go SDK, K claims in
// flight, until N claims are answered or the duration cap; a reply ok means
// the claim is durable. Beside it, in the same run and against the same
// devdb, the raw rate of unordered BulkWrites of journal-like documents into
// another database, before and after the claims.
// claimsFlags are the flags of bench claims.
type claimsFlags struct {
	benchFlags
	users, ncoupons, nclaims, quantity, conc, rawDocs, rawBatch int
	dur                                                         time.Duration
	profile, dbProfile                                          string
}

func parseClaimsFlags(args []string) (claimsFlags, error) {
	var f claimsFlags
	fs := flag.NewFlagSet("bench claims", flag.ContinueOnError)
	f.register(fs)
	fs.IntVar(&f.users, "users", 500, "shoppers, one session each (their first claim activates their grain)")
	fs.IntVar(&f.ncoupons, "coupons", 200, "coupons claimed")
	fs.IntVar(&f.nclaims, "claims", 10000, "claims to send at most (at most users × coupons: one claim per user per coupon)")
	fs.IntVar(&f.quantity, "quantity", 0, "quantity of each coupon (0: 95% of the mean claims per coupon, so that coupons sell out)")
	fs.IntVar(&f.conc, "concurrency", 256, "claims in flight")
	fs.DurationVar(&f.dur, "duration", 30*time.Second, "stop sending claims after this long")
	fs.IntVar(&f.rawDocs, "raw", 20000, "documents per raw BulkWrite run (one run before the claims, one after)")
	fs.IntVar(&f.rawBatch, "raw-batch", 256, "documents per raw BulkWrite (the node's batch_max_ops)")
	fs.StringVar(&f.profile, "profile", "", "write a CPU profile of the node over the first 5 s of the claims to this file")
	fs.StringVar(&f.dbProfile, "db-profile", "", "write a CPU profile of the devdb over the first 3 s of the claims to this file")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	switch {
	case f.users <= 0 || f.ncoupons <= 0 || f.nclaims <= 0 || f.conc <= 0 || f.dur <= 0 || f.rawDocs <= 0 || f.rawBatch <= 0:
		return f, errors.New("bench claims: sizes and --duration must be positive")
	case f.nclaims > f.users*f.ncoupons:
		return f, fmt.Errorf("bench claims: --claims %d > --users × --coupons (one claim per user per coupon)", f.nclaims)
	}
	if f.quantity <= 0 {
		f.quantity = max(f.nclaims/f.ncoupons*95/100, 1)
	}
	return f, nil
}

func benchClaims(ctx context.Context, args []string) (err error) {
	f, err := parseClaimsFlags(args)
	if err != nil {
		return err
	}
	mach := describeMachine(f.nodeCPUs)
	e, node, api, err := setupOneNode(ctx, f.benchFlags)
	if e != nil {
		defer e.close()
	}
	if err != nil {
		return err
	}
	ids, err := createSettled(ctx, e, api, "cl", f.ncoupons, f.quantity)
	if err != nil {
		return err
	}
	clients, took, err := dialShoppers(ctx, e, node, f.benchFlags, f.users, func(i int) string { return "u" + strconv.Itoa(i) })
	defer closeAll(clients)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "claims: %d coupons of quantity %d, %d sessions in %.1fs\n", f.ncoupons, f.quantity, f.users, took.Seconds())

	mc, err := mongo.Connect(options.Client().ApplyURI(e.db))
	if err != nil {
		return err
	}
	defer func() { _ = mc.Disconnect(context.Background()) }()
	raw, err := RawCollection(ctx, mc)
	if err != nil {
		return err
	}
	rawBefore, err := RawBulkRate(ctx, raw, "a", f.rawDocs, f.rawBatch)
	if err != nil {
		return err
	}

	pid, dbPid := node.cmd.Process.Pid, e.procs[0].Cmd.Process.Pid
	m0, err := scrapeNodeMetrics(node)
	if err != nil {
		return err
	}
	n0, d0, b0 := cpuTime(pid), cpuTime(dbPid), cpuTime(os.Getpid())
	var pwg sync.WaitGroup
	if f.profile != "" {
		pwg.Go(func() {
			if err := profileCPU(ctx, node, 5*time.Second, f.profile); err != nil {
				fmt.Fprintf(os.Stderr, "bench claims: profile: %v\n", err)
			}
		})
	}
	if f.dbProfile != "" {
		pwg.Go(func() {
			if err := e.profileDB(ctx, 3*time.Second, f.dbProfile); err != nil {
				fmt.Fprintf(os.Stderr, "bench claims: db profile: %v\n", err)
			}
		})
	}
	l := sendClaims(ctx, f, clients, ids)
	took = l.took
	pwg.Wait()
	nodeCPU := 100 * (cpuTime(pid) - n0).Seconds() / took.Seconds()
	dbCPU := 100 * (cpuTime(dbPid) - d0).Seconds() / took.Seconds()
	benchCPU := 100 * (cpuTime(os.Getpid()) - b0).Seconds() / took.Seconds()
	m1, err := scrapeNodeMetrics(node)
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	rawAfter, err := RawBulkRate(ctx, raw, "b", f.rawDocs, f.rawBatch)
	if err != nil {
		return err
	}

	ok := 0
	for _, n := range l.okPer {
		ok += n
	}
	res := claimsResult{
		Scenario: "claims", Time: time.Now().UTC(), Machine: mach,
		Users: f.users, Coupons: f.ncoupons, Quantity: f.quantity, Claims: len(l.lat), Concurrency: f.conc, Sources: f.sources,
		DurationCap: f.dur.String(), OK: ok, Errors: l.errs, FirstError: l.firstErr, Seconds: took.Seconds(),
		ClaimsPerSec: float64(ok) / took.Seconds(),
		Appends:      int64(m1.get("couponmesh_store_batch_size_sum") - m0.get("couponmesh_store_batch_size_sum")),
		BulkWrites:   int64(m1.get("couponmesh_store_batch_size_count") - m0.get("couponmesh_store_batch_size_count")),
		P50ms:        ms(quantile(l.lat, 0.5)), P95ms: ms(quantile(l.lat, 0.95)), P99ms: ms(quantile(l.lat, 0.99)), MaxMs: ms(quantile(l.lat, 1)),
		NodeCPUPercent: nodeCPU, DBCPUPercent: dbCPU, BenchCPU: benchCPU,
		RawDocs: f.rawDocs, RawBatch: f.rawBatch, RawBefore: rawBefore, RawAfter: rawAfter, RawPerSec: (rawBefore + rawAfter) / 2,
	}
	res.AppendsPerSec = float64(res.Appends) / took.Seconds()
	mean := func(name string) float64 {
		n := m1.get(name+"_count") - m0.get(name+"_count")
		if n <= 0 {
			return 0
		}
		return 1000 * (m1.get(name+"_sum") - m0.get(name+"_sum")) / n
	}
	res.BulkWriteMs = mean("couponmesh_store_bulk_write_seconds")
	res.QueueWaitMs = mean("couponmesh_store_queue_wait_seconds")
	if res.BulkWrites > 0 {
		res.AppendsPerBulk = float64(res.Appends) / float64(res.BulkWrites)
	}
	if res.RawPerSec > 0 {
		res.RawBatchMs = 1000 * float64(f.rawBatch) / res.RawPerSec
		res.AppendsPctRaw = 100 * res.AppendsPerSec / res.RawPerSec
		res.ClaimsPctRaw = 100 * res.ClaimsPerSec / res.RawPerSec
	}
	if err := verifyClaims(ctx, e.db, api, ids, f.quantity, l.okPer, &res); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	res.Figures = claimsFigures(res, f)
	path, err := e.writeResult("claims", res)
	if err != nil {
		return err
	}
	fmt.Printf("claims: %d ok of %d in %.1fs (errors %s): %.0f durable claims/s = %.0f journal appends/s (%.0f per BulkWrite) vs raw BulkWrite %.0f inserts/s (before %.0f, after %.0f): claims/s at %.0f%% of raw (target ≥ 50%%; appends/s %.0f%%); BulkWrite mean %.0f ms in the node vs %.0f ms raw; claim reply p50 %.1f p95 %.1f p99 %.1f max %.1f ms; over-claimed coupons %d, acknowledged claims missing %d (target 0); CPU node %.0f%% devdb %.0f%% bench %.0f%% [%s]\n",
		ok, res.Claims, took.Seconds(), fmtCodes(l.errs), res.ClaimsPerSec, res.AppendsPerSec, res.AppendsPerBulk, res.RawPerSec, rawBefore, rawAfter,
		res.ClaimsPctRaw, res.AppendsPctRaw, res.BulkWriteMs, res.RawBatchMs, res.P50ms, res.P95ms, res.P99ms, res.MaxMs, res.OverClaimed, res.LostAcked, nodeCPU, dbCPU, benchCPU, path)
	if res.GrainBehind > 0 {
		fmt.Printf("claims: %d coupons count fewer claims than their journal holds (appends answered unavailable, written after all)\n", res.GrainBehind)
	}
	if res.OverClaimed > 0 || res.LostAcked > 0 || res.GrainAhead > 0 {
		return fmt.Errorf("claims: %d coupons over-claimed, %d acknowledged claims missing, %d coupons counting claims the journal does not hold", res.OverClaimed, res.LostAcked, res.GrainAhead)
	}
	return nil
}

// claimsLoad is what sendClaims measured.
type claimsLoad struct {
	lat      []time.Duration // every claim's reply time, sorted
	errs     map[string]int  // by error code
	firstErr string          // the first error that was not sold_out
	okPer    []int           // claims acknowledged, by coupon
	took     time.Duration
}

// sendClaims sends up to --claims claims (claimPair: one per user and
// coupon) from --concurrency goroutines until --duration has passed.
func sendClaims(ctx context.Context, f claimsFlags, clients []*client.Client, ids []string) claimsLoad {
	var (
		next atomic.Int64
		mu   sync.Mutex
		wg   sync.WaitGroup
		l    = claimsLoad{lat: make([]time.Duration, 0, f.nclaims), errs: map[string]int{}, okPer: make([]int, f.ncoupons)}
	)
	cctx, cancel := context.WithTimeout(ctx, f.dur)
	defer cancel()
	start := time.Now()
	for range f.conc {
		wg.Go(func() {
			var mine []time.Duration
			defer func() {
				mu.Lock()
				l.lat = append(l.lat, mine...)
				mu.Unlock()
			}()
			for cctx.Err() == nil {
				k := int(next.Add(1) - 1)
				if k >= f.nclaims {
					return
				}
				u, c := claimPair(k, f.users, f.ncoupons)
				rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
				t0 := time.Now()
				_, err := clients[u].Claim(rctx, ids[c], "k"+strconv.Itoa(k))
				d := time.Since(t0)
				rcancel()
				mu.Lock()
				if err == nil {
					l.okPer[c]++
				} else {
					code := claimErrCode(err)
					if l.errs[code] == 0 && code != string(couponmesh.CodeSoldOut) && l.firstErr == "" {
						l.firstErr = err.Error()
					}
					l.errs[code]++
				}
				mu.Unlock()
				mine = append(mine, d)
			}
		})
	}
	wg.Wait()
	l.took = time.Since(start)
	slices.Sort(l.lat)
	return l
}

// claimsFigures: the appends against the raw insert rate, the claims/s,
// the reply p99, and the invariants.
func claimsFigures(res claimsResult, f claimsFlags) []benchFigure {
	fig := atLeast("durable claims on one node, embedded DB", res.ClaimsPctRaw, "%", 50)
	fig.Note = fmt.Sprintf("durable claims/s as %% of raw unordered BulkWrite inserts/s (%d per batch, one writer, mean of a run before and one after) into the same devdb, per claim (DESIGN.md); %.0f claims/s (%.0f journal appends/s: a claim appends to the coupon's journal and the shopper's) vs %.0f raw inserts/s; %d sessions, %d in flight, WebSocket via the Go SDK",
		f.rawBatch, res.ClaimsPerSec, res.AppendsPerSec, res.RawPerSec, f.users, f.conc)
	p99 := benchFigure{What: "claim reply latency p99 (durable claims on one node)", Value: res.P99ms, Unit: "ms",
		Note: fmt.Sprintf("%d claims in flight; p50 %.1f ms, max %.1f ms", f.conc, res.P50ms, res.MaxMs)}
	return []benchFigure{
		fig,
		{What: "durable claims/s on one node", Value: res.ClaimsPerSec, Unit: "claims/s", Note: fmt.Sprintf("%d shoppers over %d coupons", f.users, f.ncoupons)},
		p99,
		atMost("claims over a coupon's quantity", float64(res.OverClaimed), "coupons", 0),
		atMost("acknowledged claims missing from the journal", float64(res.LostAcked), "claims", 0),
	}
}

// claimPair returns the user and the coupon of claim k: user k%users
// claims coupon (k/users + k%users) % coupons. For k < users × coupons no
// pair repeats (a user's claims go to distinct coupons), and consecutive
// claims go to different users and coupons.
func claimPair(k, users, coupons int) (user, coupon int) {
	return k % users, (k/users + k%users) % coupons
}

// verifyClaims counts the claims in the node database's journal per coupon
// and compares them with each coupon's quantity, its claimed count as read
// through the HTTP API, and the claims acknowledged to the bench.
func verifyClaims(ctx context.Context, uri string, api *client.API, ids []string, quantity int, okPer []int, res *claimsResult) error {
	st, err := openStore(ctx, uri)
	if err != nil {
		return err
	}
	defer func() { _ = st.Close(context.Background()) }()
	inJournal := make([]int, len(ids))
	for i, id := range ids {
		if inJournal[i], err = countEntries(ctx, st, coupon.Entity(id), coupon.EntryClaimed); err != nil {
			return fmt.Errorf("journal of coupon %s: %w", id, err)
		}
		res.JournalClaims += inJournal[i]
	}
	for i, id := range ids {
		c, err := api.Coupon(ctx, id)
		if err != nil {
			return fmt.Errorf("read coupon %s: %w", id, err)
		}
		if inJournal[i] > quantity || c.Claimed > quantity {
			res.OverClaimed++
		}
		if c.Claimed > inJournal[i] {
			res.GrainAhead++
		}
		if c.Claimed < inJournal[i] {
			res.GrainBehind++
		}
		res.LostAcked += max(okPer[i]-inJournal[i], 0)
	}
	return nil
}

// claimErrCode is the protocol error code of err, or "unavailable" for a
// timeout and "transport" for a lost connection.
func claimErrCode(err error) string {
	var ce *couponmesh.Error
	if errors.As(err, &ce) {
		return string(ce.Code)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	if errors.Is(err, client.ErrClosed) {
		return "closed"
	}
	return "transport"
}

// fmtCodes writes error counts as "sold_out 950, unavailable 2" ("none").
func fmtCodes(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+" "+strconv.Itoa(m[k]))
	}
	return strings.Join(parts, ", ")
}
