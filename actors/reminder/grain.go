package reminder

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/cenkalti/backoff/v5"
	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors"
	"golang.org/x/sync/semaphore"
)

const (
	window = 1000 // reminders a shard keeps in memory
	// Wake-ups started per shard and not answered yet, per lane: the member
	// that owns the target in the shard's view (Shard.lane).
	maxFiring = 64
	// Wake-ups in flight on a node per lane, all its shards together (the
	// others started wait for a slot, first come first served): each one
	// holds a journal append in the group commit of the lane's member (256
	// per write) until it is durable; more in flight only wait longer in
	// its queue, and past the call's 5 s they time out and are fired again.
	//
	// Per lane, because a wake-up to a member that just died waits until
	// the cluster declares it dead (about 1.3 s) and is then sent to the
	// new owner: with one cap for all members, those wake-ups took every
	// slot of the shards and of the node within a few hundred
	// milliseconds of a kill, and the expiries of the coupons on the
	// members that stayed waited behind them (`bench timers`, three nodes,
	// one killed: p50 4 s late, against 0.1 s for those due before the
	// slots filled).
	nodeFiring = 256
	// The shard re-reads the store this often, to find reminders whose
	// notice was lost (rare: a notice is retried for 5 s). Not more often:
	// on the embedded database a shard's read scans the whole collection,
	// and with 10,000 reminders one read of the 16 shards took 5.5 s of the
	// database's time (at the 5 s this was, the database did little else).
	reloadEvery = 30 * time.Second
	// A failed wake-up is tried again after retryAfter, doubling up to
	// retryMax, each ±50% at random (so that a burst that failed together
	// is not retried together); after unavailableAfter when the target or
	// the database did not answer in time: it is busy, not wrong.
	retryAfter       = 250 * time.Millisecond
	unavailableAfter = time.Second
	retryMax         = 5 * time.Second
	// A failed re-read of the store is tried again after reloadRetry to
	// 1.5 × reloadRetry, doubling with each failure up to reloadEvery: a
	// re-read that timed out on a busy database still cost it a scan of
	// the collection (during the 10,000-coupon set-up of `bench timers`
	// on a loaded machine, 319 re-reads failed in 3.5 minutes, every 5 s
	// per shard, while the coupons were being created).
	reloadRetry = 5 * time.Second
	churnReload = 10 * time.Second // after churn a shard re-reads the store within this (Validate)
	nodeLoads   = 2                // re-reads of the store at once on a node, all its shards together
	// A periodic re-read waits while a burst is on (reloadWaits): while
	// wake-ups are in flight on the node or one of the shard's reminders
	// is due within burstAhead, for at most reloadWaitMax.
	burstAhead    = 5 * time.Second
	reloadWaitMax = reloadEvery
	// Woken reminders are deleted once the node has had no wake-up in
	// flight for deleteQuiet (a delete is one write per reminder on the
	// embedded database, which would delay the bursts' journal appends), or
	// when this many wait (they stay in the window until deleted), or when
	// the oldest has waited deleteAfter. Quiet for a while, not just idle:
	// when a node dies, the members that stay finish their own shards'
	// burst, then take over the dead one's shards a moment later; their
	// deletes in between were a fifth of the database's CPU while the
	// moved coupons were being loaded and expired (`bench timers`, three
	// nodes, one killed).
	deleteQuiet = 3 * time.Second
	deleteBatch = window * 3 / 4
	deleteAfter = 30 * time.Second
	deleteChunk = 128             // reminders per delete (one write each): within the store's timeout on a busy database
	deleteRetry = 5 * time.Second // after a failed delete
)

// node is what a node's reminder shards share.
type node struct {
	loads  *semaphore.Weighted // nodeLoads re-reads of the store
	waking atomic.Int64        // wake-ups started and not answered
	woke   atomic.Int64        // when the last wake-up was answered (Unix ns)

	mu    sync.Mutex
	lanes map[string]*lane // by member address: nodeFiring wake-ups in flight each
}

// lane is the node's cap of wake-ups in flight towards one member.
type lane struct {
	slots *semaphore.Weighted
	users int // wake-ups holding or waiting for a slot (the lane is dropped at 0)
}

