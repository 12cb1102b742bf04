package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh/client"
)

// Cluster benchmarks: real node processes on loopback, one run each
// (make bench runs them with -benchtime=1x). They print their figures and
// report them as benchmark metrics.

// BenchmarkClusterClaims: claims per second through one node, then through
// three, with the same load.
func BenchmarkClusterClaims(b *testing.B) {
	for range b.N {
		var rates []float64
		for _, n := range []int{1, 3} {
			c := startCluster(b, n)
			rates = append(rates, claimRateMulti(b, c, 48, 5*time.Second))
			c.stopAll(b)
		}
		b.ReportMetric(rates[0], "claims/s-1node")
		b.ReportMetric(rates[1], "claims/s-3nodes")
		fmt.Printf("claims/s: 1 node %.0f, 3 nodes %.0f (x%.2f), 48 shoppers, one 2-core machine\n", rates[0], rates[1], rates[1]/rates[0])
	}
}

// claimRateMulti: each of shoppers sessions claims a new coupon every time
// (coupons created up front, quantity high), for d.
func claimRateMulti(b *testing.B, c *tcluster, shoppers int, d time.Duration) float64 {
	const perShopper = 400
	coupons := createCoupons(b, c.nodes[0], fmt.Sprintf("m%d-", len(c.nodes)), 64, 1_000_000)
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	sessions := make([]*client.Client, shoppers)
	for i := range sessions {
		sessions[i] = c.nodes[i%len(c.nodes)].session(b, fmt.Sprintf("m%d-shopper%d", len(c.nodes), i))
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
	for range b.N {
		// One reader session polls every identity of the dead node at once,
		// far over a session's request rate: a load generator, not a client.
		c := startCluster(b, 3, "COUPONMESH_WS_REQUEST_RATE=-1")
		coupons := createCoupons(b, c.nodes[0], "f", 60, 10)
		reader := c.nodes[0].session(b, "reader")
		ctx := context.Background()
		for _, id := range coupons {
			if _, err := reader.Get(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
		victim := c.nodes[1]
		var held []string
		for _, id := range victim.actors(b, "coupon") {
			held = append(held, id[len("coupon/"):])
		}
		victim.kill(b)
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

		drained := c.nodes[2]
		var sessions []*client.Client
		for i := range 30 {
			sessions = append(sessions, drained.session(b, fmt.Sprintf("d%d", i)))
		}
		start := time.Now()
		var out strings.Builder
		if err := runCtl([]string{"--admin", c.nodes[0].admin, "drain", drained.name, "--wait"}, &out); err != nil {
			b.Fatal(err)
		}
		drained.stop(b)
		d := time.Since(start)
		fmt.Printf("drain with %d sessions (drain_spread 3s): %s until the process exited\n", len(sessions), d.Round(time.Millisecond))
		b.ReportMetric(d.Seconds(), "s-drain")
		for _, s := range sessions {
			s.Close()
		}
		c.stopAll(b)
	}
}
