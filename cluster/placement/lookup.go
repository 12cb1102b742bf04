// Package placement is couponmesh's protoactor IdentityLookup: rendezvous
// hashing over the member list, with the checks protoactor's own lookup
// (disthash) lacks (shared/notes/protoactor-guide.md, section 4):
//
//   - the owner refuses to activate an identity its own view gives to
//     another member, so a member with a stale view cannot create a
//     duplicate activation that outlives the churn;
//   - a lookup waits Timeout (1 s by default), not a fixed 5 s, and gives up
//     at the next topology change (it may be waiting on a member that just
//     left; the caller retries with the new ring);
//   - the ring is swapped atomically on every topology change.
//
// On a topology change the placement actor asks the local activations the
// node no longer owns to leave (LeaveMethod)
// and forwards the topology to the ones it keeps, so grains can drop the
// hubs of members that left.
package placement

import (
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/eventstream"
)

// ActorName is the name of the placement actor on every member.
const ActorName = "couponmesh-placement"

// LeaveMethod is the grain request that asks a grain to passivate (answer
// what it holds, turn later requests away, then stop); actors.LeaveMethod
// handles it. A poison pill would make protoactor drop the requests still
// in the grain's mailbox when it stops, unanswered.
const LeaveMethod = "couponmesh.leave"

// Lookup implements cluster.IdentityLookup. Safe for concurrent use.
type Lookup struct {
	timeout time.Duration
	c       *cluster.Cluster
	self    string
	ring    atomic.Pointer[cluster.Rendezvous]
	prev    atomic.Pointer[[]ringAt]      // the rings swapped out less than MovedFor ago (at most maxPrev), newest last
	changed atomic.Pointer[chan struct{}] // closed and replaced at every ring swap
	pid     *actor.PID
	sub     *eventstream.Subscription
	stopped atomic.Bool

	mu     sync.RWMutex
	active map[string]Activation // "kind/id" → activation, kept by the placement actor
	counts map[string]int        // kind → len of its entries in active
	live   atomic.Int64          // grains spawned and not yet terminated (leaving ones included)
}

// Activation is one grain living on this member.
type Activation struct {
	Kind, ID string
	PID      *actor.PID
	Since    time.Time
	mailbox  actor.Mailbox
}

// MailboxLen returns the number of user messages waiting in the grain's
// mailbox (-1 when unknown). Safe for concurrent use; cheap (an atomic load).
func (a Activation) MailboxLen() int {
	if a.mailbox == nil {
		return -1
	}
	return a.mailbox.UserMessageCount()
}

var _ cluster.IdentityLookup = (*Lookup)(nil)

// ringAt is a ring that was replaced at a time.
type ringAt struct {
	ring  *cluster.Rendezvous
	until time.Time
}

// MovedFor is how long after a topology change Moved reports the
// identities whose owner it changed.
const MovedFor = 30 * time.Second

// New returns a lookup whose Get waits at most timeout (≤0: 1 s) for the
// owner's answer.
func New(timeout time.Duration) *Lookup {
	if timeout <= 0 {
		timeout = time.Second
	}
	l := &Lookup{timeout: timeout, active: make(map[string]Activation), counts: make(map[string]int)}
	l.ring.Store(cluster.NewRendezvous())
	ch := make(chan struct{})
	l.changed.Store(&ch)
	return l
}

// Setup implements cluster.IdentityLookup.
func (l *Lookup) Setup(c *cluster.Cluster, _ []string, _ bool) {
	l.c, l.self = c, c.ActorSystem.Address()
	pid, err := c.ActorSystem.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return &placer{l: l} }), ActorName)
	if err != nil {
		panic(err) // protoactor's StartMember turns setup failures into panics; node.Start recovers
	}
	l.pid = pid
	l.sub = c.ActorSystem.EventStream.Subscribe(func(ev any) {
		if t, ok := ev.(*cluster.ClusterTopology); ok {
			ring := cluster.NewRendezvous()
			ring.UpdateMembers(t.Members)
			l.swapped(l.ring.Swap(ring), time.Now())
			next := make(chan struct{})
			close(*l.changed.Swap(&next))
			c.ActorSystem.Root.Send(l.pid, t)
		}
	})
}