// acquire waits for a slot of the lane of member addr and returns its
// release.
func (nd *node) acquire(addr string) (release func()) {
	nd.mu.Lock()
	if nd.lanes == nil {
		nd.lanes = map[string]*lane{}
	}
	l := nd.lanes[addr]
	if l == nil {
		l = &lane{slots: semaphore.NewWeighted(nodeFiring)}
		nd.lanes[addr] = l
	}
	l.users++
	nd.mu.Unlock()
	_ = l.slots.Acquire(context.Background(), 1) // cannot fail without a deadline
	return func() {
		l.slots.Release(1)
		nd.mu.Lock()
		if l.users--; l.users == 0 {
			delete(nd.lanes, addr)
		}
		nd.mu.Unlock()
	}
}

// Kind returns the cluster kind hosting the reminder shards.
func Kind(cfg actors.GrainConfig) *cluster.Kind {
	cfg.Fill()
	nd := &node{loads: semaphore.NewWeighted(nodeLoads)}
	return cluster.NewKind(actors.KindReminders, actor.PropsFromProducer(func() actor.Actor {
		g := &grain{node: nd}
		g.Activation = actors.NewActivation(&cfg, actors.KindReminders, func(ctx context.Context, id string) (*Shard, error) {
			n, err := strconv.Atoi(id)
			if err != nil || n < 0 || n >= couponmesh.ReminderShards {
				return nil, fmt.Errorf("no reminder shard %q", id)
			}
			s := &Shard{store: cfg.Store, loads: nd.loads, n: n, firing: map[rkey]bool{}, retry: map[rkey]retry{}, lane: g.lane}
			if err := s.reload(ctx); err != nil {
				return nil, err
			}
			// Shards activated together reload at different times.
			s.loadedAt = s.loadedAt.Add(-time.Duration(n) * reloadEvery / couponmesh.ReminderShards)
			return s, nil
		})
		return g
	}, actor.WithDispatcher(actors.Dispatcher())))
}

// Shard is the state of one reminder shard. Not safe for concurrent use:
// it belongs to its grain.
type Shard struct {
	store           couponmesh.Store
	loads           *semaphore.Weighted // the node's nodeLoads (nil: no bound)
	n               int
	pending         []couponmesh.Reminder // earliest first, at most window
	head            int                   // pending[:head] are all firing: due starts after them
	more            bool                  // the store may hold reminders after pending
	loadedAt        time.Time
	notUntil        time.Time                   // a re-read failed: none before this
	reloadB         *backoff.ExponentialBackOff // of the failed re-reads; nil after a success
	firing          map[rkey]bool               // reminders being fired or deleted
	retry           map[rkey]retry              // reminders whose last wake-up failed
	woken           []couponmesh.Reminder       // answered by their targets, to delete
	wokenAt         time.Time                   // when the first of woken was answered
	deleting        bool                        // a delete of woken reminders is in flight
	deleteNotBefore time.Time                   // a delete failed: the next not before this
	inFlight        int                         // wake-ups not answered yet
	// lane returns the lane of a reminder's wake-up: the member that owns
	// its target now (nil: one lane for all). At most maxFiring wake-ups of
	// a lane are in flight (lanes), so a member that stopped answering
	// holds up only the reminders of its own targets.
	lane   func(couponmesh.Reminder) string
	lanes  map[string]int  // wake-ups in flight by lane
	laneOf map[rkey]string // lane of each reminder in flight
}

// rkey is a reminder's identity (what couponmesh.Reminder.Key says, as a
// map key built without allocating: due scans the shard's window after
// every message of the shard).
type rkey struct {
	target, name string
	due          int64 // Unix ms, as in Key
}

func keyOf(r couponmesh.Reminder) rkey { return rkey{r.Target, r.Name, r.Due.UnixMilli()} }

type retry struct {
	at time.Time
	b  *backoff.ExponentialBackOff
}

// reloadDue reports whether a keep-alive tick at now should re-read the
// store: every reloadEvery, or at once when the window in memory is used up
// and the store holds more; after a failed re-read, not before its backoff
// (reloadFailed).
func (s *Shard) reloadDue(now time.Time) bool {
	if now.Before(s.notUntil) {
		return false
	}
	return now.Sub(s.loadedAt) >= reloadEvery || (len(s.pending) == 0 && s.more)
}

