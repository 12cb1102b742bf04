package hub

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/protocol"
)

// countSink is the cheapest couponmesh.Sink: it counts what it is sent.
type countSink struct{ n int }

func (s *countSink) Send([]byte) bool { s.n++; return true }

// benchHub is a Hub without a cluster: only what fanOut reads is set, and
// one coupon is followed by n counting sinks.
func benchHub(n int) (*Hub, []*countSink) {
	h := &Hub{
		topics:  [2]map[string]*topic{{}, {}},
		sinks:   make(map[couponmesh.Sink]*regs),
		pushes:  prometheus.NewCounter(prometheus.CounterOpts{Name: "pushes"}),
		deliver: prometheus.NewCounter(prometheus.CounterOpts{Name: "deliveries"}),
	}
	t := &topic{sinks: make(map[couponmesh.Sink]struct{}, n), ready: make(chan struct{})}
	close(t.ready)
	sinks := make([]*countSink, n)
	for i := range sinks {
		sinks[i] = &countSink{}
		t.sinks[sinks[i]] = struct{}{}
		h.sinks[sinks[i]] = &regs{keys: [2]map[string]struct{}{{"hot": {}}, {}}}
	}
	h.topics[coupons]["hot"] = t
	return h, sinks
}

// BenchmarkFanOut measures the hub's own cost of one push to 10,000 local
// sessions (fanOut: the read lock, the walk of the topic's sink set, one
// interface call per sink, the counters) with sinks that only count, so
// that no session or socket work is included. ns/delivery is ns/op divided
// by the sinks.
func BenchmarkFanOut(b *testing.B) {
	frame := protocol.CouponPush(couponmesh.Coupon{ID: "hot", Title: "Hot deal", Quantity: 100, Claimed: 17, Remaining: 83, Status: couponmesh.StatusActive, Version: 18})
	for _, n := range []int{10_000} {
		b.Run(fmt.Sprintf("sinks=%d", n), func(b *testing.B) {
			h, sinks := benchHub(n)
			b.ReportAllocs()
			iters := 0
			for b.Loop() {
				h.fanOut(coupons, "hot", frame)
				iters++
			}
			perDelivery := float64(b.Elapsed().Nanoseconds()) / float64(iters*n)
			b.ReportMetric(perDelivery, "ns/delivery")
			b.ReportMetric(1e9/perDelivery, "deliveries/s")
			for _, s := range sinks {
				if s.n != iters {
					b.Fatalf("a sink got %d frames, want %d", s.n, iters)
				}
			}
		})
	}
}
