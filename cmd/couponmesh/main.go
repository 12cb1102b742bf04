// Command couponmesh is the one binary of couponmesh.
//
//	couponmesh node [--config FILE] [--check-config]   run a node
//	couponmesh devdb [--addr HOST:PORT] [--data DIR]    run the embedded dev database alone
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
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "couponmesh:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: couponmesh node [--config FILE] [--check-config] | couponmesh devdb [--addr HOST:PORT] [--data DIR]")
	}
	switch args[0] {
	case "node":
		return runNode(args[1:])
	case "devdb":
		return runDevDB(args[1:])
	default:
		return fmt.Errorf("unknown command %q (want: node or devdb)", args[0])
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
	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	app.Stop(sctx)
	return nil
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
