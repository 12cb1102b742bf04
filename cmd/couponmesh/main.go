// Command couponmesh is the one binary of couponmesh.
//
//	couponmesh node [--config FILE] [--check-config]   run a node
//	couponmesh ctl [--admin HOST:PORT] members|drain|actors|sessions   operate and inspect a cluster
//	couponmesh devdb [--addr HOST:PORT] [--data DIR]   the embedded database alone (make cluster)
//	couponmesh bench SCENARIO [flags]   whole-system load against processes it starts (capacity, fanout,
//	                                    coupons, claims, reads, failover), and `bench report` (make bench)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/couponmesh/couponmesh/bench"
	adminctl "github.com/couponmesh/couponmesh/transport/admin/ctl"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "couponmesh:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		//lint:ignore ST1005 a usage text, printed whole
		return errors.New("usage: couponmesh node|ctl|devdb|bench ...")
	}
	switch args[0] {
	case "node":
		return runNode(args[1:])
	case "ctl":
		return adminctl.Run(args[1:], os.Stdout)
	case "devdb":
		return runDevDB(args[1:])
	case "bench":
		return bench.Run(args[1:])
	default:
		return fmt.Errorf("unknown command %q (want: node, ctl, devdb, bench)", args[0])
	}
}

func runNode(args []string) error {
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	path := fs.String("config", "", "YAML config file (e.g. configs/node.yaml); the environment overrides it")
	check := fs.Bool("check-config", false, "print the effective configuration and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := LoadConfig(*path, environ())
	if err != nil {
		return err
	}
	if *check {
		fmt.Print(cfg.Redacted())
		return nil
	}
	log := newLogger(cfg.LogLevel).With("node", cfg.NodeName)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app, err := Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		log.Info("signal received: draining")
		sctx, cancel := context.WithTimeout(context.Background(), cfg.Cluster.DrainDelay.D()+cfg.Cluster.DrainSpread.D()+20*time.Second)
		defer cancel()
		app.Stop(sctx)
		return nil
	case <-app.Drained():
		return nil // drained through the admin API
	case <-app.Evicted():
		// No graceful leave: the others removed this member already, and its
		// activations must stop serving now. A new process gets a new ID.
		return errors.New("evicted by the cluster (declared dead while running): restart with a new identity")
	}
}

func newLogger(level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
}

func environ() map[string]string {
	m := make(map[string]string)
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}