// reloadWaits reports whether a re-read that reloadDue at now should wait
// for the end of a burst: while wake-ups are in flight on the node
// (nodeWaking) or one of the shard's reminders is due within burstAhead,
// for at most reloadWaitMax past its time. On the embedded database a
// re-read scans and sorts the whole reminders collection: during a burst
// of 10,000 expiries the shards' re-reads every 30 s were 80% of the
// database's CPU (`bench timers --profile-dir`), beside the journal
// appends the pushes wait for. A re-read that fires reminders (the window
// in memory used up) does not wait. One that churn asked for (Validate)
// waits too: at a node's death it came 5 to 10 s after the change on every
// shard of the members that stayed, each a scan of the collection, while
// the coupons of the dead node were being loaded on them and expired
// (`bench timers`, three nodes, one killed); what it is for (a reminder
// whose notice reached another activation of the shard during the churn)
// is found by it at the end of the burst.
func (s *Shard) reloadWaits(now time.Time, nodeWaking int64) bool {
	if (len(s.pending) == 0 && s.more) || now.Sub(s.loadedAt) >= reloadEvery+reloadWaitMax {
		return false
	}
	return nodeWaking > 0 || (s.head < len(s.pending) && s.pending[s.head].Due.Before(now.Add(burstAhead)))
}

// reloadFailed backs the re-reads off: at every tick they would keep a busy
// database busier.
func (s *Shard) reloadFailed(now time.Time) time.Duration {
	if s.reloadB == nil {
		s.reloadB = &backoff.ExponentialBackOff{InitialInterval: reloadRetry * 5 / 4, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: reloadEvery}
	}
	d := s.reloadB.NextBackOff()
	s.notUntil = now.Add(d)
	return d
}

func (s *Shard) reload(ctx context.Context) error {
	if s.loads != nil {
		if err := s.loads.Acquire(ctx, 1); err != nil {
			return err
		}
		defer s.loads.Release(1)
	}
	rs, err := s.store.DueReminders(ctx, s.n, window)
	if err != nil {
		return err
	}
	s.pending, s.more, s.loadedAt, s.head = rs, len(rs) == window, time.Now(), 0
	s.reloadB = nil
	return nil
}

// add records a reminder the shard was told of.
func (s *Shard) add(r couponmesh.Reminder) {
	if slices.ContainsFunc(s.pending, func(p couponmesh.Reminder) bool { return keyOf(p) == keyOf(r) }) {
		return
	}
	if s.more && len(s.pending) > 0 && r.Due.After(s.pending[len(s.pending)-1].Due) {
		return // beyond the window: a reload finds it in time
	}
	i, _ := slices.BinarySearchFunc(s.pending, r, func(a, b couponmesh.Reminder) int { return a.Due.Compare(b.Due) })
	s.pending = slices.Insert(s.pending, i, r)
	s.head = min(s.head, i)
	if len(s.pending) > window {
		s.pending, s.more = s.pending[:window], true
	}
}

// laneFor returns the lane of r's wake-up ("" without a lane function).
func (s *Shard) laneFor(r couponmesh.Reminder) string {
	if s.lane == nil {
		return ""
	}
	return s.lane(r)
}

// started records that r's wake-up is in flight on lane l (fire does it
// for every reminder due returned).
func (s *Shard) started(r couponmesh.Reminder, l string) {
	k := keyOf(r)
	s.firing[k] = true
	s.inFlight++
	if s.lanes == nil {
		s.lanes, s.laneOf = map[string]int{}, map[rkey]string{}
	}
	s.lanes[l]++
	s.laneOf[k] = l
}

