package webclient

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestFS checks that the committed build is complete: the entry page, the
// fixed-URL service worker and manifest, and every hashed asset the entry
// page and the service worker name.
func TestFS(t *testing.T) {
	fsys := FS()
	for _, name := range []string{"index.html", "sw.js", "manifest.webmanifest", "icons/icon-192.png", "icons/icon-512.png"} {
		if _, err := fs.Stat(fsys, name); err != nil {
			t.Errorf("dist/%s: %v (run npm run build in webclient/)", name, err)
		}
	}
	index, err := fs.ReadFile(fsys, "index.html")
	if err != nil {
		t.Fatal(err)
	}
	sw, err := fs.ReadFile(fsys, "sw.js")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`/assets/[A-Za-z0-9_.-]+`)
	refs := re.FindAllString(string(index), -1)
	if len(refs) == 0 {
		t.Fatal("index.html references no /assets/ file")
	}
	for _, ref := range append(refs, re.FindAllString(string(sw), -1)...) {
		if _, err := fs.Stat(fsys, strings.TrimPrefix(ref, "/")); err != nil {
			t.Errorf("%s is referenced but not built: %v", ref, err)
		}
	}
	if strings.Contains(string(sw), "__SHELL__") || strings.Contains(string(sw), "__CACHE_VERSION__") {
		t.Error("sw.js still holds build placeholders")
	}
}

// TestDistIsBuiltFromSources fails when the committed dist/ was not rebuilt
// after a change to what it is built from: dist/source.sha256 (written by
// the build, vite.config.js) must match the sources as they are now.
func TestDistIsBuiltFromSources(t *testing.T) {
	want, err := fs.ReadFile(FS(), "source.sha256")
	if err != nil {
		t.Fatalf("dist/source.sha256: %v (run `make web`)", err)
	}
	var files []string
	for _, s := range []string{"index.html", "package.json", "package-lock.json", "vite.config.js", "src", "public"} {
		err := filepath.WalkDir(s, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() {
				files = append(files, filepath.ToSlash(path))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		h.Write([]byte(f + "\x00"))
		h.Write(b)
		h.Write([]byte{0})
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != strings.TrimSpace(string(want)) {
		t.Errorf("webclient/dist is older than its sources (sources %s, dist built from %s): run `make web` and commit dist/", got, strings.TrimSpace(string(want)))
	}
}

// TestManifest checks that the web app manifest makes the app installable
// as a standalone app: name, start URL, display, theme colour and icons of
// 192 and 512 px for both "any" and "maskable" purposes, each file present.
func TestManifest(t *testing.T) {
	b, err := fs.ReadFile(FS(), "manifest.webmanifest")
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Icons []struct{ Src, Sizes, Type, Purpose string }
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	str := func(k string) string {
		var s string
		json.Unmarshal(raw[k], &s)
		return s
	}
	for k, want := range map[string]string{"start_url": "/", "display": "standalone", "scope": "/"} {
		if got := str(k); got != want {
			t.Errorf("manifest %s = %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"name", "short_name", "theme_color", "background_color"} {
		if str(k) == "" {
			t.Errorf("manifest has no %s", k)
		}
	}
	have := map[string]bool{}
	for _, ic := range m.Icons {
		if _, err := fs.Stat(FS(), strings.TrimPrefix(ic.Src, "/")); err != nil {
			t.Errorf("icon %s: %v", ic.Src, err)
		}
		for _, p := range strings.Fields(ic.Purpose) {
			have[ic.Sizes+" "+p] = true
		}
	}
	for _, want := range []string{"192x192 any", "512x512 any", "192x192 maskable", "512x512 maskable"} {
		if !have[want] {
			t.Errorf("manifest has no %s icon", want)
		}
	}
}
