package actors

import (
	"log/slog"
	"time"

	"github.com/couponmesh/couponmesh"
)

// GrainConfig is what the coupon and user kinds need.
type GrainConfig struct {
	Store          couponmesh.Store
	PassivateAfter time.Duration // idle time before a grain without subscribed hubs passivates
	SnapshotDelay  time.Duration // frequent changes are snapshotted at most this often
	HubLease       time.Duration // a hub that did not renew for this long is dropped
	OpTimeout      time.Duration // bound of one message's database work
	Call           CallConfig    // grain-to-grain notices
	Metrics        *Metrics
	Log            *slog.Logger
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
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

var timeNow = time.Now
