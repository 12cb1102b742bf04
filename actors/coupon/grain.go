package coupon

import (
	"context"
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
		g := &grain{}
		g.Activation = actors.NewActivation(&cfg, actors.KindCoupon, func(ctx context.Context, id string) (*Machine, error) {
			m, err := Load(ctx, cfg.Store, id, nil)
			if err == nil {
				m.journal.Observe = cfg.ObserveAppends()
				m.journal.Superseded = g.Supersede
			}
			return m, err
		})
		if cfg.Local != nil {
			g.OnLeave = func() { cfg.Local.Delete(g, g.ID) }
		}
		g.OnCaughtUp = g.caughtUp
		return g
	}))
}

type grain struct {
	*actors.Activation[*Machine]
	cluster   *cluster.Cluster
	published int64  // the version last set in Cfg.Local (0: none)
	pubEpoch  uint64 // the Churn epoch it was validated at
	followers followers
	presence  presence
}

func (g *grain) Receive(ctx actor.Context) {
	if init, ok := ctx.Message().(*cluster.ClusterInit); ok {
		g.cluster = init.Cluster
	}
	if req := g.Activation.Receive(ctx); req != nil {
		g.handle(ctx, req)
	}
	g.publishLocal()
	g.presenceAfter(ctx)
	g.After(ctx)
}

// respond publishes the state for local reads, then replies: a read that
// follows an acknowledged write sees it.
func (g *grain) respond(ctx actor.Context, v any, err error) {
	g.publishLocal()
	actors.Respond(ctx, v, err)
}

// publishLocal gives Cfg.Local the state this activation committed last.
// It runs before every reply (respond) and after every message.
func (g *grain) publishLocal() {
	if g.Cfg.Local == nil || !g.Serving() || !g.M.Exists() || (g.M.Seq() == g.published && g.Validated() == g.pubEpoch) {
		return
	}
	g.Cfg.Local.Set(g, g.M.Coupon(), g.Validated())
	g.published, g.pubEpoch = g.M.Seq(), g.Validated()
}

// caughtUp publishes what a validation after churn applied (entries another
// activation wrote): to the subscribed hubs, local reads and the snapshot.
func (g *grain) caughtUp(ctx actor.Context) {
	if !g.M.Exists() {
		return
	}
	g.Hubs.Push(ctx, actors.PushCoupon, g.ID, couponmesh.CouponPush(g.M.Coupon()))
	g.publishLocal()
	g.ScheduleSnapshot(ctx)
}

