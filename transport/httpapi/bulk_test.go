package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/internal/testutil"
	"github.com/couponmesh/couponmesh/transport/httpapi"
)

const bulkPath = "/api/coupons/bulk-update"

// bulkResults decodes a bulk update's 200 answer.
func bulkResults(t *testing.T, r response) []couponmesh.BulkUpdateResult {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("status %d, want 200; body %s", r.status, r.body)
	}
	var out struct {
		Results []couponmesh.BulkUpdateResult `json:"results"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	return out.Results
}

// want is what one item of a bulk update should get: a coupon with title
// (and version, when not 0), or an error code.
type want struct {
	id      string
	title   string
	version int64
	code    couponmesh.Code
}

func checkResults(t *testing.T, got []couponmesh.BulkUpdateResult, wants []want) {
	t.Helper()
	if len(got) != len(wants) {
		t.Fatalf("%d results, want %d: %+v", len(got), len(wants), got)
	}
	for i, w := range wants {
		g := got[i]
		if g.ID != w.id {
			t.Errorf("result %d: id %q, want %q", i, g.ID, w.id)
		}
		if w.code != "" {
			if g.Coupon != nil || g.Error == nil || g.Error.Code != w.code || g.Error.Message == "" {
				t.Errorf("result %d (%s): %+v %+v, want error %s", i, w.id, g.Coupon, g.Error, w.code)
			}
			continue
		}
		if g.Error != nil || g.Coupon == nil || g.Coupon.ID != w.id || g.Coupon.Title != w.title ||
			(w.version != 0 && g.Coupon.Version != w.version) {
			t.Errorf("result %d (%s): %+v %+v, want title %q version %d", i, w.id, g.Coupon, g.Error, w.title, w.version)
		}
	}
}

// TestBulkUpdate: the request fails as a whole only when it cannot be read;
// otherwise each item gets what PUT /api/coupons/{id} would answer, in
// request order, and a bad item leaves the others done.
func TestBulkUpdate(t *testing.T) {
	e := newEnv(t, httpapi.Options{})
	merchant := e.token("m1", couponmesh.RoleMerchant)
	shopper := e.token("alice", couponmesh.RoleShopper)
	admin := e.token("root", couponmesh.RoleAdmin)
	for _, id := range []string{"a", "b", "c", "d"} {
		e.svc.Put(couponmesh.Coupon{ID: id, Merchant: "m1", Title: "old " + id, Quantity: 5})
	}
	e.svc.Put(couponmesh.Coupon{ID: "x", Merchant: "m2", Title: "theirs", Quantity: 5})
	items := func(n int) string {
		var b strings.Builder
		b.WriteString(`{"updates":[`)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"id":"a","title":"t%d"}`, i)
		}
		b.WriteString(`]}`)
		return b.String()
	}

	cases := []struct {
		name, token, body string
		status            int
		code              couponmesh.Code // the request's error
		msg               string          // in its message
		results           []want
	}{
		{name: "no token", body: `{"updates":[{"id":"a","title":"x"}]}`, status: 401, code: couponmesh.CodeUnauthorized},
		{name: "empty list", token: merchant, body: `{"updates":[]}`, status: 400, code: couponmesh.CodeBadRequest, msg: "1-100"},
		{name: "no list", token: merchant, body: `{}`, status: 400, code: couponmesh.CodeBadRequest, msg: "got 0"},
		{name: "null list", token: merchant, body: `{"updates":null}`, status: 400, code: couponmesh.CodeBadRequest},
		{name: "too many", token: merchant, body: items(couponmesh.MaxBulkUpdates + 1), status: 400, code: couponmesh.CodeBadRequest, msg: "got 101"},
		{name: "malformed JSON", token: merchant, body: `{"updates":[{"id":"a",`, status: 400, code: couponmesh.CodeBadRequest, msg: "malformed JSON"},
		{name: "empty body", token: merchant, status: 400, code: couponmesh.CodeBadRequest},
		{name: "list not object", token: merchant, body: `[{"id":"a","title":"x"}]`, status: 400, code: couponmesh.CodeBadRequest},
		{name: "item not object", token: merchant, body: `{"updates":["a"]}`, status: 400, code: couponmesh.CodeBadRequest},
		{name: "unknown field in item", token: merchant, body: `{"updates":[{"id":"a","merchant":"m2"}]}`, status: 400, code: couponmesh.CodeBadRequest, msg: `"merchant"`},
		{name: "two objects", token: merchant, body: `{"updates":[{"id":"a","title":"x"}]}{}`, status: 400, code: couponmesh.CodeBadRequest},
		{name: "body too big", token: merchant, body: `{"updates":[{"id":"a","description":"` + strings.Repeat("x", httpapi.MaxBulkBody) + `"}]}`,
			status: 400, code: couponmesh.CodeBadRequest, msg: "larger than"},
		{name: "at the limit", token: merchant, body: items(couponmesh.MaxBulkUpdates), status: 200,
			results: func() []want {
				w := make([]want, couponmesh.MaxBulkUpdates)
				for i := range w {
					w[i] = want{id: "a", title: fmt.Sprintf("t%d", i), version: int64(2 + i)} // one coupon: in request order
				}
				return w
			}()},
		{name: "mixed", token: merchant, status: 200,
			body: `{"updates":[{"id":"b","title":"new b"},{"id":"nope","title":"x"},{"id":"x","title":"mine"},` +
				`{"id":"c","quantity":0},{"id":"a b","title":"x"},{},{"id":"d","title":"new d"},{"id":"c","title":"new c"}]}`,
			results: []want{
				{id: "b", title: "new b", version: 2},
				{id: "nope", code: couponmesh.CodeNotFound},
				{id: "x", code: couponmesh.CodeForbidden},
				{id: "c", code: couponmesh.CodeBadRequest},
				{id: "a b", code: couponmesh.CodeBadRequest},
				{id: "", code: couponmesh.CodeBadRequest},
				{id: "d", title: "new d", version: 2},
				{id: "c", title: "new c", version: 2}, // after its failed item
			}},
		{name: "shopper", token: shopper, body: `{"updates":[{"id":"b","title":"x"},{"id":"x","title":"x"}]}`, status: 200,
			results: []want{{id: "b", code: couponmesh.CodeForbidden}, {id: "x", code: couponmesh.CodeForbidden}}},
		{name: "admin", token: admin, body: `{"updates":[{"id":"x","title":"by admin"}]}`, status: 200,
			results: []want{{id: "x", title: "by admin", version: 2}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", bulkPath, tc.token, tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d; body %s", r.status, tc.status, r.body)
			}
			if tc.code != "" {
				errObj, _ := r.json(t)["error"].(map[string]any)
				if errObj == nil || errObj["code"] != string(tc.code) || !strings.Contains(fmt.Sprint(errObj["message"]), tc.msg) {
					t.Fatalf("error body %s, want code %s with %q", r.body, tc.code, tc.msg)
				}
				return
			}
			checkResults(t, bulkResults(t, r), tc.results)
		})
	}
	// What the items did is what a read sees; the refused ones changed nothing.
	for id, title := range map[string]string{"a": "t99", "b": "new b", "c": "new c", "d": "new d", "x": "by admin"} {
		if c, err := e.svc.Coupon(context.Background(), id); err != nil || c.Title != title {
			t.Errorf("coupon %s: %+v %v, want title %q", id, c, err, title)
		}
	}
}

