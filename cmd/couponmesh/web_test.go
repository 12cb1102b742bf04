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
