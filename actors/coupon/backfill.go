package coupon

import (
	"context"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors"
)

// backfill stores the reminders of a coupon created before coupons had
// reminders (Machine.Backfill), off the mailbox: the activation does not
// wait for it, and one that fails is tried again at the next activation
// (until then, claims after expiresAt are refused by the clock anyway).
//
// Why on load rather than a sweep of the database: the embedded database
// scans a whole collection for any query but one by _id, so a sweep of
// every coupon would cost a scan of all snapshots, while this costs one
// upsert by _id per reminder, only for coupons that need it, and needs no
// record of a sweep done. Its limit: an old coupon that is never activated
// again (nobody reads, watches or claims it) gets no expired entry; its
// followers' feeds then do not show the expiry either.
func (g *grain) backfill(rs []couponmesh.Reminder) {
	if len(rs) == 0 {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), g.Cfg.OpTimeout)
		defer cancel()
		if err := actors.SetReminders(ctx, g.cluster, g.Cfg, rs...); err != nil {
			g.Log.Warn("reminders of a coupon older than reminders not stored; trying again at its next activation", "err", err)
			return
		}
		g.Log.Info("reminders of a coupon older than reminders stored", "reminders", len(rs))
	}()
}
