package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/cluster/clustertest"
)

// proc is a node running as a real child process.
type proc struct {
	cmd                            *exec.Cmd
	name, http, admin, gossip, dir string
	out                            syncBuffer // its stderr, also copied to the test's (tcluster nodes)
}

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(b)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testAddr returns a free 127.0.0.1 address no other call in this test
// process got (clustertest.FreeAddr).
func testAddr(t testing.TB) string {
	t.Helper()
	addr, err := clustertest.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func startProc(t *testing.T, bin, dir string) *proc {
	t.Helper()
	p := &proc{http: testAddr(t), admin: testAddr(t), dir: dir}
	p.cmd = exec.Command(bin, "node")
	p.cmd.Env = append(os.Environ(),
		"COUPONMESH_HTTP_ADDR="+p.http, "COUPONMESH_ADMIN_ADDR="+p.admin, "COUPONMESH_CLUSTER_ADDR=127.0.0.1:0",
		"COUPONMESH_DATA_DIR="+dir, "COUPONMESH_DEV=true", "COUPONMESH_JWT_SECRET="+testSecret,
		"COUPONMESH_NODE_NAME=restart", "COUPONMESH_LOG_LEVEL=warn")
	p.cmd.Stdout, p.cmd.Stderr = os.Stderr, os.Stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.stop(t) })
	checkFor(t, 60*time.Second, "node ready", func() error {
		resp, err := http.Get("http://" + p.http + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	return p
}

// kill sends SIGKILL: no shutdown code runs.
func (p *proc) kill(t testing.TB) { killCmd(p.cmd) }

// stop sends SIGTERM (the node drains) and waits for the exit.
func (p *proc) stop(t testing.TB) { stopCmd(t, p.cmd, 30*time.Second, "node") }

// killCmd kills a child process and reaps it, once.
func killCmd(cmd *exec.Cmd) {
	if cmd.ProcessState != nil {
		return
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// stopCmd sends SIGTERM to a child process and waits up to wait for it to
// exit, then kills it and reports the test failed.
func stopCmd(t testing.TB, cmd *exec.Cmd, wait time.Duration, what string) {
	if cmd.ProcessState != nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(wait):
		t.Errorf("%s did not stop on SIGTERM within %s; killing it", what, wait)
		killCmd(cmd)
	}
}

func (p *proc) session(t testing.TB, user string) *client.Client {
	t.Helper()
	ctx := context.Background()
	tok, err := client.DevLogin(ctx, "http://"+p.http, user, couponmesh.RoleShopper)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(ctx, "ws://"+p.http+"/ws", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Auth(ctx, tok); err != nil {
		t.Fatal(err)
	}
	return c
}

// Kill -9 of a real node process loses nothing acknowledged: coupons,
// claims, follows and the feed come back, and the feed resumes without gaps.
func TestKilledNodeRestartsWithEverything(t *testing.T) {
	bin, dir := nodeBinary(t), t.TempDir()
	ctx := context.Background()
	p := startProc(t, bin, dir)

	mtok, err := client.DevLogin(ctx, "http://"+p.http, "acme", couponmesh.RoleMerchant)
	if err != nil {
		t.Fatal(err)
	}
	api := client.NewAPI("http://"+p.http, mtok)
	for _, id := range []string{"k1", "k2"} {
		if _, err := api.CreateCoupon(ctx, couponmesh.CouponSpec{ID: id, Title: ptr("Coupon " + id), Quantity: ptr(5)}); err != nil {
			t.Fatal(err)
		}
	}
	rita := p.session(t, "rita")
	if _, err := rita.Follow(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	claims := map[string]couponmesh.Claim{}
	for _, id := range []string{"k1", "k2"} {
		cl, err := rita.Claim(ctx, id, "rid-"+id)
		if err != nil {
			t.Fatal(err)
		}
		claims[id] = cl
	}
	if _, err := api.UpdateCoupon(ctx, "k1", couponmesh.CouponSpec{Title: ptr("Coupon k1, better")}); err != nil {
		t.Fatal(err)
	}
	var feed []couponmesh.FeedEntry
	checkFor(t, 10*time.Second, "feed with the change of k1", func() error {
		feed, err = rita.Feed(ctx, 0, 0)
		if err != nil || len(feed) != 4 {
			return fmt.Errorf("%d entries, err %v", len(feed), err)
		}
		return nil
	})
	k1, err := api.Coupon(ctx, "k1")
	if err != nil {
		t.Fatal(err)
	}

	p.kill(t)
	p = startProc(t, bin, dir)
	rita = p.session(t, "rita")
	api.BaseURL = "http://" + p.http

	after, err := api.Coupon(ctx, "k1")
	if err != nil || after.Version != k1.Version || after.Claimed != 1 || after.Title != "Coupon k1, better" {
		t.Fatalf("k1 after restart: %+v %v, want %+v", after, err, k1)
	}
	wallet, err := rita.Wallet(ctx)
	if err != nil || len(wallet) != 2 {
		t.Fatalf("wallet after restart: %+v %v", wallet, err)
	}
	for _, w := range wallet {
		if w.Code != claims[w.Coupon].Code {
			t.Fatalf("wallet entry %+v, want %+v", w, claims[w.Coupon])
		}
	}
	again, err := rita.Feed(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(again, feed, func(a, b couponmesh.FeedEntry) bool {
		return a.Seq == b.Seq && a.Type == b.Type && a.Coupon == b.Coupon
	}) {
		t.Fatalf("feed after restart:\n%+v\nwant\n%+v", again, feed)
	}
	tail, err := rita.Feed(ctx, 2, 0)
	if err != nil || len(tail) != 2 || tail[0].Seq != 3 || tail[1].Seq != 4 {
		t.Fatalf("feed after seq 2: %+v %v", tail, err)
	}
	// Following survived: a change of k1 still reaches rita's feed.
	if _, err := api.UpdateCoupon(ctx, "k1", couponmesh.CouponSpec{Quantity: ptr(6)}); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, "feed entry 5 after restart", func() error {
		e, err := rita.Feed(ctx, 4, 0)
		if err != nil || len(e) != 1 || e[0].Type != couponmesh.FeedCouponChanged {
			return fmt.Errorf("%+v %v", e, err)
		}
		return nil
	})
	// Claims continue from the journal: same rid, same answer; a new user is n=2.
	if cl, err := rita.Claim(ctx, "k1", "rid-k1"); err != nil || cl.Code != claims["k1"].Code {
		t.Fatalf("retried claim after restart: %+v %v", cl, err)
	}
	if cl, err := p.session(t, "sam").Claim(ctx, "k1", "x"); err != nil || cl.N != 2 {
		t.Fatalf("new claim after restart: %+v %v", cl, err)
	}
}
