package admin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/couponmesh/couponmesh"
)

// The actor endpoints of the admin API. Any node answers for any identity:
// it forwards the request to the admin API of the member that owns the
// identity in its view (?local=1 then stops the forwarding), and only that
// member talks to the grain, directly and only when it has a local
// activation. Inspecting an identity therefore never activates it; only a
// probe does.

// ActorDetail answers GET /admin/api/actors/{kind}/{id}.
type ActorDetail struct {
	Identity     string                 `json:"identity"` // kind/id
	Node         string                 `json:"node"`     // the member hosting the activation
	Owner        string                 `json:"owner"`    // the owner in that member's view (the same, unless during churn)
	Active       bool                   `json:"active"`
	Since        time.Time              `json:"since"`   // when placement spawned it
	Mailbox      int                    `json:"mailbox"` // messages waiting (-1: unknown)
	Inspect      *couponmesh.Inspection `json:"inspect,omitempty"`
	InspectError string                 `json:"inspectError,omitempty"` // the grain did not answer (busy?)
	// Watchers is a coupon's presence count per node (from Inspect's
	// watchers by hub address), largest first.
	Watchers []NodeWatchers `json:"watchers,omitempty"`
}

// NodeWatchers is the number of distinct signed-in shoppers watching a
// coupon through one node's hub.
type NodeWatchers struct {
	Node     string `json:"node"` // the member's name ("" if it is not a member any more)
	Address  string `json:"address"`
	Watching int    `json:"watching"`
}

// nodeWatchers names the hubs of a coupon's inspection by member.
func (s *Server) nodeWatchers(in *couponmesh.Inspection) []NodeWatchers {
	if in == nil || len(in.Watchers) == 0 {
		return nil
	}
	names := make(map[string]string)
	for _, m := range s.cfg.Inspector.Members() {
		names[m.Address()] = m.Name
	}
	out := make([]NodeWatchers, 0, len(in.Watchers))
	for addr, n := range in.Watchers {
		out = append(out, NodeWatchers{Node: names[addr], Address: addr, Watching: n})
	}
	slices.SortFunc(out, func(x, y NodeWatchers) int {
		if x.Watching != y.Watching {
			return y.Watching - x.Watching
		}
		return strings.Compare(x.Node, y.Node)
	})
	return out
}

// ProbeResult answers POST /admin/api/actors/{kind}/{id}/probe.
type ProbeResult struct {
	Identity    string    `json:"identity"`
	Node        string    `json:"node"` // the member that answered
	From        string    `json:"from"` // the member that sent the probe
	RTTMicros   int64     `json:"rttMicros"`
	RTT         string    `json:"rtt"`
	ActivatedAt time.Time `json:"activatedAt"`
}

const (
	inspectTimeout   = 2 * time.Second
	passivateTimeout = 5 * time.Second
	probeTimeout     = 10 * time.Second
)

// identity checks the {kind}/{id} of the path; it answers 400 itself.
func identity(w http.ResponseWriter, r *http.Request) (kind, id string, ok bool) {
	kind, id = r.PathValue("kind"), r.PathValue("id")
	if kind != couponmesh.KindCoupon && kind != couponmesh.KindUser && kind != couponmesh.KindReminders {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("unknown kind %q: want coupon, user or reminders", kind)})
		return "", "", false
	}
	if !couponmesh.ValidID(id) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("invalid id %q", id)})
		return "", "", false
	}
	return kind, id, true
}

// ownerOf returns the member owning kind/id in this node's view.
func (s *Server) ownerOf(kind, id string) (couponmesh.Member, error) {
	addr := s.cfg.Inspector.OwnerAddress(kind, id)
	if addr == "" {
		return couponmesh.Member{}, errors.New("no member hosts kind " + kind)
	}
	for _, m := range s.cfg.Inspector.Members() {
		if m.Address() == addr && m.Status != "gone" {
			return m, nil
		}
	}
	return couponmesh.Member{}, fmt.Errorf("owner %s is not a known member", addr)
}

// routeToOwner forwards the request to the owner's admin API unless this
// node is the owner or the request was forwarded already; it reports whether
// it answered.
func (s *Server) routeToOwner(w http.ResponseWriter, r *http.Request, kind, id string) (owner string, done bool) {
	if r.URL.Query().Get("local") != "" {
		m, err := s.ownerOf(kind, id)
		if err != nil {
			return "?", false
		}
		return m.Name, false
	}
	m, err := s.ownerOf(kind, id)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return "", true
	}
	if m.ID == s.self().ID {
		return m.Name, false
	}
	s.forward(w, r, m.Admin, r.URL.Path, url.Values{"local": {"1"}})
	return m.Name, true
}

