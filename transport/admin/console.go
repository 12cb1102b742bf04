package admin

import (
	_ "embed"
	"net/http"
)

// The debug console: one self-contained HTML page (plain JavaScript, no
// build step) over the admin API, served at /debug on the admin listener.
//
//go:embed console/console.html
var consoleHTML []byte

func serveConsole(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:")
	w.Header().Set("X-Frame-Options", "DENY")
	_, _ = w.Write(consoleHTML)
}
