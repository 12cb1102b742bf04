package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
)

// Three node processes: a coupon created and claimed through one node is
// found by identity from every node, with its owner and current state; an
// identity that is not active is reported without being activated; a
// passivate sent to another node stops it on its owner, and the next request
// reactivates it.
func TestClusterInspectActors(t *testing.T) {
	c := startCluster(t, 3)
	ctx := context.Background()
	entry := c.nodes[0]
	if _, err := merchantAPI(t, entry).CreateCoupon(ctx, couponmesh.CouponSpec{ID: "c42", Title: ptr("Seen from everywhere"), Quantity: ptr(5)}); err != nil {
		t.Fatal(err)
	}
	shopper := entry.sessionOpts(t, "sam", client.Options{})
	if _, err := shopper.Claim(ctx, "c42", "r1"); err != nil {
		t.Fatal(err)
	}
	holders := c.owners("coupon")["coupon/c42"]
	if len(holders) != 1 {
		t.Fatalf("coupon/c42 active on %v, want one node", holders)
	}
	owner := holders[0]
	var other *proc // a node that does not hold it
	for _, p := range c.nodes {
		if p.name != owner {
			other = p
		}
	}

	var first ActorDetail
	for _, p := range c.nodes {
		start := time.Now()
		d := inspectActor(t, p.admin, "coupon/c42")
		t.Logf("get coupon/c42 (on %s) asked on %s: %s", owner, p.name, time.Since(start).Round(10*time.Microsecond))
		var st couponState
		if err := json.Unmarshal(d.Inspect.State, &st); err != nil {
			t.Fatal(err)
		}
		if d.Node != owner || d.Owner != owner || st.Coupon.Claimed != 1 || d.Inspect.Seq != 2 || len(d.Inspect.Recent) == 0 {
			t.Fatalf("asked %s: %+v state %+v, want owner %s and 1 claim", p.name, d, st, owner)
		}
		first = d
	}
	if out := ctl(t, other, "actors", "get", "coupon/c42"); !strings.Contains(out, "node      "+owner) || !strings.Contains(out, `"claimed": 1`) {
		t.Errorf("ctl actors get via %s:\n%s", other.name, out)
	}
	if out := ctl(t, other, "actors", "ls", "--node", owner, "--kind", "coupon"); !strings.Contains(out, "coupon/c42") {
		t.Errorf("ctl actors ls --node %s via %s:\n%s", owner, other.name, out)
	}

	// Not active: answered with the owner it would have, and not activated.
	var nf map[string]any
	req, _ := http.NewRequest(http.MethodGet, "http://"+entry.admin+"/admin/api/actors/coupon/ghost", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&nf)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || nf["owner"] == "" || nf["owner"] == nil {
		t.Fatalf("get coupon/ghost: %d %v", resp.StatusCode, nf)
	}
	if h := c.owners("coupon")["coupon/ghost"]; len(h) != 0 {
		t.Fatalf("inspecting coupon/ghost activated it on %v", h)
	}

	// Passivate through a node that does not hold it.
	if st := adminDo(t, other.admin, http.MethodPost, "/admin/api/actors/coupon/c42/passivate", nil); st != http.StatusOK {
		t.Fatalf("passivate via %s: %d", other.name, st)
	}
	if h := c.owners("coupon")["coupon/c42"]; len(h) != 0 {
		t.Fatalf("coupon/c42 still active on %v after passivate", h)
	}
	if got, err := shopper.Get(ctx, "c42"); err != nil || got.Claimed != 1 {
		t.Fatalf("get after passivate: %+v %v", got, err)
	}
	again := inspectActor(t, other.admin, "coupon/c42")
	if again.Node != owner || !again.Inspect.ActivatedAt.After(first.Inspect.ActivatedAt) || again.Inspect.Seq != 2 {
		t.Fatalf("reactivated: %+v, first activated %s", again, first.Inspect.ActivatedAt)
	}

	// A probe from another node reports who answered.
	var pr ProbeResult
	if st := adminDo(t, other.admin, http.MethodPost, "/admin/api/actors/coupon/c42/probe", &pr); st != http.StatusOK || pr.Node != owner || pr.From != other.name {
		t.Fatalf("probe via %s: %d %+v", other.name, st, pr)
	}
	t.Logf("probe of coupon/c42 (on %s) from %s: %s", owner, other.name, pr.RTT)

	// Every member reports its sessions and messages per second.
	ms, err := entry.members()
	if err != nil {
		t.Fatal(err)
	}
	var msgs uint64
	for _, m := range ms {
		msgs += m.Messages
		if m.Name == entry.name && m.Sessions != 1 {
			t.Errorf("%s: %d sessions, want 1", m.Name, m.Sessions)
		}
	}
	if msgs == 0 {
		t.Errorf("no messages counted: %+v", ms)
	}
}
