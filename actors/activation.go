package actors

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/couponmesh/couponmesh"
)

// State is what a grain's state machine offers the shared lifecycle.
type State interface {
	Seq() int64
	SnapshotDue() bool
	WriteSnapshot(ctx context.Context) error
	// Validate brings the state up to what is durable (for a journaled
	// kind, Journal.Validate: entries another activation appended) and
	// reports how many changes it applied. The Activation calls it after
	// cluster churn, before the grain answers again; an error means the
	// state cannot be vouched for now.
	Validate(ctx context.Context) (int, error)
}

// Activation is the lifecycle the coupon and user grains share: identity,
// loading from the journal (retried on the next message when the database
// fails), passivation when idle and no hub is subscribed, and snapshots
// (debounced, and on stop). Owned by one grain; not safe for concurrent use.
type Activation[M State] struct {
	Cfg  *GrainConfig
	Kind string
	ID   string
	Log  *slog.Logger
	Hubs Subscribers
	M    M // valid once Loaded

	loaded      bool
	load        func(ctx context.Context, id string) (M, error)
	activatedAt time.Time
	recent      recentRing // the last requests handled, for ActorInspect
	snapTimer   *time.Timer
	idle        idleTimer
	snapSince   time.Time   // when the snapshot snapTimer is for was first due to be scheduled
	superseded  bool        // another activation wrote to the journal: step aside
	leaving     bool        // passivating: requests are turned away until the mailbox is quiet
	validated   uint64      // the Churn epoch the state was last loaded or validated at
	revalidate  *time.Timer // set while a stale state waits to read the journal again
	staleFor    int         // revalidations in a row (backoff)

	// OnLeave, when set, runs when the grain starts to leave and when it
	// stops (so at least once).
	OnLeave func()
	// OnCaughtUp, when set, runs after a validation applied changes that
	// another activation made: the grain publishes its new state.
	OnCaughtUp func(ctx actor.Context)
	// Busy, when set, reports whether requests wait on a journal write in
	// flight: a leaving grain stops only once it is false, so that their
	// answers are not lost with the mailbox.
	Busy func() bool
	// Unchecked, when set, names the methods that the grain serves before
	// its state is validated after churn (see validate): those whose
	// answer carries no state (a hub's renewal of a known lease) or whose
	// outcome is a journal append, fenced by its unique key whatever the
	// state (a reminder's wake-up). Such a method calls Check before it
	// answers anything from its state.
	Unchecked func(method string) bool
	// Lazy, when set, names the methods the grain serves before its state
	// is loaded (they must not touch M: a hub's renewal, which only sets a
	// lease). Such a grain does not load when it activates but at its
	// first other request, or when LoadLater's turn comes.
	Lazy func(method string) bool
	lazy bool // a deferred load is queued (LoadLater)
}

// deferredLoads bounds the deferred loads (Activation.LoadLater) running
// at once on a node, per kind.
const deferredLoads = 8

// loadTick makes a grain load its state now (LoadLater); the grain answers
// it when done.
type loadTick struct{}

// LeaveMethod is the request (a cluster.GrainRequest with this method and
// no payload) that makes a grain passivate without dropping requests; the
// placement actor sends it to the grains its node no longer owns.
const LeaveMethod = "couponmesh.leave"

// leaveQuiet is how long a leaving grain waits without messages before it
// stops.
const leaveQuiet = 200 * time.Millisecond

// NewActivation returns the lifecycle of one grain of kind, whose state load
// reads.
func NewActivation[M State](cfg *GrainConfig, kind string, load func(ctx context.Context, id string) (M, error)) *Activation[M] {
	return &Activation[M]{Cfg: cfg, Kind: kind, load: load, Hubs: Subscribers{Lease: cfg.HubLease}}
}

type snapshotTick struct{}

