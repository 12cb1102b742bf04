// Package hub is the per-node fan-out. Grains send one push per node to the
// hub actor (named actors.HubName on every node); the hub hands the same
// encoded frame to each local session (couponmesh.Sink) that wants it.
//
// The hub registers the node with a grain when the first local session
// subscribes (coupon) or attaches (user feed), renews that lease every
// Refresh, and unregisters when the last one leaves. A renewal that reaches a
// grain which did not know the node (it moved or was reactivated) makes the
// grain send its current state (once loaded: a renewal that activates a
// coupon grain queues its load), so sessions never keep a stale version.
//
// Presence: with Config.Presence the hub counts, per coupon, the distinct
// signed-in shoppers (couponmesh.Viewer; anonymous sessions are not
// counted) whose sessions on this node subscribe to it, and tells the
// coupon's grain that count in every registration and renewal
// (actors.HubRef.Watching) and, when it changed, in a report (a renewal)
// at most once per Config.PresenceDebounce per coupon. Every ref carries a
// Seq from a clock that only grows, stamped under the hub's lock together
// with the count it carries, so the grain applies a hub's refs in the
// order of the states they describe.
//
// Hub is safe for concurrent use; delivery never blocks on a session.
package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors"
	"github.com/prometheus/client_golang/prometheus"
)

// Config of a hub. Zero fields take the DefaultConfig values, but for
// Presence (zero: off).
//
// The yaml and env tags are the node configuration's keys (its actors
// section, COUPONMESH_ACTORS_<KEY>), declared here once: the node embeds
// Config. Fields tagged yaml:"-" are the node's wiring or keep their
// defaults (the node sets Presence from its presence_off key).
type Config struct {
	Refresh time.Duration     `yaml:"hub_refresh" env:"HUB_REFRESH"` // lease renewal period; must be well below the grains' HubLease
	Call    actors.CallConfig `yaml:"-"`
	Log     *slog.Logger      `yaml:"-"`
	// Presence turns on the counting of watchers per coupon (see the
	// package comment); off, refs carry no count and the grains push no
	// presence.
	Presence bool `yaml:"-"`
	// PresenceDebounce is the shortest time between two presence reports
	// of one coupon (default DefaultPresenceDebounce).
	PresenceDebounce time.Duration `yaml:"-"`
}

// DefaultConfig returns the defaults: renewals every 10 s, presence on,
// DefaultPresenceDebounce, DefaultCallConfig.
func DefaultConfig() Config {
	return Config{Refresh: 10 * time.Second, Call: actors.DefaultCallConfig(), Presence: true, PresenceDebounce: DefaultPresenceDebounce}
}

// Validate reports settings Start cannot use: a negative renewal period.
// Each error names the field's key.
func (c Config) Validate() error {
	if c.Refresh < 0 {
		return fmt.Errorf("hub_refresh %s is negative", c.Refresh)
	}
	return nil
}

// DefaultPresenceDebounce is Config.PresenceDebounce's default.
const DefaultPresenceDebounce = 500 * time.Millisecond

// Hub implements couponmesh.Hub for one node.
type Hub struct {
	cfg     Config
	c       *cluster.Cluster
	addr    string
	mu      sync.RWMutex
	topics  [2]map[string]*topic // by kind: coupons, users
	sinks   map[couponmesh.Sink]*regs
	pid     *actor.PID
	stop    chan struct{}
	done    chan struct{}
	kick    chan struct{} // topology changed: renew now
	pushes  prometheus.Counter
	deliver prometheus.Counter

	dirty    map[string]struct{} // coupons whose count changed since their last ref (guarded by mu)
	seq      atomic.Uint64       // the last HubRef.Seq stamped
	reported chan struct{}       // closed when the report loop ends
	sent     *prometheus.CounterVec
}

// topologySettle is how long a hub waits after a topology change before
// renewing its registrations.
const topologySettle = 300 * time.Millisecond

const (
	coupons = 0
	users   = 1
)

var kinds = [2]struct{ kind, subscribe, unsubscribe string }{
	{actors.KindCoupon, actors.CouponSubscribe, actors.CouponUnsubscribe},
	{actors.KindUser, actors.UserAttach, actors.UserDetach},
}

