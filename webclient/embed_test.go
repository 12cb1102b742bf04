package webclient

import (
	"io/fs"
	"regexp"
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
