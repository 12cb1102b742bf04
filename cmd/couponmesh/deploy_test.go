package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/cluster/clustertest"
	"github.com/couponmesh/couponmesh/internal/history"
	"github.com/couponmesh/couponmesh/internal/testutil"
)

// Deployment tests (issue 9): nodes as real processes behind a real HAProxy
// (Debian's haproxy, installed by .ci/run) running configs/haproxy/haproxy.cfg
// itself, with the addresses of the test in its environment; TLS with a CA
// made by the test.

// testPKI is a CA made for one test and a server certificate it signed for
// localhost and 127.0.0.1.
type testPKI struct {
	pool                      *x509.CertPool
	certFile, keyFile, bundle string // bundle: certificate then key, as HAProxy's crt wants
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "couponmesh test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	k := &testPKI{pool: x509.NewCertPool(),
		certFile: filepath.Join(dir, "node.crt"), keyFile: filepath.Join(dir, "node.key"), bundle: filepath.Join(dir, "lb.pem")}
	k.pool.AddCert(ca)
	for f, b := range map[string][]byte{k.certFile: certPEM, k.keyFile: keyPEM, k.bundle: append(certPEM, keyPEM...)} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

// client returns an HTTP client that trusts the test CA (HTTP/1.1).
func (k *testPKI) client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: k.pool}, DisableKeepAlives: true,
	}}
}

// haproxy is HAProxy running configs/haproxy/haproxy.cfg as a child process.
type haproxy struct {
	cmd  *exec.Cmd
	addr string     // where clients connect (TLS)
	sock string     // stats socket
	out  syncBuffer // its log
}

func (h *haproxy) wss() string   { return "wss://" + h.addr + "/ws" }
func (h *haproxy) https() string { return "https://" + h.addr }

func haproxyPath(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no HAProxy")
	}
	p, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatal("haproxy not found (apt-get install -y haproxy; .ci/run installs it)")
	}
	return p
}

// startHAProxy runs HAProxy on addr in front of three node addresses,
// terminating TLS with the test certificate, and waits until it sees them
// all UP.
func startHAProxy(t testing.TB, pki *testPKI, addr string, nodes [3]string) *haproxy {
	t.Helper()
	bin := haproxyPath(t)
	dir, err := os.MkdirTemp("", "cm-lb-") // short: a unix socket path has 108 bytes at most
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	h := &haproxy{addr: addr, sock: filepath.Join(dir, "stats.sock")}
	h.cmd = exec.Command(bin, "-db", "-f", "../../configs/haproxy/haproxy.cfg")
	h.cmd.Env = append(os.Environ(), "CM_LB_BIND="+h.addr, "CM_LB_CERT="+pki.bundle, "CM_LB_STATS="+h.sock,
		"CM_N1="+nodes[0], "CM_N2="+nodes[1], "CM_N3="+nodes[2])
	h.cmd.Stdout, h.cmd.Stderr = &h.out, &h.out
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = h.cmd.Process.Signal(syscall.SIGTERM)
		_ = h.cmd.Wait()
		if t.Failed() || testing.Verbose() {
			t.Logf("haproxy log:\n%s", h.out.String())
		}
	})
	testutil.CheckFor(t, 20*time.Second, "haproxy sees every node UP", func() error {
		st, err := h.status()
		if err != nil {
			return err
		}
		for _, n := range []string{"n1", "n2", "n3"} {
			if st[n] != "UP" {
				return fmt.Errorf("%s %q", n, st[n])
			}
		}
		return nil
	})
	return h
}

// status asks the stats socket for the state of each server of the nodes
// backend (UP, DOWN, "UP 1/2" while going down, ...).
func (h *haproxy) status() (map[string]string, error) {
	conn, err := net.DialTimeout("unix", h.sock, time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("show stat\n")); err != nil {
		return nil, err
	}
	out := make(map[string]string)
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ",")
		if len(f) > 17 && f[0] == "nodes" && f[1] != "BACKEND" {
			out[f[1]] = f[17] // pxname, svname, ..., status
		}
	}
	return out, sc.Err()
}

// waitStatus polls until server name has state want and returns how long it
// took.
func (h *haproxy) waitStatus(t testing.TB, name, want string, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	testutil.CheckFor(t, d, "haproxy: "+name+" "+want, func() error {
		st, err := h.status()
		if err != nil {
			return err
		}
		if st[name] != want {
			return fmt.Errorf("%s is %q", name, st[name])
		}
		return nil
	})
	return time.Since(start)
}

