package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors"
	"github.com/couponmesh/couponmesh/cluster/membership"
	"github.com/couponmesh/couponmesh/cluster/placement"
)

// The actor endpoints of the admin API. Any node answers for any identity:
// it forwards the request to the admin API of the member that owns the
// identity in its view (?local=1 then stops the forwarding), and only that
// member talks to the grain, directly by PID and only when it has a local
// activation. Inspecting an identity therefore never activates it; only a
// probe does.

// ActorDetail answers GET /admin/api/actors/{kind}/{id}.
type ActorDetail struct {
	Identity     string             `json:"identity"` // kind/id
	Node         string             `json:"node"`     // the member hosting the activation
	Owner        string             `json:"owner"`    // the owner in that member's view (the same, unless during churn)
	Active       bool               `json:"active"`
	Since        time.Time          `json:"since"`   // when placement spawned it
	Mailbox      int                `json:"mailbox"` // messages waiting (-1: unknown)
	Inspect      *actors.Inspection `json:"inspect,omitempty"`
	InspectError string             `json:"inspectError,omitempty"` // the grain did not answer (busy?)
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

const inspectTimeout = 2 * time.Second

func (a *App) actorRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /admin/api/actors/{kind}/{id}", a.handleActorGet)
	mux.HandleFunc("POST /admin/api/actors/{kind}/{id}/passivate", a.handleActorPassivate)
	mux.HandleFunc("POST /admin/api/actors/{kind}/{id}/probe", a.handleActorProbe)
}

// identity checks the {kind}/{id} of the path; it answers 400 itself.
func identity(w http.ResponseWriter, r *http.Request) (kind, id string, ok bool) {
	kind, id = r.PathValue("kind"), r.PathValue("id")
	if kind != actors.KindCoupon && kind != actors.KindUser && kind != actors.KindReminders {
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
func (a *App) ownerOf(kind, id string) (membership.Member, error) {
	addr := a.node.Lookup.Owner(kind, id)
	if addr == "" {
		return membership.Member{}, errors.New("no member hosts kind " + kind)
	}
	for _, m := range a.members.Members() {
		if m.Address() == addr && m.Status != "gone" {
			return m, nil
		}
	}
	return membership.Member{}, fmt.Errorf("owner %s is not a known member", addr)
}

// routeToOwner forwards the request to the owner's admin API unless this
// node is the owner or the request was forwarded already; it reports whether
// it answered.
func (a *App) routeToOwner(w http.ResponseWriter, r *http.Request, kind, id string) (owner string, done bool) {
	if r.URL.Query().Get("local") != "" {
		m, err := a.ownerOf(kind, id)
		if err != nil {
			return "?", false
		}
		return m.Name, false
	}
	m, err := a.ownerOf(kind, id)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return "", true
	}
	if m.ID == a.members.Self().ID {
		return m.Name, false
	}
	a.forward(w, r, m.Admin, r.URL.Path, url.Values{"local": {"1"}})
	return m.Name, true
}

// forward replays r (method, path, query) on another node's admin API and
// copies its answer.
func (a *App) forward(w http.ResponseWriter, r *http.Request, admin, path string, extra url.Values) {
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
	if a.cfg.AdminToken != "" {
		req.Header.Set("Authorization", "Bearer "+a.cfg.AdminToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": fmt.Sprintf("forward to %s: %v", admin, err)})
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": fmt.Sprintf("forward to %s: %v", admin, err)})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, bytes.NewReader(b))
}

func (a *App) notActive(w http.ResponseWriter, ident, owner string) {
	writeJSON(w, http.StatusNotFound, map[string]any{
		"error":    fmt.Sprintf("%s is not active (its owner would be %s)", ident, owner),
		"identity": ident, "owner": owner, "active": false,
	})
}

// localActor resolves the request's kind/id on this node: it answers the
// request itself (bad identity, forwarded to the owner, not active) and
// returns ok false, or returns the local activation.
func (a *App) localActor(w http.ResponseWriter, r *http.Request) (kind, id, ident, owner string, act placement.Activation, ok bool) {
	if kind, id, ok = identity(w, r); !ok {
		return
	}
	var done bool
	if owner, done = a.routeToOwner(w, r, kind, id); done {
		return kind, id, "", "", act, false
	}
	ident = kind + "/" + id
	if act, ok = a.node.Lookup.Find(kind, id); !ok {
		a.notActive(w, ident, owner)
	}
	return
}

// handleActorGet answers the state of one grain without activating it.
func (a *App) handleActorGet(w http.ResponseWriter, r *http.Request) {
	kind, id, ident, owner, act, ok := a.localActor(w, r)
	if !ok {
		return
	}
	d := ActorDetail{Identity: ident, Node: a.members.Self().Name, Owner: owner, Active: true, Since: act.Since, Mailbox: act.MailboxLen()}
	res, err := a.node.System.Root.RequestFuture(act.PID, actors.Request(actors.ActorInspect, actors.Empty{}), inspectTimeout).Result()
	if err == nil {
		var in actors.Inspection
		if err = actors.Decode(res, &in); err == nil {
			d.Inspect = &in
		}
	}
	if err != nil {
		if _, still := a.node.Lookup.Find(kind, id); !still {
			a.notActive(w, ident, owner) // it stopped meanwhile
			return
		}
		d.InspectError = fmt.Sprintf("no answer within %s (busy? %d messages waiting): %v", inspectTimeout, act.MailboxLen(), err)
	}
	writeJSON(w, http.StatusOK, d)
}

// handleActorPassivate stops a grain after it has answered what its mailbox
// holds; it answers once the activation is gone (or after 5 s).
func (a *App) handleActorPassivate(w http.ResponseWriter, r *http.Request) {
	kind, id, ident, _, act, ok := a.localActor(w, r)
	if !ok {
		return
	}
	res, err := a.node.System.Root.RequestFuture(act.PID, actors.Request(actors.ActorPassivate, actors.Empty{}), 5*time.Second).Result()
	if err == nil {
		err = actors.Decode(res, nil)
	}
	if err != nil {
		writeJSON(w, http.StatusGatewayTimeout, map[string]string{"error": fmt.Sprintf("%s did not answer: %v", ident, err)})
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if cur, ok := a.node.Lookup.Find(kind, id); !ok || cur.PID.Id != act.PID.Id {
			writeJSON(w, http.StatusOK, map[string]any{"identity": ident, "node": a.members.Self().Name, "passivated": true})
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"identity": ident, "node": a.members.Self().Name, "passivated": false,
		"error": "asked to passivate; still stopping after 5 s"})
}

// handleActorProbe sends a ping through the cluster, as a client request
// would go (it activates the grain if needed), and reports the round trip.
func (a *App) handleActorProbe(w http.ResponseWriter, r *http.Request) {
	kind, id, ok := identity(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	var pong actors.Pong
	start := time.Now()
	err := actors.Call(ctx, a.node.Cluster, actors.DefaultCallConfig(), kind, id, actors.ActorPing, actors.Empty{}, &pong)
	rtt := time.Since(start)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	node := pong.Address
	for _, m := range a.members.Members() {
		if m.Address() == pong.Address {
			node = m.Name
		}
	}
	writeJSON(w, http.StatusOK, ProbeResult{Identity: pong.Identity, Node: node, From: a.members.Self().Name,
		RTTMicros: rtt.Microseconds(), RTT: rtt.Round(time.Microsecond).String(), ActivatedAt: pong.ActivatedAt})
}