// Owner returns the address of the member that owns kind/id in this
// member's current view ("" when no member hosts kind).
func (l *Lookup) Owner(kind, id string) string {
	return l.ring.Load().GetByClusterIdentity(&cluster.ClusterIdentity{Kind: kind, Identity: id})
}

// Moved reports whether a topology change less than MovedFor ago gave
// kind/id another owner in this member's view (any change: a grain that
// moved away and back was stopped here meanwhile): its grain is not active
// on its owner yet, or is being activated (loaded from the database). The
// reminder shards keep the wake-ups of such targets apart from the others
// (actors/reminder), and the hubs renew their leases first (actors/hub).
func (l *Lookup) Moved(kind, id string) bool {
	p := l.prev.Load()
	if p == nil {
		return false
	}
	ci := &cluster.ClusterIdentity{Kind: kind, Identity: id}
	now := l.ring.Load().GetByClusterIdentity(ci)
	for _, r := range *p {
		if time.Since(r.until) < MovedFor && r.ring.GetByClusterIdentity(ci) != now {
			return true
		}
	}
	return false
}

// maxPrev bounds the rings Moved compares with (the newest).
const maxPrev = 8

// swapped records ring, swapped out at t (only the event stream's
// goroutine calls it).
func (l *Lookup) swapped(ring *cluster.Rendezvous, t time.Time) {
	var rs []ringAt
	if p := l.prev.Load(); p != nil {
		for _, r := range *p {
			if t.Sub(r.until) < MovedFor {
				rs = append(rs, r)
			}
		}
	}
	rs = append(rs, ringAt{ring: ring, until: t})
	if len(rs) > maxPrev {
		rs = rs[len(rs)-maxPrev:]
	}
	l.prev.Store(&rs)
}

// Changed returns a channel that is closed at the next change of the
// owners (Owner and Moved may answer differently once it is closed).
func (l *Lookup) Changed() <-chan struct{} { return *l.changed.Load() }

// Get implements cluster.IdentityLookup: it asks the owner in this member's
// view to activate the identity. nil (the caller retries with backoff) when
// the owner does not answer within the timeout, refuses because its view
// differs, or the topology changes first (measured: after a kill -9, lookups
// sent to the dead member just before the survivors removed it held a tenth
// of its identities up for the whole timeout).
func (l *Lookup) Get(ci *cluster.ClusterIdentity) *actor.PID {
	changed := *l.changed.Load()
	owner := l.ring.Load().GetByClusterIdentity(ci)
	if owner == "" {
		return nil
	}
	f := l.c.ActorSystem.Root.RequestFuture(actor.NewPID(owner, ActorName),
		&cluster.ActivationRequest{ClusterIdentity: ci}, l.timeout)
	var res any
	var err error
	if owner == l.self {
		res, err = f.Result() // the local placer answers at once
	} else {
		done := make(chan struct{})
		go func() {
			res, err = f.Result()
			close(done)
		}()
		select {
		case <-done:
		case <-changed:
			return nil
		}
	}
	if err != nil {
		return nil
	}
	r, ok := res.(*cluster.ActivationResponse)
	if !ok || r.Failed {
		return nil
	}
	return r.Pid
}

// RemovePid implements cluster.IdentityLookup. Nothing to do: the owner
// learns of a stopped activation from its Terminated message, and other
// members from a dead letter on their next request.
func (l *Lookup) RemovePid(*cluster.ClusterIdentity, *actor.PID) {}