// lbCluster is three node processes behind HAProxy. Each node keeps its
// addresses, so it can be restarted as the same node (with a new member
// ID), and names every node as a seed.
type lbCluster struct {
	*tcluster
	pki *testPKI
	lb  *haproxy
}

func startLBCluster(t *testing.T) *lbCluster {
	t.Helper()
	c := &lbCluster{tcluster: &tcluster{t: t, db: sharedDB(t)}, pki: newTestPKI(t)}
	lbAddr := testAddr(t)
	var cfgs []clustertest.NodeConfig
	var seeds []string
	for i := range 3 {
		cfg := procConfig(t, fmt.Sprintf("n%d", i+1), c.db,
			"COUPONMESH_LOG_LEVEL="+cmp.Or(os.Getenv("DEPLOY_TEST_NODE_LOG"), nodeLogLevel()),
			// Behind the balancer, as configs/haproxy/haproxy.cfg says.
			"COUPONMESH_CLUSTER_PUBLIC_ADDR="+lbAddr, "COUPONMESH_CLUSTER_DRAIN_DELAY=1500ms")
		cfgs = append(cfgs, cfg)
		seeds = append(seeds, cfg.Gossip)
	}
	for _, cfg := range cfgs {
		cfg.Seeds = seeds
		c.nodes = append(c.nodes, launchProc(t, cfg))
	}
	for _, p := range c.nodes {
		p.WaitReady(t, 60*time.Second)
	}
	c.waitMembers(3)
	c.lb = startHAProxy(t, c.pki, lbAddr, [3]string{c.nodes[0].http, c.nodes[1].http, c.nodes[2].http})
	return c
}

// lbShopper is a shopper (failover_test.go) that knows only the balancer's
// URL.
type lbShopper struct{ *shopper }

func newLBShopper(t *testing.T, c *lbCluster, i int, follow []string) *lbShopper {
	t.Helper()
	s := &lbShopper{&shopper{user: fmt.Sprintf("shopper%d", i), follow: follow}}
	// Any node signs the token; no Addresses: the balancer only.
	s.dial(t, c.nodes[0].base(), c.lb.wss(), client.Options{HTTPClient: c.pki.client()})
	return s
}

// lbMerchant returns the HTTP API as merchant acme through the balancer.
func lbMerchant(t testing.TB, c *lbCluster) *client.API {
	t.Helper()
	tok, err := client.DevLogin(context.Background(), c.nodes[0].base(), "acme", couponmesh.RoleMerchant)
	if err != nil {
		t.Fatal(err)
	}
	return &client.API{BaseURL: c.lb.https(), Token: tok, HTTPClient: c.pki.client()}
}

// createCouponsVia creates n coupons through api, four at a time.
func createCouponsVia(t testing.TB, api *client.API, prefix string, n, quantity int) []string {
	t.Helper()
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s%d", prefix, i)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_, errs[i] = api.CreateCoupon(context.Background(), couponmesh.CouponSpec{ID: ids[i], Title: ptr("Coupon " + ids[i]), Quantity: ptr(quantity)})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return ids
}

// sessionsOn returns the WebSocket sessions each node holds.
func (c *lbCluster) sessionsOn() map[string]int {
	c.t.Helper()
	out := map[string]int{}
	for _, p := range c.nodes {
		if !p.Running() {
			continue
		}
		ms, err := p.members()
		if err != nil {
			c.t.Fatal(err)
		}
		for _, m := range ms {
			if m.Name == p.name && m.Status == "alive" {
				out[p.name] = m.Sessions
			}
		}
	}
	return out
}

// probe opens a new session through the balancer, authenticates and pings.
func (c *lbCluster) probe(tok string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, c.lb.wss(), client.Options{HTTPClient: c.pki.client()})
	if err != nil {
		return err
	}
	defer cl.Close()
	if _, err := cl.Auth(ctx, tok); err != nil {
		return err
	}
	return cl.Ping(ctx)
}

func lbShoppers(list []*lbShopper) []*shopper {
	out := make([]*shopper, len(list))
	for i, s := range list {
		out[i] = s.shopper
	}
	return out
}

