package actors

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/couponmesh/couponmesh"
	"github.com/prometheus/client_golang/prometheus"
)

// HubName is the actor name of every node's hub.
const HubName = "couponmesh-hub"

// CallConfig bounds a request to a grain.
type CallConfig struct {
	Timeout time.Duration // whole call, retries included; a ctx deadline shortens it
	Retries int           // attempts after the first; 0: as many as the deadline allows
	Backoff time.Duration // base of the jittered exponential backoff between attempts (at most 16× it)
}

// DefaultCallConfig is what Service uses unless told otherwise.
func DefaultCallConfig() CallConfig {
	return CallConfig{Timeout: 5 * time.Second, Backoff: 20 * time.Millisecond}
}

// Call sends method(payload) to the grain kind/id and decodes the reply into
// out. It retries with a real jittered backoff, inside the deadline, when
// the grain moved or passivated (dead letter), when no owner answered the
// lookup, and when the member the request went to leaves the cluster while
// the request waits (it died: the identity is activated elsewhere now).
//
// An attempt may wait for the whole remaining budget: a shorter attempt
// timeout would re-send requests to a grain that is merely busy and pile up
// its mailbox. protoactor's own retry loop (cluster.Request) cannot give up
// on a member that died, so Call runs its own.
func Call(ctx context.Context, c *cluster.Cluster, cfg CallConfig, kind, id, method string, payload, out any) error {
	if c == nil {
		return errNoCluster
	}
	timeout := cfg.Timeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	deadline := time.Now().Add(timeout)
	var msg *cluster.GrainRequest // the JSON envelope, built at its first use
	encoded := func() *cluster.GrainRequest {
		if msg == nil {
			msg = Request(method, payload)
		}
		return msg
	}
	var last error = context.DeadlineExceeded
	var changed <-chan struct{}
	for attempt := 0; cfg.Retries <= 0 || attempt <= cfg.Retries; attempt++ {
		if attempt > 0 {
			d := time.Duration(rand.Int64N(int64(cfg.Backoff<<min(attempt-1, 4)) + 1))
			if time.Until(deadline) <= d {
				break
			}
			// A topology change (the dead member removed, the new owner
			// known) ends the wait: the identity may be served now.
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-changed:
			}
			t.Stop()
		}
		changed = topologyChanged(c)
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		pid, _ := c.PidCache.Get(id, kind)
		if pid == nil {
			if pid = c.Get(id, kind); pid == nil {
				last = errNoOwner
				continue
			}
			c.PidCache.Set(id, kind, pid)
		}
		cachedPID(c, kind, id)
		res, err := request(c, pid, message(c, pid, method, payload, encoded), left)
		switch {
		case err == nil:
			return Decode(res, out)
		case errors.Is(err, errMemberLeft), errors.Is(err, actor.ErrDeadLetter), errors.Is(err, remote.ErrDeadLetter):
			c.PidCache.RemoveByValue(id, kind, pid)
			last = err
		default: // timeout: the budget is spent
			last = err
		}
	}
	return fmt.Errorf("%s %s/%s: %w: %w", method, kind, id, couponmesh.ErrUnavailable, last)
}

var (
	errNoOwner    = errors.New("no member answered for the identity")
	errMemberLeft = errors.New("the member left the cluster")
)

// request sends msg to pid and waits for the reply, at most timeout, and
// no longer than pid's member stays in the cluster.
func request(c *cluster.Cluster, pid *actor.PID, msg any, timeout time.Duration) (any, error) {
	f := c.ActorSystem.Root.RequestFuture(pid, msg, timeout)
	if pid.Address == c.ActorSystem.Address() {
		return f.Result()
	}
	remoteRequests.Inc()
	type result struct {
		v   any
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := f.Result()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-leftSignal(c, pid.Address):
		return nil, errMemberLeft
	}
}

// Topology changes: one event subscription per cluster; a channel per
// member address that is closed when the member leaves, and one that is
// closed at the next change of any kind.
var watchers sync.Map // *cluster.Cluster → *topologyWatcher

type topologyWatcher struct {
	mu      sync.Mutex
	left    map[string]chan struct{}
	changed chan struct{}
}

