package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/couponmesh/couponmesh"
	"golang.org/x/time/rate"
)

// GrainConfig is what the coupon and user kinds need. Zero fields take the
// DefaultGrainConfig values (Fill).
//
// The yaml and env tags are the node configuration's keys (its actors
// section, COUPONMESH_ACTORS_<KEY>), declared here once: the node embeds
// GrainConfig. Fields tagged yaml:"-" are the node's wiring or keep their
// defaults (UserWrites comes from its limits section).
type GrainConfig struct {
	Store          couponmesh.Store `yaml:"-"`
	PassivateAfter time.Duration    `yaml:"passivate_after" env:"PASSIVATE_AFTER"` // idle time before a grain without subscribed hubs passivates
	SnapshotDelay  time.Duration    `yaml:"snapshot_delay" env:"SNAPSHOT_DELAY"`   // frequent changes are snapshotted at most this often
	HubLease       time.Duration    `yaml:"hub_lease" env:"HUB_LEASE"`             // a hub that did not renew for this long is dropped
	OpTimeout      time.Duration    `yaml:"-"`                                     // bound of one message's database work
	Call           CallConfig       `yaml:"-"`                                     // grain-to-grain notices
	// UserWrites bounds each user's writes (claims, follows, unfollows),
	// counted in the user grain: across every session and node (default 10
	// per second, bursts of 100).
	UserWrites RateLimit `yaml:"-"`
	// Local, when set, is where coupon grains publish their state for
	// local reads (Service.UseLocal).
	Local *LocalCoupons `yaml:"-"`
	// Churn, when set, makes active grains validate themselves against the
	// journal after membership churn before they answer (nil: never, for a
	// node that is alone by construction).
	Churn   *Churn       `yaml:"-"`
	Metrics *Metrics     `yaml:"-"`
	Log     *slog.Logger `yaml:"-"`

	// ClaimPushBudget bounds the frames per second that pushes of one
	// coupon's claimed count may cost, summed over its watching sessions
	// (0: the coupon kind's default, 10,000; actors/coupon pushes.go).
	ClaimPushBudget int `yaml:"-"`

	deferred chan struct{} // the kind's deferred loads in flight (Fill makes it)
}

// DefaultGrainConfig returns the defaults: passivation after 5 idle
// minutes, snapshots at most once a second, hub leases of 30 s, 5 s of
// database work per message, DefaultCallConfig, DefaultUserWrites.
func DefaultGrainConfig() GrainConfig {
	return GrainConfig{PassivateAfter: 5 * time.Minute, SnapshotDelay: time.Second, HubLease: 30 * time.Second,
		OpTimeout: 5 * time.Second, Call: DefaultCallConfig(), UserWrites: DefaultUserWrites}
}

// Validate reports settings the grains cannot use: negative times, and a
// user write burst below zero. Each error names the field's key.
func (c GrainConfig) Validate() error {
	var errs []error
	for _, f := range []struct {
		key string
		d   time.Duration
	}{{"passivate_after", c.PassivateAfter}, {"snapshot_delay", c.SnapshotDelay}, {"hub_lease", c.HubLease}} {
		if f.d < 0 {
			errs = append(errs, fmt.Errorf("%s %s is negative", f.key, f.d))
		}
	}
	if c.UserWrites.Burst < 0 {
		errs = append(errs, errors.New("user_write_burst must be positive"))
	}
	return errors.Join(errs...)
}

// Fill sets defaults (DefaultGrainConfig) for the zero fields.
func (c *GrainConfig) Fill() {
	d := DefaultGrainConfig()
	if c.PassivateAfter <= 0 {
		c.PassivateAfter = d.PassivateAfter
	}
	if c.SnapshotDelay <= 0 {
		c.SnapshotDelay = d.SnapshotDelay
	}
	if c.HubLease <= 0 {
		c.HubLease = d.HubLease
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = d.OpTimeout
	}
	if c.Call.Timeout <= 0 {
		c.Call = d.Call
	}
	if c.UserWrites.Rate == 0 {
		c.UserWrites.Rate = d.UserWrites.Rate
	}
	if c.UserWrites.Burst <= 0 {
		c.UserWrites.Burst = max(d.UserWrites.Burst, int(c.UserWrites.Rate))
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.deferred == nil {
		c.deferred = make(chan struct{}, deferredLoads)
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