type topic struct {
	sinks map[couponmesh.Sink]struct{}
	ready chan struct{} // closed once the grain answered the first registration
	err   error

	// Presence (coupons, Config.Presence): the local sinks per signed-in
	// user, and the count the last ref told the grain, when.
	users      map[string]int
	reported   int
	reportedAt time.Time
}

// regs is what one sink follows, by kind; a map is made on first use.
// user is the sink's couponmesh.Viewer ("" for none or anonymous).
type regs struct {
	keys [2]map[string]struct{}
	user string
}

var _ couponmesh.Hub = (*Hub)(nil)

// Start spawns the hub actor on c's actor system and starts lease renewal.
func Start(c *cluster.Cluster, cfg Config, reg prometheus.Registerer) (*Hub, error) {
	d := DefaultConfig()
	if cfg.Refresh <= 0 {
		cfg.Refresh = d.Refresh
	}
	if cfg.Call.Timeout <= 0 {
		cfg.Call = actors.DefaultCallConfig()
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.PresenceDebounce <= 0 {
		cfg.PresenceDebounce = d.PresenceDebounce
	}
	h := &Hub{
		cfg: cfg, c: c, addr: c.ActorSystem.Address(),
		topics: [2]map[string]*topic{{}, {}},
		sinks:  make(map[couponmesh.Sink]*regs),
		stop:   make(chan struct{}), done: make(chan struct{}), kick: make(chan struct{}, 1),
		pushes:   prometheus.NewCounter(prometheus.CounterOpts{Name: "couponmesh_hub_pushes_total", Help: "Pushes received by this node's hub from grains."}),
		deliver:  prometheus.NewCounter(prometheus.CounterOpts{Name: "couponmesh_hub_deliveries_total", Help: "Frames handed to local sessions by the hub."}),
		dirty:    make(map[string]struct{}),
		reported: make(chan struct{}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "couponmesh_presence_sent_total",
			Help: "Refs with this node's watcher count sent by the hub to coupon grains, by reason (register, renew, report: the count changed, unregister).",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(h.pushes, h.deliver, h.sent)
	}
	pid, err := c.ActorSystem.Root.SpawnNamed(actor.PropsFromFunc(h.receive, actor.WithDispatcher(actors.Dispatcher())), actors.HubName)
	if err != nil {
		return nil, err
	}
	h.pid = pid
	// When members join or leave, grains move: renew every registration at
	// once, so a grain's new activation learns of this hub (and pushes its
	// current state) without waiting for the next period.
	sub := c.ActorSystem.EventStream.Subscribe(func(ev any) {
		if _, ok := ev.(*cluster.ClusterTopology); ok {
			select {
			case h.kick <- struct{}{}:
			default:
			}
		}
	})
	go func() {
		<-h.done
		c.ActorSystem.EventStream.Unsubscribe(sub)
	}()
	go h.renew()
	go h.reportLoop()
	return h, nil
}

// Stop ends lease renewal, presence reports and the hub actor.
func (h *Hub) Stop() {
	close(h.stop)
	<-h.done
	<-h.reported
	h.c.ActorSystem.Root.Stop(h.pid)
}

func (h *Hub) receive(ctx actor.Context) {
	req, ok := ctx.Message().(*cluster.GrainRequest)
	if !ok {
		return
	}
	method, key, ok := strings.Cut(req.MessageTypeName, ":")
	if !ok {
		return
	}
	switch method {
	case actors.PushCoupon:
		h.fanOut(coupons, key, req.MessageData)
	case actors.PushFeed:
		h.fanOut(users, key, req.MessageData)
	case actors.HubRenew:
		h.renewOne(key)
	}
}

// renewOne registers again, off the hub's mailbox, with the grain kind/id
// that said it is passivating, if local sessions still follow it.
func (h *Hub) renewOne(kindID string) {
	k, id, _ := strings.Cut(kindID, "/")
	kind := coupons
	if k == actors.KindUser {
		kind = users
	}
	h.mu.Lock()
	t, followed := h.topics[kind][id]
	var ref actors.HubRef
	if followed {
		ref = h.refLocked(kind, id, t, true)
	}
	h.mu.Unlock()
	if !followed {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.Call.Timeout)
		defer cancel()
		if err := h.send(ctx, kind, id, ref, "renew"); err != nil {
			h.cfg.Log.Warn("renewal after a passivation failed; the periodic one will retry", "kind", k, "id", id, "err", err)
		}
	}()
}

func (h *Hub) fanOut(kind int, key string, frame []byte) {
	h.pushes.Inc()
	h.mu.RLock()
	defer h.mu.RUnlock()
	t := h.topics[kind][key]
	if t == nil {
		return
	}
	for s := range t.sinks {
		s.Send(frame)
	}
	h.deliver.Add(float64(len(t.sinks)))
}

// Subscribe implements couponmesh.Hub.
func (h *Hub) Subscribe(ctx context.Context, s couponmesh.Sink, coupon string) error {
	return h.join(ctx, coupons, coupon, s)
}

// Attach implements couponmesh.Hub.
func (h *Hub) Attach(ctx context.Context, user string, s couponmesh.Sink) error {
	return h.join(ctx, users, user, s)
}

// Unsubscribe implements couponmesh.Hub.
func (h *Hub) Unsubscribe(s couponmesh.Sink, coupon string) {
	h.mu.Lock()
	last := h.leaveLocked(coupons, coupon, s)
	var seq uint64
	if last {
		seq = h.nextSeq()
	}
	h.mu.Unlock()
	if last {
		go h.unregister(coupons, coupon, seq)
	}
}

// Detach implements couponmesh.Hub.
func (h *Hub) Detach(s couponmesh.Sink) {
	var gone [2][]string
	var seq uint64
	h.mu.Lock()
	if r := h.sinks[s]; r != nil {
		for kind := range r.keys {
			for key := range r.keys[kind] {
				if h.leaveLocked(kind, key, s) {
					gone[kind] = append(gone[kind], key)
				}
			}
		}
	}
	if len(gone[coupons])+len(gone[users]) > 0 {
		seq = h.nextSeq()
	}
	h.mu.Unlock()
	for kind, keys := range gone {
		for _, key := range keys {
			go h.unregister(kind, key, seq)
		}
	}
}

// Identify implements couponmesh.Identifier: s (anonymous until now)
// serves user; the coupons it subscribes to count it from now on.
func (h *Hub) Identify(s couponmesh.Sink, user string) {
	if !h.cfg.Presence {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.sinks[s]
	if r == nil || r.user == user {
		return
	}
	for key := range r.keys[coupons] {
		if t := h.topics[coupons][key]; t != nil {
			h.uncountLocked(key, t, r.user)
			h.countLocked(key, t, user)
		}
	}
	r.user = user
}

// countLocked adds one sink of user to coupon key's topic t.
func (h *Hub) countLocked(key string, t *topic, user string) {
	if user == "" || !h.cfg.Presence {
		return
	}
	if t.users == nil {
		t.users = make(map[string]int, 1)
	}
	t.users[user]++
	if t.users[user] == 1 {
		h.dirty[key] = struct{}{}
	}
}

// uncountLocked removes one sink of user from coupon key's topic t.
func (h *Hub) uncountLocked(key string, t *topic, user string) {
	if user == "" || t.users[user] == 0 {
		return
	}
	if t.users[user]--; t.users[user] == 0 {
		delete(t.users, user)
		h.dirty[key] = struct{}{}
	}
}

// nextSeq stamps a HubRef: larger than every stamp before, from the wall
// clock so that a restarted node's refs are not taken for old ones.
func (h *Hub) nextSeq() uint64 {
	for {
		last := h.seq.Load()
		next := max(last+1, uint64(time.Now().UnixNano()))
		if h.seq.CompareAndSwap(last, next) {
			return next
		}
	}
}

// refLocked builds the ref of this hub for kind/key with t's count now,
// stamped, and records the count as reported (h.mu held for writing).
func (h *Hub) refLocked(kind int, key string, t *topic, refresh bool) actors.HubRef {
	ref := actors.HubRef{Address: h.addr, Refresh: refresh}
	if kind != coupons || !h.cfg.Presence {
		return ref
	}
	ref.Watching, ref.Seq = len(t.users), h.nextSeq()
	t.reported, t.reportedAt = ref.Watching, time.Now()
	delete(h.dirty, key)
	return ref
}

func (h *Hub) join(ctx context.Context, kind int, key string, s couponmesh.Sink) error {
	h.mu.Lock()
	t := h.topics[kind][key]
	first := t == nil
	if first {
		t = &topic{sinks: make(map[couponmesh.Sink]struct{}), ready: make(chan struct{})}
		h.topics[kind][key] = t
	}
	r := h.sinks[s]
	if r == nil {
		r = new(regs)
		if v, ok := s.(couponmesh.Viewer); ok && h.cfg.Presence {
			r.user = v.Viewer()
		}
		h.sinks[s] = r
	}
	if _, dup := t.sinks[s]; !dup && kind == coupons {
		h.countLocked(key, t, r.user)
	}
	t.sinks[s] = struct{}{}
	if r.keys[kind] == nil {
		r.keys[kind] = make(map[string]struct{}, 1)
	}
	r.keys[kind][key] = struct{}{}
	var ref actors.HubRef
	if first {
		ref = h.refLocked(kind, key, t, false)
	}
	h.mu.Unlock()

	if first {
		err := h.send(ctx, kind, key, ref, "register")
		h.mu.Lock()
		t.err = err
		close(t.ready)
		if err != nil {
			for other := range t.sinks {
				if or := h.sinks[other]; or != nil {
					delete(or.keys[kind], key)
				}
			}
			delete(h.topics[kind], key)
		}
		h.mu.Unlock()
		return err
	}
	select {
	case <-t.ready:
		return t.err
	case <-ctx.Done():
		h.mu.Lock()
		if h.leaveLocked(kind, key, s) {
			go h.unregister(kind, key, h.nextSeq())
		}
		h.mu.Unlock()
		return ctx.Err()
	}
}

// leaveLocked removes s from a topic and reports whether it was the last.
func (h *Hub) leaveLocked(kind int, key string, s couponmesh.Sink) bool {
	user := ""
	if r := h.sinks[s]; r != nil {
		user = r.user
		delete(r.keys[kind], key)
		if len(r.keys[coupons]) == 0 && len(r.keys[users]) == 0 {
			delete(h.sinks, s)
		}
	}
	t := h.topics[kind][key]
	if t == nil {
		return false
	}
	if _, ok := t.sinks[s]; ok && kind == coupons {
		h.uncountLocked(key, t, user)
	}
	delete(t.sinks, s)
	if len(t.sinks) > 0 {
		return false
	}
	select {
	case <-t.ready:
	default:
		return false // the first registration is still in flight; it keeps the topic
	}
	delete(h.topics[kind], key)
	delete(h.dirty, key)
	return true
}

// send registers (or renews) with ref at the grain kind/key; reason labels
// the presence metric.
func (h *Hub) send(ctx context.Context, kind int, key string, ref actors.HubRef, reason string) error {
	k := kinds[kind]
	if kind == coupons && h.cfg.Presence {
		h.sent.WithLabelValues(reason).Inc()
	}
	return actors.Call(ctx, h.c, h.cfg.Call, k.kind, key, k.subscribe, ref, nil)
}

// unregister tells the grain kind/key that this node no longer follows it,
// with the Seq stamped when its last sink left.
func (h *Hub) unregister(kind int, key string, seq uint64) {
	h.mu.RLock()
	_, again := h.topics[kind][key]
	h.mu.RUnlock()
	if again {
		return
	}
	k := kinds[kind]
	ref := actors.HubRef{Address: h.addr}
	if kind == coupons && h.cfg.Presence {
		ref.Seq = seq
		h.sent.WithLabelValues("unregister").Inc()
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.Call.Timeout)
	defer cancel()
	if err := actors.Call(ctx, h.c, h.cfg.Call, k.kind, key, k.unsubscribe, ref, nil); err != nil {
		h.cfg.Log.Debug("unregister failed; the lease will expire", "kind", k.kind, "id", key, "err", err)
	}
}

// renew keeps every registration's lease alive, a few calls at a time,
// every Refresh; after a topology change it renews at once, more at a
// time, the registrations with the grains the change moved (movedOnly):
// their new activations know no hub, so until this renewal reaches them
// nothing they do is pushed to this node's sessions. The others hold
// their leases where they are. Renewing every registration at a change,
// in map order 16 at a time, a moved coupon's expiry reached its watchers
// up to 7 s after it was durable, and the renewals of the coupons that
// had not moved read their journals (Activation.Check) while the moved
// ones were being loaded (`bench timers`, three nodes, one killed: 5,000
// coupons per hub, a third of them moved).
func (h *Hub) renew() {
	defer close(h.done)
	t := time.NewTicker(h.cfg.Refresh)
	defer t.Stop()
	for {
		kicked := false
		select {
		case <-h.stop:
			return
		case <-t.C:
		case <-h.kick:
			// Let the other members apply the same change first, so the
			// renewal reaches the new owner rather than being refused.
			select {
			case <-h.stop:
				return
			case <-time.After(topologySettle):
			}
			kicked = true
		}
		moved := movedOnly(h.c.IdentityLookup, kicked)
		var rs []renewal
		h.mu.Lock()
		for kind := range h.topics {
			for key, t := range h.topics[kind] {
				if moved == nil || moved(kinds[kind].kind, key) {
					rs = append(rs, renewal{kind, key, h.refLocked(kind, key, t, true)})
				}
			}
		}
		h.mu.Unlock()
		if kicked {
			h.renewAll(rs, movedRenewals)
		} else {
			h.renewAll(rs, renewals)
		}
	}
}

// renewals and movedRenewals are how many renewals a hub has in flight:
// of every registration, and of the grains a topology change moved. Each
// of these waits for its grain's load on the new owner: at 128 at a time
// the last of 1,700 moved coupons per hub learnt of the hub 2.3 s after
// its expiry was durable; the loads queue in the database's connection
// pool instead, where the wake-ups' loads queue too.
const (
	renewals      = 16
	movedRenewals = 2048
)

type renewal struct {
	kind int
	key  string
	ref  actors.HubRef
}

// movedOnly returns, after a topology change (kicked), which grains the
// renewal is for: those the identity lookup says moved (cluster/placement
// Lookup.Moved); nil (all) for the periodic renewal or a lookup that
// cannot tell.
func movedOnly(lookup any, kicked bool) func(kind, id string) bool {
	m, ok := lookup.(interface{ Moved(kind, id string) bool })
	if !kicked || !ok {
		return nil
	}
	return m.Moved
}

// renewAll renews rs, n at a time, and returns when all are answered.
func (h *Hub) renewAll(rs []renewal, n int) {
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for _, rn := range rs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), h.cfg.Refresh)
			defer cancel()
			if err := h.send(ctx, rn.kind, rn.key, rn.ref, "renew"); err != nil && !errors.Is(err, context.Canceled) {
				h.cfg.Log.Warn("lease renewal failed", "kind", kinds[rn.kind].kind, "id", rn.key, "err", err)
			}
		})
	}
	wg.Wait()
}

