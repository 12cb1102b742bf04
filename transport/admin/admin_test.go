package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func ok(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }

// The token is required as a bearer token or a Basic password, compared in
// constant time; without a configured token everything passes.
func TestRequireToken(t *testing.T) {
	const token = "admin-token-for-tests-0123456789"
	h := requireToken(token, http.HandlerFunc(ok))
	cases := []struct {
		name string
		auth func(*http.Request)
		want int
	}{
		{"none", func(*http.Request) {}, http.StatusUnauthorized},
		{"bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }, http.StatusNoContent},
		{"bearer with spaces", func(r *http.Request) { r.Header.Set("Authorization", "Bearer  "+token+" ") }, http.StatusNoContent},
		{"wrong bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer wrong") }, http.StatusUnauthorized},
		{"prefix of the token", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token[:10]) }, http.StatusUnauthorized},
		{"empty bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer ") }, http.StatusUnauthorized},
		{"basic", func(r *http.Request) { r.SetBasicAuth("ops", token) }, http.StatusNoContent},
		{"basic, token as user", func(r *http.Request) { r.SetBasicAuth(token, "") }, http.StatusUnauthorized},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/admin/api/node", nil)
			c.auth(r)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != c.want {
				t.Fatalf("status %d, want %d", w.Code, c.want)
			}
			if c.want == http.StatusUnauthorized {
				var e struct{ Error string }
				if !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Basic ") || json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Error == "" {
					t.Fatalf("401 without a Basic challenge or an error: %v %s", w.Header(), w.Body)
				}
			}
		})
	}
	w := httptest.NewRecorder()
	requireToken("", http.HandlerFunc(ok)).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/debug", nil))
	if w.Code != http.StatusNoContent {
		t.Fatalf("no token configured: %d", w.Code)
	}
}

// A browser on another origin cannot make a state-changing request; reads
// and requests without Origin (ctl, curl) pass.
func TestSameOrigin(t *testing.T) {
	h := sameOrigin(http.HandlerFunc(ok))
	cases := []struct {
		name, method, origin, fetchSite string
		want                            int
	}{
		{"ctl", http.MethodPost, "", "", http.StatusNoContent},
		{"same origin", http.MethodPost, "http://127.0.0.1:8081", "same-origin", http.StatusNoContent},
		{"other origin", http.MethodPost, "http://evil.example", "", http.StatusForbidden},
		{"other port", http.MethodPost, "http://127.0.0.1:9999", "", http.StatusForbidden},
		{"cross-site without Origin", http.MethodPost, "", "cross-site", http.StatusForbidden},
		{"bad origin", http.MethodPost, "http://[::1", "", http.StatusForbidden},
		{"read from another origin", http.MethodGet, "http://evil.example", "cross-site", http.StatusNoContent},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(c.method, "http://127.0.0.1:8081/admin/api/drain", nil)
			if c.origin != "" {
				r.Header.Set("Origin", c.origin)
			}
			if c.fetchSite != "" {
				r.Header.Set("Sec-Fetch-Site", c.fetchSite)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != c.want {
				t.Fatalf("status %d, want %d", w.Code, c.want)
			}
		})
	}
}

// The console is one page that loads nothing from elsewhere and cannot be
// framed.
func TestConsolePage(t *testing.T) {
	w := httptest.NewRecorder()
	serveConsole(w, httptest.NewRequest(http.MethodGet, "/debug", nil))
	h := w.Header()
	if w.Code != http.StatusOK || h.Get("Content-Type") != "text/html; charset=utf-8" || h.Get("Cache-Control") != "no-store" ||
		h.Get("X-Frame-Options") != "DENY" ||
		h.Get("Content-Security-Policy") != "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:" {
		t.Fatalf("%d %v", w.Code, h)
	}
	if !strings.Contains(w.Body.String(), `id="identity"`) {
		t.Fatal("the console page has no identity search")
	}
}

// Call sends the token and JSON, decodes the reply, and turns an error
// status into an error that carries the reply's message.
func TestCall(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/admin/api/drain":
			var req DrainRequest
			if r.Header.Get("Authorization") != "Bearer tok" || json.NewDecoder(r.Body).Decode(&req) != nil {
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "no token"})
				return
			}
			writeJSON(w, http.StatusAccepted, map[string]any{"node": req.Node, "draining": true})
		case "/admin/api/actors/coupon/x":
			writeJSON(w, http.StatusNotFound, map[string]any{"error": "coupon/x is not active (its owner would be n1)"})
		default:
			http.Error(w, "boom", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()
	var res map[string]any
	if err := Call(ctx, "tok", addr, http.MethodPost, "/admin/api/drain", DrainRequest{Node: "n2"}, &res); err != nil || res["node"] != "n2" {
		t.Fatalf("drain: %v %v", res, err)
	}
	if err := Call(ctx, "", addr, http.MethodPost, "/admin/api/drain", DrainRequest{}, nil); err == nil || !strings.Contains(err.Error(), "401 Unauthorized: no token") {
		t.Fatalf("without the token: %v", err)
	}
	if err := Call(ctx, "", addr, http.MethodGet, "/admin/api/actors/coupon/x", nil, nil); err == nil || !strings.Contains(err.Error(), "is not active (its owner would be n1)") {
		t.Fatalf("404: %v", err)
	}
	if err := Call(ctx, "", addr, http.MethodGet, "/other", nil, nil); err == nil || !strings.HasSuffix(err.Error(), "500 Internal Server Error") {
		t.Fatalf("500: %v", err)
	}
	if err := Call(ctx, "", "", http.MethodGet, "/admin/api/node", nil, nil); err == nil {
		t.Fatal("no address: no error")
	}
}
