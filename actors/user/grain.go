package user

import (
	"context"
	"time"

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
		g.Busy = func() bool { return g.claiming > 0 || g.M != nil && !g.M.Journal().Idle() }
		return g
	}, actor.WithDispatcher(actors.Dispatcher())))
}

type grain struct {
	*actors.Activation[*Machine]
	cluster    *cluster.Cluster
	claiming   int           // user.claim calls to coupon grains in flight (Busy until answered)
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
	if init, ok := ctx.Message().(*cluster.ClusterInit); ok {
		g.cluster = init.Cluster
	}
	if req := g.Activation.Receive(ctx); req != nil {
		g.handle(ctx, req)
	} else {
		switch m := ctx.Message().(type) {
		case *actors.BatchResult:
			if g.M != nil {
				opCtx, cancel := g.OpContext()
				g.M.Journal().Settle(opCtx, m)
				cancel()
			}
		case *claimed:
			g.record(m)
		}
	}
	if g.M != nil {
		actors.Flush(ctx, g.M.Journal(), g.Cfg.OpTimeout)
	}
	g.After(ctx)
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

// methods are the user grain's requests.
var methods = actors.NewMethods(nil,
	actors.Handle(actors.UserAdmit, func(g *grain, _ actor.Context, _ actors.Empty) (actors.Empty, error) {
		return actors.Empty{}, g.admitWrite()
	}),
	actors.HandleLater(actors.UserClaim, (*grain).claim),
	actors.HandleLater(actors.UserRecordClaim, func(g *grain, _ actor.Context, p actors.RecordClaim, reply func(actors.Empty, error)) {
		g.M.StartRecordClaim(context.Background(), p.Claim, emptyReply(reply))
	}),
	actors.HandleLater(actors.UserFollow, func(g *grain, _ actor.Context, p actors.CouponRef, reply func(actors.Empty, error)) {
		g.follow(p, reply, g.M.StartFollow)
	}),
	actors.HandleLater(actors.UserUnfollow, func(g *grain, _ actor.Context, p actors.CouponRef, reply func(actors.Empty, error)) {
		g.follow(p, reply, g.M.StartUnfollow)
	}),
	actors.HandleLater(actors.UserCouponChanged, func(g *grain, _ actor.Context, c couponmesh.Coupon, reply func(actors.Empty, error)) {
		g.M.StartCouponChanged(context.Background(), c, emptyReply(reply))
	}),
	actors.Handle(actors.UserFollowing, func(g *grain, _ actor.Context, _ actors.Empty) ([]string, error) {
		return g.M.Following(), nil
	}),
	actors.Handle(actors.UserWallet, func(g *grain, _ actor.Context, _ actors.Empty) ([]couponmesh.Claim, error) {
		return g.M.Wallet(), nil
	}),
	actors.Handle(actors.UserFeed, func(g *grain, _ actor.Context, q actors.FeedQuery) ([]couponmesh.FeedEntry, error) {
		opCtx, cancel := g.OpContext()
		defer cancel()
		return g.M.Feed(opCtx, q.After, q.Limit)
	}),
	actors.HandleLater(actors.UserAttach, (*grain).attach),
	actors.Handle(actors.UserDetach, func(g *grain, _ actor.Context, p actors.HubRef) (actors.Empty, error) {
		g.Hubs.Unsubscribe(p)
		return actors.Empty{}, nil
	}),
)

func (g *grain) handle(ctx actor.Context, req *cluster.GrainRequest) { methods.Serve(g, ctx, req) }

// emptyReply adapts reply to the machine's callbacks, which report only an
// error.
func emptyReply(reply func(actors.Empty, error)) func(error) {
	return func(err error) { reply(actors.Empty{}, err) }
}

// follow runs a follow or unfollow (start) once the user's write rate
// admits it. The index write after the entry is bounded by the store's own
// operation timeout.
func (g *grain) follow(p actors.CouponRef, reply func(actors.Empty, error), start func(context.Context, string, func(error))) {
	if err := g.admitWrite(); err != nil {
		reply(actors.Empty{}, err)
		return
	}
	start(context.Background(), p.Coupon, emptyReply(reply))
}

// attach registers or renews a session hub and, when the hub may have
// missed entries, resends them after the answer.
func (g *grain) attach(ctx actor.Context, p actors.HubRef, reply func(actors.Empty, error)) {
	addr := g.Hubs.Subscribe(p)
	reply(actors.Empty{}, nil)
	if addr != "" {
		g.resend(ctx, addr)
	}
}

// claimed is the coupon grain's answer to a claim of user.claim, back on
// the user grain's goroutine.
type claimed struct {
	coupon string
	claim  couponmesh.Claim
	err    error
	reply  func(couponmesh.Claim, error)
}

// claimShare is the part of the caller's budget the coupon call may take:
// the rest is for recording the claim and the answer's way back.
const claimShare = 0.8

// claim admits the write and calls the coupon grain on a goroutine of its
// own, so that the mailbox goes on (a hot coupon answers slowly); the
// answer comes back as a claimed message, which records it.
func (g *grain) claim(ctx actor.Context, p actors.UserClaimCoupon, reply func(couponmesh.Claim, error)) {
	if err := g.admitWrite(); err != nil {
		reply(couponmesh.Claim{}, err)
		return
	}
	budget := g.Cfg.Call.Timeout
	if p.Budget > 0 {
		budget = min(budget, time.Duration(float64(p.Budget)*claimShare))
	}
	c, cfg, root, self, user := g.cluster, g.Cfg.Call, ctx.ActorSystem().Root, ctx.Self(), g.ID
	g.claiming++
	go func() {
		cctx, cancel := context.WithTimeout(context.Background(), budget)
		defer cancel()
		var cl couponmesh.Claim
		err := actors.Call(cctx, c, cfg, actors.KindCoupon, p.Coupon, actors.CouponClaim, actors.ClaimCoupon{User: user, RID: p.RID}, &cl)
		root.Send(self, &claimed{coupon: p.Coupon, claim: cl, err: err, reply: reply})
	}()
}

// record puts a claim the coupon grain made durable into the wallet and
// answers once that is durable too.
func (g *grain) record(m *claimed) {
	g.claiming--
	switch {
	case m.err != nil:
		m.reply(couponmesh.Claim{}, m.err)
	case g.M == nil:
		m.reply(couponmesh.Claim{}, actors.RecordClaimFailed(m.coupon, g.ID, couponmesh.ErrUnavailable))
	default:
		g.M.StartRecordClaim(context.Background(), m.claim, func(err error) {
			if err != nil {
				m.reply(couponmesh.Claim{}, actors.RecordClaimFailed(m.coupon, g.ID, err))
				return
			}
			m.reply(m.claim, nil)
		})
	}
}