// Counts returns the number of coupons and users with local sessions.
func (h *Hub) Counts() (coupons, users int) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.topics[0]), len(h.topics[1])
}

// reportLoop sends the presence reports: every PresenceDebounce/5 it looks
// at the coupons whose count changed and reports each whose last ref is at
// least PresenceDebounce old, a bounded number at a time.
func (h *Hub) reportLoop() {
	defer close(h.reported)
	if !h.cfg.Presence {
		<-h.stop
		return
	}
	t := time.NewTicker(h.cfg.PresenceDebounce / 5)
	defer t.Stop()
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		type report struct {
			key string
			ref actors.HubRef
		}
		var due []report
		now := time.Now()
		h.mu.Lock()
		for key := range h.dirty {
			tp := h.topics[coupons][key]
			switch {
			case tp == nil:
				delete(h.dirty, key)
			case len(tp.users) == tp.reported:
				delete(h.dirty, key)
			case now.Sub(tp.reportedAt) < h.cfg.PresenceDebounce || !isClosed(tp.ready) || len(due) >= 4096:
				// later: too soon, still registering, or enough for this turn
			default:
				due = append(due, report{key, h.refLocked(coupons, key, tp, true)})
			}
		}
		h.mu.Unlock()
		for _, r := range due {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				ctx, cancel := context.WithTimeout(context.Background(), h.cfg.Call.Timeout)
				defer cancel()
				if err := h.send(ctx, coupons, r.key, r.ref, "report"); err != nil {
					h.cfg.Log.Debug("presence report failed; the next renewal carries the count", "id", r.key, "err", err)
				}
			})
		}
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Watching returns this node's presence count of coupon: the distinct
// signed-in shoppers with a session here subscribed to it.
func (h *Hub) Watching(coupon string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if t := h.topics[coupons][coupon]; t != nil {
		return len(t.users)
	}
	return 0
}
