package coupon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors"
	"github.com/couponmesh/couponmesh/protocol"
)

// Kind returns the cluster kind hosting coupon grains.
func Kind(cfg actors.GrainConfig) *cluster.Kind {
	cfg.Fill()
	loads := newFollowerLoads(cfg.Store, cfg.OpTimeout)
	return cluster.NewKind(actors.KindCoupon, actor.PropsFromProducer(func() actor.Actor {
		g := &grain{loads: loads}
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
		g.Unchecked = unchecked
		g.Lazy = lazy
		return g
	}, actor.WithDispatcher(actors.Dispatcher())))
}

type grain struct {
	*actors.Activation[*Machine]
	cluster   *cluster.Cluster
	published int64  // the version last set in Cfg.Local (0: none)
	pubEpoch  uint64 // the Churn epoch it was validated at
	followers followers
	loads     *followerLoads // the node's, shared by its coupon grains
	presence  presence
	pushes    pushes
	// owed are the hubs that renewed a lease this activation did not know
	// before its state was loaded (lazy): they get the state once it is.
	owed map[string]struct{}
}

func (g *grain) Receive(ctx actor.Context) {
	if init, ok := ctx.Message().(*cluster.ClusterInit); ok {
		g.cluster = init.Cluster
	}
	if req := g.Activation.Receive(ctx); req != nil {
		g.handle(ctx, req)
	} else if r, ok := ctx.Message().(*actors.BatchResult); ok && g.M != nil {
		g.settle(r)
	}
	if g.M != nil {
		if ch := g.M.TakeChange(); ch.Applied() {
			g.changed(ctx, ch)
		}
		actors.Flush(ctx, g.M.Journal(), g.Cfg.OpTimeout)
	}
	g.payOwed(ctx)
	g.publishLocal()
	g.pushesAfter(ctx)
	g.presenceAfter(ctx)
	g.After(ctx)
}

// settle takes the outcome of a journal write: the requests whose entries
// are durable are answered (their callbacks); Receive then publishes the
// new version once for the whole batch.
func (g *grain) settle(r *actors.BatchResult) {
	opCtx, cancel := g.OpContext()
	defer cancel()
	g.M.Journal().Settle(opCtx, r)
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
	g.M.TakeChange() // published here, without telling followers (the activation that wrote it did)
	if !g.M.Exists() {
		return
	}
	g.push(ctx)
	g.publishLocal()
	g.ScheduleSnapshot(ctx)
}

// methods are the coupon grain's requests. Each answer is given after the
// state is published for local reads (publishLocal): a read that follows
// an acknowledged write sees it.
var methods = actors.NewMethods((*grain).publishLocal,
	actors.Handle(actors.CouponGet, (*grain).get),
	actors.HandleLater(actors.CouponCreate, (*grain).create),
	actors.HandleLater(actors.CouponUpdate, (*grain).update),
	actors.HandleLater(actors.CouponWithdraw, (*grain).withdraw),
	actors.HandleLater(actors.CouponClaim, (*grain).claim),
	actors.Handle(actors.CouponFollower, (*grain).follower),
	actors.HandleLater(actors.RemindMethod, (*grain).remind),
	actors.HandleLater(actors.CouponSubscribe, (*grain).subscribe),
	actors.Handle(actors.CouponUnsubscribe, (*grain).unsubscribe),
)

// handle runs a request. Requests are decided now and answered once
// durable (in a later message): the database work is bounded by the
// store's own timeouts and Cfg.OpTimeout of each write, not by this
// message.
func (g *grain) handle(ctx actor.Context, req *cluster.GrainRequest) {
	start := time.Now()
	methods.Serve(g, ctx, req)
	if d := time.Since(start); d > 200*time.Millisecond {
		g.Log.Warn("slow message", "method", req.MessageTypeName, "took", d)
	}
}

func (g *grain) get(actor.Context, actors.Empty) (couponmesh.Coupon, error) {
	c, err := g.M.Get()
	c.Watching = g.Hubs.Watching()
	return c, err
}

