package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Run runs `couponmesh bench` with args (the scenario name, then its
// flags). It returns when the scenario is done and its processes are
// stopped, or with the first error; SIGINT and SIGTERM end it early (the
// processes are stopped all the same).
func Run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: couponmesh bench capacity|fanout|coupons|claims|cluster-claims|flashsale|reads|failover|drain|presence|timers [flags] (--help for the flags), bench report, or bench breakdown PROFILE…")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "capacity":
		return benchCapacity(ctx, args[1:])
	case "fanout":
		return benchFanout(ctx, args[1:])
	case "claims":
		return benchClaims(ctx, args[1:])
	case "cluster-claims":
		return benchClusterClaims(ctx, args[1:])
	case "flashsale":
		return benchFlashsale(ctx, args[1:])
	case "reads":
		return benchReads(ctx, args[1:])
	case "failover":
		return benchFailover(ctx, args[1:])
	case "coupons":
		return benchCoupons(ctx, args[1:])
	case "drain":
		return benchDrain(ctx, args[1:])
	case "presence":
		return benchPresence(ctx, args[1:])
	case "timers":
		return benchTimers(ctx, args[1:])
	case "report":
		return benchReport(args[1:])
	case "breakdown":
		return benchBreakdown(args[1:])
	default:
		return fmt.Errorf("bench: unknown scenario %q (want: capacity, fanout, coupons, claims, cluster-claims, flashsale, reads, failover, drain, presence, timers, report, breakdown)", args[0])
	}
}
