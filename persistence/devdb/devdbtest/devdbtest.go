// Package devdbtest starts the embedded FerretDB that a test package shares:
// one server per test binary, in a temporary directory, from TestMain.
//
// Test support only: it imports testing and is imported by _test files
// only. It imports the standard library and persistence/devdb.
package devdbtest

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh/persistence/devdb"
)

// Main starts an embedded FerretDB on 127.0.0.1 (a free port) with its
// files in a new temporary directory, stores it in *db, runs m, then closes
// the database and removes the directory. It returns the exit code for
// os.Exit: 1 when the database did not start within a minute. FerretDB logs
// errors only, to stderr. Use it as
//
//	func TestMain(m *testing.M) { os.Exit(devdbtest.Main(m, &testDB)) }
func Main(m *testing.M, db **devdb.DB) int {
	dir, err := os.MkdirTemp("", "devdbtest-")
	if err != nil {
		slog.Error("devdbtest: temp dir", "err", err)
		return 1
	}
	defer os.RemoveAll(dir)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	*db, err = devdb.Start(ctx, devdb.Config{Dir: dir}, log)
	if err != nil {
		log.Error("devdbtest: start devdb", "err", err)
		return 1
	}
	defer (*db).Close()
	return m.Run()
}
