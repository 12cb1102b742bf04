package coupon

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors"
)

// Kind returns the cluster kind hosting coupon grains.
func Kind(cfg actors.GrainConfig) *cluster.Kind {
	cfg.Fill()
	return cluster.NewKind(actors.KindCoupon, actor.PropsFromProducer(func() actor.Actor {
		return &grain{cfg: &cfg}
	}))
}

type snapshotTick struct{}

type grain struct {
	cfg       *actors.GrainConfig
	id        string
	cluster   *cluster.Cluster
	m         *Machine
	log       *slog.Logger
	hubs      actors.Subscribers
	snapTimer *time.Timer
}

func (g *grain) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *cluster.ClusterInit:
		g.id, g.cluster = msg.Identity.Identity, msg.Cluster
		g.log = g.cfg.Log.With("kind", actors.KindCoupon, "id", g.id)
		g.hubs.Lease = g.cfg.HubLease
		g.cfg.Metrics.Activations.WithLabelValues(actors.KindCoupon).Inc()
		g.load()
		ctx.SetReceiveTimeout(g.cfg.PassivateAfter)
	case *actor.ReceiveTimeout:
		if g.hubs.Len() == 0 {
			ctx.Poison(ctx.Self())
		}
	case *actor.Stopping:
		if g.snapTimer != nil {
			g.snapTimer.Stop()
		}
		g.snapshot()
	case snapshotTick:
		g.snapTimer = nil
		g.snapshot()
	case *cluster.GrainRequest:
		g.handle(ctx, msg)
	}
}

// load (re)reads the state; on failure the grain stays up and retries on the
// next message, answering unavailable meanwhile.
func (g *grain) load() bool {
	if g.m != nil {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.OpTimeout)
	defer cancel()
	m, err := Load(ctx, g.cfg.Store, g.id, nil)
	if err != nil {
		g.log.Warn("load failed", "err", err)
		return false
	}
	m.journal.Observe = func(d time.Duration) { g.cfg.Metrics.AppendSeconds.Observe(d.Seconds()) }
	g.m = m
	return true
}

func (g *grain) handle(ctx actor.Context, req *cluster.GrainRequest) {
	if !g.load() {
		actors.Respond(ctx, nil, couponmesh.Errorf(couponmesh.CodeUnavailable, "coupon %s cannot be loaded now, retry", g.id))
		return
	}
	opCtx, cancel := context.WithTimeout(context.Background(), g.cfg.OpTimeout)
	defer cancel()
	if ok, addr := g.hubs.HandleHubRef(ctx, req, actors.CouponSubscribe, actors.CouponUnsubscribe); ok {
		if addr != "" && g.m.Exists() {
			actors.PushTo(ctx, addr, actors.PushCoupon, g.id, couponmesh.CouponPush(g.m.Coupon()))
		}
		return
	}
	before := g.m.Coupon()
	switch req.MessageTypeName {
	case actors.CouponGet:
		c, err := g.m.Get()
		actors.Respond(ctx, c, err)
		return
	case actors.CouponCreate:
		var p actors.CreateCoupon
		if !actors.Unpack(ctx, req, &p) {
			return
		}
		c, err := g.m.Create(opCtx, p.Principal, p.Spec, p.RID)
		actors.Respond(ctx, c, err)
	case actors.CouponUpdate:
		var p actors.UpdateCoupon
		if !actors.Unpack(ctx, req, &p) {
			return
		}
		c, err := g.m.Update(opCtx, p.Principal, p.Spec)
		actors.Respond(ctx, c, err)
	case actors.CouponWithdraw:
		var p actors.WithdrawCoupon
		if !actors.Unpack(ctx, req, &p) {
			return
		}
		c, err := g.m.Withdraw(opCtx, p.Principal)
		actors.Respond(ctx, c, err)
	case actors.CouponClaim:
		var p actors.ClaimCoupon
		if !actors.Unpack(ctx, req, &p) {
			return
		}
		cl, err := g.m.Claim(opCtx, p.User, p.RID)
		result := "ok"
		if err != nil {
			result = string(couponmesh.ErrorCode(err))
		}
		g.cfg.Metrics.Claims.WithLabelValues(result).Inc()
		actors.Respond(ctx, cl, err)
	default:
		actors.Unknown(ctx, req)
		return
	}
	after := g.m.Coupon()
	if after.Version != before.Version {
		g.changed(ctx, before, after)
	}
}

// changed publishes a new version: one push per subscribed hub, a snapshot,
// and feed notices to followers when more than the claimed count changed.
func (g *grain) changed(ctx actor.Context, before, after couponmesh.Coupon) {
	g.hubs.Push(ctx, actors.PushCoupon, g.id, couponmesh.CouponPush(after))
	onlyClaims := (before.Version > 0) && before.Title == after.Title && before.Description == after.Description &&
		before.Discount == after.Discount && before.Quantity == after.Quantity &&
		before.ExpiresAt.Equal(after.ExpiresAt) && before.Status == after.Status
	if onlyClaims {
		g.scheduleSnapshot(ctx)
		return
	}
	g.snapshot()
	if before.Version > 0 {
		go g.notifyFollowers(after)
	}
}

func (g *grain) scheduleSnapshot(ctx actor.Context) {
	if g.snapTimer != nil {
		return
	}
	self, root := ctx.Self(), ctx.ActorSystem().Root
	g.snapTimer = time.AfterFunc(g.cfg.SnapshotDelay, func() { root.Send(self, snapshotTick{}) })
}

func (g *grain) snapshot() {
	if g.m == nil || !g.m.SnapshotDue() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.OpTimeout)
	defer cancel()
	if err := g.m.WriteSnapshot(ctx); err != nil {
		g.log.Warn("snapshot failed", "seq", g.m.Seq(), "err", err)
	}
}

// notifyFollowers tells each follower's user grain about the change, a few
// at a time, off the grain's mailbox.
func (g *grain) notifyFollowers(c couponmesh.Coupon) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	users, err := g.cfg.Store.Followers(ctx, c.ID)
	if err != nil {
		g.log.Warn("followers lookup failed", "err", err)
		return
	}
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, u := range users {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := actors.Call(ctx, g.cluster, g.cfg.Call, actors.KindUser, u, actors.UserCouponChanged, c, nil); err != nil {
				g.log.Warn("follower notice failed", "user", u, "err", err)
			}
		})
	}
	wg.Wait()
}
