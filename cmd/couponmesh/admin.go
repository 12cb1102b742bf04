package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/couponmesh/couponmesh/cluster/membership"
)

// The admin API (admin listener, what `couponmesh ctl` calls). JSON out;
// errors as {"error": "..."}.

// NodeInfo is one node's own account of itself.
type NodeInfo struct {
	Name     string         `json:"name"`
	ID       string         `json:"id"`
	Address  string         `json:"address"` // protoactor remote
	HTTP     string         `json:"http"`
	Admin    string         `json:"admin"`
	Actors   map[string]int `json:"actors"`
	Sessions int            `json:"sessions"`
	Draining bool           `json:"draining"`
	Messages uint64         `json:"messages"`       // grain requests handled since start
	Rate     float64        `json:"messagesPerSec"` // over the last second
}

// MemberInfo is a member as one node sees it, with what the member says
// of itself when it answers.
type MemberInfo struct {
	membership.Member
	Actors   map[string]int `json:"actors,omitempty"`
	Sessions int            `json:"sessions"`
	Draining bool           `json:"draining"`
	Messages uint64         `json:"messages"`
	Rate     float64        `json:"messagesPerSec"`
	Self     bool           `json:"self,omitempty"`
	Error    string         `json:"error,omitempty"`
}

// ActorInfo is one local activation.
type ActorInfo struct {
	Identity string    `json:"identity"` // kind/id
	Since    time.Time `json:"since"`
	Mailbox  int       `json:"mailbox"` // messages waiting (-1: unknown)
}

func (a *App) adminAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /admin/api/node", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.nodeInfo())
	})
	mux.HandleFunc("GET /admin/api/members", a.handleMembers)
	mux.HandleFunc("GET /admin/api/actors", a.handleActors)
	mux.HandleFunc("POST /admin/api/drain", a.handleDrain)
	mux.HandleFunc("GET /admin/api/sessions", a.handleSessions)
	mux.HandleFunc("GET /admin/api/events", a.handleEvents)
	mux.HandleFunc("GET /admin/api/reminders", a.handleReminders)
	a.actorRoutes(mux)
	mux.HandleFunc("GET /debug", serveConsole)
	mux.HandleFunc("GET /debug/{$}", serveConsole)
	// Go profiles (CPU, heap, goroutines, …), behind the admin token like
	// the rest of this listener.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

func (a *App) nodeInfo() NodeInfo {
	self := a.members.Self()
	return NodeInfo{
		Name: self.Name, ID: self.ID, Address: self.Address(), HTTP: self.HTTP, Admin: self.Admin,
		Actors: a.node.Lookup.Counts(), Sessions: a.sessions(), Draining: a.draining.Load(),
		Messages: a.grainMetrics.Messages(), Rate: math.Float64frombits(a.msgRate.Load()),
	}
}

// sampleRate keeps the messages per second of this node, sampled every
// second until stop is closed.
func (a *App) sampleRate(stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last, at := a.grainMetrics.Messages(), time.Now()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			n := a.grainMetrics.Messages()
			rate := float64(n-last) / now.Sub(at).Seconds()
			a.msgRate.Store(math.Float64bits(math.Round(rate*10) / 10))
			last, at = n, now
		}
	}
}

// handleMembers lists every member this node knows, asking each alive one
// for its counts (1 s each, in parallel).
func (a *App) handleMembers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"members": a.membersInfo(r.Context())})
}

func (a *App) membersInfo(ctx context.Context) []MemberInfo {
	ms := a.members.Members()
	out := make([]MemberInfo, len(ms))
	self := a.members.Self().ID
	var wg sync.WaitGroup
	for i, m := range ms {
		out[i].Member = m
		switch {
		case m.ID == self:
			out[i].setInfo(a.nodeInfo())
			out[i].Self = true
		case m.Status == "alive" || m.Status == "suspect":
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				var info NodeInfo
				if err := a.adminCall(ctx, m.Admin, http.MethodGet, "/admin/api/node", nil, &info); err != nil {
					out[i].Error = err.Error()
					return
				}
				out[i].setInfo(info)
			})
		}
	}
	wg.Wait()
	return out
}

func (m *MemberInfo) setInfo(n NodeInfo) {
	m.Actors, m.Sessions, m.Draining, m.Messages, m.Rate = n.Actors, n.Sessions, n.Draining, n.Messages, n.Rate
}

