package coupon

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/couponmesh/couponmesh/actors"
	"github.com/couponmesh/couponmesh/protocol"
)

// Presence: the hubs report their node's count of distinct signed-in
// shoppers watching the coupon with their registrations and renewals
// (actors.HubRef.Watching, kept per hub by actors.Subscribers, dropped
// with the hub's lease). The grain sums them and pushes
// {"push":"presence",…} to its hubs at most once per PresenceInterval and
// only when the sum changed since the last push; reads carry the sum of
// the moment (Coupon.Watching).
//
// A crowd (presenceCrowd watchers or more) costs a frame per watcher per
// push, and while it gathers its count changes all the time: then the
// grain pushes at most once per PresenceInterval for every presenceCrowd
// watchers (at most presenceMaxInterval apart), and the exact count as
// soon as it stood still for presenceQuiet (still PresenceInterval after
// the push before).
const (
	// PresenceInterval is the shortest time between two presence pushes
	// of one coupon.
	PresenceInterval = time.Second
	// presenceSettle holds a new activation's first presence push until
	// the hubs had time to renew after the change that activated it (they
	// renew topologySettle after a topology change), so that it does not
	// push the count of the first hub that happened to renew.
	presenceSettle = time.Second
	// presenceCrowd, presenceQuiet, presenceMaxInterval: the pushes of a
	// crowd (see above). presenceQuiet exceeds the hubs' report debounce
	// (500 ms), so that a stream of reports does not look still.
	presenceCrowd       = 1000
	presenceQuiet       = 750 * time.Millisecond
	presenceMaxInterval = 10 * time.Second
)

// presence is a coupon grain's presence state. Owned by the grain.
type presence struct {
	started  time.Time // activation
	pushed   int       // the count last pushed (a new activation: 0, what no push announced)
	pushedAt time.Time
	local    int       // the count last given to LocalCoupons
	seen     int       // the count at the last message
	movedAt  time.Time // when it last changed
	due      time.Time // when the pending presenceTick fires (zero: none)
	timer    *time.Timer
}

// presenceTick makes the grain look at its presence count again: a push
// was held back, or a counting hub's lease runs out.
type presenceTick struct{}

// presenceAfter runs after every message: it publishes the current count
// for reads, pushes it when it changed and the interval allows, and
// schedules a presenceTick for what it could not do now.
func (g *grain) presenceAfter(ctx actor.Context) {
	p := &g.presence
	switch ctx.Message().(type) {
	case *actor.Stopping, *actor.Stopped:
		if p.timer != nil {
			p.timer.Stop()
		}
		return
	case presenceTick:
		p.due, p.timer = time.Time{}, nil
	}
	now := time.Now()
	if p.started.IsZero() {
		p.started = now
	}
	w := g.Hubs.Watching()
	if w != p.local && (g.Cfg.Local == nil || g.Cfg.Local.SetWatching(g, g.ID, w)) {
		p.local = w
	}
	if w != p.seen {
		p.seen, p.movedAt = w, now
	}
	var next time.Time
	if w != p.pushed {
		at := maxTime(p.pushedAt.Add(PresenceInterval), p.started.Add(presenceSettle))
		if crowd := max(w, p.pushed); crowd >= presenceCrowd {
			storm := p.pushedAt.Add(min(time.Duration(crowd/presenceCrowd)*PresenceInterval, presenceMaxInterval))
			still := p.movedAt.Add(presenceQuiet)
			if still.Before(storm) {
				storm = still
			}
			at = maxTime(at, storm)
		}
		serving := g.Serving() && g.M.Exists()
		if !now.Before(at) && serving {
			g.Hubs.Push(ctx, actors.PushCoupon, g.ID, protocol.PresencePush(g.ID, w))
			g.Cfg.Metrics.PresencePushes.Add(float64(g.Hubs.Len()))
			p.pushed, p.pushedAt = w, now
		} else if serving {
			next = at
		}
	}
	if exp := g.Hubs.NextCountExpiry(); !exp.IsZero() && (next.IsZero() || exp.Before(next)) {
		next = exp.Add(time.Millisecond)
	}
	if next.IsZero() || (!p.due.IsZero() && !next.Before(p.due)) {
		return
	}
	if p.timer != nil {
		p.timer.Stop()
	}
	self, root := ctx.Self(), ctx.ActorSystem().Root
	p.due = next
	p.timer = time.AfterFunc(time.Until(next), func() { root.Send(self, presenceTick{}) })
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