func (g *grain) create(_ actor.Context, p actors.CreateCoupon, reply func(couponmesh.Coupon, error)) {
	if err := g.setReminders(p.Spec, p.Principal.CanCreateCoupons() && p.Spec.Validate(true, time.Now()) == nil); err != nil {
		reply(couponmesh.Coupon{}, err)
		return
	}
	g.M.StartCreate(context.Background(), p.Principal, p.Spec, p.RID, reply)
}

func (g *grain) update(_ actor.Context, p actors.UpdateCoupon, reply func(couponmesh.Coupon, error)) {
	m := g.M
	if err := g.setReminders(p.Spec, m.Exists() && p.Principal.CanEdit(m.Coupon()) && p.Spec.Validate(false, time.Now()) == nil); err != nil {
		reply(couponmesh.Coupon{}, err)
		return
	}
	m.StartUpdate(context.Background(), p.Principal, p.Spec, reply)
}

func (g *grain) withdraw(_ actor.Context, p actors.WithdrawCoupon, reply func(couponmesh.Coupon, error)) {
	g.M.StartWithdraw(context.Background(), p.Principal, reply)
}

// unchecked are the methods a coupon grain serves before it validates its
// state after churn (actors.Activation.Unchecked): a reminder's wake-up (an
// append fenced by its key: Machine.StartWake), a hub's registration,
// renewal or unregistration (no state in the answer; subscribe validates
// as it says) and a follower change. At a node's death every grain on the
// members that stayed used to read its journal before its expiry and
// before its hubs' renewals, which the membership change triggers for
// every coupon at once: a point read per coupon on the database while the
// expiries' appends waited behind them (`bench timers`, three nodes, one
// killed).
func unchecked(method string) bool {
	switch method {
	case actors.RemindMethod, actors.CouponSubscribe, actors.CouponUnsubscribe, actors.CouponFollower:
		return true
	}
	return false
}

func (g *grain) remind(ctx actor.Context, r couponmesh.Reminder, reply func(actors.Empty, error)) {
	g.M.StartWake(context.Background(), r, g.Stale(), func(err error) {
		if !errors.Is(err, ErrUnchecked) {
			reply(actors.Empty{}, err)
			return
		}
		// Nothing to do by a state not validated since churn: validate it
		// and decide again (rare: a reminder whose time moved or passed).
		// Not while entries are pending (a write in flight makes the
		// validation wait for its outcome): the shard tries again soon.
		if !g.M.Journal().Idle() {
			reply(actors.Empty{}, fmt.Errorf("coupon %s: %w; journal busy, retry", g.ID, ErrUnchecked))
			return
		}
		if !g.Check(ctx) {
			reply(actors.Empty{}, g.ErrUnchecked())
			return
		}
		g.M.StartWake(context.Background(), r, false, func(err error) { reply(actors.Empty{}, err) })
	})
}

func (g *grain) follower(_ actor.Context, p actors.FollowerChange) (actors.Empty, error) {
	if p.Follow {
		g.followers.follow(p.User)
	} else {
		g.followers.unfollow(p.User)
	}
	return actors.Empty{}, nil
}

// claim is answered from memory at once when it can be, else once the
// claim's entry is durable (the pipeline: actors.Journal).
func (g *grain) claim(_ actor.Context, p actors.ClaimCoupon, reply func(couponmesh.Claim, error)) {
	g.M.StartClaim(context.Background(), p.User, p.RID, func(cl couponmesh.Claim, err error) {
		result := "ok"
		if err != nil {
			result = string(couponmesh.ErrorCode(err))
		}
		g.Cfg.Metrics.Claims.WithLabelValues(result).Inc()
		reply(cl, err)
	})
}