// Shutdown implements cluster.IdentityLookup: it stops every local
// activation and waits for them (their Stopping handlers flush). protoactor
// calls it twice on a graceful shutdown; the second call does nothing.
func (l *Lookup) Shutdown() {
	if l.c == nil || !l.stopped.CompareAndSwap(false, true) {
		return
	}
	l.c.ActorSystem.EventStream.Unsubscribe(l.sub)
	// Ask every grain to leave (a poison pill would drop the requests still
	// in its mailbox, and their callers would wait out their timeout), and
	// wait for them; new activations are refused meanwhile.
	l.mu.RLock()
	for _, a := range l.active {
		l.c.ActorSystem.Root.Send(a.PID, &cluster.GrainRequest{MessageTypeName: LeaveMethod})
	}
	l.mu.RUnlock()
	for deadline := time.Now().Add(shutdownWait); l.live.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := l.live.Load(); n > 0 {
		l.c.Logger().Warn("grains still leaving at shutdown; stopping them", slog.Int64("grains", n))
	}
	if err := l.c.ActorSystem.Root.PoisonFuture(l.pid).Wait(); err != nil {
		l.c.Logger().Warn("placement actor did not stop", slog.Any("err", err))
	}
}

// shutdownWait bounds how long Shutdown waits for the grains to leave.
const shutdownWait = 5 * time.Second

// Activations returns the activations on this member of kind ("": all),
// sorted by identity, at most limit (≤0: all) after the identity after
// ("kind/id"). It scans the activations once under a read lock, keeping the
// first limit in order (about 10 ms for 100k activations), so a page costs
// no sort of the whole set.
func (l *Lookup) Activations(kind, after string, limit int) []Activation {
	type entry struct {
		key string
		a   Activation
	}
	var top []entry // sorted by key, at most limit
	l.mu.RLock()
	for key, a := range l.active {
		if (kind != "" && a.Kind != kind) || key <= after {
			continue
		}
		if limit > 0 && len(top) == limit && key >= top[limit-1].key {
			continue
		}
		i := sort.Search(len(top), func(i int) bool { return top[i].key > key })
		if limit <= 0 || len(top) < limit {
			top = append(top, entry{})
		}
		copy(top[i+1:], top[i:len(top)-1])
		top[i] = entry{key, a}
	}
	l.mu.RUnlock()
	out := make([]Activation, len(top))
	for i, e := range top {
		out[i] = e.a
	}
	return out
}

// Find returns the local activation of kind/id, if there is one.
func (l *Lookup) Find(kind, id string) (Activation, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	a, ok := l.active[kind+"/"+id]
	return a, ok
}

// Counts returns the number of local activations per kind.
func (l *Lookup) Counts() map[string]int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	n := make(map[string]int, len(l.counts))
	for k, c := range l.counts {
		if c > 0 {
			n[k] = c
		}
	}
	return n
}

// remove drops key (of kind) from the activations; l.mu must be held.
func (l *Lookup) remove(key, kind string) {
	if _, ok := l.active[key]; ok {
		delete(l.active, key)
		l.counts[kind]--
	}
}

// placer is the placement actor: the only writer of Lookup.active, and the
// parent of every local activation.
type placer struct {
	l     *Lookup
	byPID map[string]string // child PID id → key
}

