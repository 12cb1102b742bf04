package user

import (
	"context"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors"
	"github.com/couponmesh/couponmesh/protocol"
	"golang.org/x/time/rate"
)

// Kind returns the cluster kind hosting user grains.
func Kind(cfg actors.GrainConfig) *cluster.Kind {
	cfg.Fill()
	return cluster.NewKind(actors.KindUser, actor.PropsFromProducer(func() actor.Actor {
		g := &grain{writes: cfg.UserWrites.Limiter(), writeLimit: cfg.UserWrites}
		g.Activation = actors.NewActivation(&cfg, actors.KindUser, func(ctx context.Context, id string) (*Machine, error) {
			m, err := Load(ctx, cfg.Store, id)
			if err == nil {
				m.journal.Observe = cfg.ObserveAppends()
				m.journal.Superseded = g.Supersede
				m.OnEntry = g.published
				g.loadedSeq = m.Seq()
			}
			return m, err
		})
		g.Busy = func() bool { return g.M != nil && !g.M.Journal().Idle() }
		return g
	}))
}

type grain struct {
	*actors.Activation[*Machine]
	ctx        actor.Context // the context of the message being handled
	loadedSeq  int64         // feed seq when this activation loaded
	writes     *rate.Limiter // the user's write rate, across sessions and nodes
	writeLimit actors.RateLimit
}

// admitWrite takes a write token, or returns rate_limited. The bucket lives
// as long as the activation: one identity has one activation (bar a short
// overlap during churn), so it bounds the user wherever its sessions are.
func (g *grain) admitWrite() error {
	if g.writes.Allow() {
		return nil
	}
	g.Cfg.Metrics.RateLimited.WithLabelValues(actors.KindUser).Inc()
	return couponmesh.Errorf(couponmesh.CodeRateLimited,
		"too many writes: a user may claim, follow and unfollow at most %g times per second (bursts of %d); slow down",
		g.writeLimit.Rate, g.writeLimit.Burst)
}

func (g *grain) Receive(ctx actor.Context) {
	g.ctx = ctx
	defer func() { g.ctx = nil }()
	if req := g.Activation.Receive(ctx); req != nil {
		g.handle(ctx, req)
	} else if r, ok := ctx.Message().(*actors.BatchResult); ok && g.M != nil {
		opCtx, cancel := g.OpContext()
		g.M.Journal().Settle(opCtx, r)
		cancel()
	}
	if g.M != nil {
		actors.Flush(ctx, g.M.Journal(), g.Cfg.OpTimeout)
	}
	g.After(ctx)
}

// answerer is actors.Answerer for requests answered with Empty or an
// error.
func answerer(ctx actor.Context) (answer func(error), handled func()) {
	a, handled := actors.Answerer(ctx, nil)
	return func(err error) { a(actors.Empty{}, err) }, handled
}

// published pushes a new feed entry to the hubs of the user's sessions and
// schedules a snapshot.
func (g *grain) published(e couponmesh.FeedEntry) {
	if g.ctx == nil {
		return
	}
	g.Hubs.Push(g.ctx, actors.PushFeed, g.ID, protocol.FeedPush(e))
	g.ScheduleSnapshot(g.ctx)
}

// resend pushes to a hub that renewed a lease this activation did not know
// (the grain moved or was reactivated) the entries this activation appended:
// the hub may have missed them. Sessions drop entries they already have.
func (g *grain) resend(ctx actor.Context, addr string) {
	opCtx, cancel := g.OpContext()
	defer cancel()
	entries, err := g.M.Feed(opCtx, g.loadedSeq, 256)
	if err != nil {
		g.Log.Warn("feed resend failed", "hub", addr, "err", err)
		return
	}
	for _, e := range entries {
		actors.PushTo(ctx, addr, actors.PushFeed, g.ID, protocol.FeedPush(e))
	}
}

func (g *grain) handle(ctx actor.Context, req *cluster.GrainRequest) {
	if ok, addr := g.Hubs.HandleHubRef(ctx, req, actors.UserAttach, actors.UserDetach); ok {
		if addr != "" {
			g.resend(ctx, addr)
		}
		return
	}
	m := g.M
	opCtx, cancel := g.OpContext()
	defer cancel()
	switch req.MessageTypeName {
	case actors.UserAdmit:
		actors.Respond(ctx, actors.Empty{}, g.admitWrite())
	case actors.UserRecordClaim:
		var p actors.RecordClaim
		if actors.Unpack(ctx, req, &p) {
			answer, handled := answerer(ctx)
			m.StartRecordClaim(context.Background(), p.Claim, answer)
			handled()
		}
	case actors.UserFollow, actors.UserUnfollow:
		var p actors.CouponRef
		if !actors.Unpack(ctx, req, &p) {
			return
		}
		if err := g.admitWrite(); err != nil {
			actors.Respond(ctx, nil, err)
			return
		}
		answer, handled := answerer(ctx)
		// The index write after the entry is bounded by the store's own
		// operation timeout.
		if req.MessageTypeName == actors.UserFollow {
			m.StartFollow(context.Background(), p.Coupon, answer)
		} else {
			m.StartUnfollow(context.Background(), p.Coupon, answer)
		}
		handled()
	case actors.UserCouponChanged:
		var c couponmesh.Coupon
		if actors.Unpack(ctx, req, &c) {
			answer, handled := answerer(ctx)
			m.StartCouponChanged(context.Background(), c, answer)
			handled()
		}
	case actors.UserFollowing:
		actors.Respond(ctx, m.Following(), nil)
	case actors.UserWallet:
		actors.Respond(ctx, m.Wallet(), nil)
	case actors.UserFeed:
		var q actors.FeedQuery
		if actors.Unpack(ctx, req, &q) {
			entries, err := m.Feed(opCtx, q.After, q.Limit)
			actors.Respond(ctx, entries, err)
		}
	default:
		actors.Unknown(ctx, req)
	}
}