// idleTimer passivates a grain after a quiet period. protoactor's
// ReceiveTimeout is not used: its timer goroutine writes the actor's
// context while the actor invokes a message that arrives as it fires (a
// data race under -race), and once fired it stays off until set again, so a
// grain watched by a hub at that moment never passivated after the hub
// left. The timer only sends idleTick; the grain counts its messages and
// acts once a whole period went by without any, so it acts after one to two
// periods of quiet.
type idleTimer struct {
	t      *time.Timer
	period time.Duration
	seen   uint64 // messages received
	mark   uint64 // seen when the timer was last armed
}

// idleTick is the idle timer's message; it is not activity.
type idleTick struct{}

// arm makes the timer tick after period (again), from now.
func (it *idleTimer) arm(ctx actor.Context, period time.Duration) {
	it.period, it.mark = period, it.seen
	if it.t == nil {
		self, root := ctx.Self(), ctx.ActorSystem().Root
		it.t = time.AfterFunc(period, func() { root.Send(self, idleTick{}) })
		return
	}
	it.t.Reset(period)
}

// quiet reports, at an idleTick, whether no message came for a whole
// period; if one did, it arms the timer again.
func (it *idleTimer) quiet(ctx actor.Context) bool {
	if it.seen != it.mark {
		it.arm(ctx, it.period)
		return false
	}
	return true
}

func (it *idleTimer) stop() {
	if it.t != nil {
		it.t.Stop()
	}
}

// revalidateTick makes a grain whose state is Stale read its journal again.
type revalidateTick struct{}

// Stale is what a State may also offer: true while entries after its seq
// may be durable without being applied (a write whose outcome was unknown
// and a journal that could not be read then). The Activation then validates
// it again, with a backoff, until it is current: the grain's subscribers get
// its final state without waiting for another request.
type Stale interface{ Stale() bool }

// revalidateAfter is the first delay before a stale state reads its journal
// again (doubling up to 8 times as much while the database does not answer).
const revalidateAfter = 250 * time.Millisecond

// Receive handles the lifecycle messages and the methods every grain has
// (ActorInspect, ActorPassivate, ActorPing). For any other grain request it
// returns the request once the state is loaded (answering unavailable itself
// when it cannot be), else nil. Every request but ActorInspect is recorded
// (method, time, duration, outcome) until After.
func (a *Activation[M]) Receive(ctx actor.Context) *cluster.GrainRequest {
	msg := ctx.Message()
	if _, tick := msg.(idleTick); !tick {
		a.idle.seen++
	}
	switch msg := msg.(type) {
	case *cluster.ClusterInit:
		a.ID = msg.Identity.Identity
		a.activatedAt = time.Now()
		a.Log = a.Cfg.Log.With("kind", a.Kind, "id", a.ID)
		a.Cfg.Metrics.Activations.WithLabelValues(a.Kind).Inc()
		if a.Lazy == nil {
			a.ensureLoaded("request")
		}
		a.idle.arm(ctx, a.Cfg.PassivateAfter)
	case loadTick:
		a.lazy = false
		if !a.leaving {
			a.ensureLoaded("deferred")
		}
		ctx.Respond(Empty{})
	case idleTick:
		if !a.idle.quiet(ctx) {
			return nil
		}
		switch {
		case a.leaving && a.Busy != nil && a.Busy():
			a.idle.arm(ctx, leaveQuiet) // look again after the write
		case a.leaving:
			ctx.Stop(ctx.Self()) // the mailbox is quiet: nothing is dropped
		case a.Hubs.Len() == 0:
			a.Leave(ctx, "idle")
		default:
			a.idle.arm(ctx, a.Cfg.PassivateAfter) // watched: look again later
		}
	case *actor.Stopping:
		a.idle.stop()
		if a.OnLeave != nil {
			a.OnLeave()
		}
		if a.snapTimer != nil {
			a.snapTimer.Stop()
		}
		if a.revalidate != nil {
			a.revalidate.Stop()
		}
		a.snapshot()
	case snapshotTick:
		a.snapTimer = nil
		a.onSnapshotTick(ctx)
	case revalidateTick:
		a.revalidate = nil
		if a.Serving() {
			a.validateNow(ctx, "stale")
		}
	case *cluster.ClusterTopology:
		// Sent by the placement actor when members left: their hubs are gone.
		for _, m := range msg.Left {
			a.Hubs.Remove(m.Address())
		}
	case *localRequest: // a request from this node (local_call.go)
		return a.request(ctx, msg.req)
	case *cluster.GrainRequest:
		return a.request(ctx, msg)
	}
	return nil
}

