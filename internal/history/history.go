package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors/coupon"
	"github.com/couponmesh/couponmesh/actors/user"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/persistence/mongodb"
)

// Outcome is what a client learnt from one claim request.
type Outcome string

// Outcomes. Only OK, SoldOut, AlreadyClaimed and Failed are definite: the
// server decided. Unknown (an unavailable or internal reply) and NoAnswer
// (a deadline, a lost connection) leave the claim's fate open; a retry
// with the same request id learns it. NotSent (client.ErrNotSent: the node
// had announced a drain, so the client never sent the request, or closed
// with 1012 before answering it, which it does only for requests it never
// ran) is a fate known to be nothing, yet not definite either: the same
// request id is sent again elsewhere and may succeed.
const (
	OK             Outcome = "ok"
	SoldOut        Outcome = "sold_out"
	AlreadyClaimed Outcome = "already_claimed"
	Failed         Outcome = "failed"
	Unknown        Outcome = "unknown"
	NoAnswer       Outcome = "no_answer"
	NotSent        Outcome = "not_sent"
)

// Definite reports whether the server decided the claim: it was made (OK)
// or it was refused and nothing was written.
func (o Outcome) Definite() bool {
	return o == OK || o == SoldOut || o == AlreadyClaimed || o == Failed
}

// Classify maps the error a claim returned to its outcome and the error
// code of the reply ("" for OK and NoAnswer).
func Classify(err error) (Outcome, couponmesh.Code) {
	if err == nil {
		return OK, ""
	}
	if errors.Is(err, client.ErrNotSent) {
		return NotSent, ""
	}
	var e *couponmesh.Error
	if !errors.As(err, &e) {
		return NoAnswer, ""
	}
	switch e.Code {
	case couponmesh.CodeSoldOut:
		return SoldOut, e.Code
	case couponmesh.CodeAlreadyClaimed:
		return AlreadyClaimed, e.Code
	case couponmesh.CodeUnavailable, couponmesh.CodeInternal:
		return Unknown, e.Code
	default:
		return Failed, e.Code
	}
}

// Attempt is one claim request and what its client was told.
type Attempt struct {
	User, Coupon, RID string
	Via               string // where the request went (a node's name), for reports
	Start, End        time.Time
	Outcome           Outcome
	Code              couponmesh.Code  // the reply's error code, if any
	Claim             couponmesh.Claim // set when Outcome is OK
	Err               error
}

func (a Attempt) String() string {
	s := fmt.Sprintf("claim %s by %s (rid %s via %s at %s): %s", a.Coupon, a.User, a.RID, a.Via,
		a.Start.UTC().Format("15:04:05.000"), a.Outcome)
	if a.Outcome == OK {
		s += fmt.Sprintf(" #%d %s", a.Claim.N, a.Claim.Code)
	} else if a.Err != nil {
		s += ": " + a.Err.Error()
	}
	return s
}

// Claimer makes a claim: *client.Client does.
type Claimer interface {
	Claim(ctx context.Context, coupon, rid string) (couponmesh.Claim, error)
}

// Recorder collects attempts. Safe for concurrent use; the zero value is
// ready.
type Recorder struct {
	mu       sync.Mutex
	attempts []Attempt
}

// Claim sends the claim through c as user, records the attempt and returns
// the claim's result unchanged. via names where c is connected.
func (r *Recorder) Claim(ctx context.Context, c Claimer, via, user, coupon, rid string) (couponmesh.Claim, error) {
	start := time.Now()
	cl, err := c.Claim(ctx, coupon, rid)
	a := Attempt{User: user, Coupon: coupon, RID: rid, Via: via, Start: start, End: time.Now(), Claim: cl, Err: err}
	a.Outcome, a.Code = Classify(err)
	r.Add(a)
	return cl, err
}

// Add records an attempt made elsewhere.
func (r *Recorder) Add(a Attempt) {
	r.mu.Lock()
	r.attempts = append(r.attempts, a)
	r.mu.Unlock()
}