// due returns the reminders to fire now, with their lanes, and when the
// next one is due (zero: none pending). A reminder whose lane has
// maxFiring wake-ups in flight waits (it is fired once one is answered),
// and the others are fired meanwhile. It runs after every message of the
// shard, so it skips the prefix of reminders already fired (kept until
// their deletion, which waits for the end of a burst): scanning them each
// time cost a third of the node's CPU during a burst of 10,000 (pprof of
// `bench timers`).
func (s *Shard) due(now time.Time) (fire []couponmesh.Reminder, lanes []string, next time.Time) {
	var extra map[string]int // of fire, by lane
	for i := s.head; i < len(s.pending); i++ {
		r := s.pending[i]
		k := keyOf(r)
		if s.firing[k] {
			if i == s.head {
				s.head++
			}
			continue
		}
		at := r.Due
		if rt, ok := s.retry[k]; ok && rt.at.After(at) {
			at = rt.at
		}
		if !at.After(now) {
			l := s.laneFor(r)
			if s.lanes[l]+extra[l] < maxFiring {
				if extra == nil {
					extra = map[string]int{}
				}
				extra[l]++
				fire, lanes = append(fire, r), append(lanes, l)
			}
			continue
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
		if !r.Due.Before(next) {
			break // sorted by Due: nothing later can be earlier (retries aside)
		}
	}
	return fire, lanes, next
}

// done records the outcome of a wake-up: a woken reminder waits (still
// firing, so never fired again meanwhile) for its deletion, batched. A
// failed one is tried again after a jittered exponential backoff, starting
// longer when the target was unavailable.
func (s *Shard) done(r couponmesh.Reminder, err error, now time.Time) {
	k := keyOf(r)
	s.inFlight--
	if l, ok := s.laneOf[k]; ok {
		delete(s.laneOf, k)
		if s.lanes[l]--; s.lanes[l] <= 0 {
			delete(s.lanes, l)
		}
	}
	if err == nil {
		delete(s.retry, k)
		if len(s.woken) == 0 {
			s.wokenAt = now
		}
		s.woken = append(s.woken, r)
		return
	}
	delete(s.firing, k)
	s.head = 0 // k is to fire again
	rt, ok := s.retry[k]
	if !ok {
		first := retryAfter
		if couponmesh.ErrorCode(err) == couponmesh.CodeUnavailable {
			first = unavailableAfter
		}
		rt.b = &backoff.ExponentialBackOff{InitialInterval: first, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: retryMax}
	}
	rt.at = now.Add(rt.b.NextBackOff())
	s.retry[k] = rt
}

// deleteDue reports whether the woken reminders should be deleted now,
// given the wake-ups in flight on the node and when its last one was
// answered.
func (s *Shard) deleteDue(now time.Time, nodeWaking int64, nodeWoke time.Time) bool {
	if s.deleting || len(s.woken) == 0 || now.Before(s.deleteNotBefore) {
		return false
	}
	return (nodeWaking == 0 && now.Sub(nodeWoke) >= deleteQuiet) || len(s.woken) >= deleteBatch || now.Sub(s.wokenAt) >= deleteAfter
}

// deleted records the outcome of deleting rs: on success they are gone;
// else they wait to be deleted again, not before deleteRetry (their
// targets answered: firing them again would be a wake-up each for
// nothing; it was, until 476 reminders a shard failed to delete on a busy
// database in `bench timers` and were all fired again).
func (s *Shard) deleted(rs []couponmesh.Reminder, err error, now time.Time) {
	s.deleting = false
	if err != nil {
		if len(s.woken) == 0 {
			s.wokenAt = now
		}
		s.woken = append(rs, s.woken...)
		s.deleteNotBefore = now.Add(deleteRetry)
		return
	}
	s.head = 0
	gone := make(map[rkey]bool, len(rs))
	for _, r := range rs {
		gone[keyOf(r)] = true
		delete(s.firing, keyOf(r))
	}
	s.pending = slices.DeleteFunc(s.pending, func(p couponmesh.Reminder) bool { return gone[keyOf(p)] })
}

// Seq implements actors.State: a shard has no journal.
func (s *Shard) Seq() int64 { return 0 }

// SnapshotDue implements actors.State: the store is the state.
func (s *Shard) SnapshotDue() bool { return false }

// WriteSnapshot implements actors.State.
func (s *Shard) WriteSnapshot(context.Context) error { return nil }

// Validate implements actors.State: after cluster churn another activation
// may have fired and deleted reminders, or been told of new ones: the shard
// re-reads the store soon, at a random moment within churnReload, not at
// once, and not during a burst of wake-ups (reloadWaits). Each re-read scans the whole collection on the embedded database:
// with 10,000 reminders the re-reads of every shard at a node's death,
// together with the loads of the shards that moved, timed out, the store
// declared the database unreachable, and most wake-ups then failed (`bench
// timers`, three nodes, one killed).
func (s *Shard) Validate(context.Context) (int, error) {
	soon := churnReload/2 + rand.N(churnReload/2)
	if at := time.Now().Add(soon - reloadEvery); at.Before(s.loadedAt) {
		s.loadedAt = at
	}
	return 0, nil
}

// Inspect implements actors.Inspector: the console's view.
func (s *Shard) Inspect() any { return s.status() }

func (s *Shard) status() actors.ShardStatus {
	return actors.ShardStatus{Shard: s.n, Pending: len(s.pending), Next: slices.Clone(s.pending[:min(5, len(s.pending))]), Firing: s.inFlight}
}

type grain struct {
	*actors.Activation[*Shard]
	node    *node
	cluster *cluster.Cluster
	timer   *time.Timer
	wakeAt  time.Time
	// lanes caches lane by target until the owners change (lanesValid
	// closed), for at most lanesFor, and lanesMax targets.
	lanes      map[string]string
	lanesValid <-chan struct{}
	lanesAt    time.Time
}

// lanesMax bounds the lanes a shard caches (one per target; a shard holds
// at most window reminders); lanesFor how long (a target stops being
// "moved" some time after the change: placement.MovedFor).
const (
	lanesMax = 4 * window
	lanesFor = 5 * time.Second
)

type fireTick struct{}

type fired struct {
	r   couponmesh.Reminder
	err error
	at  time.Time // answered
}

type deleted struct {
	rs  []couponmesh.Reminder
	err error
	at  time.Time
}

func (g *grain) Receive(ctx actor.Context) {
	var next time.Time // when due next, if scanned (by fire)
	scanned := false
	switch msg := ctx.Message().(type) {
	case *cluster.ClusterInit:
		g.cluster = msg.Cluster
	case fireTick:
		g.wakeAt = time.Time{}
		if g.Serving() {
			next = g.fire(ctx)
			scanned = true
		}
	case fired:
		if g.Serving() {
			g.M.done(msg.r, msg.err, msg.at)
			m := g.Cfg.Metrics.Reminders
			if msg.err == nil {
				m.Fired.Inc()
				m.Lateness.Observe(msg.at.Sub(msg.r.Due).Seconds())
			} else {
				reason := "error"
				if couponmesh.ErrorCode(msg.err) == couponmesh.CodeUnavailable {
					reason = "unavailable"
				}
				m.Retried.WithLabelValues(reason).Inc()
				g.Log.Warn("reminder not delivered; trying again", "reminder", msg.r.Key(), "err", msg.err)
			}
		}
	case deleted:
		if g.Serving() {
			g.M.deleted(msg.rs, msg.err, msg.at)
			if msg.err != nil {
				g.Log.Warn("woken reminders not deleted; trying again later", "reminders", len(msg.rs), "after", deleteRetry, "err", msg.err)
			}
		}
	case *actor.Stopping:
		if g.timer != nil {
			g.timer.Stop()
		}
		if g.M != nil {
			g.Cfg.Metrics.Reminders.Pending.DeleteLabelValues(strconv.Itoa(g.M.n))
		}
	}
	if req := g.Activation.Receive(ctx); req != nil {
		g.handle(ctx, req)
	}
	if g.Serving() {
		if scanned {
			g.armAt(ctx, next)
		} else {
			g.arm(ctx)
		}
		g.deleteWoken(ctx)
		g.Cfg.Metrics.Reminders.Pending.WithLabelValues(strconv.Itoa(g.M.n)).Set(float64(len(g.M.pending)))
	}
	g.After(ctx)
}

// methods are the reminder shard's requests.
var methods = actors.NewMethods(nil,
	actors.Handle(actors.ReminderSet, func(g *grain, _ actor.Context, r couponmesh.Reminder) (actors.Empty, error) {
		g.M.add(r)
		return actors.Empty{}, nil
	}),
	actors.Handle(actors.ReminderTick, (*grain).tick),
	actors.Handle(actors.ReminderCheck, func(g *grain, _ actor.Context, _ actors.Empty) (actors.ShardStatus, error) {
		return g.M.status(), nil
	}),
)

func (g *grain) handle(ctx actor.Context, req *cluster.GrainRequest) { methods.Serve(g, ctx, req) }

// tick keeps the shard active and reloads it from the store when due.
func (g *grain) tick(actor.Context, actors.Empty) (actors.Empty, error) {
	s := g.M
	if now := time.Now(); s.reloadDue(now) && !s.reloadWaits(now, g.node.waking.Load()) {
		opCtx, cancel := g.OpContext()
		err := s.reload(opCtx)
		cancel()
		if err != nil {
			after := s.reloadFailed(time.Now())
			g.Log.Warn("reminders not reloaded; trying again later", "after", after, "err", err)
		}
	}
	return actors.Empty{}, nil
}

// fire wakes the targets of the due reminders, off the mailbox, at most
// nodeFiring at a time on the node per lane; each reports back with fired.
// It returns when the next reminder not due yet is (zero: none; the due
// ones left in full lanes wait for a wake-up of their lane to answer).
func (g *grain) fire(ctx actor.Context) time.Time {
	rs, lanes, next := g.M.due(time.Now())
	self, root := ctx.Self(), ctx.ActorSystem().Root
	for i, r := range rs {
		l := lanes[i]
		g.M.started(r, l)
		g.node.waking.Add(1)
		go func() {
			release := g.node.acquire(l)
			err := g.wake(r)
			release()
			g.node.woke.Store(time.Now().UnixNano())
			g.node.waking.Add(-1)
			root.Send(self, fired{r: r, err: err, at: time.Now()})
		}()
	}
	return next
}

// owner is what the cluster's identity lookup (cluster/placement) offers:
// the member that owns an identity in this member's view, and whether the
// last topology change moved it there (recently).
type owner interface {
	Owner(kind, id string) string
	Moved(kind, id string) bool
	Changed() <-chan struct{}
}

// lane is the shard's lane function: the address of the member that owns
// the reminder's target now ("" when the lookup cannot tell), with a
// " moved" suffix when the last topology change gave the target that
// owner. A moved target's grain is loaded from the database on its new
// owner first: in the lane of the member's other targets those wake-ups
// filled its slots while the loads queued, and the coupons that had not
// moved waited behind them (`bench timers`, three nodes, one killed).
//
// Lanes are cached by target until the owners change: due asks for the
// lane of every due reminder not fired yet, after every message of the
// shard, and while lanes are full that was the same few hundred
// reminders each time, two rendezvous hashes each (a quarter of a node's
// CPU during a burst, pprof of `bench timers`).
func (g *grain) lane(r couponmesh.Reminder) string {
	if g.cluster == nil {
		return ""
	}
	o, ok := g.cluster.IdentityLookup.(owner)
	if !ok {
		return ""
	}
	stale := g.lanes == nil || len(g.lanes) >= lanesMax || time.Since(g.lanesAt) > lanesFor
	select {
	case <-g.lanesValid:
		stale = true
	default:
	}
	if stale {
		g.lanes, g.lanesValid, g.lanesAt = make(map[string]string), o.Changed(), time.Now()
	}
	if l, ok := g.lanes[r.Target]; ok {
		return l
	}
	kind, id, _ := strings.Cut(r.Target, "/")
	l := o.Owner(kind, id)
	if o.Moved(kind, id) {
		l += " moved"
	}
	g.lanes[r.Target] = l
	return l
}

// wake calls the reminder's target (a bad target is dropped: deleted as
// if woken).
func (g *grain) wake(r couponmesh.Reminder) error {
	kind, id, ok := strings.Cut(r.Target, "/")
	if !ok || kind == "" || id == "" {
		g.Log.Error("reminder with a bad target dropped", "reminder", r.Key())
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.Cfg.Call.Timeout)
	defer cancel()
	return actors.Call(ctx, g.cluster, g.Cfg.Call, kind, id, actors.RemindMethod, r, nil)
}

// deleteWoken deletes the reminders woken so far in one round trip, off
// the mailbox, one at a time, when deleteDue says so: after a burst rather
// than during it. Called after every message (the keep-alive tick comes
// each second).
func (g *grain) deleteWoken(ctx actor.Context) {
	s := g.M
	if !s.deleteDue(time.Now(), g.node.waking.Load(), time.Unix(0, g.node.woke.Load())) {
		return
	}
	n := min(len(s.woken), deleteChunk)
	rs := slices.Clone(s.woken[:n])
	s.woken, s.deleting = s.woken[n:], true
	self, root := ctx.Self(), ctx.ActorSystem().Root
	go func() {
		opCtx, cancel := g.OpContext()
		defer cancel()
		root.Send(self, deleted{rs: rs, err: g.Cfg.Store.DeleteReminders(opCtx, rs...), at: time.Now()})
	}()
}

// arm sets the timer for the next due reminder. While a fireTick is on
// its way (its time has come) it does nothing: fire scans the window then.
// due scans the window from its head, and while the lanes are full that is
// every reminder due and not fired yet: once after each wake-up answered,
// and again at the fireTick it set, was 12–15% of a node's CPU during a
// burst (`bench timers --profile-dir`, three nodes, one killed).
func (g *grain) arm(ctx actor.Context) {
	now := time.Now()
	if !g.wakeAt.IsZero() && !g.wakeAt.After(now) {
		return
	}
	fire, _, next := g.M.due(now)
	if len(fire) > 0 {
		next = now
	}
	g.armAt(ctx, next)
}

// armAt sets the timer for next unless it is set for no later.
func (g *grain) armAt(ctx actor.Context, next time.Time) {
	if next.IsZero() || (!g.wakeAt.IsZero() && !next.Before(g.wakeAt)) {
		return
	}
	if g.timer != nil {
		g.timer.Stop()
	}
	g.wakeAt = next
	self, root := ctx.Self(), ctx.ActorSystem().Root
	g.timer = time.AfterFunc(time.Until(next), func() { root.Send(self, fireTick{}) })
}