func (g *grain) handle(ctx actor.Context, req *cluster.GrainRequest) {
	m := g.M
	if ok, addr := g.Hubs.HandleHubRef(ctx, req, actors.CouponSubscribe, actors.CouponUnsubscribe); ok {
		g.Cfg.Metrics.PresenceReceived.Inc()
		if addr != "" && m.Exists() {
			actors.PushTo(ctx, addr, actors.PushCoupon, g.ID, couponmesh.CouponPush(m.Coupon()))
		}
		return
	}
	opCtx, cancel := g.OpContext()
	defer cancel()
	start := time.Now()
	defer func() {
		if d := time.Since(start); d > 200*time.Millisecond {
			g.Log.Warn("slow message", "method", req.MessageTypeName, "took", d)
		}
	}()
	before := m.Coupon()
	switch req.MessageTypeName {
	case actors.CouponGet:
		c, err := m.Get()
		c.Watching = g.Hubs.Watching()
		g.respond(ctx, c, err)
		return
	case actors.CouponCreate:
		var p actors.CreateCoupon
		if !actors.Unpack(ctx, req, &p) {
			return
		}
		if err := g.setReminders(opCtx, p.Spec, p.Principal.CanCreateCoupons() && p.Spec.Validate(true, time.Now()) == nil); err != nil {
			g.respond(ctx, nil, err)
			return
		}
		c, err := m.Create(opCtx, p.Principal, p.Spec, p.RID)
		g.respond(ctx, c, err)
	case actors.CouponUpdate:
		var p actors.UpdateCoupon
		if !actors.Unpack(ctx, req, &p) {
			return
		}
		if err := g.setReminders(opCtx, p.Spec, m.Exists() && p.Principal.CanEdit(m.Coupon()) && p.Spec.Validate(false, time.Now()) == nil); err != nil {
			g.respond(ctx, nil, err)
			return
		}
		c, err := m.Update(opCtx, p.Principal, p.Spec)
		g.respond(ctx, c, err)
	case actors.CouponWithdraw:
		var p actors.WithdrawCoupon
		if !actors.Unpack(ctx, req, &p) {
			return
		}
		c, err := m.Withdraw(opCtx, p.Principal)
		g.respond(ctx, c, err)
	case actors.RemindMethod:
		var r couponmesh.Reminder
		if !actors.Unpack(ctx, req, &r) {
			return
		}
		g.respond(ctx, actors.Empty{}, m.Wake(opCtx, r))
	case actors.CouponFollower:
		var p actors.FollowerChange
		if !actors.Unpack(ctx, req, &p) {
			return
		}
		if p.Follow {
			g.followers.follow(p.User)
		} else {
			g.followers.unfollow(p.User)
		}
		g.respond(ctx, actors.Empty{}, nil)
		return
	case actors.CouponClaim:
		var p actors.ClaimCoupon
		if !actors.Unpack(ctx, req, &p) {
			return
		}
		cl, err := m.Claim(opCtx, p.User, p.RID)
		result := "ok"
		if err != nil {
			result = string(couponmesh.ErrorCode(err))
		}
		g.Cfg.Metrics.Claims.WithLabelValues(result).Inc()
		g.respond(ctx, cl, err)
	default:
		actors.Unknown(ctx, req)
		return
	}
	if after := m.Coupon(); after.Version != before.Version {
		g.changed(ctx, before, after)
	}
}

// setReminders makes the reminders of spec's start and expiry durable
// before the change that needs them is committed (when allowed: the change
// may be made; else the machine refuses it and no reminder is needed).
func (g *grain) setReminders(ctx context.Context, spec couponmesh.CouponSpec, allowed bool) error {
	rs := Reminders(g.ID, spec)
	if len(rs) == 0 || !allowed {
		return nil
	}
	if err := actors.SetReminders(ctx, g.cluster, g.Cfg, rs...); err != nil {
		g.Log.Warn("reminders not set", "err", err)
		return couponmesh.Errorf(couponmesh.CodeUnavailable, "coupon %s: its start and expiry timers cannot be stored now, retry", g.ID)
	}
	return nil
}

// changed publishes a new version: one push per subscribed hub, a snapshot,
// and feed notices to followers when more than the claimed count changed.
func (g *grain) changed(ctx actor.Context, before, after couponmesh.Coupon) {
	g.Hubs.Push(ctx, actors.PushCoupon, g.ID, couponmesh.CouponPush(after))
	onlyClaims := before.Version > 0 && before.Claimed != after.Claimed && before.Title == after.Title &&
		before.Description == after.Description && before.Discount == after.Discount && before.Quantity == after.Quantity &&
		before.StartsAt.Equal(after.StartsAt) && before.ExpiresAt.Equal(after.ExpiresAt) && before.Status == after.Status
	if onlyClaims {
		g.ScheduleSnapshot(ctx)
		return
	}
	g.SnapshotNow()
	if before.Version == 0 {
		g.followers.none()
	} else {
		go g.notifyFollowers(after)
	}
}

// notifyFollowers tells each follower's user grain about the change, a few
// at a time, off the grain's mailbox.
func (g *grain) notifyFollowers(c couponmesh.Coupon) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	users, err := g.followers.list(ctx, func(ctx context.Context) ([]string, error) {
		return g.Cfg.Store.Followers(ctx, c.ID)
	})
	if err != nil {
		g.Log.Warn("followers lookup failed", "err", err)
		return
	}
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, u := range users {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := actors.Call(ctx, g.cluster, g.Cfg.Call, actors.KindUser, u, actors.UserCouponChanged, c, nil); err != nil {
				g.Log.Warn("follower notice failed", "user", u, "err", err)
			}
		})
	}
	wg.Wait()
}