// memberNamed returns the alive member with that name or ID.
func (a *App) memberNamed(name string) (membership.Member, bool) {
	for _, m := range a.members.Members() {
		if (m.Name == name || m.ID == name) && m.Status == "alive" {
			return m, true
		}
	}
	return membership.Member{}, false
}

// toNode forwards the request to the member named by ?node= when that is
// not this node; it reports whether it answered.
func (a *App) toNode(w http.ResponseWriter, r *http.Request) bool {
	name := r.URL.Query().Get("node")
	self := a.members.Self()
	if name == "" || name == self.Name || name == self.ID {
		return false
	}
	m, ok := a.memberNamed(name)
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no alive member named %q", name)})
		return true
	}
	q := r.URL.Query()
	q.Del("node")
	r.URL.RawQuery = q.Encode()
	a.forward(w, r, m.Admin, r.URL.Path, nil)
	return true
}

// handleSessions lists this node's sessions (?node= another's):
// ?after=ID&limit=100.
func (a *App) handleSessions(w http.ResponseWriter, r *http.Request) {
	if a.toNode(w, r) {
		return
	}
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit <= 0 || limit > 10000 {
		limit = 100
	}
	after, _ := strconv.ParseUint(q.Get("after"), 10, 64)
	list, total := a.ws.SessionList(after, limit)
	next := ""
	if len(list) == limit {
		next = strconv.FormatUint(list[len(list)-1].ID, 10)
	}
	writeJSON(w, http.StatusOK, map[string]any{"node": a.members.Self().Name, "total": total, "sessions": list, "next": next})
}

// handleEvents streams server-sent events to the debug console: a
// "members" event (the members list with their counts) every second, until
// the client goes or the admin listener shuts down.
func (a *App) handleEvents(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "streaming unsupported"})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		b, _ := json.Marshal(map[string]any{"members": a.membersInfo(r.Context()), "node": a.members.Self().Name, "at": time.Now()})
		if _, err := fmt.Fprintf(w, "event: members\ndata: %s\n\n", b); err != nil {
			return
		}
		flusher.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-a.adminClosing:
			return
		case <-t.C:
		}
	}
}

// handleActors lists this node's activations (?node= another's):
// ?kind=coupon&after=kind/id&limit=100.
func (a *App) handleActors(w http.ResponseWriter, r *http.Request) {
	if a.toNode(w, r) {
		return
	}
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit <= 0 || limit > 10000 {
		limit = 100
	}
	acts := a.node.Lookup.Activations(q.Get("kind"), q.Get("after"), limit)
	out := make([]ActorInfo, len(acts))
	for i, x := range acts {
		out[i] = ActorInfo{Identity: x.Kind + "/" + x.ID, Since: x.Since, Mailbox: x.MailboxLen()}
	}
	next := ""
	if len(out) == limit {
		next = out[len(out)-1].Identity
	}
	writeJSON(w, http.StatusOK, map[string]any{"node": a.members.Self().Name, "actors": out, "next": next})
}

// DrainRequest names the node to drain (name or member ID; empty: this one).
type DrainRequest struct {
	Node string `json:"node"`
}

// handleDrain starts the drain of this node, or forwards the request to the
// member named. It answers 202 once the drain has started.
func (a *App) handleDrain(w http.ResponseWriter, r *http.Request) {
	var req DrainRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body: " + err.Error()})
		return
	}
	self := a.members.Self()
	if req.Node == "" || req.Node == self.Name || req.Node == self.ID {
		a.drainOnce.Do(func() { go a.drain() })
		writeJSON(w, http.StatusAccepted, map[string]any{"node": self.Name, "id": self.ID, "draining": true})
		return
	}
	target, ok := a.memberNamed(req.Node)
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no alive member named %q", req.Node)})
		return
	}
	var res map[string]any
	if err := a.adminCall(r.Context(), target.Admin, http.MethodPost, "/admin/api/drain", DrainRequest{Node: target.ID}, &res); err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusAccepted, res)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// adminCall calls another node's admin API with this node's admin token.
func (a *App) adminCall(ctx context.Context, addr, method, path string, body, out any) error {
	return adminCallToken(ctx, a.cfg.AdminToken, addr, method, path, body, out)
}

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

// adminAuth requires the admin token on every request when one is
// configured (it must be when the listener is bound to a non-loopback
// address: see Config.validate). The token comes as "Authorization: Bearer
// TOKEN", or as the password of HTTP Basic authentication (any user name) so
// that a browser can open /debug: the 401 asks for it.
func adminAuth(token string, next http.Handler) http.Handler {
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
