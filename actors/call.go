package actors

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/couponmesh/couponmesh"
	"github.com/prometheus/client_golang/prometheus"
)

// HubName is the actor name of every node's hub.
const HubName = "couponmesh-hub"

// CallConfig bounds a request to a grain.
type CallConfig struct {
	Timeout time.Duration // whole call, retries included; a ctx deadline shortens it
	Retries int           // attempts after the first, on timeout or dead letter
	Backoff time.Duration // base of the jittered exponential backoff between attempts
}

// DefaultCallConfig is what Service uses unless told otherwise.
func DefaultCallConfig() CallConfig {
	return CallConfig{Timeout: 5 * time.Second, Retries: 6, Backoff: 20 * time.Millisecond}
}

// Call sends method(payload) to the grain kind/id and decodes the reply into
// out. It retries on timeouts and dead letters (the grain moved or
// passivated) with a real jittered backoff, never longer than the deadline.
func Call(ctx context.Context, c *cluster.Cluster, cfg CallConfig, kind, id, method string, payload, out any) error {
	if c == nil {
		return errNoCluster
	}
	timeout := cfg.Timeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if timeout <= 0 {
		return fmt.Errorf("%s %s/%s: %w", method, kind, id, context.DeadlineExceeded)
	}
	// protoactor runs its retry loop under one deadline of the attempt
	// timeout, so an attempt that times out ends the call, while quick
	// failures (dead letter: the grain moved or passivated) are retried with
	// backoff inside the same budget. A shorter attempt timeout would re-send
	// requests to a grain that is merely busy and pile up its mailbox.
	attempt := timeout
	deadline := time.Now().Add(timeout)
	backoff := func(i int) int {
		d := cfg.Backoff << min(i, 6)
		d = time.Duration(rand.Int64N(int64(d) + 1))
		if left := time.Until(deadline); d > left {
			d = max(left, 0)
		}
		time.Sleep(d)
		return i + 1
	}
	resp, err := c.Request(id, kind, Request(method, payload),
		cluster.WithTimeout(attempt), cluster.WithRetryCount(cfg.Retries+1), cluster.WithRetryAction(backoff))
	if err != nil {
		return fmt.Errorf("%s %s/%s: %w: %w", method, kind, id, couponmesh.ErrUnavailable, err)
	}
	return Decode(resp, out)
}

// Metrics of the grains.
type Metrics struct {
	Claims        *prometheus.CounterVec
	AppendSeconds prometheus.Histogram
	Activations   *prometheus.CounterVec
}

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
	}
	if reg != nil {
		reg.MustRegister(m.Claims, m.AppendSeconds, m.Activations)
	}
	return m
}