// Attempts returns a copy of the attempts recorded so far.
func (r *Recorder) Attempts() []Attempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.attempts)
}

// Acked returns the acknowledged claims by user.
func (r *Recorder) Acked() map[string][]couponmesh.Claim {
	out := map[string][]couponmesh.Claim{}
	for _, a := range r.Attempts() {
		if a.Outcome == OK {
			out[a.User] = append(out[a.User], a.Claim)
		}
	}
	return out
}

// Journal reads journal entries: *mongodb.Store does.
type Journal interface {
	Entries(ctx context.Context, entity string, after int64, limit int) ([]couponmesh.Entry, error)
}

// Open opens the database at uri (the database name the nodes use by
// default) for Check, logging nothing. Close it when done.
func Open(ctx context.Context, uri string) (*mongodb.Store, error) {
	cfg := mongodb.DefaultConfig()
	cfg.URI = uri
	return mongodb.Open(ctx, cfg, slog.New(slog.DiscardHandler))
}

// CouponState is what a coupon's journal holds.
type CouponState struct {
	Quantity int   // in force at the end of the journal
	Claims   int   // claimed entries
	Seq      int64 // the last entry's seq: the coupon's version
}

// SoldOut reports whether every unit was claimed.
func (c CouponState) SoldOut() bool { return c.Quantity > 0 && c.Claims >= c.Quantity }

// Report is the result of Check.
type Report struct {
	Coupons    map[string]CouponState
	Outcomes   map[Outcome]int
	Codes      map[couponmesh.Code]int // error codes clients saw, by code
	Violations []string                // every broken invariant, one line each
	// LongestWithoutOK is the longest time between two successive
	// acknowledged claims (by when their answers came), and between the
	// first attempt and the first acknowledgement.
	LongestWithoutOK time.Duration
	// FeedSeq is the last seq of each user's journal (its feed), for
	// CheckFeed.
	FeedSeq map[string]int64
	// Wallets holds the claims in each user's journal, in journal order.
	Wallets map[string][]couponmesh.Claim
}

// FeedEnd returns the last seq of user u's journal (its feed) in j; 0 when
// it has none.
func FeedEnd(ctx context.Context, j Journal, u string) (int64, error) {
	entries, err := j.Entries(ctx, user.Entity(u), 0, 0)
	if err != nil || len(entries) == 0 {
		return 0, err
	}
	return entries[len(entries)-1].Seq, nil
}

// CheckFeed checks the feed seqs a client received, in order: no gap, no
// repeat, and (when last > 0) ending at last, the user's last seq in the
// database (Report.FeedSeq).
func CheckFeed(seqs []int64, last int64) error {
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			return fmt.Errorf("feed: seq %d after %d", seqs[i], seqs[i-1])
		}
	}
	if last > 0 && (len(seqs) == 0 || seqs[len(seqs)-1] != last) {
		return fmt.Errorf("feed ends at %v, the user's journal at %d", seqs[max(len(seqs)-1, 0):], last)
	}
	return nil
}

// Err returns the violations as one error, or nil.
func (r Report) Err() error {
	if len(r.Violations) == 0 {
		return nil
	}
	return errors.New(strings.Join(r.Violations, "\n"))
}

// NotSoldOut lists the coupons with units left, sorted.
func (r Report) NotSoldOut() []string {
	var out []string
	for id, c := range r.Coupons {
		if !c.SoldOut() {
			out = append(out, fmt.Sprintf("%s (%d of %d)", id, c.Claims, c.Quantity))
		}
	}
	sort.Strings(out)
	return out
}

