package user

import (
	"context"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors"
)

// Kind returns the cluster kind hosting user grains.
func Kind(cfg actors.GrainConfig) *cluster.Kind {
	cfg.Fill()
	return cluster.NewKind(actors.KindUser, actor.PropsFromProducer(func() actor.Actor {
		g := &grain{}
		g.Activation = actors.NewActivation(&cfg, actors.KindUser, func(ctx context.Context, id string) (*Machine, error) {
			m, err := Load(ctx, cfg.Store, id)
			if err == nil {
				m.journal.Observe = cfg.ObserveAppends()
				m.OnEntry = g.published
			}
			return m, err
		})
		return g
	}))
}

type grain struct {
	*actors.Activation[*Machine]
	ctx actor.Context // the context of the message being handled
}

func (g *grain) Receive(ctx actor.Context) {
	g.ctx = ctx
	defer func() { g.ctx = nil }()
	if req := g.Activation.Receive(ctx); req != nil {
		g.handle(ctx, req)
	}
}

// published pushes a new feed entry to the hubs of the user's sessions and
// schedules a snapshot.
func (g *grain) published(e couponmesh.FeedEntry) {
	if g.ctx == nil {
		return
	}
	g.Hubs.Push(g.ctx, actors.PushFeed, g.ID, couponmesh.FeedPush(e))
	g.ScheduleSnapshot(g.ctx)
}

func (g *grain) handle(ctx actor.Context, req *cluster.GrainRequest) {
	if ok, _ := g.Hubs.HandleHubRef(ctx, req, actors.UserAttach, actors.UserDetach); ok {
		return
	}
	m := g.M
	opCtx, cancel := g.OpContext()
	defer cancel()
	switch req.MessageTypeName {
	case actors.UserRecordClaim:
		var p actors.RecordClaim
		if actors.Unpack(ctx, req, &p) {
			_, err := m.RecordClaim(opCtx, p.Claim)
			actors.Respond(ctx, actors.Empty{}, err)
		}
	case actors.UserFollow, actors.UserUnfollow:
		var p actors.CouponRef
		if !actors.Unpack(ctx, req, &p) {
			return
		}
		var err error
		if req.MessageTypeName == actors.UserFollow {
			err = m.Follow(opCtx, p.Coupon)
		} else {
			err = m.Unfollow(opCtx, p.Coupon)
		}
		actors.Respond(ctx, actors.Empty{}, err)
	case actors.UserCouponChanged:
		var c couponmesh.Coupon
		if actors.Unpack(ctx, req, &c) {
			actors.Respond(ctx, actors.Empty{}, m.CouponChanged(opCtx, c))
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