// request handles the grain request msg (Receive).
func (a *Activation[M]) request(ctx actor.Context, msg *cluster.GrainRequest) *cluster.GrainRequest {
	if msg.MessageTypeName == LeaveMethod {
		a.Leave(ctx, "moved")
		return nil
	}
	if msg.MessageTypeName == ActorInspect {
		// Not recorded: a console refreshing it would fill the ring.
		Respond(ctx, a.inspect(), nil)
		return nil
	}
	if a.leaving {
		// Like a request to a stopped actor: the caller drops its cached
		// PID and asks the placement again.
		ctx.Respond(&actor.DeadLetterResponse{Target: ctx.Self()})
		return nil
	}
	a.Cfg.Metrics.messages.Add(1)
	a.recent.begin(msg.MessageTypeName)
	if msg.MessageTypeName == ActorPassivate {
		Respond(ctx, Empty{}, nil)
		a.Leave(ctx, "requested")
		return nil
	}
	if !a.loaded && a.Lazy != nil && a.Lazy(msg.MessageTypeName) {
		return msg
	}
	if !a.ensureLoaded("request") {
		Respond(ctx, nil, couponmesh.Errorf(couponmesh.CodeUnavailable, "%s %s cannot be loaded now, retry", a.Kind, a.ID))
		return nil
	}
	if msg.MessageTypeName == ActorPing {
		Respond(ctx, couponmesh.Pong{Identity: a.Kind + "/" + a.ID, Address: ctx.Self().Address, ActivatedAt: a.activatedAt}, nil)
		return nil
	}
	if (a.Unchecked == nil || !a.Unchecked(msg.MessageTypeName)) && !a.Check(ctx) {
		Respond(ctx, nil, a.ErrUnchecked())
		return nil
	}
	return msg
}

// Check validates the state after churn when it needs it (validate): an
// Unchecked method calls it before it answers from the state, and answers
// ErrUnchecked when it returns false.
func (a *Activation[M]) Check(ctx actor.Context) bool { return a.validate(ctx) }

// Stale reports whether the state may miss writes another activation made
// during churn: Check would read the journal.
func (a *Activation[M]) Stale() bool { return a.Cfg.Churn.Stale(a.validated) }

// ErrUnchecked is the answer of a request that needs the state validated
// when the journal cannot be read.
func (a *Activation[M]) ErrUnchecked() error {
	return couponmesh.Errorf(couponmesh.CodeUnavailable, "%s %s cannot be checked against the database after a cluster change, retry", a.Kind, a.ID)
}

// LoadLater queues a load of the state, run when the node's deferred loads
// (deferredLoads at once) come to it, unless a request loads it first. A
// grain that a hub's renewal activated (Lazy) owes that hub its state: at
// a node's death the hubs renew every grain that moved at once, and
// loading each as its renewal came was thousands of loads in random
// order, ahead of the reminders' wake-ups (due first, loaded last: `bench
// timers`, three nodes, one killed). Deferred, the wake-ups and reads load
// the grains they need first.
func (a *Activation[M]) LoadLater(ctx actor.Context) {
	if a.loaded || a.lazy {
		return
	}
	a.lazy = true
	self, root, timeout := ctx.Self(), ctx.ActorSystem().Root, a.Cfg.OpTimeout
	sem := a.Cfg.deferred // nil (a config not Filled): unbounded
	go func() {
		if sem != nil {
			sem <- struct{}{}
			defer func() { <-sem }()
		}
		_, _ = root.RequestFuture(self, loadTick{}, timeout).Result()
	}()
}

// Loaded reports whether the state is loaded (a Lazy grain may serve
// requests before).
func (a *Activation[M]) Loaded() bool { return a.loaded }

