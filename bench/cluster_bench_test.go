package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/cluster/clustertest"
)

// Cluster benchmarks: real node processes on loopback (cluster/clustertest),
// one run each (make bench-persistence runs them with -benchtime=1x). They
// print their figures and report them as benchmark metrics.

func TestMain(m *testing.M) {
	code := m.Run()
	clustertest.RemoveBinary()
	os.Exit(code)
}

// BenchmarkClusterClaims: claims per second through one node, then through
// three, with the same load.
func BenchmarkClusterClaims(b *testing.B) {
	for range b.N {
		var rates []float64
		for _, n := range []int{1, 3} {
			nodes := startNodes(b, n)
			rates = append(rates, claimRateMulti(b, nodes, 48, 5*time.Second))
			stopNodes(b, nodes)
		}
		b.ReportMetric(rates[0], "claims/s-1node")
		b.ReportMetric(rates[1], "claims/s-3nodes")
		fmt.Printf("claims/s: 1 node %.0f, 3 nodes %.0f (x%.2f), 48 shoppers, one 2-core machine\n", rates[0], rates[1], rates[1]/rates[0])
	}
}

// claimRateMulti: each of shoppers sessions claims a new coupon every time
// (coupons created up front, quantity high), for d.
func claimRateMulti(b *testing.B, nodes []*clustertest.Node, shoppers int, d time.Duration) float64 {
	const perShopper = 400
	coupons := createCoupons(b, nodes[0], fmt.Sprintf("m%d-", len(nodes)), 64, 1_000_000)
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	sessions := make([]*client.Client, shoppers)
	for i := range sessions {
		sessions[i] = session(b, nodes[i%len(nodes)], fmt.Sprintf("m%d-shopper%d", len(nodes), i))
	}
	start := time.Now()
	stop := start.Add(d)
	for i, s := range sessions {
		wg.Go(func() {
			ctx := context.Background()
			for k := 0; k < perShopper && k < len(coupons) && time.Now().Before(stop); k++ {
				cid := coupons[(i+k)%len(coupons)]
				if _, err := s.Claim(ctx, cid, fmt.Sprintf("%d-%d", i, k)); err == nil {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	for _, s := range sessions {
		s.Close()
	}
	if f := failed.Load(); f > 0 {
		b.Logf("%d failed claims", f)
	}
	return float64(ok.Load()) / el.Seconds()
}

// BenchmarkClusterFailover: kill -9 of one of three nodes; time until every
// identity it held answers again from the survivors. Then a drain of a
// second node with sessions on it; its duration.
func BenchmarkClusterFailover(b *testing.B) {
	b.Setenv("COUPONMESH_ADMIN_TOKEN", clustertest.AdminToken) // for adminCall
	for range b.N {
		// One reader session polls every identity of the dead node at once,
		// far over a session's request rate: a load generator, not a client.
		nodes := startNodes(b, 3, "COUPONMESH_WS_REQUEST_RATE=-1")
		coupons := createCoupons(b, nodes[0], "f", 60, 10)
		reader := session(b, nodes[0], "reader")
		ctx := context.Background()
		for _, id := range coupons {
			if _, err := reader.Get(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
		victim := nodes[1]
		idents, err := foActors(ctx, &benchNode{name: victim.Name, admin: victim.Admin})
		if err != nil {
			b.Fatal(err)
		}
		var held []string
		for _, ident := range idents {
			if id, ok := strings.CutPrefix(ident, "coupon/"); ok {
				held = append(held, id)
			}
		}
		victim.Kill()
		killed := time.Now()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var last time.Duration
		for _, id := range held {
			wg.Go(func() {
				for time.Since(killed) < 30*time.Second {
					cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					_, err := reader.Get(cctx, id)
					cancel()
					if err == nil {
						mu.Lock()
						last = max(last, time.Since(killed))
						mu.Unlock()
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			})
		}
		wg.Wait()
		fmt.Printf("kill -9: all %d identities of the dead node served again %s after the kill\n", len(held), last.Round(time.Millisecond))
		b.ReportMetric(last.Seconds(), "s-kill-to-serving")

		drained := nodes[2]
		var sessions []*client.Client
		for i := range 30 {
			sessions = append(sessions, session(b, drained, fmt.Sprintf("d%d", i)))
		}
		start := time.Now()
		// As `couponmesh ctl drain n3 --wait` does: drain through another
		// node's admin API, then wait until it lists the member as gone.
		if err := adminCall(ctx, nodes[0].Admin, http.MethodPost, "/admin/api/drain", DrainRequest{Node: drained.Name}, nil); err != nil {
			b.Fatal(err)
		}
		for !foDead(ctx, &benchNode{admin: nodes[0].Admin}, drained.Name) {
			if time.Since(start) > time.Minute {
				b.Fatalf("%s not gone a minute after its drain", drained.Name)
			}
			time.Sleep(50 * time.Millisecond)
		}
		drained.Stop(b, 30*time.Second)
		d := time.Since(start)
		fmt.Printf("drain with %d sessions (drain_spread 3s): %s until the process exited\n", len(sessions), d.Round(time.Millisecond))
		b.ReportMetric(d.Seconds(), "s-drain")
		for _, s := range sessions {
			s.Close()
		}
		stopNodes(b, nodes)
	}
}

// startNodes starts a devdb and n nodes on it (n2… seeded with n1), with
// env added to each node's environment, and waits until n1 sees them all.
func startNodes(b *testing.B, n int, env ...string) []*clustertest.Node {
	b.Helper()
	dir := b.TempDir()
	db := clustertest.StartDB(b, nil, freeAddrTB(b), filepath.Join(dir, "devdb"))
	var nodes []*clustertest.Node
	var seed string
	for i := range n {
		gossip := freeAddrTB(b)
		if seed == "" {
			seed = gossip
		}
		nodes = append(nodes, clustertest.StartNode(b, clustertest.NodeConfig{
			Name: fmt.Sprintf("n%d", i+1), HTTP: freeAddrTB(b), Admin: freeAddrTB(b), Gossip: gossip,
			Seeds: []string{seed}, DB: db.URI(), Env: env,
		}))
	}
	nodes[0].WaitAlive(b, n, time.Minute)
	return nodes
}

// stopNodes stops the nodes at once (each drains on SIGTERM).
func stopNodes(b *testing.B, nodes []*clustertest.Node) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() { n.Stop(b, 30*time.Second) })
	}
	wg.Wait()
}

func freeAddrTB(b *testing.B) string {
	b.Helper()
	addr, err := clustertest.FreeAddr()
	if err != nil {
		b.Fatal(err)
	}
	return addr
}

// createCoupons creates n coupons PREFIX0 … of quantity as merchant "acme".
func createCoupons(b *testing.B, n *clustertest.Node, prefix string, count, quantity int) []string {
	b.Helper()
	ctx := context.Background()
	tok, err := client.DevLogin(ctx, "http://"+n.HTTP, "acme", couponmesh.RoleMerchant)
	if err != nil {
		b.Fatal(err)
	}
	api := client.NewAPI("http://"+n.HTTP, tok)
	ids := make([]string, count)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s%d", prefix, i)
		title := "Coupon " + ids[i]
		if _, err := api.CreateCoupon(ctx, couponmesh.CouponSpec{ID: ids[i], Title: &title, Quantity: &quantity}); err != nil {
			b.Fatal(err)
		}
	}
	return ids
}

// session is an authenticated shopper session on node n, closed when the
// benchmark ends.
func session(b *testing.B, n *clustertest.Node, user string) *client.Client {
	b.Helper()
	ctx := context.Background()
	tok, err := client.DevLogin(ctx, "http://"+n.HTTP, user, couponmesh.RoleShopper)
	if err != nil {
		b.Fatal(err)
	}
	c, err := client.Dial(ctx, "ws://"+n.HTTP+"/ws", client.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	if _, err := c.Auth(ctx, tok); err != nil {
		b.Fatal(err)
	}
	return c
}