// TestBulkUpdateInternalError: an item's internal error is logged with its
// cause and answered "internal" without it, like a single update's.
func TestBulkUpdateInternalError(t *testing.T) {
	e := newEnv(t, httpapi.Options{})
	e.svc.Put(couponmesh.Coupon{ID: "a", Merchant: "m1", Title: "old", Quantity: 5})
	e.svc.FailWith("UpdateCoupon", errors.New("mongo: auth failed for user admin:hunter2"))
	r := e.do("POST", bulkPath, e.token("m1", couponmesh.RoleMerchant), `{"updates":[{"id":"a","title":"x"}]}`)
	checkResults(t, bulkResults(t, r), []want{{id: "a", code: couponmesh.CodeInternal}})
	if strings.Contains(string(r.body), "hunter2") {
		t.Fatalf("internal detail sent: %s", r.body)
	}
	if !strings.Contains(e.logs.String(), "hunter2") {
		t.Fatal("internal error not logged")
	}
}

// TestBulkUpdateConcurrent: the items of different coupons are in the
// Service at once, never more than BulkConcurrency; the items of one coupon
// one at a time.
func TestBulkUpdateConcurrent(t *testing.T) {
	e := newEnv(t, httpapi.Options{})
	const coupons = 3 * httpapi.BulkConcurrency
	var body strings.Builder
	body.WriteString(`{"updates":[`)
	for i := range coupons {
		id := fmt.Sprintf("k%d", i)
		e.svc.Put(couponmesh.Coupon{ID: id, Merchant: "m1", Title: "old", Quantity: 5})
		fmt.Fprintf(&body, `{"id":%q,"title":"first"},`, id)
	}
	body.WriteString(`{"id":"k0","title":"second"}]}`)

	var (
		mu      sync.Mutex
		total   int
		most    atomic.Int64
		release = make(chan struct{})
	)
	e.svc.Hook = func(ctx context.Context, method string) error {
		if method != "UpdateCoupon" {
			return nil
		}
		mu.Lock()
		total++
		if int64(total) > most.Load() {
			most.Store(int64(total))
		}
		mu.Unlock()
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		mu.Lock()
		total--
		mu.Unlock()
		return nil
	}
	done := make(chan response, 1)
	go func() { done <- e.do("POST", bulkPath, e.token("m1", couponmesh.RoleMerchant), body.String()) }()
	testutil.Until(t, 10*time.Second, "BulkConcurrency updates in flight", func() bool {
		return most.Load() == httpapi.BulkConcurrency
	})
	close(release)
	var r response
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("bulk update did not answer")
	}
	if m := most.Load(); m != httpapi.BulkConcurrency {
		t.Fatalf("at most %d in flight, want %d", m, httpapi.BulkConcurrency)
	}
	res := bulkResults(t, r)
	if len(res) != coupons+1 {
		t.Fatalf("%d results", len(res))
	}
	for i, g := range res[:coupons] {
		if g.Error != nil || g.Coupon == nil || g.Coupon.ID != fmt.Sprintf("k%d", i) {
			t.Fatalf("result %d: %+v %+v", i, g.Coupon, g.Error)
		}
	}
	// The hook does not see the coupon: k0's two items tell their order by
	// their versions.
	if c0, last := res[0].Coupon, res[coupons].Coupon; c0.Version != 2 || last == nil || last.Version != 3 || last.Title != "second" {
		t.Fatalf("k0's items out of order: %+v then %+v", c0, last)
	}
}