// LoadQueued reports whether a LoadLater has not come to its turn yet.
func (a *Activation[M]) LoadQueued() bool { return a.lazy }

func (a *Activation[M]) ensureLoaded(cause string) bool {
	if a.loaded {
		return true
	}
	a.Cfg.Metrics.Loads.WithLabelValues(a.Kind, cause).Inc()
	ctx, cancel := a.OpContext()
	defer cancel()
	epoch := a.Cfg.Churn.Epoch() // before the read: churn during it validates again
	m, err := a.load(ctx, a.ID)
	if err != nil {
		a.Log.Warn("load failed", "err", err)
		return false
	}
	a.M, a.loaded, a.validated = m, true, epoch
	a.Cfg.Churn.ReadUnsettled() // read during churn: validated again when it settles
	return true
}

// validate makes sure the state misses no write of another activation
// before the grain answers (DESIGN.md invariant 8): after cluster churn
// (Churn's epoch moved past the one this state was validated at, or a
// member this node declared dead is alive) it reads the journal after its
// seq, one point read when nothing is new, and applies what it finds. In
// steady state it costs one atomic load. It returns false when the
// database could not be read: the grain must not answer from its state.
func (a *Activation[M]) validate(ctx actor.Context) bool {
	churn := a.Cfg.Churn
	if !churn.Stale(a.validated) {
		return true
	}
	return a.validateNow(ctx, "churn")
}

// validateNow reads the journal after the state's seq and applies what
// another activation (or a write of unknown outcome) left there.
func (a *Activation[M]) validateNow(ctx actor.Context, why string) bool {
	epoch := a.Cfg.Churn.Epoch()
	opCtx, cancel := a.OpContext()
	defer cancel()
	n, err := a.M.Validate(opCtx)
	switch {
	case errors.Is(err, ErrBusy):
		// A journal write is in flight: its outcome proves the state
		// current (it succeeds) or makes the grain catch up (it fails).
		// The validation happens at the next request that finds it idle.
		return true
	case err != nil:
		a.Cfg.Metrics.Validations.WithLabelValues(a.Kind, "failed").Inc()
		a.Log.Warn("validation against the journal failed", "why", why, "err", err)
		return false
	case n > 0:
		a.validated = epoch
		a.Cfg.Churn.ReadUnsettled()
		a.Cfg.Metrics.Validations.WithLabelValues(a.Kind, "caught_up").Inc()
		a.Log.Info("caught up with entries another activation wrote", "entries", n, "seq", a.M.Seq())
		if a.OnCaughtUp != nil {
			a.OnCaughtUp(ctx)
		}
	default:
		a.validated = epoch
		a.Cfg.Churn.ReadUnsettled()
		a.Cfg.Metrics.Validations.WithLabelValues(a.Kind, "current").Inc()
	}
	return true
}

// Validated returns the Churn epoch the state was last validated at: what
// a copy of the state published outside the grain (LocalCoupons) is good
// for.
func (a *Activation[M]) Validated() uint64 { return a.validated }

// Serving reports whether the grain has its state and is not leaving.
func (a *Activation[M]) Serving() bool { return a.loaded && !a.leaving }

// Supersede records that another activation of this identity appended to
// the journal (churn overlap): the grain passivates after this message, and
// the next request activates it on the owner the cluster agrees on. Use it
// as the journal's Superseded hook.
func (a *Activation[M]) Supersede() { a.superseded = true }

// After ends every message: it records the request handled, passivates a
// superseded activation, and has a Stale state read its journal again soon.
func (a *Activation[M]) After(ctx actor.Context) {
	a.recent.end()
	if a.superseded {
		a.Leave(ctx, "another activation wrote to the journal")
		return
	}
	if st, ok := any(a.M).(Stale); ok && a.revalidate == nil && a.Serving() && st.Stale() {
		self, root := ctx.Self(), ctx.ActorSystem().Root
		a.staleFor++
		d := revalidateAfter << min(a.staleFor-1, 3)
		a.revalidate = time.AfterFunc(d, func() { root.Send(self, revalidateTick{}) })
	} else if a.revalidate == nil {
		a.staleFor = 0
	}
}

