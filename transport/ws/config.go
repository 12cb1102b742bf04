package ws

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/couponmesh/couponmesh/protocol"
)

// Subprotocol is the WebSocket subprotocol of protocol v1. A client that
// does not offer it is closed with 1002 right after the upgrade.
const Subprotocol = protocol.Subprotocol

// BatchBytes caps the size of one outgoing text frame built from several
// queued messages (protocol.BatchBytes). A single message larger than this
// goes out alone.
const BatchBytes = protocol.BatchBytes

// Config tunes the WebSocket endpoint. Zero fields take the defaults of
// DefaultConfig when passed to NewHandler.
//
// The yaml and env tags are the node configuration's keys (the ws section
// of configs/node.yaml, COUPONMESH_WS_<KEY>), declared here once: the node
// embeds Config. Fields tagged yaml:"-" are set by the node from elsewhere
// (OriginPatterns, TrustedProxies) or keep their defaults.
type Config struct {
	// ReadLimit is the largest client frame accepted; a bigger one closes
	// the session with 1009 (default 16 KiB).
	ReadLimit int64 `yaml:"read_limit" env:"READ_LIMIT"`
	// SendQueue is how many frames (replies and pushes) may wait for the
	// writer before the session is dropped as a slow consumer (default 1024),
	// besides one conflated push per followed coupon and one per coupon's
	// presence.
	SendQueue int `yaml:"send_queue" env:"SEND_QUEUE"`
	// PingInterval is the time between WebSocket pings (default 30 s).
	PingInterval time.Duration `yaml:"ping_interval" env:"PING_INTERVAL"`
	// PingTimeout is how long a pong may take before the session is dropped
	// (default 10 s).
	PingTimeout time.Duration `yaml:"-"`
	// AuthTimeout is how long a new session may go without a successful
	// auth before it is closed with 1008 (default 5 s).
	AuthTimeout time.Duration `yaml:"auth_timeout" env:"AUTH_TIMEOUT"`
	// RequestTimeout bounds each request (default 10 s); a request that
	// runs out of time answers unavailable.
	RequestTimeout time.Duration `yaml:"-"`
	// MaxInflight is how many requests of one session may run at once
	// (default 16); more answer rate_limited.
	MaxInflight int `yaml:"max_inflight" env:"MAX_INFLIGHT"`
	// MaxSubscriptions is how many coupons one session may subscribe to
	// (default 1000).
	MaxSubscriptions int `yaml:"max_subscriptions" env:"MAX_SUBSCRIPTIONS"`
	// OriginPatterns lists the browser origins, besides the request's own
	// host, allowed to open a session (coder/websocket AcceptOptions
	// semantics: host patterns matched with path.Match).
	OriginPatterns []string `yaml:"-"`
	// CloseGrace is how long a session being closed by the server may take
	// to flush its close frame before its TCP connection is cut (default 5 s).
	CloseGrace time.Duration `yaml:"-"`
	// DrainGrace is how long a draining session waits, after its draining
	// push, for the client's drained (it will send nothing more on the
	// session) before it is closed with 1012 anyway, once its requests are
	// answered; requests that arrive meanwhile are served (default 2 s).
	DrainGrace time.Duration `yaml:"-"`

	// RequestRate is how many request frames per second one session may
	// send on average, RequestBurst how many at once (a token bucket over
	// every frame the session sends, valid or not; defaults 100/s and 200).
	// A frame over the limit answers rate_limited and is not run. Negative
	// RequestRate: no limit.
	RequestRate  float64 `yaml:"request_rate" env:"REQUEST_RATE"`
	RequestBurst int     `yaml:"request_burst" env:"REQUEST_BURST"`
	// FloodRefusals and FloodWindow close a session that keeps flooding: a
	// session refused more than FloodRefusals frames (rate_limited for its
	// request rate) within FloodWindow is closed with 1008 (a token bucket of
	// FloodRefusals refilled over FloodWindow; defaults 100 and 10 s). Its
	// user then may not open a session on this node for FloodWindow (auth
	// answers rate_limited, 1008), so that reconnecting does not bring a
	// fresh request bucket.
	FloodRefusals int           `yaml:"flood_refusals" env:"FLOOD_REFUSALS"`
	FloodWindow   time.Duration `yaml:"flood_window" env:"FLOOD_WINDOW"`
	// SessionsPerUser is how many authenticated sessions one user may hold
	// on this node (default 16). The auth that would exceed it answers
	// rate_limited and the session is closed with 1008. Negative: no limit.
	SessionsPerUser int `yaml:"sessions_per_user" env:"SESSIONS_PER_USER"`
	// SessionsPerIP is how many sessions one client address may hold on
	// this node (default 256); HandshakeRate and HandshakeBurst bound how
	// many upgrades per second it may start (a token bucket; defaults 20/s
	// and 256). Over either limit the upgrade is refused with HTTP 429
	// before any WebSocket is opened. IPv6 addresses count per /64. Negative:
	// no limit.
	SessionsPerIP  int     `yaml:"sessions_per_ip" env:"SESSIONS_PER_IP"`
	HandshakeRate  float64 `yaml:"handshake_rate" env:"HANDSHAKE_RATE"`
	HandshakeBurst int     `yaml:"handshake_burst" env:"HANDSHAKE_BURST"`
	// TrustedProxies are the networks of reverse proxies and load balancers
	// whose X-Forwarded-For header names the client. The client address is
	// the TCP peer unless the peer is in one of them; then it is the
	// right-most X-Forwarded-For address that is not. Empty: the header is
	// never read.
	TrustedProxies []netip.Prefix `yaml:"-"`

	// Anonymous sessions: a session that sends subscribe, unsubscribe or
	// get before any auth becomes anonymous (a visitor browsing without an
	// account) and may go on with those ops only; it is not closed at
	// AuthTimeout, and a later auth turns it into a normal session.
	// AnonymousPerIP is how many anonymous sessions one client address may
	// hold on this node (default 32; IPv6 per /64; negative: no limit);
	// over it the op answers rate_limited and the session stays as it was.
	// AnonymousRequestRate and AnonymousRequestBurst replace RequestRate
	// and RequestBurst while a session is anonymous (defaults 10/s and 40),
	// AnonymousSubscriptions replaces MaxSubscriptions (default 100).
	AnonymousPerIP         int     `yaml:"anonymous_per_ip" env:"ANONYMOUS_PER_IP"`
	AnonymousRequestRate   float64 `yaml:"anonymous_request_rate" env:"ANONYMOUS_REQUEST_RATE"`
	AnonymousRequestBurst  int     `yaml:"anonymous_request_burst" env:"ANONYMOUS_REQUEST_BURST"`
	AnonymousSubscriptions int     `yaml:"anonymous_subscriptions" env:"ANONYMOUS_SUBSCRIPTIONS"`
}