// FuzzBulkUpdate: whatever the body, a bulk update answers 400 with an
// error body or 200 with one result per item, each a coupon or an error.
func FuzzBulkUpdate(f *testing.F) {
	for _, s := range []string{
		`{"updates":[{"id":"a","title":"x"}]}`,
		`{"updates":[{"id":"a","title":"x"},{"id":"b","quantity":0},{"id":"a b"},{}]}`,
		`{"updates":[]}`, `{}`, `[]`, `{"updates":[{"id":"a","startsAt":"2030-01-01T00:00:00Z","expiresAt":"2029-01-01T00:00:00Z"}]}`,
		`{"updates":[{"id":"a",`, `{"updates":[{"id":"a","merchant":"m2"}]}`, `{"updates":["a"]}`,
	} {
		f.Add(s)
	}
	e := newEnv(f, httpapi.Options{})
	e.svc.Put(couponmesh.Coupon{ID: "a", Merchant: "m1", Title: "old", Quantity: 5})
	tok := func() string {
		s, _, err := e.tokens.Issue(couponmesh.Principal{User: "m1", Role: couponmesh.RoleMerchant})
		if err != nil {
			f.Fatal(err)
		}
		return s
	}()
	f.Fuzz(func(t *testing.T, body string) {
		et := *e // each input fails its own t
		et.t = t
		r := et.do("POST", bulkPath, tok, body)
		switch r.status {
		case 400:
			if errObj, _ := r.json(t)["error"].(map[string]any); errObj == nil || errObj["code"] != "bad_request" {
				t.Fatalf("400 body %s", r.body)
			}
		case 200:
			var in struct {
				Updates []json.RawMessage `json:"updates"`
			}
			if err := json.Unmarshal([]byte(body), &in); err != nil {
				t.Fatalf("200 for a body encoding/json refuses (%v): %s", err, body)
			}
			res := bulkResults(t, r)
			if len(res) != len(in.Updates) {
				t.Fatalf("%d results for %d items", len(res), len(in.Updates))
			}
			for i, g := range res {
				if (g.Coupon == nil) == (g.Error == nil) {
					t.Fatalf("result %d: %+v %+v: want exactly one of coupon and error", i, g.Coupon, g.Error)
				}
			}
		default:
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
}

// TestBulkUpdateNodeLimit: two bulk updates at once put no more than
// BulkInFlight items into the Service together (each alone would put
// BulkConcurrency there), and both are answered in full.
func TestBulkUpdateNodeLimit(t *testing.T) {
	const limit = httpapi.BulkConcurrency + 4
	e := newEnv(t, httpapi.Options{BulkInFlight: limit})
	var bodies [2]string
	for r := range bodies {
		var b strings.Builder
		b.WriteString(`{"updates":[`)
		for i := range httpapi.BulkConcurrency {
			id := fmt.Sprintf("n%d-%d", r, i)
			e.svc.Put(couponmesh.Coupon{ID: id, Merchant: "m1", Title: "old", Quantity: 5})
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"id":%q,"title":"new"}`, id)
		}
		b.WriteString(`]}`)
		bodies[r] = b.String()
	}
	var inFlight, most atomic.Int64
	release := make(chan struct{})
	e.svc.Hook = func(ctx context.Context, method string) error {
		if method != "UpdateCoupon" {
			return nil
		}
		n := inFlight.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		defer inFlight.Add(-1)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	done := make(chan response, 2)
	for _, body := range bodies {
		go func() { done <- e.do("POST", bulkPath, e.token("m1", couponmesh.RoleMerchant), body) }()
	}
	testutil.Until(t, 10*time.Second, "BulkInFlight items in flight", func() bool { return most.Load() == limit })
	close(release)
	for range bodies {
		select {
		case r := <-done:
			for i, g := range bulkResults(t, r) {
				if g.Error != nil || g.Coupon == nil {
					t.Errorf("result %d: %+v %+v", i, g.Coupon, g.Error)
				}
			}
		case <-time.After(30 * time.Second):
			t.Fatal("bulk update did not answer")
		}
	}
	if m := most.Load(); m != limit {
		t.Fatalf("at most %d in flight, want %d", m, limit)
	}
}
