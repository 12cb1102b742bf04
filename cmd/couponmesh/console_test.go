package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors"
	"github.com/couponmesh/couponmesh/client"
	adminctl "github.com/couponmesh/couponmesh/transport/admin/ctl"
)

// adminDo calls an admin API path and decodes the JSON answer into out
// (may be nil); it returns the status.
func adminDo(t testing.TB, addr, method, path string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	if resp.StatusCode >= 300 {
		t.Logf("%s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return resp.StatusCode
}

func inspectActor(t testing.TB, admin, ident string) ActorDetail {
	t.Helper()
	var d ActorDetail
	if st := adminDo(t, admin, http.MethodGet, "/admin/api/actors/"+ident, &d); st != http.StatusOK {
		t.Fatalf("get %s: status %d", ident, st)
	}
	if d.Inspect == nil {
		t.Fatalf("get %s: no inspection: %+v", ident, d)
	}
	return d
}

type couponState struct {
	Exists bool              `json:"exists"`
	Coupon couponmesh.Coupon `json:"coupon"`
	Claims int               `json:"claims"`
}

func runCtlOut(t *testing.T, admin string, args ...string) string {
	t.Helper()
	var out strings.Builder
	if err := adminctl.Run(append([]string{"--admin", admin}, args...), &out); err != nil {
		t.Fatalf("ctl %v: %v", args, err)
	}
	return out.String()
}

// The admin API against one real node: inspect, passivate, probe,
// sessions, and the ctl commands over them.
func TestAdminInspectActors(t *testing.T) {
	a := startApp(t, nil)
	admin := a.AdminAddr()
	ctx := context.Background()
	cp := createCoupon(t, a, "acme", couponmesh.CouponSpec{ID: "c42", Title: ptr("Inspect me"), Quantity: ptr(5)})
	c := dial(t, a, "ann", client.Options{})
	if _, err := c.Subscribe(ctx, []client.Sub{{ID: cp.ID}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Claim(ctx, cp.ID, "r1"); err != nil {
		t.Fatal(err)
	}

	d := inspectActor(t, admin, "coupon/c42")
	var st couponState
	if err := json.Unmarshal(d.Inspect.State, &st); err != nil {
		t.Fatal(err)
	}
	if d.Node != "test" || d.Owner != "test" || !d.Active || d.Inspect.Identity != "coupon/c42" || d.Inspect.Seq != 2 ||
		!st.Exists || st.Coupon.Claimed != 1 || st.Claims != 1 || d.Mailbox != 0 || d.Inspect.Hubs != 1 {
		t.Fatalf("coupon/c42: %+v, state %+v", d, st)
	}
	var methods []string
	for _, m := range d.Inspect.Recent {
		methods = append(methods, m.Method+":"+m.Outcome)
	}
	if len(methods) < 3 || methods[0] != actors.CouponClaim+":ok" || methods[len(methods)-1] != actors.CouponCreate+":ok" {
		t.Fatalf("recent messages (newest first): %v", methods)
	}
	// A failing request is recorded with its code.
	if _, err := c.Claim(ctx, cp.ID, "r2"); couponmesh.ErrorCode(err) != couponmesh.CodeAlreadyClaimed {
		t.Fatalf("second claim: %v", err)
	}
	if d := inspectActor(t, admin, "coupon/c42"); d.Inspect.Recent[0].Outcome != string(couponmesh.CodeAlreadyClaimed) {
		t.Fatalf("recent[0] = %+v, want already_claimed", d.Inspect.Recent[0])
	}
	u := inspectActor(t, admin, "user/ann")
	if !strings.Contains(strings.Join(strings.Fields(string(u.Inspect.State)), ""), `"walletSize":1`) {
		t.Fatalf("user/ann state: %s", u.Inspect.State)
	}

	// An identity that is not active is reported, not activated.
	var nf map[string]any
	if st := adminDo(t, admin, http.MethodGet, "/admin/api/actors/coupon/nosuch", &nf); st != http.StatusNotFound {
		t.Fatalf("get coupon/nosuch: %d, want 404", st)
	}
	if _, ok := a.node.Lookup.Find("coupon", "nosuch"); ok {
		t.Fatal("inspecting coupon/nosuch activated it")
	}
	if st := adminDo(t, admin, http.MethodGet, "/admin/api/actors/shoe/x", nil); st != http.StatusBadRequest {
		t.Fatalf("unknown kind: %d, want 400", st)
	}

	// Passivate: the activation goes, and a new one comes with the same
	// state. The session follows the coupon, so its hub registers again at
	// once (the grain said it was leaving) and that reactivates it. (The
	// get below reaches the grain only if it comes before that: once the
	// coupon is active again, the node answers gets from memory.)
	if st := adminDo(t, admin, http.MethodPost, "/admin/api/actors/coupon/c42/passivate", nil); st != http.StatusOK {
		t.Fatalf("passivate: %d", st)
	}
	if got, err := c.Get(ctx, cp.ID); err != nil || got.Claimed != 1 {
		t.Fatalf("get after passivate: %+v %v", got, err)
	}
	checkFor(t, 5*time.Second, "a new activation, followed again", func() error {
		d2 := inspectActor(t, admin, "coupon/c42")
		var after []string
		for _, m := range d2.Inspect.Recent {
			after = append(after, m.Method)
		}
		if !d2.Inspect.ActivatedAt.After(d.Inspect.ActivatedAt) || d2.Inspect.Seq != 2 || d2.Inspect.Hubs != 1 {
			return fmt.Errorf("reactivated: activated %s (first %s), seq %d, hubs %d, recent %v",
				d2.Inspect.ActivatedAt, d.Inspect.ActivatedAt, d2.Inspect.Seq, d2.Inspect.Hubs, after)
		}
		return nil
	})

	// A probe goes through the cluster and may activate.
	var pr ProbeResult
	if st := adminDo(t, admin, http.MethodPost, "/admin/api/actors/user/nobody/probe", &pr); st != http.StatusOK {
		t.Fatalf("probe: %d", st)
	}
	if pr.Node != "test" || pr.RTTMicros <= 0 || pr.Identity != "user/nobody" {
		t.Fatalf("probe: %+v", pr)
	}
	if _, ok := a.node.Lookup.Find("user", "nobody"); !ok {
		t.Fatal("probe did not activate user/nobody")
	}

	// Sessions.
	var ss struct {
		Total    int `json:"total"`
		Sessions []struct {
			User          string `json:"user"`
			Subscriptions int    `json:"subscriptions"`
		} `json:"sessions"`
	}
	if st := adminDo(t, admin, http.MethodGet, "/admin/api/sessions", &ss); st != http.StatusOK || ss.Total != 1 ||
		len(ss.Sessions) != 1 || ss.Sessions[0].User != "ann" || ss.Sessions[0].Subscriptions != 1 {
		t.Fatalf("sessions: %d %+v", st, ss)
	}

	// Messages per second show up in the members list.
	checkFor(t, 5*time.Second, "messages counted", func() error {
		var ms struct{ Members []MemberInfo }
		adminDo(t, admin, http.MethodGet, "/admin/api/members", &ms)
		if len(ms.Members) != 1 || ms.Members[0].Messages < 5 {
			return fmt.Errorf("members: %+v", ms.Members)
		}
		return nil
	})

	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if m := readAll(resp.Body); !strings.Contains(m, "couponmesh_grain_requests_total ") {
		t.Error("no couponmesh_grain_requests_total in /metrics")
	}
	resp.Body.Close()

	// The same through ctl.
	out := runCtlOut(t, admin, "actors", "get", "coupon/c42")
	// (Which requests the new activation handled depends on whether the
	// hub's registration came before the get: see the passivation above.)
	for _, want := range []string{"identity  coupon/c42", "node      test", `"claimed": 1`, "recent messages (newest first):", "seq       2"} {
		if !strings.Contains(out, want) {
			t.Errorf("ctl actors get: no %q in\n%s", want, out)
		}
	}
	t.Logf("ctl actors get coupon/c42:\n%s", out)
	out = runCtlOut(t, admin, "actors", "ls", "--kind", "coupon")
	if !strings.Contains(out, "coupon/c42") || strings.Contains(out, "user/") {
		t.Errorf("ctl actors ls --kind coupon:\n%s", out)
	}
	out = runCtlOut(t, admin, "actors", "ls", "--limit", "1")
	if !strings.Contains(out, "next page: --after coupon/c42") {
		t.Errorf("ctl actors ls --limit 1:\n%s", out)
	}
	// The reminder shards sort between coupons and users.
	out = runCtlOut(t, admin, "--json", "actors", "ls", "--after", "reminders/9")
	var page struct{ Actors []ActorInfo }
	if err := json.Unmarshal([]byte(out), &page); err != nil || len(page.Actors) != 2 || page.Actors[0].Identity != "user/ann" {
		t.Errorf("ctl --json actors ls --after reminders/9: %v\n%s", err, out)
	}
	if out := runCtlOut(t, admin, "sessions"); !strings.Contains(out, "ann") {
		t.Errorf("ctl sessions:\n%s", out)
	}
	if out := runCtlOut(t, admin, "actors", "passivate", "user/ann"); !strings.Contains(out, "user/ann passivated on test") {
		t.Errorf("ctl actors passivate:\n%s", out)
	}
	var out2 strings.Builder
	err = adminctl.Run([]string{"--admin", admin, "actors", "get", "coupon/nosuch"}, &out2)
	if err == nil || !strings.Contains(err.Error(), "coupon/nosuch is not active (its owner would be test)") {
		t.Errorf("ctl actors get coupon/nosuch: %v", err)
	}
	if out := runCtlOut(t, admin, "actors", "probe", "coupon/c42"); !strings.Contains(out, "coupon/c42 answered from test in") {
		t.Errorf("ctl actors probe:\n%s", out)
	}
}

// The public listener serves neither the console nor the admin API.
func TestPublicListenerHidesAdmin(t *testing.T) {
	a := startApp(t, nil)
	for _, path := range []string{"/debug", "/debug/", "/debug/pprof/", "/debug/pprof/heap", "/admin/api/members", "/admin/api/actors/coupon/x", "/admin/api/events", "/metrics"} {
		resp, err := http.Get(baseURL(a) + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("public %s: %d, want 404", path, resp.StatusCode)
		}
	}
	for _, path := range []string{"/debug", "/debug/pprof/heap"} {
		if st := adminDo(t, a.AdminAddr(), http.MethodGet, path, nil); st != http.StatusOK {
			t.Errorf("admin %s: %d", path, st)
		}
	}
	// A page elsewhere cannot make an operator's browser act on the admin API.
	for origin, want := range map[string]int{"http://evil.example": http.StatusForbidden, "http://" + a.AdminAddr(): http.StatusNotFound} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+a.AdminAddr()+"/admin/api/actors/coupon/none/passivate", nil)
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("POST passivate with Origin %s: %d, want %d", origin, resp.StatusCode, want)
		}
	}
}

// Bound to a non-loopback address, the admin listener wants the token on
// every request; a node without one refuses to start.
func TestAdminTokenWhenNotLoopback(t *testing.T) {
	_, err := LoadConfig("", map[string]string{"COUPONMESH_ADMIN_ADDR": "0.0.0.0:8081", "COUPONMESH_JWT_SECRET": testSecret})
	if err == nil || !strings.Contains(err.Error(), "admin_token") {
		t.Fatalf("config without admin_token on 0.0.0.0: %v", err)
	}
	for _, addr := range []string{":8081", "10.1.2.3:8081", "node1:8081"} {
		if loopback(addr) {
			t.Errorf("loopback(%q) = true", addr)
		}
	}
	for _, addr := range []string{"127.0.0.1:8081", "[::1]:8081", "localhost:8081"} {
		if !loopback(addr) {
			t.Errorf("loopback(%q) = false", addr)
		}
	}

	const token = "admin-token-for-tests-0123456789"
	a := startApp(t, func(c *Config) { c.AdminAddr, c.AdminToken = "0.0.0.0:0", token })
	_, port, _ := net.SplitHostPort(a.AdminAddr())
	base := "http://127.0.0.1:" + port
	call := func(path string, auth func(*http.Request)) int {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if auth != nil {
			auth(req)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	bearer := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	for _, path := range []string{"/admin/api/node", "/admin/api/members", "/admin/api/actors", "/admin/api/sessions", "/debug", "/debug/pprof/heap", "/metrics"} {
		if st := call(path, nil); st != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d, want 401", path, st)
		}
		if st := call(path, bearer("wrong")); st != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %d, want 401", path, st)
		}
		if st := call(path, bearer(token)); st != http.StatusOK {
			t.Errorf("%s with the token: %d, want 200", path, st)
		}
	}
	if st := call("/debug", func(r *http.Request) { r.SetBasicAuth("ops", token) }); st != http.StatusOK {
		t.Errorf("/debug with basic auth: %d, want 200", st)
	}
	// ctl sends COUPONMESH_ADMIN_TOKEN; the node forwards with its own.
	t.Setenv("COUPONMESH_ADMIN_TOKEN", token)
	if out := runCtlOut(t, "127.0.0.1:"+port, "members"); !strings.Contains(out, "test *") {
		t.Errorf("ctl members with the token:\n%s", out)
	}
	t.Setenv("COUPONMESH_ADMIN_TOKEN", "")
	var out strings.Builder
	if err := adminctl.Run([]string{"--admin", "127.0.0.1:" + port, "members"}, &out); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("ctl members without the token: %v", err)
	}

}
