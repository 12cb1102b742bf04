package coupon_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors"
	"github.com/couponmesh/couponmesh/actors/coupon"
	"github.com/couponmesh/couponmesh/actors/user"
	"github.com/couponmesh/couponmesh/cluster/membership"
	"github.com/couponmesh/couponmesh/cluster/node"
)

// benchNode is a one-member cluster with the real coupon and user grains
// over the package's embedded database, started once per test process
// (protoactor trips -race when members start one after another). Its
// grains validate after nodeChurn's changes and count in nodeMetrics.
var benchNode = sync.OnceValues(func() (*node.Node, error) {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	gcfg := actors.GrainConfig{Store: store, Log: log, Churn: nodeChurn, Metrics: nodeMetrics}
	return node.Start(node.Config{
		RemoteAddr: "127.0.0.1:0", Log: log,
		Provider: membership.New(membership.Config{BindAddr: "127.0.0.1:0", Log: log}),
	}, coupon.Kind(gcfg), user.Kind(gcfg))
})

var (
	nodeChurn   = actors.NewChurnWindow(10 * time.Second) // TestWakeAfterChurnReadsNoJournal works inside it
	nodeMetrics = actors.NewMetrics(nil)
)

// BenchmarkGrainRequest measures one request to an active grain through
// the cluster on one node (actors.Call: the PID cache, the mailbox, the
// grain's dispatch of the method, the payload and reply: Go values within
// the node for the coupon's methods, JSON otherwise). coupon.get and
// user.wallet answer from memory, so they show the grains' own cost per
// request, without the database; coupon.update is a durable write.
func BenchmarkGrainRequest(b *testing.B) {
	n, err := benchNode()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	cfg := actors.DefaultCallConfig()
	id := fmt.Sprintf("bench%d", time.Now().UnixNano())
	q, title := 10_000_000, "Bench"
	if err := actors.Call(ctx, n.Cluster, cfg, actors.KindCoupon, id, actors.CouponCreate,
		actors.CreateCoupon{Principal: merchant, Spec: couponmesh.CouponSpec{ID: id, Title: &title, Quantity: &q}, RID: "create"}, nil); err != nil {
		b.Fatal(err)
	}
	b.Run("coupon.get", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var c couponmesh.Coupon
			if err := actors.Call(ctx, n.Cluster, cfg, actors.KindCoupon, id, actors.CouponGet, actors.Empty{}, &c); err != nil || c.ID != id {
				b.Fatal(c.ID, err)
			}
		}
	})
	// A durable update (the journal append through the group commit to
	// the embedded database, then the push and snapshot): its allocations
	// show the request, entry and reply encodings of the node's side.
	b.Run("coupon.update", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			t := "Bench " + strconv.Itoa(i)
			var c couponmesh.Coupon
			if err := actors.Call(ctx, n.Cluster, cfg, actors.KindCoupon, id, actors.CouponUpdate,
				actors.UpdateCoupon{Principal: merchant, Spec: couponmesh.CouponSpec{Title: &t}}, &c); err != nil || c.Title != t {
				b.Fatal(c.Title, err)
			}
		}
	})
	b.Run("user.wallet", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var w []couponmesh.Claim
			if err := actors.Call(ctx, n.Cluster, cfg, actors.KindUser, id, actors.UserWallet, actors.Empty{}, &w); err != nil {
				b.Fatal(err)
			}
		}
	})
}
