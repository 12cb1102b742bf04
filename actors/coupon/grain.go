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
				g.backfill(m.Backfill())
			}
			return m, err
		})
		if cfg.Local != nil {
			g.OnLeave = func() { cfg.Local.Delete(g, g.ID) }
		}
		g.Busy = func() bool { return g.M != nil && !g.M.Journal().Idle() }
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
	} else if r, ok := ctx.Message().(*actors.BatchResult); ok && g.M != nil {
		g.settle(ctx, r)
	}
	if g.M != nil {
		actors.Flush(ctx, g.M.Journal(), g.Cfg.OpTimeout)
	}
	g.publishLocal()
	g.presenceAfter(ctx)
	g.After(ctx)
}

// settle takes the outcome of a journal write: the requests whose entries
// are durable are answered (their callbacks), and the new version is
// published once for the whole batch.
func (g *grain) settle(ctx actor.Context, r *actors.BatchResult) {
	m := g.M
	opCtx, cancel := g.OpContext()
	defer cancel()
	before, marks := m.Coupon(), m.marks()
	m.Journal().Settle(opCtx, r)
	if after := m.Coupon(); after.Version != before.Version {
		g.changed(ctx, before, after, marks != m.marks())
	}
}

// respond publishes the state for local reads, then replies: a read that
// follows an acknowledged write sees it.
func (g *grain) respond(ctx actor.Context, v any, err error) {
	g.publishLocal()
	actors.Respond(ctx, v, err)
}

// answerer is actors.Answerer publishing the state for local reads before
// each answer (as respond does), typed for T.
func answerer[T any](g *grain, ctx actor.Context) (answer func(T, error), handled func()) {
	a, handled := actors.Answerer(ctx, g.publishLocal)
	return func(v T, err error) { a(v, err) }, handled
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
	// Requests are decided now and answered once durable (in a later
	// message): the database work is bounded by the store's own timeouts
	// and Cfg.OpTimeout of each write, not by this message.
	start := time.Now()
	defer func() {
		if d := time.Since(start); d > 200*time.Millisecond {
			g.Log.Warn("slow message", "method", req.MessageTypeName, "took", d)
		}
	}()
	before, marks := m.Coupon(), m.marks()
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
		answer, handled := answerer[couponmesh.Coupon](g, ctx)
		if err := g.setReminders(p.Spec, p.Principal.CanCreateCoupons() && p.Spec.Validate(true, time.Now()) == nil); err != nil {
			answer(couponmesh.Coupon{}, err)
		} else {
			m.StartCreate(context.Background(), p.Principal, p.Spec, p.RID, answer)
		}
		handled()
	case actors.CouponUpdate:
		var p actors.UpdateCoupon
		if !actors.Unpack(ctx, req, &p) {
			return
		}
		answer, handled := answerer[couponmesh.Coupon](g, ctx)
		if err := g.setReminders(p.Spec, m.Exists() && p.Principal.CanEdit(m.Coupon()) && p.Spec.Validate(false, time.Now()) == nil); err != nil {
			answer(couponmesh.Coupon{}, err)
		} else {
			m.StartUpdate(context.Background(), p.Principal, p.Spec, answer)
		}
		handled()
	case actors.CouponWithdraw:
		var p actors.WithdrawCoupon
		if !actors.Unpack(ctx, req, &p) {
			return
		}
		answer, handled := answerer[couponmesh.Coupon](g, ctx)
		m.StartWithdraw(context.Background(), p.Principal, answer)
		handled()
	case actors.RemindMethod:
		var r couponmesh.Reminder
		if !actors.Unpack(ctx, req, &r) {
			return
		}
		answer, handled := answerer[actors.Empty](g, ctx)
		m.StartWake(context.Background(), r, func(err error) { answer(actors.Empty{}, err) })
		handled()
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
		answer, handled := answerer[couponmesh.Claim](g, ctx)
		// Answered from memory at once when it can be, else once the
		// claim's entry is durable (the pipeline: actors.Journal).
		m.StartClaim(context.Background(), p.User, p.RID, func(cl couponmesh.Claim, err error) {
			result := "ok"
			if err != nil {
				result = string(couponmesh.ErrorCode(err))
			}
			g.Cfg.Metrics.Claims.WithLabelValues(result).Inc()
			answer(cl, err)
		})
		handled()
	default:
		actors.Unknown(ctx, req)
		return
	}
	if after := m.Coupon(); after.Version != before.Version {
		g.changed(ctx, before, after, marks != m.marks())
	}
}

// setReminders makes the reminders of spec's start and expiry durable
// before the change that needs them is committed (when allowed: the change
// may be made; else the machine refuses it and no reminder is needed).
func (g *grain) setReminders(spec couponmesh.CouponSpec, allowed bool) error {
	rs := Reminders(g.ID, spec)
	if len(rs) == 0 || !allowed {
		return nil
	}
	ctx, cancel := g.OpContext()
	defer cancel()
	if err := actors.SetReminders(ctx, g.cluster, g.Cfg, rs...); err != nil {
		g.Log.Warn("reminders not set", "err", err)
		return couponmesh.Errorf(couponmesh.CodeUnavailable, "coupon %s: its start and expiry timers cannot be stored now, retry", g.ID)
	}
	return nil
}

// changed publishes a new version: one push per subscribed hub, a snapshot,
// and feed notices to followers when more than the claimed count changed
// (transition: a started or expired entry was applied).
func (g *grain) changed(ctx actor.Context, before, after couponmesh.Coupon, transition bool) {
	g.Hubs.Push(ctx, actors.PushCoupon, g.ID, couponmesh.CouponPush(after))
	onlyClaims := before.Version > 0 && !transition && before.Title == after.Title && before.Description == after.Description &&
		before.Discount == after.Discount && before.Quantity == after.Quantity &&
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
