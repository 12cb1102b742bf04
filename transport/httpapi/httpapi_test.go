package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/transport/auth"
	"github.com/couponmesh/couponmesh/transport/httpapi"
	"github.com/couponmesh/couponmesh/transport/transporttest"
)

type env struct {
	t      testing.TB
	svc    *transporttest.Service
	tokens *auth.Tokens
	srv    *httptest.Server
	logs   *bytes.Buffer
}

func newEnv(t testing.TB, o httpapi.Options) *env {
	t.Helper()
	tokens, err := auth.New(auth.LocalConfig("http api tests"))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, svc: transporttest.NewService(nil), tokens: tokens, logs: &bytes.Buffer{}}
	o.Service, o.Tokens = e.svc, tokens
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(e.logs, nil))
	}
	e.srv = httptest.NewServer(httpapi.New(o))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) token(user string, role couponmesh.Role) string {
	tok, _, err := e.tokens.Issue(couponmesh.Principal{User: user, Role: role})
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q is not JSON: %v", r.body, err)
	}
	return m
}

func (e *env) do(method, path, token, body string) response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

func TestStatusOf(t *testing.T) {
	want := map[couponmesh.Code]int{
		couponmesh.CodeBadRequest: 400, couponmesh.CodeUnauthorized: 401, couponmesh.CodeForbidden: 403,
		couponmesh.CodeNotFound: 404, couponmesh.CodeSoldOut: 409, couponmesh.CodeExpired: 409, couponmesh.CodeNotStarted: 409,
		couponmesh.CodeAlreadyClaimed: 409, couponmesh.CodeRateLimited: 429, couponmesh.CodeUnavailable: 503,
		couponmesh.CodeInternal: 500, "made_up": 500,
	}
	for _, c := range couponmesh.Codes {
		if _, ok := want[c]; !ok {
			t.Errorf("code %s has no expected status in this test", c)
		}
	}
	for code, status := range want {
		if got := httpapi.StatusOf(code); got != status {
			t.Errorf("StatusOf(%s) = %d, want %d", code, got, status)
		}
	}
}

