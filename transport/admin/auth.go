package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"
)

// sameOrigin refuses state-changing requests (anything but GET and HEAD)
// that a browser sends from another origin: a page on the web must not drain
// a node or passivate actors through an operator's browser, which can reach
// 127.0.0.1. Browsers send Origin on such requests; ctl sends none.
func sameOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			cross := r.Header.Get("Sec-Fetch-Site") == "cross-site"
			if o := r.Header.Get("Origin"); o != "" {
				u, err := url.Parse(o)
				cross = cross || err != nil || u.Host != r.Host
			}
			if cross {
				writeJSON(w, http.StatusForbidden, map[string]string{"error": "cross-origin request refused"})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// requireToken requires the admin token on every request when one is
// configured (it must be when the listener is bound to a non-loopback
// address: the node's configuration checks that). The token comes as
// "Authorization: Bearer TOKEN", or as the password of HTTP Basic
// authentication (any user name) so that a browser can open /debug: the 401
// asks for it.
func requireToken(token string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := ""
		if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			got = strings.TrimSpace(v)
		} else if _, pw, ok := r.BasicAuth(); ok {
			got = pw
		}
		h := sha256.Sum256([]byte(got))
		if got == "" || subtle.ConstantTimeCompare(h[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="couponmesh admin", charset="UTF-8"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "admin token required (Authorization: Bearer <admin_token>)"})
			return
		}
		next.ServeHTTP(w, r)
	})
}