// DefaultConfig returns the production defaults.
func DefaultConfig() Config {
	return Config{
		ReadLimit:        protocol.MaxRequestBytes,
		SendQueue:        1024,
		PingInterval:     30 * time.Second,
		PingTimeout:      10 * time.Second,
		AuthTimeout:      5 * time.Second,
		RequestTimeout:   10 * time.Second,
		MaxInflight:      16,
		MaxSubscriptions: 1000,
		CloseGrace:       5 * time.Second,
		DrainGrace:       2 * time.Second,
		RequestRate:      100,
		RequestBurst:     200,
		FloodRefusals:    100,
		FloodWindow:      10 * time.Second,
		SessionsPerUser:  16,
		SessionsPerIP:    256,
		HandshakeRate:    20,
		HandshakeBurst:   256,

		AnonymousPerIP:         32,
		AnonymousRequestRate:   10,
		AnonymousRequestBurst:  40,
		AnonymousSubscriptions: 100,
	}
}

// Validate reports the settings a node must not start with: negative
// counts where a negative value does not mean "no limit". Each error names
// the field's key.
func (c Config) Validate() error {
	var errs []error
	for _, f := range []struct {
		key string
		v   int
	}{
		{"send_queue", c.SendQueue}, {"max_inflight", c.MaxInflight}, {"max_subscriptions", c.MaxSubscriptions},
		{"request_burst", c.RequestBurst}, {"flood_refusals", c.FloodRefusals}, {"handshake_burst", c.HandshakeBurst},
		{"anonymous_request_burst", c.AnonymousRequestBurst}, {"anonymous_subscriptions", c.AnonymousSubscriptions},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", f.key))
		}
	}
	return errors.Join(errs...)
}

// LocalConfig returns a config for tests on loopback: the defaults with
// short timers.
func LocalConfig() Config {
	c := DefaultConfig()
	c.PingInterval = time.Second
	c.PingTimeout = time.Second
	c.AuthTimeout = time.Second
	c.RequestTimeout = 2 * time.Second
	c.CloseGrace = time.Second
	return c
}

// Effective returns c as NewHandler uses it: zero fields set to their defaults
// (what `couponmesh node --check-config` prints).
func (c Config) Effective() Config { return c.withDefaults() }

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.ReadLimit <= 0 {
		c.ReadLimit = d.ReadLimit
	}
	if c.SendQueue <= 0 {
		c.SendQueue = d.SendQueue
	}
	if c.PingInterval <= 0 {
		c.PingInterval = d.PingInterval
	}
	if c.PingTimeout <= 0 {
		c.PingTimeout = d.PingTimeout
	}
	if c.AuthTimeout <= 0 {
		c.AuthTimeout = d.AuthTimeout
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = d.RequestTimeout
	}
	if c.MaxInflight <= 0 {
		c.MaxInflight = d.MaxInflight
	}
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = d.MaxSubscriptions
	}
	if c.CloseGrace <= 0 {
		c.CloseGrace = d.CloseGrace
	}
	if c.DrainGrace <= 0 {
		c.DrainGrace = d.DrainGrace
	}
	if c.RequestRate == 0 {
		c.RequestRate = d.RequestRate
	}
	if c.RequestBurst <= 0 {
		c.RequestBurst = max(d.RequestBurst, int(c.RequestRate))
	}
	if c.FloodRefusals <= 0 {
		c.FloodRefusals = d.FloodRefusals
	}
	if c.FloodWindow <= 0 {
		c.FloodWindow = d.FloodWindow
	}
	if c.SessionsPerUser == 0 {
		c.SessionsPerUser = d.SessionsPerUser
	}
	if c.SessionsPerIP == 0 {
		c.SessionsPerIP = d.SessionsPerIP
	}
	if c.HandshakeRate == 0 {
		c.HandshakeRate = d.HandshakeRate
	}
	if c.HandshakeBurst <= 0 {
		c.HandshakeBurst = max(d.HandshakeBurst, int(c.HandshakeRate))
	}
	if c.AnonymousPerIP == 0 {
		c.AnonymousPerIP = d.AnonymousPerIP
	}
	if c.AnonymousRequestRate == 0 {
		c.AnonymousRequestRate = d.AnonymousRequestRate
	}
	if c.AnonymousRequestBurst <= 0 {
		c.AnonymousRequestBurst = max(d.AnonymousRequestBurst, int(c.AnonymousRequestRate))
	}
	if c.AnonymousSubscriptions <= 0 {
		c.AnonymousSubscriptions = d.AnonymousSubscriptions
	}
	return c
}