func TestRoutes(t *testing.T) {
	e := newEnv(t, httpapi.Options{Dev: true})
	merchant := e.token("m1", couponmesh.RoleMerchant)
	other := e.token("m2", couponmesh.RoleMerchant)
	shopper := e.token("alice", couponmesh.RoleShopper)
	admin := e.token("root", couponmesh.RoleAdmin)
	expired := func() string {
		s, _, err := e.tokens.Issue(couponmesh.Principal{User: "m1", Role: couponmesh.RoleMerchant})
		if err != nil {
			t.Fatal(err)
		}
		return s[:len(s)-4] + "AAAA" // bad signature
	}()
	e.svc.Put(couponmesh.Coupon{ID: "gone", Merchant: "m1", Title: "old", Quantity: 1, Withdrawn: true})
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)

	cases := []struct {
		name, method, path, token, body string
		status                          int
		code                            couponmesh.Code // for errors
		check                           func(t *testing.T, r response)
	}{
		{name: "create", method: "POST", path: "/api/coupons", token: merchant,
			body:   `{"id":"c1","title":"10% off","quantity":5,"discount":"10%","expiresAt":"` + future + `"}`,
			status: 201, check: func(t *testing.T, r response) {
				m := r.json(t)
				if m["id"] != "c1" || m["merchant"] != "m1" || m["remaining"] != float64(5) || m["status"] != "active" || m["version"] != float64(1) {
					t.Fatalf("coupon %v", m)
				}
				if r.header.Get("Location") != "/api/coupons/c1" {
					t.Fatalf("Location %q", r.header.Get("Location"))
				}
			}},
		{name: "create without token", method: "POST", path: "/api/coupons", body: `{"title":"x","quantity":1}`, status: 401, code: couponmesh.CodeUnauthorized,
			check: func(t *testing.T, r response) {
				if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
					t.Fatal("no WWW-Authenticate header")
				}
			}},
		{name: "create with bad signature", method: "POST", path: "/api/coupons", token: expired, body: `{"title":"x","quantity":1}`, status: 401, code: couponmesh.CodeUnauthorized},
		{name: "create as shopper", method: "POST", path: "/api/coupons", token: shopper, body: `{"title":"x","quantity":1}`, status: 403, code: couponmesh.CodeForbidden},
		{name: "create malformed JSON", method: "POST", path: "/api/coupons", token: merchant, body: `{"title":`, status: 400, code: couponmesh.CodeBadRequest},
		{name: "create unknown field", method: "POST", path: "/api/coupons", token: merchant, body: `{"title":"x","quantity":1,"merchant":"m2"}`, status: 400, code: couponmesh.CodeBadRequest,
			check: func(t *testing.T, r response) {
				if msg := r.json(t)["error"].(map[string]any)["message"].(string); !strings.Contains(msg, `"merchant"`) {
					t.Fatalf("message %q does not name the field", msg)
				}
			}},
		{name: "create wrong type", method: "POST", path: "/api/coupons", token: merchant, body: `{"title":"x","quantity":"many"}`, status: 400, code: couponmesh.CodeBadRequest},
		{name: "create two objects", method: "POST", path: "/api/coupons", token: merchant, body: `{"title":"x","quantity":1}{}`, status: 400, code: couponmesh.CodeBadRequest},
		{name: "create empty body", method: "POST", path: "/api/coupons", token: merchant, status: 400, code: couponmesh.CodeBadRequest},
		{name: "create too big", method: "POST", path: "/api/coupons", token: merchant, body: `{"title":"x","quantity":1,"description":"` + strings.Repeat("x", 70<<10) + `"}`, status: 400, code: couponmesh.CodeBadRequest,
			check: func(t *testing.T, r response) {
				if msg := r.json(t)["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "larger than") {
					t.Fatalf("message %q", msg)
				}
			}},
		{name: "create invalid spec", method: "POST", path: "/api/coupons", token: merchant, body: `{"title":"x","quantity":0}`, status: 400, code: couponmesh.CodeBadRequest},
		{name: "get", method: "GET", path: "/api/coupons/c1", status: 200, check: func(t *testing.T, r response) {
			if m := r.json(t); m["id"] != "c1" || m["title"] != "10% off" {
				t.Fatalf("coupon %v", m)
			}
		}},
		{name: "get unknown", method: "GET", path: "/api/coupons/nope", status: 404, code: couponmesh.CodeNotFound},
		{name: "get invalid id", method: "GET", path: "/api/coupons/a%20b", status: 400, code: couponmesh.CodeBadRequest},
		{name: "update", method: "PUT", path: "/api/coupons/c1", token: merchant, body: `{"title":"20% off"}`, status: 200, check: func(t *testing.T, r response) {
			if m := r.json(t); m["title"] != "20% off" || m["version"] != float64(2) {
				t.Fatalf("coupon %v", m)
			}
		}},
		{name: "update by another merchant", method: "PUT", path: "/api/coupons/c1", token: other, body: `{"title":"mine"}`, status: 403, code: couponmesh.CodeForbidden},
		{name: "update by admin", method: "PUT", path: "/api/coupons/c1", token: admin, body: `{"quantity":6}`, status: 200},
		{name: "update id mismatch", method: "PUT", path: "/api/coupons/c1", token: merchant, body: `{"id":"c2","title":"x"}`, status: 400, code: couponmesh.CodeBadRequest},
		{name: "update unknown", method: "PUT", path: "/api/coupons/nope", token: merchant, body: `{"title":"x"}`, status: 404, code: couponmesh.CodeNotFound},
		{name: "update without token", method: "PUT", path: "/api/coupons/c1", body: `{"title":"x"}`, status: 401, code: couponmesh.CodeUnauthorized},
		{name: "withdraw by another merchant", method: "DELETE", path: "/api/coupons/c1", token: other, status: 403, code: couponmesh.CodeForbidden},
		{name: "withdraw without token", method: "DELETE", path: "/api/coupons/c1", status: 401, code: couponmesh.CodeUnauthorized},
		{name: "withdraw", method: "DELETE", path: "/api/coupons/c1", token: merchant, status: 200, check: func(t *testing.T, r response) {
			if m := r.json(t); m["status"] != "withdrawn" {
				t.Fatalf("coupon %v", m)
			}
		}},
		{name: "browse", method: "GET", path: "/api/coupons", status: 200, check: func(t *testing.T, r response) {
			m := r.json(t)
			if cs, ok := m["coupons"].([]any); !ok || len(cs) != 2 {
				t.Fatalf("page %v", m)
			}
		}},
		{name: "browse filtered", method: "GET", path: "/api/coupons?merchant=m1&status=withdrawn&limit=1", status: 200, check: func(t *testing.T, r response) {
			m := r.json(t)
			if cs := m["coupons"].([]any); len(cs) != 1 || m["next"] != "1" {
				t.Fatalf("page %v", m)
			}
		}},
		{name: "browse next page", method: "GET", path: "/api/coupons?merchant=m1&status=withdrawn&limit=1&after=1", status: 200, check: func(t *testing.T, r response) {
			m := r.json(t)
			if cs := m["coupons"].([]any); len(cs) != 1 || m["next"] != nil {
				t.Fatalf("page %v", m)
			}
		}},
		{name: "browse empty", method: "GET", path: "/api/coupons?merchant=nobody", status: 200, check: func(t *testing.T, r response) {
			if !strings.Contains(string(r.body), `"coupons":[]`) {
				t.Fatalf("body %s: want an empty list, not null", r.body)
			}
		}},
		{name: "browse bad status", method: "GET", path: "/api/coupons?status=fresh", status: 400, code: couponmesh.CodeBadRequest},
		{name: "browse bad limit", method: "GET", path: "/api/coupons?limit=abc", status: 400, code: couponmesh.CodeBadRequest},
		{name: "browse limit too big", method: "GET", path: "/api/coupons?limit=101", status: 400, code: couponmesh.CodeBadRequest},
		{name: "browse limit zero", method: "GET", path: "/api/coupons?limit=0", status: 400, code: couponmesh.CodeBadRequest},
		{name: "browse bad merchant", method: "GET", path: "/api/coupons?merchant=a/b", status: 400, code: couponmesh.CodeBadRequest},
		{name: "dev login", method: "POST", path: "/api/dev/login", body: `{"user":"alice","role":"merchant"}`, status: 200, check: func(t *testing.T, r response) {
			m := r.json(t)
			p, exp, err := e.tokens.Verify(m["token"].(string))
			if err != nil || p.User != "alice" || p.Role != couponmesh.RoleMerchant {
				t.Fatalf("token: %v %v", p, err)
			}
			if m["expiresAt"] != exp.Format(time.RFC3339) {
				t.Fatalf("expiresAt %v, token says %v", m["expiresAt"], exp)
			}
			if r.header.Get("Cache-Control") != "no-store" {
				t.Fatal("token response may be cached")
			}
		}},
		{name: "dev login bad role", method: "POST", path: "/api/dev/login", body: `{"user":"alice","role":"god"}`, status: 400, code: couponmesh.CodeBadRequest},
		{name: "dev login bad user", method: "POST", path: "/api/dev/login", body: `{"user":"a b","role":"shopper"}`, status: 400, code: couponmesh.CodeBadRequest},
		{name: "unknown api path", method: "GET", path: "/api/nothing", status: 404, code: couponmesh.CodeNotFound},
		{name: "method not allowed", method: "PATCH", path: "/api/coupons/c1", status: 405, code: couponmesh.CodeBadRequest, check: func(t *testing.T, r response) {
			if r.header.Get("Allow") == "" {
				t.Fatal("no Allow header")
			}
		}},
		{name: "healthz", method: "GET", path: "/healthz", status: 200, check: func(t *testing.T, r response) {
			if r.json(t)["status"] != "ok" {
				t.Fatalf("body %s", r.body)
			}
		}},
		{name: "readyz without probe", method: "GET", path: "/readyz", status: 200},
		{name: "ws without handler", method: "GET", path: "/ws", status: 404},
		{name: "placeholder", method: "GET", path: "/", status: 200, check: func(t *testing.T, r response) {
			if !strings.Contains(string(r.body), "web client is coming") || !strings.Contains(string(r.body), `href="/api/coupons"`) {
				t.Fatalf("placeholder %s", r.body)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, tc.token, tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d; body %s", r.status, tc.status, r.body)
			}
			if tc.code != "" {
				m := r.json(t)
				errObj, _ := m["error"].(map[string]any)
				if errObj == nil || errObj["code"] != string(tc.code) || errObj["message"] == "" {
					t.Fatalf("error body %s, want code %s", r.body, tc.code)
				}
				if ct := r.header.Get("Content-Type"); ct != "application/json" {
					t.Fatalf("Content-Type %q", ct)
				}
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

// TestServiceErrorMapping sends every domain code through a route and
// checks status and body, and that internal details never leave the node.
func TestServiceErrorMapping(t *testing.T) {
	e := newEnv(t, httpapi.Options{})
	for _, code := range couponmesh.Codes {
		t.Run(string(code), func(t *testing.T) {
			e.svc.FailWith("Coupon", couponmesh.Errorf(code, "it is %s", code))
			r := e.do("GET", "/api/coupons/c1", "", "")
			if r.status != httpapi.StatusOf(code) {
				t.Fatalf("status %d, want %d", r.status, httpapi.StatusOf(code))
			}
			errObj := r.json(t)["error"].(map[string]any)
			if errObj["code"] != string(code) || errObj["message"] != "it is "+string(code) {
				t.Fatalf("body %s", r.body)
			}
		})
	}
	e.svc.FailWith("Coupon", errors.New("mongo: auth failed for user admin:hunter2"))
	r := e.do("GET", "/api/coupons/c1", "", "")
	if r.status != 500 || strings.Contains(string(r.body), "hunter2") {
		t.Fatalf("internal error: %d %s", r.status, r.body)
	}
	if !strings.Contains(e.logs.String(), "hunter2") {
		t.Fatal("internal error not logged")
	}
	e.svc.FailWith("Coupon", context.DeadlineExceeded)
	if r := e.do("GET", "/api/coupons/c1", "", ""); r.status != 503 {
		t.Fatalf("deadline: %d %s", r.status, r.body)
	}
}

func TestDevLoginOff(t *testing.T) {
	e := newEnv(t, httpapi.Options{})
	r := e.do("POST", "/api/dev/login", "", `{"user":"alice","role":"admin"}`)
	if r.status != 404 {
		t.Fatalf("dev login with Dev off: %d %s", r.status, r.body)
	}
	if r.json(t)["error"].(map[string]any)["code"] != "not_found" {
		t.Fatalf("body %s", r.body)
	}
}

func TestReadyz(t *testing.T) {
	var ready error
	e := newEnv(t, httpapi.Options{Ready: func(ctx context.Context) error { return ready }})
	if r := e.do("GET", "/readyz", "", ""); r.status != 200 {
		t.Fatalf("ready: %d", r.status)
	}
	ready = errors.New("draining")
	r := e.do("GET", "/readyz", "", "")
	if r.status != 503 || r.json(t)["reason"] != "draining" {
		t.Fatalf("not ready: %d %s", r.status, r.body)
	}
}

func TestWSRoute(t *testing.T) {
	hit := false
	e := newEnv(t, httpapi.Options{WS: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hit = true
		w.WriteHeader(http.StatusTeapot)
	})})
	if r := e.do("GET", "/ws", "", ""); r.status != http.StatusTeapot || !hit {
		t.Fatalf("/ws not routed to the handler: %d", r.status)
	}
}

func TestStaticCacheHeaders(t *testing.T) {
	files := fstest.MapFS{
		"index.html":            {Data: []byte("<!doctype html><title>app</title>")},
		"assets/app.3f2a9c.js":  {Data: []byte("console.log(1)")},
		"assets/app.77ab01.css": {Data: []byte("body{}")},
		"manifest.webmanifest":  {Data: []byte("{}")},
	}
	e := newEnv(t, httpapi.Options{Static: files})
	cases := []struct {
		path, cache, body string
		status            int
	}{
		{"/", "no-cache", "<title>app</title>", 200},
		{"/assets/app.3f2a9c.js", "public, max-age=31536000, immutable", "console.log(1)", 200},
		{"/assets/app.77ab01.css", "public, max-age=31536000, immutable", "body{}", 200},
		{"/manifest.webmanifest", "no-cache", "{}", 200},
		{"/wallet", "no-cache", "<title>app</title>", 200}, // client-side route
		{"/missing.png", "no-cache", "", 404},
		{"/assets/missing.js", "public, max-age=31536000, immutable", "", 404},
	}
	for _, tc := range cases {
		r := e.do("GET", tc.path, "", "")
		if r.status != tc.status {
			t.Errorf("%s: status %d, want %d", tc.path, r.status, tc.status)
			continue
		}
		if tc.status == 200 {
			if got := r.header.Get("Cache-Control"); got != tc.cache {
				t.Errorf("%s: Cache-Control %q, want %q", tc.path, got, tc.cache)
			}
			if !strings.Contains(string(r.body), tc.body) {
				t.Errorf("%s: body %q", tc.path, r.body)
			}
		}
	}
	// The API still wins over the static files.
	if r := e.do("GET", "/api/coupons/x", "", ""); r.status != 404 || !strings.Contains(string(r.body), "not_found") {
		t.Errorf("/api/coupons/x: %d %s", r.status, r.body)
	}
}

// Every response of the public listener carries the security headers: the
// app's pages, its service worker, a coupon's page and the API alike.
func TestSecurityHeaders(t *testing.T) {
	files := fstest.MapFS{
		"index.html":           {Data: []byte("<!doctype html><title>app</title>")},
		"sw.js":                {Data: []byte("self.addEventListener('fetch', () => {})")},
		"manifest.webmanifest": {Data: []byte("{}")},
	}
	e := newEnv(t, httpapi.Options{Static: files})
	host := strings.TrimPrefix(e.srv.URL, "http://")
	for _, path := range []string{"/", "/c/soup", "/c/half.price", "/sw.js", "/manifest.webmanifest", "/api/coupons", "/api/coupons/nope", "/missing.png"} {
		r := e.do("GET", path, "", "")
		csp := r.header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'self'", "script-src 'self';", "frame-ancestors 'none'", "object-src 'none'",
			"connect-src 'self' ws://" + host + "/ws wss://" + host + "/ws;"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: Content-Security-Policy %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: Content-Security-Policy %q allows inline script or eval", path, csp)
		}
		for h, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"} {
			if got := r.header.Get(h); got != want {
				t.Errorf("%s: %s %q, want %q", path, h, got, want)
			}
		}
	}
	// A coupon's page is the app, whatever its id holds.
	for _, path := range []string{"/c/soup", "/c/half.price"} {
		if r := e.do("GET", path, "", ""); r.status != 200 || !strings.Contains(string(r.body), "<title>app</title>") {
			t.Errorf("%s: %d %q, want the entry page", path, r.status, r.body)
		}
	}
	// A Host that does not fit in a policy is left out of it.
	if got := httpapi.ContentSecurityPolicy("evil; script-src *"); strings.Contains(got, "evil") {
		t.Errorf("policy for a bad host: %q", got)
	}
}