// Leave passivates the grain without losing a request: protoactor drops
// the messages still in an actor's mailbox when it stops, and callers would
// wait out their whole timeout. So the grain writes its snapshot, answers
// every later request like a stopped actor would (dead letter: the caller
// asks the placement again), and stops once no message came for
// leaveQuiet.
func (a *Activation[M]) Leave(ctx actor.Context, why string) {
	if a.leaving {
		return
	}
	a.leaving = true
	if a.OnLeave != nil {
		a.OnLeave()
	}
	if a.Log != nil {
		a.Log.Debug("passivating", "why", why)
	}
	if a.snapTimer != nil {
		a.snapTimer.Stop()
		a.snapTimer = nil
	}
	a.snapshot()
	a.idle.arm(ctx, leaveQuiet)
	// Sessions elsewhere follow this grain: their hubs register again with
	// the next activation, which pushes them its state.
	a.Hubs.Nudge(ctx, a.Kind, a.ID)
	// The placement (the parent) forgets this activation now, so the next
	// request activates a fresh one instead of meeting this one again.
	if p := ctx.Parent(); p != nil {
		ctx.Request(p, &cluster.GrainRequest{MessageTypeName: LeaveMethod})
	}
}

// OpContext bounds one message's database work.
func (a *Activation[M]) OpContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), a.Cfg.OpTimeout)
}

// ScheduleSnapshot writes a snapshot within SnapshotDelay, once for any
// number of changes until then; while the grain is Busy (journal writes
// pending or in flight) it waits for the pipeline to drain, at most
// snapshotMaxDefer SnapshotDelays in all (see onSnapshotTick).
func (a *Activation[M]) ScheduleSnapshot(ctx actor.Context) {
	if a.snapTimer != nil {
		return
	}
	a.snapSince = time.Now()
	a.armSnapshot(ctx, a.Cfg.SnapshotDelay)
}

func (a *Activation[M]) armSnapshot(ctx actor.Context, d time.Duration) {
	self, root := ctx.Self(), ctx.ActorSystem().Root
	a.snapTimer = time.AfterFunc(d, func() { root.Send(self, snapshotTick{}) })
}

// snapshotMaxDefer bounds, in SnapshotDelays since it was scheduled, how
// long a snapshot waits for a busy grain's pipeline to drain.
const snapshotMaxDefer = 10

// onSnapshotTick writes the scheduled snapshot, unless the grain is Busy
// and the snapshot has waited less than snapshotMaxDefer SnapshotDelays:
// then it looks again a quarter of a SnapshotDelay later. A snapshot is
// written on the grain's goroutine (its mailbox waits for the database)
// and, for a coupon, holds every claim: during a flash sale it was a write
// of hundreds of kilobytes every second that stalled the pipeline, soon
// outdated. Snapshots only save replay (state = snapshot + the journal
// after it), so a later one loses nothing.
func (a *Activation[M]) onSnapshotTick(ctx actor.Context) {
	if a.Busy != nil && a.Busy() && time.Since(a.snapSince) < snapshotMaxDefer*a.Cfg.SnapshotDelay {
		a.armSnapshot(ctx, max(a.Cfg.SnapshotDelay/4, time.Millisecond))
		return
	}
	a.snapshot()
}

// SnapshotNow writes a snapshot if entries were applied since the last one.
func (a *Activation[M]) SnapshotNow() { a.snapshot() }

func (a *Activation[M]) snapshot() {
	if !a.loaded || !a.M.SnapshotDue() {
		return
	}
	ctx, cancel := a.OpContext()
	defer cancel()
	if err := a.M.WriteSnapshot(ctx); err != nil {
		a.Log.Warn("snapshot failed", "seq", a.M.Seq(), "err", err)
	}
}

// ObserveAppends returns a Journal.Observe hook feeding the append metric.
func (c *GrainConfig) ObserveAppends() func(time.Duration) {
	return func(d time.Duration) { c.Metrics.AppendSeconds.Observe(d.Seconds()) }
}
