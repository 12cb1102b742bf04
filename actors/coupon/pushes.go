package coupon

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/couponmesh/couponmesh/actors"
	"github.com/couponmesh/couponmesh/protocol"
)

// Coupon pushes of a watched coupon. Every push costs a frame per watching
// session, written by the node that serves the claims (about 10 µs of its
// CPU each: `bench fanout`). During a drop a hot coupon settles a batch of
// claims every few tens of milliseconds; pushed after every batch, its
// 5,000 watchers got 55,000 frames in a 2 s drop, and the drop took
// 0.4–0.65 s more of the node's CPU than the same claims over 200 coupons
// (docs/BENCHMARKS.md, flash sale).
//
// So a change of the claimed count alone is pushed at most once per
// claimPushInterval(watchers, budget): a coupon's claim pushes cost at most
// about budget frames a second (GrainConfig.ClaimPushBudget, default
// DefaultClaimPushBudget), and are at most claimPushMaxInterval
// apart (then the newest state goes out, from a timer). Every other change
// (created, terms, status: the sale's last unit, withdrawn, expired) is
// pushed at once, so watchers never wait for a state that ends the sale.
// Reads (get, LocalCoupons) always see the newest state.
const (
	// DefaultClaimPushBudget is the frames per second a coupon's
	// claim-only pushes may cost, summed over its watchers.
	DefaultClaimPushBudget = 10000
	// claimPushMaxInterval bounds the time a claim-only change waits for
	// its push.
	claimPushMaxInterval = 500 * time.Millisecond
)

// claimPushInterval is the shortest time between two claim-only pushes of
// a coupon watched by watchers sessions, for a budget of frames per second
// (0: DefaultClaimPushBudget); 0: no wait.
func claimPushInterval(watchers, budget int) time.Duration {
	if watchers <= 0 {
		return 0
	}
	if budget <= 0 {
		budget = DefaultClaimPushBudget
	}
	return min(time.Duration(watchers)*time.Second/time.Duration(budget), claimPushMaxInterval)
}

// pushes is a coupon grain's push state. Owned by the grain.
type pushes struct {
	version int64       // the version last pushed to the hubs (0: none)
	at      time.Time   // when
	held    bool        // a claim-only change waits for pushTick
	timer   *time.Timer // fires pushTick while held
}

// pushTick makes the grain push a claim-only change it held back.
type pushTick struct{}

// push sends the coupon's state to every hub now.
func (g *grain) push(ctx actor.Context) {
	c := g.M.Coupon()
	g.Hubs.Push(ctx, actors.PushCoupon, g.ID, protocol.CouponPush(c))
	clear(g.owed) // they had it now
	p := &g.pushes
	p.version, p.at, p.held = c.Version, time.Now(), false
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
}

// pushClaims pushes a change of the claimed count now, or holds it until
// the coupon's claim push interval has passed since the last push.
func (g *grain) pushClaims(ctx actor.Context) {
	p := &g.pushes
	at := p.at.Add(claimPushInterval(g.Hubs.Watching(), g.Cfg.ClaimPushBudget))
	now := time.Now()
	if !now.Before(at) {
		g.push(ctx)
		return
	}
	p.held = true
	if p.timer == nil {
		self, root := ctx.Self(), ctx.ActorSystem().Root
		p.timer = time.AfterFunc(at.Sub(now), func() { root.Send(self, pushTick{}) })
	}
}

// pushesAfter runs after every message: it pushes a held change on its
// tick, or when the grain stops (the hubs' next activation would push it
// only once they renew).
func (g *grain) pushesAfter(ctx actor.Context) {
	p := &g.pushes
	switch msg := ctx.Message().(type) {
	case *actor.Stopping, *actor.Stopped:
		if _, stopping := msg.(*actor.Stopping); stopping && p.held && g.M != nil && g.M.Exists() && g.M.Seq() > p.version {
			g.push(ctx)
		}
		if p.timer != nil {
			p.timer.Stop()
			p.timer = nil
		}
		p.held = false
	case pushTick:
		p.timer = nil
		switch {
		case !p.held || g.M == nil || !g.M.Exists() || g.M.Seq() <= p.version:
			p.held = false
		case g.Serving():
			g.push(ctx)
		default:
			// Validating against the journal after churn: look again
			// later rather than lose the count.
			self, root := ctx.Self(), ctx.ActorSystem().Root
			p.timer = time.AfterFunc(claimPushMaxInterval, func() { root.Send(self, pushTick{}) })
		}
	}
}