// forward replays r (method, path, query) on another node's admin API and
// copies its answer.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, admin, path string, extra url.Values) {
	q := r.URL.Query()
	for k, v := range extra {
		q[k] = v
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.Method, "http://"+admin+path+"?"+q.Encode(), http.NoBody)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	if s.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.cfg.Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": fmt.Sprintf("forward to %s: %v", admin, err)})
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": fmt.Sprintf("forward to %s: %v", admin, err)})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, bytes.NewReader(b))
}

func notActive(w http.ResponseWriter, ident, owner string) {
	writeJSON(w, http.StatusNotFound, map[string]any{
		"error":    fmt.Sprintf("%s is not active (its owner would be %s)", ident, owner),
		"identity": ident, "owner": owner, "active": false,
	})
}

// localActor resolves the request's kind/id on this node: it answers the
// request itself (bad identity, forwarded to the owner, not active) and
// returns ok false, or returns the local activation.
func (s *Server) localActor(w http.ResponseWriter, r *http.Request) (kind, id, ident, owner string, act couponmesh.Activation, ok bool) {
	if kind, id, ok = identity(w, r); !ok {
		return
	}
	var done bool
	if owner, done = s.routeToOwner(w, r, kind, id); done {
		return kind, id, "", "", act, false
	}
	ident = kind + "/" + id
	if act, ok = s.cfg.Inspector.LocalActivation(kind, id); !ok {
		notActive(w, ident, owner)
	}
	return
}

// handleActorGet answers the state of one grain without activating it.
func (s *Server) handleActorGet(w http.ResponseWriter, r *http.Request) {
	kind, id, ident, owner, act, ok := s.localActor(w, r)
	if !ok {
		return
	}
	d := ActorDetail{Identity: ident, Node: s.self().Name, Owner: owner, Active: true, Since: act.Since, Mailbox: act.Mailbox}
	ctx, cancel := context.WithTimeout(r.Context(), inspectTimeout)
	defer cancel()
	in, err := s.cfg.Inspector.InspectActor(ctx, kind, id)
	if err == nil {
		d.Inspect = &in
		d.Watchers = s.nodeWatchers(&in)
	} else {
		still, ok := s.cfg.Inspector.LocalActivation(kind, id)
		if !ok || errors.Is(err, couponmesh.ErrNotActive) {
			notActive(w, ident, owner) // it stopped meanwhile
			return
		}
		d.InspectError = fmt.Sprintf("no answer within %s (busy? %d messages waiting): %v", inspectTimeout, still.Mailbox, err)
	}
	writeJSON(w, http.StatusOK, d)
}

// handleActorPassivate stops a grain after it has answered what its mailbox
// holds; it answers once the activation is gone (or after 5 s).
func (s *Server) handleActorPassivate(w http.ResponseWriter, r *http.Request) {
	kind, id, ident, owner, _, ok := s.localActor(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), passivateTimeout)
	defer cancel()
	stopped, err := s.cfg.Inspector.PassivateActor(ctx, kind, id)
	switch {
	case errors.Is(err, couponmesh.ErrNotActive):
		notActive(w, ident, owner) // it stopped meanwhile
	case err != nil:
		writeJSON(w, http.StatusGatewayTimeout, map[string]string{"error": fmt.Sprintf("%s did not answer: %v", ident, err)})
	case stopped:
		writeJSON(w, http.StatusOK, map[string]any{"identity": ident, "node": s.self().Name, "passivated": true})
	default:
		writeJSON(w, http.StatusAccepted, map[string]any{"identity": ident, "node": s.self().Name, "passivated": false,
			"error": "asked to passivate; still stopping after 5 s"})
	}
}

// handleActorProbe sends a ping through the cluster, as a client request
// would go (it activates the grain if needed), and reports the round trip.
func (s *Server) handleActorProbe(w http.ResponseWriter, r *http.Request) {
	kind, id, ok := identity(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), probeTimeout)
	defer cancel()
	start := time.Now()
	pong, err := s.cfg.Inspector.ProbeActor(ctx, kind, id)
	rtt := time.Since(start)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	node := pong.Address
	for _, m := range s.cfg.Inspector.Members() {
		if m.Address() == pong.Address {
			node = m.Name
		}
	}
	writeJSON(w, http.StatusOK, ProbeResult{Identity: pong.Identity, Node: node, From: s.self().Name,
		RTTMicros: rtt.Microseconds(), RTT: rtt.Round(time.Microsecond).String(), ActivatedAt: pong.ActivatedAt})
}
