package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
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
}

// MemberInfo is a member as one node sees it, with what the member says
// of itself when it answers.
type MemberInfo struct {
	membership.Member
	Actors   map[string]int `json:"actors,omitempty"`
	Sessions int            `json:"sessions"`
	Draining bool           `json:"draining"`
	Self     bool           `json:"self,omitempty"`
	Error    string         `json:"error,omitempty"`
}

// ActorInfo is one local activation.
type ActorInfo struct {
	Identity string    `json:"identity"` // kind/id
	Since    time.Time `json:"since"`
}

func (a *App) adminAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /admin/api/node", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.nodeInfo())
	})
	mux.HandleFunc("GET /admin/api/members", a.handleMembers)
	mux.HandleFunc("GET /admin/api/actors", a.handleActors)
	mux.HandleFunc("POST /admin/api/drain", a.handleDrain)
}

func (a *App) nodeInfo() NodeInfo {
	self := a.members.Self()
	return NodeInfo{
		Name: self.Name, ID: self.ID, Address: self.Address(), HTTP: self.HTTP, Admin: self.Admin,
		Actors: a.node.Lookup.Counts(), Sessions: a.sessions(), Draining: a.draining.Load(),
	}
}

// handleMembers lists every member this node knows, asking each alive one
// for its counts (1 s each, in parallel).
func (a *App) handleMembers(w http.ResponseWriter, r *http.Request) {
	ms := a.members.Members()
	out := make([]MemberInfo, len(ms))
	self := a.members.Self().ID
	var wg sync.WaitGroup
	for i, m := range ms {
		out[i].Member = m
		switch {
		case m.ID == self:
			info := a.nodeInfo()
			out[i].Actors, out[i].Sessions, out[i].Draining, out[i].Self = info.Actors, info.Sessions, info.Draining, true
		case m.Status == "alive" || m.Status == "suspect":
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(r.Context(), time.Second)
				defer cancel()
				var info NodeInfo
				if err := adminCall(ctx, m.Admin, http.MethodGet, "/admin/api/node", nil, &info); err != nil {
					out[i].Error = err.Error()
					return
				}
				out[i].Actors, out[i].Sessions, out[i].Draining = info.Actors, info.Sessions, info.Draining
			})
		}
	}
	wg.Wait()
	writeJSON(w, http.StatusOK, map[string]any{"members": out})
}

// handleActors lists this node's activations: ?kind=coupon&after=kind/id&limit=100.
func (a *App) handleActors(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit <= 0 || limit > 10000 {
		limit = 100
	}
	acts := a.node.Lookup.Activations(q.Get("kind"), q.Get("after"), limit)
	out := make([]ActorInfo, len(acts))
	for i, x := range acts {
		out[i] = ActorInfo{Identity: x.Kind + "/" + x.ID, Since: x.Since}
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
	var target *membership.Member
	for _, m := range a.members.Members() {
		if (m.Name == req.Node || m.ID == req.Node) && m.Status == "alive" {
			target = &m
			break
		}
	}
	if target == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no alive member named %q", req.Node)})
		return
	}
	var res map[string]any
	if err := adminCall(r.Context(), target.Admin, http.MethodPost, "/admin/api/drain", DrainRequest{Node: target.ID}, &res); err != nil {
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
