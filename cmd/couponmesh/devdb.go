package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/couponmesh/couponmesh/persistence/devdb"
)

// runDevDB runs the embedded FerretDB as a standalone server until SIGINT or
// SIGTERM: a database that tests (and developers) can kill -9 and restart on
// the same address and directory, apart from any node.
func runDevDB(args []string) error {
	fs := flag.NewFlagSet("devdb", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:27017", "TCP host:port to listen on (port 0 picks one)")
	dir := fs.String("data", "./data/devdb", "directory of the SQLite files (not the one of a node's embedded database, ./data/db)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	pprofAddr := fs.String("pprof", "", "also serve Go profiles (/debug/pprof/) on this loopback host:port, e.g. to see where the database spends a benchmark")
	pragmas := fs.String("sqlite-pragmas", os.Getenv("COUPONMESH_DEVDB_SQLITE_PRAGMAS"), "SQLite pragmas for every connection, comma-separated NAME(VALUE), e.g. cache_size(-65536) (default $COUPONMESH_DEVDB_SQLITE_PRAGMAS: so the devdb a bench starts takes them too)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("devdb: unexpected arguments %q", fs.Args())
	}
	log := newLogger(*level)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *pprofAddr != "" {
		if err := servePprof(*pprofAddr, log); err != nil {
			return err
		}
	}
	cfg := devdb.Config{Addr: *addr, Dir: *dir}
	if *pragmas != "" {
		cfg.Pragmas = strings.Split(*pragmas, ",")
	}
	db, err := devdb.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	// The one line on stdout: what to connect to (tests parse it).
	fmt.Printf("devdb listening uri=%s\n", db.URI())
	<-ctx.Done()
	log.Info("devdb stopping")
	return db.Close()
}

// servePprof serves net/http/pprof's handlers on addr, which must be a
// loopback address (the profiles are not protected).
func servePprof(addr string, log *slog.Logger) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--pprof %s: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--pprof %s: only a loopback address", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	go func() { _ = (&http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}).Serve(ln) }()
	log.Info("pprof listening", "addr", ln.Addr().String())
	return nil
}