// Three nodes behind HAProxy; shoppers know only the balancer's wss:// URL.
// One node is killed with -9: HAProxy takes it out within its health-check
// interval, new connections through it keep succeeding, the shoppers that
// were on the dead node reconnect through HAProxy to the others and end
// with the newest state, and no acknowledged claim is lost. A client that
// does not trust the CA is refused by HAProxy.
func TestDeployHAProxyKillNode(t *testing.T) {
	c := startLBCluster(t)
	// 12 shoppers claim each coupon of 8 units: all sell out.
	coupons := createCouponsVia(t, lbMerchant(t, c), "h", 40, 8)
	var hist history.Recorder
	victim := c.nodes[1]
	var shoppers []*lbShopper
	for i := range 12 {
		shoppers = append(shoppers, newLBShopper(t, c, i, []string{coupons[i%40], coupons[(i+13)%40]}))
	}
	spread := c.sessionsOn()
	t.Logf("sessions per node through HAProxy (leastconn): %v", spread)
	if spread[victim.name] == 0 {
		t.Fatalf("no session on %s: HAProxy did not spread the shoppers", victim.name)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range shoppers {
		wg.Go(func() { s.claimAll(&hist, coupons, 40*time.Millisecond, stop) })
	}
	probeTok := login(t, c.nodes[0].base(), "prober", couponmesh.RoleShopper)
	time.Sleep(1500 * time.Millisecond)

	killed := time.Now() // before: its clients may see the connection drop before Wait returns
	victim.kill(t)
	// New connections while HAProxy notices: each one must succeed (a refused
	// connection to the dead node is redispatched to another).
	probes := make(chan error, 1)
	go func() {
		var errs []error
		for time.Since(killed) < 3*time.Second {
			if err := c.probe(probeTok); err != nil {
				errs = append(errs, fmt.Errorf("%s after the kill: %w", time.Since(killed).Round(time.Millisecond), err))
			}
			time.Sleep(50 * time.Millisecond)
		}
		probes <- errors.Join(errs...)
	}()
	down := c.lb.waitStatus(t, victim.name, "DOWN", 5*time.Second)
	t.Logf("HAProxy marked %s DOWN %s after kill -9 (checks: inter 500ms, fall 2)", victim.name, down.Round(time.Millisecond))
	if down > 2500*time.Millisecond {
		t.Errorf("HAProxy took %s to take the dead node out, want within ~1 s (2 checks 500 ms apart)", down)
	}
	if err := <-probes; err != nil {
		t.Errorf("new connections through HAProxy failed: %v", err)
	}
	wg.Wait()
	close(stop)

	var moved int
	var worst time.Duration
	for _, s := range shoppers {
		for _, d := range s.outages(killed) {
			moved++
			worst = max(worst, d)
		}
	}
	t.Logf("%d shoppers lost their connection and reconnected through HAProxy, the slowest in %s; sessions now %v",
		moved, worst.Round(time.Millisecond), c.sessionsOn())
	if moved < spread[victim.name] {
		t.Errorf("%d reconnects, want at least the %d sessions of the dead node", moved, spread[victim.name])
	}
	errs := 0
	for _, s := range shoppers {
		s.mu.Lock()
		errs += len(s.errs)
		s.mu.Unlock()
	}
	t.Logf("claims retried after unknown outcomes: %d", errs)
	verifyAcked(t, c.nodes[0], ackedByUser(lbShoppers(shoppers)), coupons)
	checkHistory(t, c.db, coupons, &hist, true)
	checkFinalAll(t, c.tcluster, c.nodes[2], "auditor", lbShoppers(shoppers))
	if d := duplicates(c.owners("coupon")); len(d) > 0 {
		t.Errorf("identities activated on several nodes: %v", d)
	}

	// TLS at the balancer: a client without the test CA is refused.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if cl, err := client.Dial(ctx, c.lb.wss(), client.Options{}); err == nil {
		cl.Close()
		t.Error("a client that does not trust the CA connected through HAProxy")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted client: %v, want a certificate error", err)
	}
}