// String summarises the report on one line.
func (r Report) String() string {
	claims := 0
	for _, c := range r.Coupons {
		claims += c.Claims
	}
	codes := make([]string, 0, len(r.Codes))
	for _, c := range slices.Sorted(maps.Keys(r.Codes)) {
		codes = append(codes, fmt.Sprintf("%s %d", c, r.Codes[c]))
	}
	return fmt.Sprintf("%d attempts (ok %d, sold_out %d, already_claimed %d, failed %d, unknown %d, no answer %d, not sent %d); errors by code: [%s]; %d claims in the journals of %d coupons; longest without an ok %s; %d violations",
		r.total(), r.Outcomes[OK], r.Outcomes[SoldOut], r.Outcomes[AlreadyClaimed], r.Outcomes[Failed], r.Outcomes[Unknown], r.Outcomes[NoAnswer], r.Outcomes[NotSent],
		strings.Join(codes, ", "), claims, len(r.Coupons), r.LongestWithoutOK.Round(time.Millisecond), len(r.Violations))
}

func (r Report) total() int {
	n := 0
	for _, v := range r.Outcomes {
		n += v
	}
	return n
}

// journalClaim is a claimed entry of a coupon journal.
type journalClaim struct {
	User string `json:"user"`
	RID  string `json:"rid"`
	Code string `json:"code"`
	N    int    `json:"n"`
	seq  int64
	rank int // its position among the coupon's claims, from 1
}

