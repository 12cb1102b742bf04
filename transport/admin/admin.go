package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/couponmesh/couponmesh"
)

// The admin API. JSON out; errors as {"error": "..."}.

// Config is what a Server needs of its node; every field but Token and
// Metrics is required.
type Config struct {
	Inspector couponmesh.Inspector
	Sessions  couponmesh.Sessions
	// Token, when set, is required on every request (Authorization: Bearer,
	// or the password of HTTP Basic authentication) and sent when this node
	// forwards a request to another one.
	Token string
	// Messages is the number of grain requests handled since start (the
	// members list shows it and its rate per second).
	Messages func() uint64
	// Draining reports whether this node is draining.
	Draining func() bool
	// Drain starts the drain of this node unless it has started; it must
	// not block (POST /admin/api/drain answers once the drain has started).
	Drain func()
	// Metrics, if set, is served at /metrics.
	Metrics http.Handler
}

// Server serves the admin API and the console of one node.
type Server struct {
	cfg     Config
	handler http.Handler
	rate    atomic.Uint64 // float64 bits: grain requests per second (sampleRate)
	closing chan struct{} // closed by Close: ends event streams and the rate sampling
	close   sync.Once
}

// New returns the admin server of a node; it samples the node's message
// rate every second until Close.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, closing: make(chan struct{})}
	mux := http.NewServeMux()
	if cfg.Metrics != nil {
		mux.Handle("/metrics", cfg.Metrics)
	}
	mux.HandleFunc("GET /admin/api/node", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.nodeInfo())
	})
	mux.HandleFunc("GET /admin/api/members", s.handleMembers)
	mux.HandleFunc("GET /admin/api/actors", s.handleActors)
	mux.HandleFunc("POST /admin/api/drain", s.handleDrain)
	mux.HandleFunc("GET /admin/api/sessions", s.handleSessions)
	mux.HandleFunc("GET /admin/api/events", s.handleEvents)
	mux.HandleFunc("GET /admin/api/reminders", s.handleReminders)
	mux.HandleFunc("GET /admin/api/actors/{kind}/{id}", s.handleActorGet)
	mux.HandleFunc("POST /admin/api/actors/{kind}/{id}/passivate", s.handleActorPassivate)
	mux.HandleFunc("POST /admin/api/actors/{kind}/{id}/probe", s.handleActorProbe)
	mux.HandleFunc("GET /debug", serveConsole)
	mux.HandleFunc("GET /debug/{$}", serveConsole)
	// Go profiles (CPU, heap, goroutines, …), behind the admin token like
	// the rest of this listener.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	s.handler = requireToken(cfg.Token, sameOrigin(mux))
	go s.sampleRate()
	return s
}

// Handler is the whole admin listener: the token check, the cross-origin
// refusal, then the routes.
func (s *Server) Handler() http.Handler { return s.handler }

// Close ends the event streams and the rate sampling. Idempotent; call it
// when the admin listener shuts down (http.Server.RegisterOnShutdown).
func (s *Server) Close() { s.close.Do(func() { close(s.closing) }) }

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
	couponmesh.Member
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

// DrainRequest names the node to drain (name or member ID; empty: this one).
type DrainRequest struct {
	Node string `json:"node"`
}

func (s *Server) self() couponmesh.Member { return s.cfg.Inspector.Self() }

func (s *Server) nodeInfo() NodeInfo {
	self := s.self()
	return NodeInfo{
		Name: self.Name, ID: self.ID, Address: self.Address(), HTTP: self.HTTP, Admin: self.Admin,
		Actors: s.cfg.Inspector.ActorCounts(), Sessions: s.cfg.Sessions.Sessions(), Draining: s.cfg.Draining(),
		Messages: s.cfg.Messages(), Rate: math.Float64frombits(s.rate.Load()),
	}
}

// sampleRate keeps the messages per second of this node, sampled every
// second until Close.
func (s *Server) sampleRate() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last, at := s.cfg.Messages(), time.Now()
	for {
		select {
		case <-s.closing:
			return
		case now := <-t.C:
			n := s.cfg.Messages()
			rate := float64(n-last) / now.Sub(at).Seconds()
			s.rate.Store(math.Float64bits(math.Round(rate*10) / 10))
			last, at = n, now
		}
	}
}

// handleMembers lists every member this node knows, asking each alive one
// for its counts (1 s each, in parallel).
func (s *Server) handleMembers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"members": s.membersInfo(r.Context())})
}

