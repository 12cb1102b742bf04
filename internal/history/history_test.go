package history_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors/coupon"
	"github.com/couponmesh/couponmesh/actors/user"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/internal/history"
	"github.com/couponmesh/couponmesh/persistence/devdb"
	"github.com/couponmesh/couponmesh/persistence/devdb/devdbtest"
	"github.com/couponmesh/couponmesh/persistence/mongodb"
)

var testDB *devdb.DB

func TestMain(m *testing.M) { os.Exit(devdbtest.Main(m, &testDB)) }

// journal writes coupon and user journals the way the grains do, including
// the broken histories the checker must catch.
type journal struct {
	t    *testing.T
	s    *mongodb.Store
	seqs map[string]int64
}

var dbSeq atomic.Int64

// newJournal opens a fresh database (named after name) of the shared server.
func newJournal(t *testing.T, name string) *journal {
	cfg := mongodb.DefaultConfig()
	cfg.URI, cfg.Database = testDB.URI(), fmt.Sprintf("%s_%d", name, dbSeq.Add(1))
	s, err := mongodb.Open(t.Context(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return &journal{t: t, s: s, seqs: map[string]int64{}}
}

func (j *journal) append(entity, typ, unique string, data any) {
	j.t.Helper()
	b, err := json.Marshal(data)
	if err != nil {
		j.t.Fatal(err)
	}
	j.seqs[entity]++
	if err := j.s.Append(j.t.Context(), couponmesh.Entry{Entity: entity, Seq: j.seqs[entity], Type: typ, Unique: unique, At: time.Now(), Data: b}); err != nil {
		j.t.Fatal(err)
	}
}

func (j *journal) create(id string, quantity int) {
	j.append(coupon.Entity(id), coupon.EntryCreated, "", map[string]any{"coupon": couponmesh.Coupon{ID: id, Quantity: quantity}})
}

// claim appends a claim of coupon id by u granting #n, and records it in
// u's wallet. With unique set (another key than the grains use, as a broken
// fencing would), it appends the coupon's entry only.
func (j *journal) claim(id, u, rid string, n int, unique string) couponmesh.Claim {
	c := couponmesh.Claim{Coupon: id, User: u, N: n, Code: fmt.Sprintf("code-%s-%s-%d", id, u, n)}
	if unique != "" {
		j.append(coupon.Entity(id), coupon.EntryClaimed, unique, map[string]any{"user": u, "rid": rid, "code": c.Code, "n": n})
		return c
	}
	j.append(coupon.Entity(id), coupon.EntryClaimed, coupon.ClaimKey(id, u), map[string]any{"user": u, "rid": rid, "code": c.Code, "n": n})
	j.append(user.Entity(u), couponmesh.FeedClaimed, "feed/"+u+"/claim/"+id, map[string]any{"coupon": id, "claim": c})
	return c
}

func ok(u, rid string, c couponmesh.Claim) history.Attempt {
	return history.Attempt{User: u, Coupon: c.Coupon, RID: rid, Outcome: history.OK, Claim: c}
}

func refused(u, id, rid string, o history.Outcome, code couponmesh.Code) history.Attempt {
	return history.Attempt{User: u, Coupon: id, RID: rid, Outcome: o, Code: code}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want history.Outcome
	}{
		{"ok", nil, history.OK},
		{"sold out", couponmesh.Errorf(couponmesh.CodeSoldOut, "x"), history.SoldOut},
		{"already claimed", fmt.Errorf("wrapped: %w", couponmesh.Errorf(couponmesh.CodeAlreadyClaimed, "x")), history.AlreadyClaimed},
		{"rate limited", couponmesh.Errorf(couponmesh.CodeRateLimited, "x"), history.Failed},
		{"unavailable", couponmesh.Errorf(couponmesh.CodeUnavailable, "x"), history.Unknown},
		{"internal", couponmesh.Errorf(couponmesh.CodeInternal, "x"), history.Unknown},
		{"deadline", context.DeadlineExceeded, history.NoAnswer},
		{"connection lost", errors.New("client: connection closed"), history.NoAnswer},
		{"not sent: draining", fmt.Errorf("%w: %w: draining", client.ErrClosed, client.ErrNotSent), history.NotSent},
	}
	for _, c := range cases {
		if got, _ := history.Classify(c.err); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

// A sound history passes: claims up to the quantity, each acknowledged one
// in both journals, the refusals absent, unknown outcomes either way.
func TestCheckSoundHistory(t *testing.T) {
	j := newJournal(t, "sound")
	j.create("c1", 2)
	a := j.claim("c1", "alice", "r-a", 1, "")
	b := j.claim("c1", "bob", "r-b", 2, "")
	attempts := []history.Attempt{
		ok("alice", "r-a", a),
		refused("bob", "c1", "r-b", history.NoAnswer, ""), // lost, then retried
		ok("bob", "r-b", b),
		refused("carol", "c1", "r-c", history.SoldOut, couponmesh.CodeSoldOut),
		refused("alice", "c1", "r-a2", history.AlreadyClaimed, couponmesh.CodeAlreadyClaimed),
		refused("dave", "c1", "r-d", history.Unknown, couponmesh.CodeUnavailable),
	}
	r, err := history.Check(t.Context(), j.s, []string{"c1"}, attempts)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r)
	if err := r.Err(); err != nil {
		t.Fatalf("violations in a sound history:\n%v", err)
	}
	if st := r.Coupons["c1"]; st.Claims != 2 || st.Quantity != 2 || !st.SoldOut() || len(r.NotSoldOut()) != 0 {
		t.Errorf("coupon state %+v, not sold out: %v", st, r.NotSoldOut())
	}
	if r.Outcomes[history.OK] != 2 || r.Codes[couponmesh.CodeSoldOut] != 1 {
		t.Errorf("outcomes %v codes %v", r.Outcomes, r.Codes)
	}
	if r.FeedSeq["alice"] != 1 || r.FeedSeq["bob"] != 1 {
		t.Errorf("feed seqs %v, want alice and bob at 1", r.FeedSeq)
	}
	if st := r.Coupons["c1"]; st.Seq != 3 {
		t.Errorf("coupon c1 at seq %d, want 3 (created, two claims)", st.Seq)
	}
	if w := r.Wallets; len(w) != 2 || len(w["alice"]) != 1 || w["alice"][0] != a || len(w["bob"]) != 1 || w["bob"][0] != b {
		t.Errorf("wallets %v, want alice %v and bob %v", w, a, b)
	}
}

func TestCheckFeed(t *testing.T) {
	cases := []struct {
		name string
		seqs []int64
		last int64
		ok   bool
	}{
		{"complete", []int64{1, 2, 3}, 3, true},
		{"resumed after seq 4", []int64{5, 6}, 6, true},
		{"no database figure", []int64{1, 2}, 0, true},
		{"gap", []int64{1, 3}, 3, false},
		{"repeat", []int64{1, 2, 2, 3}, 3, false},
		{"behind the journal", []int64{1, 2}, 3, false},
		{"nothing received", nil, 2, false},
	}
	for _, c := range cases {
		if err := history.CheckFeed(c.seqs, c.last); (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// Each broken invariant is reported: the checker can fail.
func TestCheckFindsViolations(t *testing.T) {
	cases := []struct {
		name  string
		build func(j *journal) []history.Attempt
		want  string
	}{
		{"over-claim", func(j *journal) []history.Attempt {
			j.create("c", 1)
			j.claim("c", "u1", "r1", 1, "")
			j.claim("c", "u2", "r2", 2, "")
			return nil
		}, "over-claimed"},
		{"n granted twice in the journal (fencing broken)", func(j *journal) []history.Attempt {
			j.create("c", 5)
			j.claim("c", "u1", "r1", 1, "")
			j.claim("c", "u2", "r2", 1, "")
			return nil
		}, "granted twice in the journal"},
		{"n acknowledged to two users", func(j *journal) []history.Attempt {
			j.create("c", 5)
			c1 := j.claim("c", "u1", "r1", 1, "")
			c2 := c1
			c2.User = "u2"
			return []history.Attempt{ok("u1", "r1", c1), ok("u2", "r2", c2)}
		}, "acknowledged to two users"},
		{"acknowledged claim lost", func(j *journal) []history.Attempt {
			j.create("c", 5)
			return []history.Attempt{ok("u1", "r1", couponmesh.Claim{Coupon: "c", User: "u1", N: 1, Code: "x"})}
		}, "is not in the coupon's journal"},
		{"acknowledged with another n", func(j *journal) []history.Attempt {
			j.create("c", 5)
			c := j.claim("c", "u1", "r1", 1, "")
			c.N = 3
			return []history.Attempt{ok("u1", "r1", c)}
		}, "the journal has #1"},
		{"refused yet written", func(j *journal) []history.Attempt {
			j.create("c", 5)
			j.claim("c", "u1", "r1", 1, "")
			return []history.Attempt{refused("u1", "c", "r1", history.SoldOut, couponmesh.CodeSoldOut)}
		}, "yet the journal has that claim"},
		{"one user claims twice", func(j *journal) []history.Attempt {
			j.create("c", 5)
			j.claim("c", "u1", "r1", 1, "")
			j.claim("c", "u1", "r2", 2, "another-key")
			return nil
		}, "claimed twice by u1"},
		{"n out of step with the journal", func(j *journal) []history.Attempt {
			j.create("c", 5)
			j.claim("c", "u1", "r1", 2, "")
			return nil
		}, "as its claim 1"},
		{"wallet lacks an acknowledged claim", func(j *journal) []history.Attempt {
			j.create("c", 5)
			c := couponmesh.Claim{Coupon: "c", User: "u1", N: 1, Code: "k"}
			j.append(coupon.Entity("c"), coupon.EntryClaimed, coupon.ClaimKey("c", "u1"), map[string]any{"user": "u1", "rid": "r1", "code": "k", "n": 1})
			return []history.Attempt{ok("u1", "r1", c)}
		}, "not in the user's wallet"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := newJournal(t, fmt.Sprintf("bad%d", i))
			attempts := c.build(j)
			r, err := history.Check(t.Context(), j.s, []string{"c"}, attempts)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Err(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("violations %v, want one with %q", err, c.want)
			}
		})
	}
}

type claimer func(ctx context.Context, coupon, rid string) (couponmesh.Claim, error)

func (f claimer) Claim(ctx context.Context, coupon, rid string) (couponmesh.Claim, error) {
	return f(ctx, coupon, rid)
}

func TestRecorder(t *testing.T) {
	var r history.Recorder
	answers := []error{nil, couponmesh.Errorf(couponmesh.CodeSoldOut, "gone"), context.DeadlineExceeded}
	for i, want := range answers {
		c := claimer(func(context.Context, string, string) (couponmesh.Claim, error) {
			return couponmesh.Claim{Coupon: "c", User: "u", N: i + 1}, want
		})
		if _, err := r.Claim(t.Context(), c, "n1", "u", "c", fmt.Sprint("r", i)); err != want {
			t.Fatalf("Claim returned %v, want %v", err, want)
		}
	}
	got := r.Attempts()
	if len(got) != 3 || got[0].Outcome != history.OK || got[1].Outcome != history.SoldOut || got[2].Outcome != history.NoAnswer || got[1].Code != couponmesh.CodeSoldOut {
		t.Fatalf("attempts %+v", got)
	}
	if acked := r.Acked(); len(acked["u"]) != 1 || acked["u"][0].N != 1 {
		t.Fatalf("acked %v", acked)
	}
}
