package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/couponmesh/couponmesh/cluster/clustertest"
)

// The client side of the nodes' admin API, the parts the scenarios read.
// The JSON shapes are the admin API's (docs/OPERATIONS.md); the bench
// decodes only the fields it uses.

// MemberInfo is a member as GET /admin/api/members lists it.
type MemberInfo = clustertest.Member

// ActorInfo is one activation as GET /admin/api/actors lists it.
type ActorInfo struct {
	Identity string `json:"identity"` // kind/id
}

// DrainRequest is the body of POST /admin/api/drain.
type DrainRequest struct {
	Node string `json:"node"`
}

// RemindersInfo is GET /admin/api/reminders: every reminder shard, by
// number, with the error of those that did not answer.
type RemindersInfo struct {
	Shards []struct {
		Error string `json:"error,omitempty"`
	} `json:"shards"`
}

// adminCall calls the admin API at addr with body (nil: none) as JSON and
// decodes the answer into out (nil: ignored). It sends the token in
// COUPONMESH_ADMIN_TOKEN, which the nodes inherit, when it is set. An
// answer of 3xx or more is an error carrying the API's message.
func adminCall(ctx context.Context, addr, method, path string, body, out any) error {
	if addr == "" {
		return errors.New("no admin address")
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token := os.Getenv("COUPONMESH_ADMIN_TOKEN"); token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("admin %s: %w", addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("admin %s: %w", addr, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("admin %s: %s: %s", addr, resp.Status, e.Error)
		}
		return fmt.Errorf("admin %s: %s", addr, resp.Status)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
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