func (s *Server) membersInfo(ctx context.Context) []MemberInfo {
	ms := s.cfg.Inspector.Members()
	out := make([]MemberInfo, len(ms))
	self := s.self().ID
	var wg sync.WaitGroup
	for i, m := range ms {
		out[i].Member = m
		switch {
		case m.ID == self:
			out[i].setInfo(s.nodeInfo())
			out[i].Self = true
		case m.Status == "alive" || m.Status == "suspect":
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				var info NodeInfo
				if err := Call(ctx, s.cfg.Token, m.Admin, http.MethodGet, "/admin/api/node", nil, &info); err != nil {
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
func (s *Server) memberNamed(name string) (couponmesh.Member, bool) {
	for _, m := range s.cfg.Inspector.Members() {
		if (m.Name == name || m.ID == name) && m.Status == "alive" {
			return m, true
		}
	}
	return couponmesh.Member{}, false
}

// toNode forwards the request to the member named by ?node= when that is
// not this node; it reports whether it answered.
func (s *Server) toNode(w http.ResponseWriter, r *http.Request) bool {
	name := r.URL.Query().Get("node")
	self := s.self()
	if name == "" || name == self.Name || name == self.ID {
		return false
	}
	m, ok := s.memberNamed(name)
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no alive member named %q", name)})
		return true
	}
	q := r.URL.Query()
	q.Del("node")
	r.URL.RawQuery = q.Encode()
	s.forward(w, r, m.Admin, r.URL.Path, nil)
	return true
}

// pageLimit is the ?limit= of a list: 1 to 10000, 100 if absent or out of
// range.
func pageLimit(r *http.Request) int {
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	if limit <= 0 || limit > 10000 {
		limit = 100
	}
	return limit
}

// handleSessions lists this node's sessions (?node= another's):
// ?after=ID&limit=100.
func (s *Server) handleSessions(w http.ResponseWriter, r *http.Request) {
	if s.toNode(w, r) {
		return
	}
	limit := pageLimit(r)
	after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	list, total := s.cfg.Sessions.SessionList(after, limit)
	next := ""
	if len(list) == limit {
		next = strconv.FormatUint(list[len(list)-1].ID, 10)
	}
	writeJSON(w, http.StatusOK, map[string]any{"node": s.self().Name, "total": total, "sessions": list, "next": next})
}

// handleEvents streams server-sent events to the debug console: a
// "members" event (the members list with their counts) every second, until
// the client goes or the server is closed.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
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
		b, _ := json.Marshal(map[string]any{"members": s.membersInfo(r.Context()), "node": s.self().Name, "at": time.Now()})
		if _, err := fmt.Fprintf(w, "event: members\ndata: %s\n\n", b); err != nil {
			return
		}
		flusher.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		case <-t.C:
		}
	}
}

// handleActors lists this node's activations (?node= another's):
// ?kind=coupon&after=kind/id&limit=100.
func (s *Server) handleActors(w http.ResponseWriter, r *http.Request) {
	if s.toNode(w, r) {
		return
	}
	q := r.URL.Query()
	limit := pageLimit(r)
	acts := s.cfg.Inspector.LocalActivations(q.Get("kind"), q.Get("after"), limit)
	out := make([]ActorInfo, len(acts))
	for i, x := range acts {
		out[i] = ActorInfo{Identity: x.Kind + "/" + x.ID, Since: x.Since, Mailbox: x.Mailbox}
	}
	next := ""
	if len(out) == limit {
		next = out[len(out)-1].Identity
	}
	writeJSON(w, http.StatusOK, map[string]any{"node": s.self().Name, "actors": out, "next": next})
}

// handleDrain starts the drain of this node, or forwards the request to the
// member named. It answers 202 once the drain has started.
func (s *Server) handleDrain(w http.ResponseWriter, r *http.Request) {
	var req DrainRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body: " + err.Error()})
		return
	}
	self := s.self()
	if req.Node == "" || req.Node == self.Name || req.Node == self.ID {
		s.cfg.Drain()
		writeJSON(w, http.StatusAccepted, map[string]any{"node": self.Name, "id": self.ID, "draining": true})
		return
	}
	target, ok := s.memberNamed(req.Node)
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no alive member named %q", req.Node)})
		return
	}
	var res map[string]any
	if err := Call(r.Context(), s.cfg.Token, target.Admin, http.MethodPost, "/admin/api/drain", DrainRequest{Node: target.ID}, &res); err != nil {
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