// Check reads the journal of every coupon in coupons and of every coupon
// and user in attempts from j, and checks the attempts against them (see
// the package comment). It returns an error only when the journal cannot
// be read or decoded.
func Check(ctx context.Context, j Journal, coupons []string, attempts []Attempt) (Report, error) {
	r := Report{Coupons: map[string]CouponState{}, Outcomes: map[Outcome]int{}, Codes: map[couponmesh.Code]int{}, FeedSeq: map[string]int64{}, Wallets: map[string][]couponmesh.Claim{}}
	var bad []string
	fail := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }

	ids := map[string]bool{}
	users := map[string]bool{}
	for _, id := range coupons {
		ids[id] = true
	}
	for _, a := range attempts {
		ids[a.Coupon] = true
		users[a.User] = true
		r.Outcomes[a.Outcome]++
		if a.Code != "" {
			r.Codes[a.Code]++
		}
	}

	// The coupons' journals.
	claims := map[string]map[string]journalClaim{} // coupon → user → claim
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		entries, err := j.Entries(ctx, coupon.Entity(id), 0, 0)
		if err != nil {
			return r, fmt.Errorf("read the journal of coupon %s: %w", id, err)
		}
		st := CouponState{}
		byUser := map[string]journalClaim{}
		byN := map[int]string{}
		for _, e := range entries {
			st.Seq = e.Seq
			switch e.Type {
			case coupon.EntryCreated, coupon.EntryUpdated:
				var d struct {
					Coupon couponmesh.Coupon `json:"coupon"`
				}
				if err := json.Unmarshal(e.Data, &d); err != nil {
					return r, fmt.Errorf("coupon %s entry %d: %w", id, e.Seq, err)
				}
				st.Quantity = d.Coupon.Quantity
			case coupon.EntryClaimed:
				var c journalClaim
				if err := json.Unmarshal(e.Data, &c); err != nil {
					return r, fmt.Errorf("coupon %s entry %d: %w", id, e.Seq, err)
				}
				st.Claims++
				c.seq, c.rank = e.Seq, st.Claims
				if st.Claims > st.Quantity {
					fail("coupon %s over-claimed: claim %d of quantity %d (entry %d, user %s)", id, st.Claims, st.Quantity, e.Seq, c.User)
				}
				if c.N != c.rank {
					fail("coupon %s entry %d grants #%d to %s as its claim %d", id, e.Seq, c.N, c.User, c.rank)
				}
				if u, ok := byN[c.N]; ok {
					fail("coupon %s #%d granted twice in the journal: to %s and to %s", id, c.N, u, c.User)
				}
				byN[c.N] = c.User
				if prev, ok := byUser[c.User]; ok {
					fail("coupon %s claimed twice by %s in the journal (entries %d and %d)", id, c.User, prev.seq, e.Seq)
				}
				byUser[c.User] = c
			}
		}
		r.Coupons[id] = st
		claims[id] = byUser
	}

	// What clients were told, against the coupons' journals.
	told := map[string]map[int]string{} // coupon → n → user acknowledged
	var oks []time.Time
	var first time.Time
	for _, a := range attempts {
		if first.IsZero() || a.Start.Before(first) {
			first = a.Start
		}
		c, inJournal := claims[a.Coupon][a.User]
		switch {
		case a.Outcome == OK:
			oks = append(oks, a.End)
			if told[a.Coupon] == nil {
				told[a.Coupon] = map[int]string{}
			}
			if u, ok := told[a.Coupon][a.Claim.N]; ok && u != a.User {
				fail("coupon %s #%d acknowledged to two users: %s and %s", a.Coupon, a.Claim.N, u, a.User)
			}
			told[a.Coupon][a.Claim.N] = a.User
			switch {
			case !inJournal:
				fail("acknowledged %s is not in the coupon's journal", a)
			case c.N != a.Claim.N || c.Code != a.Claim.Code:
				fail("acknowledged %s: the journal has #%d %s", a, c.N, c.Code)
			}
		case a.Outcome.Definite() && inJournal && c.RID == a.RID:
			fail("%s, yet the journal has that claim (#%d, entry %d)", a, c.N, c.seq)
		}
	}
	slices.SortFunc(oks, func(a, b time.Time) int { return a.Compare(b) })
	prev := first
	for _, t := range oks {
		r.LongestWithoutOK = max(r.LongestWithoutOK, t.Sub(prev))
		prev = t
	}

	// The users' journals: every acknowledged claim is in the wallet with
	// the coupon journal's n and code.
	for _, u := range slices.Sorted(maps.Keys(users)) {
		entries, err := j.Entries(ctx, user.Entity(u), 0, 0)
		if err != nil {
			return r, fmt.Errorf("read the journal of user %s: %w", u, err)
		}
		if len(entries) > 0 {
			r.FeedSeq[u] = entries[len(entries)-1].Seq
		}
		wallet := map[string]couponmesh.Claim{}
		for _, e := range entries {
			if e.Type != couponmesh.FeedClaimed {
				continue
			}
			var d struct {
				Claim *couponmesh.Claim `json:"claim"`
			}
			if err := json.Unmarshal(e.Data, &d); err != nil || d.Claim == nil {
				return r, fmt.Errorf("user %s entry %d: claim missing or bad (%v)", u, e.Seq, err)
			}
			if _, ok := wallet[d.Claim.Coupon]; ok {
				fail("user %s: two wallet entries for coupon %s", u, d.Claim.Coupon)
			}
			wallet[d.Claim.Coupon] = *d.Claim
			r.Wallets[u] = append(r.Wallets[u], *d.Claim)
			if !ids[d.Claim.Coupon] {
				continue
			}
			if c, ok := claims[d.Claim.Coupon][u]; !ok {
				fail("user %s: wallet has #%d of %s, which the coupon's journal lacks", u, d.Claim.N, d.Claim.Coupon)
			} else if c.N != d.Claim.N || c.Code != d.Claim.Code {
				fail("user %s: wallet has #%d %s of %s, the coupon's journal #%d %s", u, d.Claim.N, d.Claim.Code, d.Claim.Coupon, c.N, c.Code)
			}
		}
		for _, a := range attempts {
			if a.User != u || a.Outcome != OK {
				continue
			}
			if w, ok := wallet[a.Coupon]; !ok {
				fail("acknowledged %s is not in the user's wallet", a)
			} else if w.N != a.Claim.N || w.Code != a.Claim.Code {
				fail("acknowledged %s: the wallet has #%d %s", a, w.N, w.Code)
			}
		}
	}
	r.Violations = bad
	return r, nil
}
