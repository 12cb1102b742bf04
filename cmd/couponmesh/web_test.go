package main

import (
	"bytes"
	"io"
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/couponmesh/couponmesh/webclient"
)

// The node serves the embedded web client fit for a CDN: the entry page,
// the service worker and the manifest are revalidated on every load (their
// URLs never change), the content-hashed files under /assets/ are cached
// for a year and never revalidated.
func TestWebClientCacheHeaders(t *testing.T) {
	a := startApp(t, nil)
	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		resp, err := http.Get(baseURL(a) + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		return resp, body
	}
	const revalidate, immutable = "no-cache", "public, max-age=31536000, immutable"

	resp, index := get("/")
	if cc := resp.Header.Get("Cache-Control"); cc != revalidate {
		t.Errorf("/: Cache-Control %q, want %q", cc, revalidate)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("/: Content-Type %q", ct)
	}
	if !bytes.Contains(index, []byte(`id="login-btn"`)) {
		t.Fatalf("/ is not the web client:\n%s", index)
	}
	for _, path := range []string{"/sw.js", "/manifest.webmanifest", "/index.html"} {
		if resp, _ := get(path); resp.Header.Get("Cache-Control") != revalidate {
			t.Errorf("%s: Cache-Control %q, want %q", path, resp.Header.Get("Cache-Control"), revalidate)
		}
	}

	// Every file the entry page loads is content-hashed and immutable.
	refs := regexp.MustCompile(`(?:src|href)="(/assets/[^"]+)"`).FindAllStringSubmatch(string(index), -1)
	if len(refs) < 2 {
		t.Fatalf("index.html loads %d files from /assets/, want the script and the stylesheet", len(refs))
	}
	hashed := regexp.MustCompile(`^/assets/[A-Za-z0-9_.]+-[A-Za-z0-9_-]{8,}\.(js|css)$`)
	for _, m := range refs {
		path := m[1]
		if !hashed.MatchString(path) {
			t.Errorf("%s: no content hash in the name", path)
		}
		resp, body := get(path)
		if cc := resp.Header.Get("Cache-Control"); cc != immutable {
			t.Errorf("%s: Cache-Control %q, want %q", path, cc, immutable)
		}
		want, err := fs.ReadFile(webclient.FS(), strings.TrimPrefix(path, "/"))
		if err != nil || !bytes.Equal(body, want) {
			t.Errorf("%s: served bytes differ from the embedded file (%v)", path, err)
		}
	}
}

// The node serves the app, a coupon's page and the service worker with the
// security headers: a policy without inline script that allows the node's
// own origin and its WebSocket endpoint only, no framing, no sniffing, no
// referrer. (The browser tests run the app under this policy and fail on
// any violation it reports.)
func TestWebClientSecurityHeaders(t *testing.T) {
	a := startApp(t, nil)
	host := a.HTTPAddr()
	for _, path := range []string{"/", "/c/pizza", "/c/half.price", "/sw.js", "/manifest.webmanifest", "/merchant/c/x/edit"} {
		resp, err := http.Get(baseURL(a) + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
		csp := resp.Header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'self'", "script-src 'self';", "object-src 'none'", "frame-ancestors 'none'", "base-uri 'none'",
			"connect-src 'self' ws://" + host + "/ws wss://" + host + "/ws;"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: Content-Security-Policy %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-") {
			t.Errorf("%s: Content-Security-Policy %q allows something unsafe", path, csp)
		}
		for h, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"} {
			if got := resp.Header.Get(h); got != want {
				t.Errorf("%s: %s %q, want %q", path, h, got, want)
			}
		}
	}
	// The entry page holds no inline script for the policy to refuse.
	index, err := fs.ReadFile(webclient.FS(), "index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?s)<script\b([^>]*)>(.*?)</script>`).FindAllStringSubmatch(string(index), -1) {
		if !strings.Contains(m[1], "src=") || strings.TrimSpace(m[2]) != "" {
			t.Errorf("index.html has an inline script: %s", m[0])
		}
	}
	if regexp.MustCompile(`\son[a-z]+=`).MatchString(string(index)) || strings.Contains(string(index), "style=") {
		t.Error("index.html has an inline event handler or style attribute")
	}
}
