// Package hub is the per-node fan-out. Grains send one push per node to the
// hub actor (named actors.HubName on every node); the hub hands the same
// encoded frame to each local session (couponmesh.Sink) that wants it.
//
// The hub registers the node with a grain when the first local session
// subscribes (coupon) or attaches (user feed), renews that lease every
// Refresh, and unregisters when the last one leaves. A renewal that reaches a
// grain which did not know the node (it moved or was reactivated) makes the
// grain send its current state, so sessions never keep a stale version.
//
// Hub is safe for concurrent use; delivery never blocks on a session.
package hub

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors"
	"github.com/prometheus/client_golang/prometheus"
)

// Config of a hub.
type Config struct {
	Refresh time.Duration // lease renewal period; must be well below the grains' HubLease
	Call    actors.CallConfig
	Log     *slog.Logger
}

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
}

// regs is what one sink follows, by kind; a map is made on first use.
type regs struct{ keys [2]map[string]struct{} }

var _ couponmesh.Hub = (*Hub)(nil)

// Start spawns the hub actor on c's actor system and starts lease renewal.
func Start(c *cluster.Cluster, cfg Config, reg prometheus.Registerer) (*Hub, error) {
	if cfg.Refresh <= 0 {
		cfg.Refresh = 10 * time.Second
	}
	if cfg.Call.Timeout <= 0 {
		cfg.Call = actors.DefaultCallConfig()
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	h := &Hub{
		cfg: cfg, c: c, addr: c.ActorSystem.Address(),
		topics: [2]map[string]*topic{{}, {}},
		sinks:  make(map[couponmesh.Sink]*regs),
		stop:   make(chan struct{}), done: make(chan struct{}), kick: make(chan struct{}, 1),
		pushes:  prometheus.NewCounter(prometheus.CounterOpts{Name: "couponmesh_hub_pushes_total", Help: "Pushes received by this node's hub from grains."}),
		deliver: prometheus.NewCounter(prometheus.CounterOpts{Name: "couponmesh_hub_deliveries_total", Help: "Frames handed to local sessions by the hub."}),
	}
	if reg != nil {
		reg.MustRegister(h.pushes, h.deliver)
	}
	pid, err := c.ActorSystem.Root.SpawnNamed(actor.PropsFromFunc(h.receive), actors.HubName)
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
	return h, nil
}

// Stop ends lease renewal and the hub actor.
func (h *Hub) Stop() {
	close(h.stop)
	<-h.done
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
	h.mu.RLock()
	_, followed := h.topics[kind][id]
	h.mu.RUnlock()
	if !followed {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.Call.Timeout)
		defer cancel()
		if err := h.register(ctx, kind, id, true); err != nil {
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
	h.mu.Unlock()
	if last {
		go h.unregister(coupons, coupon)
	}
}

// Detach implements couponmesh.Hub.
func (h *Hub) Detach(s couponmesh.Sink) {
	var gone [2][]string
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
	h.mu.Unlock()
	for kind, keys := range gone {
		for _, key := range keys {
			go h.unregister(kind, key)
		}
	}
}

func (h *Hub) join(ctx context.Context, kind int, key string, s couponmesh.Sink) error {
	h.mu.Lock()
	t := h.topics[kind][key]
	first := t == nil
	if first {
		t = &topic{sinks: make(map[couponmesh.Sink]struct{}), ready: make(chan struct{})}
		h.topics[kind][key] = t
	}
	t.sinks[s] = struct{}{}
	r := h.sinks[s]
	if r == nil {
		r = new(regs)
		h.sinks[s] = r
	}
	if r.keys[kind] == nil {
		r.keys[kind] = make(map[string]struct{}, 1)
	}
	r.keys[kind][key] = struct{}{}
	h.mu.Unlock()

	if first {
		err := h.register(ctx, kind, key, false)
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
			go h.unregister(kind, key)
		}
		h.mu.Unlock()
		return ctx.Err()
	}
}

// leaveLocked removes s from a topic and reports whether it was the last.
func (h *Hub) leaveLocked(kind int, key string, s couponmesh.Sink) bool {
	if r := h.sinks[s]; r != nil {
		delete(r.keys[kind], key)
		if len(r.keys[coupons]) == 0 && len(r.keys[users]) == 0 {
			delete(h.sinks, s)
		}
	}
	t := h.topics[kind][key]
	if t == nil {
		return false
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
	return true
}

func (h *Hub) register(ctx context.Context, kind int, key string, refresh bool) error {
	k := kinds[kind]
	return actors.Call(ctx, h.c, h.cfg.Call, k.kind, key, k.subscribe, actors.HubRef{Address: h.addr, Refresh: refresh}, nil)
}

func (h *Hub) unregister(kind int, key string) {
	h.mu.RLock()
	_, again := h.topics[kind][key]
	h.mu.RUnlock()
	if again {
		return
	}
	k := kinds[kind]
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.Call.Timeout)
	defer cancel()
	if err := actors.Call(ctx, h.c, h.cfg.Call, k.kind, key, k.unsubscribe, actors.HubRef{Address: h.addr}, nil); err != nil {
		h.cfg.Log.Debug("unregister failed; the lease will expire", "kind", k.kind, "id", key, "err", err)
	}
}

// renew keeps every registration's lease alive, a few calls at a time,
// every Refresh and soon after a topology change.
func (h *Hub) renew() {
	defer close(h.done)
	t := time.NewTicker(h.cfg.Refresh)
	defer t.Stop()
	for {
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
		}
		var keys [2][]string
		h.mu.RLock()
		for kind := range h.topics {
			for key := range h.topics[kind] {
				keys[kind] = append(keys[kind], key)
			}
		}
		h.mu.RUnlock()
		sem := make(chan struct{}, 16)
		var wg sync.WaitGroup
		for kind := range keys {
			for _, key := range keys[kind] {
				sem <- struct{}{}
				wg.Go(func() {
					defer func() { <-sem }()
					ctx, cancel := context.WithTimeout(context.Background(), h.cfg.Refresh)
					defer cancel()
					if err := h.register(ctx, kind, key, true); err != nil && !errors.Is(err, context.Canceled) {
						h.cfg.Log.Warn("lease renewal failed", "kind", kinds[kind].kind, "id", key, "err", err)
					}
				})
			}
		}
		wg.Wait()
	}
}

// Counts returns the number of coupons and users with local sessions.
func (h *Hub) Counts() (coupons, users int) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.topics[0]), len(h.topics[1])
}