func (p *placer) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		p.byPID = make(map[string]string)
	case *cluster.ActivationRequest:
		p.activate(ctx, msg)
	case *cluster.ClusterTopology:
		p.rebalance(ctx, msg)
	case *cluster.GrainRequest:
		// A grain of this node started leaving (idle, asked to, or beaten by
		// another activation): forget it now, so the next request for the
		// identity activates a fresh one rather than being turned away by
		// the leaving one until it stops.
		if msg.MessageTypeName != LeaveMethod || ctx.Sender() == nil {
			return
		}
		key, ok := p.byPID[ctx.Sender().Id]
		if !ok {
			return
		}
		p.l.mu.Lock()
		if a, ok := p.l.active[key]; ok && a.PID.Id == ctx.Sender().Id {
			p.l.remove(key, a.Kind)
		}
		p.l.mu.Unlock()
	case *actor.Terminated:
		key, ok := p.byPID[msg.Who.Id]
		if !ok {
			return
		}
		delete(p.byPID, msg.Who.Id)
		kind, _, _ := strings.Cut(key, "/")
		if k := p.l.c.GetClusterKind(kind); k != nil {
			k.Dec()
		}
		p.l.live.Add(-1)
		p.l.mu.Lock()
		if a, ok := p.l.active[key]; ok && a.PID.Id == msg.Who.Id {
			p.l.remove(key, a.Kind)
		}
		p.l.mu.Unlock()
	case *actor.Stopping:
		// Shutdown asked every grain to leave and waited; the runtime stops
		// the stragglers, after a poison pill lets them answer their mailbox.
		p.l.mu.RLock()
		var fs []*actor.Future
		for _, a := range p.l.active {
			fs = append(fs, ctx.PoisonFuture(a.PID))
		}
		p.l.mu.RUnlock()
		for _, f := range fs {
			_ = f.Wait()
		}
	}
}

func (p *placer) activate(ctx actor.Context, req *cluster.ActivationRequest) {
	ci := req.ClusterIdentity
	if owner := p.l.ring.Load().GetByClusterIdentity(ci); owner != p.l.self || p.l.stopped.Load() {
		ctx.Respond(&cluster.ActivationResponse{Failed: true})
		return
	}
	key := ci.Kind + "/" + ci.Identity
	p.l.mu.RLock()
	a, ok := p.l.active[key]
	p.l.mu.RUnlock()
	if ok {
		ctx.Respond(&cluster.ActivationResponse{Pid: a.PID})
		return
	}
	kind := p.l.c.GetClusterKind(ci.Kind)
	if kind == nil {
		ctx.Respond(&cluster.ActivationResponse{Failed: true})
		return
	}
	// The name carries the identity so that logs and dead letters say which
	// grain it was; the prefix keeps names unique across reactivations.
	// The mailbox is captured for the debug console (its length). Our kinds
	// set no mailbox of their own, so this is protoactor's default one; the
	// producer runs inside SpawnPrefix, before it returns.
	var mb actor.Mailbox
	props := cluster.WithClusterIdentity(kind.Props, ci).Configure(actor.WithMailbox(func() actor.Mailbox {
		mb = actor.Unbounded()()
		return mb
	}))
	pid := ctx.SpawnPrefix(props, strings.ReplaceAll(key, "/", ":"))
	kind.Inc()
	p.l.live.Add(1)
	p.l.mu.Lock()
	p.l.active[key] = Activation{Kind: ci.Kind, ID: ci.Identity, PID: pid, Since: time.Now(), mailbox: mb}
	p.l.counts[ci.Kind]++
	p.l.mu.Unlock()
	p.byPID[pid.Id] = key
	ctx.Respond(&cluster.ActivationResponse{Pid: pid})
}

// rebalance stops what this member no longer owns and tells the rest who
// left.
func (p *placer) rebalance(ctx actor.Context, t *cluster.ClusterTopology) {
	ring := p.l.ring.Load()
	var moved, kept int
	p.l.mu.Lock()
	for key, a := range p.l.active {
		if ring.GetByClusterIdentity(&cluster.ClusterIdentity{Kind: a.Kind, Identity: a.ID}) != p.l.self {
			p.l.remove(key, a.Kind) // the next request activates it on its owner
			ctx.Send(a.PID, &cluster.GrainRequest{MessageTypeName: LeaveMethod})
			moved++
			continue
		}
		kept++
		if len(t.Left) > 0 {
			ctx.Send(a.PID, t)
		}
	}
	p.l.mu.Unlock()
	if moved > 0 {
		p.l.c.Logger().Info("identities moved to other members", slog.Int("moved", moved), slog.Int("kept", kept))
	}
}
