package ws

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons for couponmesh_ws_sessions_dropped_total: every close the server
// initiates counts once under one of them.
const (
	dropSlowConsumer   = "slow_consumer"
	dropAuthTimeout    = "auth_timeout"
	dropTokenExpired   = "token_expired"
	dropPingTimeout    = "ping_timeout"
	dropWriteError     = "write_error"
	dropBadSubprotocol = "bad_subprotocol"
	dropShutdown       = "shutdown"
	dropDrain          = "drain"
	dropStillRunning   = "requests_running" // a drain that found a request running past its timeout: 1011
	dropFlood          = "flood"
	dropUserSessions   = "user_sessions"
	dropUserFlooded    = "user_flooded"
)

type metrics struct {
	sessions    prometheus.Gauge
	anonymous   prometheus.Gauge
	requests    *prometheus.CounterVec
	framesOut   prometheus.Counter
	messagesOut prometheus.Counter
	dropped     *prometheus.CounterVec
	refused     *prometheus.CounterVec
	limited     prometheus.Counter
	conflated   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "couponmesh_ws_sessions",
			Help: "Open WebSocket sessions on this node.",
		}),
		anonymous: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "couponmesh_ws_anonymous_sessions",
			Help: "Open anonymous WebSocket sessions (visitors: subscribe, unsubscribe and get only) on this node.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "couponmesh_ws_requests_total",
			Help: "WebSocket requests by op and result (ok or the error code). Undecodable frames count as op \"invalid\", unknown ops as \"unknown\".",
		}, []string{"op", "result"}),
		framesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "couponmesh_ws_frames_out_total",
			Help: "WebSocket text frames written; one frame may carry several messages.",
		}),
		messagesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "couponmesh_ws_messages_out_total",
			Help: "Protocol messages (replies and pushes) written.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "couponmesh_ws_sessions_dropped_total",
			Help: "Sessions closed by the server, by reason.",
		}, []string{"reason"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "couponmesh_ws_upgrades_refused_total",
			Help: "WebSocket upgrades refused with HTTP 429 before the handshake, by reason (handshake_rate, ip_sessions).",
		}, []string{"reason"}),
		limited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "couponmesh_ws_frames_rate_limited_total",
			Help: "Client frames refused with rate_limited because their session exceeded its request rate.",
		}),
		conflated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "couponmesh_ws_pushes_conflated_total",
			Help: "Coupon pushes not written because a newer state of the same coupon was queued for the session (or written already).",
		}),
	}
	if reg != nil {
		m.sessions = register(reg, m.sessions)
		m.anonymous = register(reg, m.anonymous)
		m.requests = register(reg, m.requests)
		m.framesOut = register(reg, m.framesOut)
		m.messagesOut = register(reg, m.messagesOut)
		m.dropped = register(reg, m.dropped)
		m.refused = register(reg, m.refused)
		m.limited = register(reg, m.limited)
		m.conflated = register(reg, m.conflated)
	}
	return m
}

// register registers c, or returns the collector already registered under
// the same name, so that several handlers may share one registry.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}