// lazy names the methods served before the state is loaded
// (actors.Activation.Lazy): a hub's registration, renewal and
// unregistration only set or drop a lease. One that activates the grain
// (it moved, or was passivated) queues the load (LoadLater): a renewing
// hub gets the state, and the watchers the presence count, once it is
// loaded.
func lazy(method string) bool {
	return method == actors.CouponSubscribe || method == actors.CouponUnsubscribe
}

// payOwed pushes the state to the hubs owed it (subscribe before the load),
// once it is loaded and the deferred load has had its turn (a wake-up
// that loaded it first pushes its change to every hub, owed ones too).
func (g *grain) payOwed(ctx actor.Context) {
	if len(g.owed) == 0 || !g.Serving() || g.LoadQueued() {
		return
	}
	if g.M.Exists() {
		frame := protocol.CouponPush(g.M.Coupon())
		for addr := range g.owed {
			actors.PushTo(ctx, addr, actors.PushCoupon, g.ID, frame)
		}
	}
	clear(g.owed)
}

// subscribe registers or renews a hub (with its presence count) and, when
// the hub may have missed changes, pushes it the coupon after the answer.
//
// After churn it validates the state first (pushing what another
// activation wrote to every hub: Activation.OnCaughtUp) when it pushes the
// state to a hub it did not know, and on a known hub's renewal once the
// cluster is settled: that renewal is how a coupon no client asks for
// catches up with a write that landed late (actors.Churn). Not inside the
// unsettled window: a validation there is repeated after it anyway, and at
// a node's death the hubs renew every coupon at once, inside it.
func (g *grain) subscribe(ctx actor.Context, p actors.HubRef, reply func(actors.Empty, error)) {
	g.Cfg.Metrics.PresenceReceived.Inc()
	if !g.Loaded() {
		if addr := g.Hubs.Subscribe(p); addr != "" {
			if g.owed == nil {
				g.owed = make(map[string]struct{})
			}
			g.owed[addr] = struct{}{}
		}
		reply(actors.Empty{}, nil)
		g.LoadLater(ctx) // the owed hubs and the presence count wait for it
		return
	}
	push := p.Refresh && !g.Hubs.Known(p.Address)
	if (push || (p.Refresh && g.Stale() && g.Cfg.Churn.UnsettledFor() == 0)) && !g.Check(ctx) {
		reply(actors.Empty{}, g.ErrUnchecked()) // the hub renews again later
		return
	}
	addr := g.Hubs.Subscribe(p)
	reply(actors.Empty{}, nil)
	if addr != "" && g.M.Exists() {
		actors.PushTo(ctx, addr, actors.PushCoupon, g.ID, protocol.CouponPush(g.M.Coupon()))
	}
}

func (g *grain) unsubscribe(ctx actor.Context, p actors.HubRef) (actors.Empty, error) {
	g.Cfg.Metrics.PresenceReceived.Inc()
	g.Hubs.Unsubscribe(p)
	delete(g.owed, p.Address)
	g.LoadLater(ctx) // unloaded (lazy): the presence count is pushed once it is
	return actors.Empty{}, nil
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

// changed publishes a new version (what the machine reports the entries
// applied changed): one push per subscribed hub (a change of the claimed
// count alone at most once per claim push interval: pushes.go), a
// snapshot, and feed notices to followers when more than the claimed
// count changed. An expiry alone is not snapshotted now: browse finds an
// expired coupon by its expiry time (persistence/mongodb statusFilter),
// and a snapshot only saves replay, so the next change or the passivation
// writes it. A write per coupon, on the grain's goroutine, at a burst of
// expiries (`bench timers`) held up the grain's next messages and the
// database's journal appends.
func (g *grain) changed(ctx actor.Context, ch Change) {
	if ch.OnlyClaims() {
		g.pushClaims(ctx)
		g.ScheduleSnapshot(ctx)
		return
	}
	g.push(ctx)
	after := g.M.Coupon()
	if !ch.OnlyExpiry() {
		g.SnapshotNow()
	}
	if ch.Created {
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
		return g.loads.followers(ctx, c.ID)
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