func watcherOf(c *cluster.Cluster) *topologyWatcher {
	v, loaded := watchers.LoadOrStore(c, &topologyWatcher{left: make(map[string]chan struct{}), changed: make(chan struct{})})
	w := v.(*topologyWatcher)
	if !loaded {
		c.ActorSystem.EventStream.Subscribe(func(ev any) {
			t, ok := ev.(*cluster.ClusterTopology)
			if !ok {
				return
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			close(w.changed)
			w.changed = make(chan struct{})
			for _, m := range t.Left {
				if ch, ok := w.left[m.Address()]; ok {
					close(ch)
					delete(w.left, m.Address())
				}
			}
		})
	}
	return w
}

// leftSignal is closed when the member at addr leaves the topology.
func leftSignal(c *cluster.Cluster, addr string) <-chan struct{} {
	w := watcherOf(c)
	w.mu.Lock()
	defer w.mu.Unlock()
	ch, ok := w.left[addr]
	if !ok {
		ch = make(chan struct{})
		w.left[addr] = ch
	}
	return ch
}

// topologyChanged is closed at the next topology change.
func topologyChanged(c *cluster.Cluster) <-chan struct{} {
	w := watcherOf(c)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

// The messages this process sends to other members, by kind: requests
// (Call), replies to callers on other nodes, and pushes to their hubs.
// One process is one node; in-process test clusters share the counts.
var (
	remoteMessages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "couponmesh_remote_messages_total", Help: "Messages sent to other members of the cluster, by kind (request, reply, push).",
	}, []string{"kind"})
	remoteRequests = remoteMessages.WithLabelValues("request")
	remoteReplies  = remoteMessages.WithLabelValues("reply")
	remotePushes   = remoteMessages.WithLabelValues("push")
)

// Metrics of the grains.
type Metrics struct {
	Claims        *prometheus.CounterVec
	AppendSeconds prometheus.Histogram
	Activations   *prometheus.CounterVec
	Loads         *prometheus.CounterVec // state loads by cause: request, deferred (Activation.Lazy)
	RateLimited   *prometheus.CounterVec
	Validations   *prometheus.CounterVec
	// PresenceReceived counts the hub refs (registrations, renewals and
	// presence reports, each carrying the hub's count) coupon grains on
	// this node received; PresencePushes the presence frames they sent to
	// hubs (one per hub per change pushed).
	PresenceReceived prometheus.Counter
	PresencePushes   prometheus.Counter
	Reminders        *ReminderMetrics

	messages atomic.Uint64 // grain requests handled on this node
}

// Messages returns the number of grain requests handled on this node since
// it started (inspections excepted): the console's messages per second.
func (m *Metrics) Messages() uint64 { return m.messages.Load() }

// NewMetrics registers the grain metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Claims: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "couponmesh_claims_total", Help: "Claims answered by coupon grains on this node, by result (ok or error code).",
		}, []string{"result"}),
		AppendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "couponmesh_journal_append_seconds", Help: "Latency of durable journal appends.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		Activations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "couponmesh_activations_total", Help: "Grain activations on this node, by kind.",
		}, []string{"kind"}),
		Loads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "couponmesh_grain_loads_total", Help: "Grain state loads on this node, by kind and cause: a request that needs the state, or deferred (after a hub's renewal activated the grain).",
		}, []string{"kind", "cause"}),
		RateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "couponmesh_grain_rate_limited_total", Help: "Requests refused with rate_limited by grains on this node, by kind (user: the user's write rate).",
		}, []string{"kind"}),
		Validations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "couponmesh_grain_validations_total",
			Help: "Validations of active grains against the journal after cluster churn, by kind and result (current, caught_up: another activation had written, failed: the database did not answer).",
		}, []string{"kind", "result"}),
		PresenceReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "couponmesh_presence_received_total", Help: "Hub registrations, renewals and presence reports (each with the hub's watcher count) received by coupon grains on this node.",
		}),
		PresencePushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "couponmesh_presence_pushes_total", Help: "Presence frames sent by coupon grains on this node to node hubs (one per hub per change pushed).",
		}),
		Reminders: newReminderMetrics(),
	}
	if reg != nil {
		reg.MustRegister(m.Reminders.collectors()...)
		reg.MustRegister(remoteMessages, m.Claims, m.AppendSeconds, m.Activations, m.Loads, m.RateLimited, m.Validations, m.PresenceReceived, m.PresencePushes, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "couponmesh_grain_requests_total", Help: "Requests handled by the grains on this node (inspections excepted).",
		}, func() float64 { return float64(m.messages.Load()) }))
	}
	return m
}
