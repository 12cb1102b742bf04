package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

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
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("devdb: unexpected arguments %q", fs.Args())
	}
	log := newLogger(*level)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	db, err := devdb.Start(ctx, devdb.Config{Addr: *addr, Dir: *dir}, log)
	if err != nil {
		return err
	}
	// The one line on stdout: what to connect to (tests parse it).
	fmt.Printf("devdb listening uri=%s\n", db.URI())
	<-ctx.Done()
	log.Info("devdb stopping")
	return db.Close()
}
