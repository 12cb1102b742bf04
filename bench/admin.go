package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/couponmesh/couponmesh/transport/admin"
)

// The scenarios read the nodes' admin API with its own types and client
// (transport/admin), as ctl does.
type (
	MemberInfo    = admin.MemberInfo
	ActorInfo     = admin.ActorInfo
	DrainRequest  = admin.DrainRequest
	RemindersInfo = admin.RemindersInfo
)

// adminCall calls the admin API at addr with the token in
// COUPONMESH_ADMIN_TOKEN, which the nodes inherit, when it is set; see
// admin.Call.
func adminCall(ctx context.Context, addr, method, path string, body, out any) error {
	return admin.Call(ctx, os.Getenv("COUPONMESH_ADMIN_TOKEN"), addr, method, path, body, out)
}

// foMembers lists the members node n sees.
func foMembers(ctx context.Context, n *benchNode) ([]MemberInfo, error) {
	var res struct {
		Members []MemberInfo `json:"members"`
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := adminCall(actx, n.admin, http.MethodGet, "/admin/api/members", nil, &res)
	return res.Members, err
}

// foWaitMembers waits until every node sees want alive members.
func foWaitMembers(ctx context.Context, nodes []*benchNode, want int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for _, n := range nodes {
		for {
			ms, err := foMembers(ctx, n)
			alive := 0
			for _, m := range ms {
				if m.Status == "alive" {
					alive++
				}
			}
			if err == nil && alive == want {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s sees %d alive members after %s, want %d (err %v)", n.name, alive, within, want, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// foDead reports whether node n lists the member named name as gone (left
// or declared dead), or not at all.
func foDead(ctx context.Context, n *benchNode, name string) bool {
	ms, err := foMembers(ctx, n)
	if err != nil {
		return false
	}
	for _, m := range ms {
		if m.Name == name && m.Status != "gone" {
			return false
		}
	}
	return true
}

// foActors lists the identities ("kind/id") activated on node n.
func foActors(ctx context.Context, n *benchNode) ([]string, error) {
	var out []string
	after := ""
	for {
		var res struct {
			Actors []ActorInfo `json:"actors"`
			Next   string      `json:"next"`
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := adminCall(actx, n.admin, http.MethodGet, "/admin/api/actors?limit=1000&after="+url.QueryEscape(after), nil, &res)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("actors of %s: %w", n.name, err)
		}
		for _, a := range res.Actors {
			out = append(out, a.Identity)
		}
		if res.Next == "" {
			return out, nil
		}
		after = res.Next
	}
}