// A rolling restart of all three nodes behind HAProxy while shoppers, who
// know only the balancer's URL, claim steadily: each node in turn is
// drained with SIGTERM (HAProxy takes it out while /readyz answers 503,
// before its sessions are handed over), restarted on the same addresses
// with the same configuration (a new member ID; it joins through the
// others, its seeds), and put back by HAProxy once ready. Shoppers see
// reconnects and no error; no acknowledged claim is lost, and every shopper
// ends with the newest state. The journal holds exactly what the shoppers
// were told, and demand exceeds supply (9 shoppers, 6 units a coupon):
// every coupon that all of them reached sold out.
func TestDeployRollingRestartBehindHAProxy(t *testing.T) {
	c := startLBCluster(t)
	coupons := createCouponsVia(t, lbMerchant(t, c), "r", 150, 6)
	var hist history.Recorder
	var shoppers []*lbShopper
	for i := range 9 {
		shoppers = append(shoppers, newLBShopper(t, c, i, []string{coupons[i%40], coupons[(i+7)%40]}))
	}
	t.Logf("sessions per node: %v", c.sessionsOn())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range shoppers {
		wg.Go(func() { s.claimAll(&hist, coupons, 200*time.Millisecond, stop) })
	}
	time.Sleep(time.Second)
	began := time.Now()

	for _, p := range c.nodes {
		start := time.Now()
		p.Signal(t, syscall.SIGTERM)
		down := c.lb.waitStatus(t, p.name, "DOWN", 5*time.Second)
		exited := make(chan error, 1)
		go func() { exited <- p.Err() }()
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("%s exited with %v after SIGTERM, want 0", p.name, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s still running 30 s after SIGTERM", p.name)
		}
		drained := time.Since(start)
		p.Restart(t) // same node: same name, addresses and data directory

		ready := time.Since(start)
		up := c.lb.waitStatus(t, p.name, "UP", 10*time.Second)
		c.waitMembers(3)
		t.Logf("%s: HAProxy took it out %s after SIGTERM; drained and exited after %s; restarted, ready after %s; back in HAProxy %s later; sessions %v",
			p.name, down.Round(time.Millisecond), drained.Round(time.Millisecond), ready.Round(time.Millisecond), up.Round(time.Millisecond), c.sessionsOn())
	}
	took := time.Since(began)
	time.Sleep(time.Second) // claims on the last node's identities after its return
	close(stop)
	wg.Wait()

	var reconnects, acked int
	var worst time.Duration
	for _, s := range shoppers {
		for _, d := range s.outages(began) {
			reconnects++
			worst = max(worst, d)
		}
		s.mu.Lock()
		acked += len(s.acked)
		for _, err := range s.errs {
			t.Errorf("%s: client-visible error: %v", s.user, err)
		}
		s.mu.Unlock()
		if err := s.c.Ping(context.Background()); err != nil {
			t.Errorf("%s after the rolling restart: %v", s.user, err)
		}
	}
	t.Logf("rolling restart of 3 nodes took %s: %d claims acknowledged meanwhile; %d reconnects through HAProxy, the slowest %s",
		took.Round(time.Millisecond), acked, reconnects, worst.Round(time.Millisecond))
	if reconnects < len(shoppers) {
		t.Errorf("%d reconnects for %d shoppers: every shopper was on a restarted node at some point", reconnects, len(shoppers))
	}
	verifyAcked(t, c.nodes[0], ackedByUser(lbShoppers(shoppers)), coupons)
	r := checkHistory(t, c.db, coupons, &hist, false)
	reached := map[string]map[string]bool{} // coupon → shoppers that claimed it
	for _, a := range hist.Attempts() {
		if reached[a.Coupon] == nil {
			reached[a.Coupon] = map[string]bool{}
		}
		reached[a.Coupon][a.User] = true
	}
	full := 0
	for _, id := range coupons {
		if len(reached[id]) < len(shoppers) {
			continue
		}
		full++
		if st := r.Coupons[id]; !st.SoldOut() {
			t.Errorf("coupon %s: all %d shoppers claimed it, yet %d of %d units went", id, len(shoppers), st.Claims, st.Quantity)
		}
	}
	t.Logf("%d coupons claimed by every shopper, each sold out", full)
	if full < 20 {
		t.Errorf("only %d coupons were claimed by every shopper: too few to check over-claiming", full)
	}
	checkFinalAll(t, c.tcluster, c.nodes[1], "auditor", lbShoppers(shoppers))
	if d := duplicates(c.owners("coupon")); len(d) > 0 {
		t.Errorf("identities activated on several nodes: %v", d)
	}
}
