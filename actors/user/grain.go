package user

import (
	"context"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors"
)

// Kind returns the cluster kind hosting user grains.
func Kind(cfg actors.GrainConfig) *cluster.Kind {
	cfg.Fill()
	return cluster.NewKind(actors.KindUser, actor.PropsFromProducer(func() actor.Actor {
		return &grain{cfg: &cfg}
	}))
}

type snapshotTick struct{}

type grain struct {
	cfg       *actors.GrainConfig
	id        string
	m         *Machine
	log       *slog.Logger
	hubs      actors.Subscribers
	self      actor.Context // valid only while handling a message
	snapTimer *time.Timer
}

func (g *grain) Receive(ctx actor.Context) {
	g.self = ctx
	defer func() { g.self = nil }()
	switch msg := ctx.Message().(type) {
	case *cluster.ClusterInit:
		g.id = msg.Identity.Identity
		g.log = g.cfg.Log.With("kind", actors.KindUser, "id", g.id)
		g.hubs.Lease = g.cfg.HubLease
		g.cfg.Metrics.Activations.WithLabelValues(actors.KindUser).Inc()
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

func (g *grain) load() bool {
	if g.m != nil {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.OpTimeout)
	defer cancel()
	m, err := Load(ctx, g.cfg.Store, g.id)
	if err != nil {
		g.log.Warn("load failed", "err", err)
		return false
	}
	m.journal.Observe = func(d time.Duration) { g.cfg.Metrics.AppendSeconds.Observe(d.Seconds()) }
	m.OnEntry = g.published
	g.m = m
	return true
}

// published pushes a new feed entry to the hubs of the user's sessions and
// schedules a snapshot.
func (g *grain) published(e couponmesh.FeedEntry) {
	if g.self == nil {
		return
	}
	g.hubs.Push(g.self, actors.PushFeed, g.id, couponmesh.FeedPush(e))
	if g.snapTimer == nil {
		self, root := g.self.Self(), g.self.ActorSystem().Root
		g.snapTimer = time.AfterFunc(g.cfg.SnapshotDelay, func() { root.Send(self, snapshotTick{}) })
	}
}

func (g *grain) handle(ctx actor.Context, req *cluster.GrainRequest) {
	if !g.load() {
		actors.Respond(ctx, nil, couponmesh.Errorf(couponmesh.CodeUnavailable, "user %s cannot be loaded now, retry", g.id))
		return
	}
	if ok, _ := g.hubs.HandleHubRef(ctx, req, actors.UserAttach, actors.UserDetach); ok {
		return
	}
	opCtx, cancel := context.WithTimeout(context.Background(), g.cfg.OpTimeout)
	defer cancel()
	switch req.MessageTypeName {
	case actors.UserRecordClaim:
		var p actors.RecordClaim
		if actors.Unpack(ctx, req, &p) {
			_, err := g.m.RecordClaim(opCtx, p.Claim)
			actors.Respond(ctx, actors.Empty{}, err)
		}
	case actors.UserFollow, actors.UserUnfollow:
		var p actors.CouponRef
		if !actors.Unpack(ctx, req, &p) {
			return
		}
		var err error
		if req.MessageTypeName == actors.UserFollow {
			err = g.m.Follow(opCtx, p.Coupon)
		} else {
			err = g.m.Unfollow(opCtx, p.Coupon)
		}
		actors.Respond(ctx, actors.Empty{}, err)
	case actors.UserCouponChanged:
		var c couponmesh.Coupon
		if actors.Unpack(ctx, req, &c) {
			actors.Respond(ctx, actors.Empty{}, g.m.CouponChanged(opCtx, c))
		}
	case actors.UserFollowing:
		actors.Respond(ctx, g.m.Following(), nil)
	case actors.UserWallet:
		actors.Respond(ctx, g.m.Wallet(), nil)
	case actors.UserFeed:
		var q actors.FeedQuery
		if actors.Unpack(ctx, req, &q) {
			entries, err := g.m.Feed(opCtx, q.After, q.Limit)
			actors.Respond(ctx, entries, err)
		}
	default:
		actors.Unknown(ctx, req)
	}
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
