package actors

import (
	"log/slog"
	"time"

	"github.com/couponmesh/couponmesh"
	"golang.org/x/time/rate"
)

// GrainConfig is what the coupon and user kinds need.
type GrainConfig struct {
	Store          couponmesh.Store
	PassivateAfter time.Duration // idle time before a grain without subscribed hubs passivates
	SnapshotDelay  time.Duration // frequent changes are snapshotted at most this often
	HubLease       time.Duration // a hub that did not renew for this long is dropped
	OpTimeout      time.Duration // bound of one message's database work
	Call           CallConfig    // grain-to-grain notices
	// UserWrites bounds each user's writes (claims, follows, unfollows),
	// counted in the user grain: across every session and node (default 10
	// per second, bursts of 100).
	UserWrites RateLimit
	// Local, when set, is where coupon grains publish their state for
	// local reads (Service.UseLocal).
	Local *LocalCoupons
	// Churn, when set, makes active grains validate themselves against the
	// journal after membership churn before they answer (nil: never, for a
	// node that is alone by construction).
	Churn   *Churn
	Metrics *Metrics
	Log     *slog.Logger
}

// Fill sets defaults for the zero fields.
func (c *GrainConfig) Fill() {
	if c.PassivateAfter <= 0 {
		c.PassivateAfter = 5 * time.Minute
	}
	if c.SnapshotDelay <= 0 {
		c.SnapshotDelay = time.Second
	}
	if c.HubLease <= 0 {
		c.HubLease = 30 * time.Second
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = 5 * time.Second
	}
	if c.Call.Timeout <= 0 {
		c.Call = DefaultCallConfig()
	}
	if c.UserWrites.Rate == 0 {
		c.UserWrites.Rate = DefaultUserWrites.Rate
	}
	if c.UserWrites.Burst <= 0 {
		c.UserWrites.Burst = max(DefaultUserWrites.Burst, int(c.UserWrites.Rate))
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

// RateLimit is a token bucket: Rate tokens per second on average, Burst at
// once. A negative Rate means no limit.
type RateLimit struct {
	Rate  float64
	Burst int
}

// DefaultUserWrites is the default GrainConfig.UserWrites: room for a
// person and for scripted clients that behave, not for a flood.
var DefaultUserWrites = RateLimit{Rate: 10, Burst: 100}

// Limiter returns a token bucket of l (rate.Inf when Rate is negative).
func (l RateLimit) Limiter() *rate.Limiter {
	if l.Rate < 0 {
		return rate.NewLimiter(rate.Inf, l.Burst)
	}
	return rate.NewLimiter(rate.Limit(l.Rate), l.Burst)
}

var timeNow = time.Now
