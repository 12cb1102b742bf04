package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"

	"github.com/couponmesh/couponmesh/persistence/devdb"
)

// runDevDB runs the embedded database (FerretDB on SQLite) as a process of
// its own, for several nodes on one machine (make cluster): couponmesh
// devdb --addr 127.0.0.1:27018 --data data/cluster/db. Until SIGINT or
// SIGTERM.
func runDevDB(args []string) error {
	fs := flag.NewFlagSet("devdb", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:27018", "MongoDB wire protocol listener")
	dir := fs.String("data", "./data/db", "directory of the SQLite files")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := newLogger("info")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	db, err := devdb.Start(ctx, devdb.Config{Addr: *addr, Dir: *dir}, log)
	if err != nil {
		return err
	}
	log.Info("embedded database ready", "uri", db.URI(), "dir", *dir)
	<-ctx.Done()
	return db.Close()
}
