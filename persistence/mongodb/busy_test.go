package mongodb_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the driver FerretDB itself uses

	"github.com/couponmesh/couponmesh/persistence/devdb"
	"github.com/couponmesh/couponmesh/persistence/mongodb"
)

// TestOpenWaitsOutALockedDatabase: another writer holds the embedded
// database's file for longer than FerretDB's busy timeout (10 s), as a
// loaded machine can make the devdb _id indexer do, so FerretDB answers
// SQLITE_BUSY to Open's index creation (the TestOpenConfig flake of issue
// 15). Open retries, and succeeds once the file is free.
func TestOpenWaitsOutALockedDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: holds a lock past SQLite's 10 s busy timeout")
	}
	dir := t.TempDir()
	db, err := devdb.Start(t.Context(), devdb.Config{Dir: dir}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cfg := mongodb.DefaultConfig()
	cfg.URI, cfg.Database, cfg.ConnectTimeout = db.URI(), "locked", 30*time.Second
	s, err := mongodb.Open(t.Context(), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	s.Close(context.Background())

	raw, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "locked.sqlite")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	conn, err := raw.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	const hold = 11 * time.Second
	released := make(chan error, 1)
	go func() {
		time.Sleep(hold)
		_, err := conn.ExecContext(context.Background(), "COMMIT")
		released <- err
	}()
	start := time.Now()
	s, err = mongodb.Open(t.Context(), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("Open while the file was locked for %v: %v", hold, err)
	}
	s.Close(context.Background())
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	t.Logf("Open returned %v after the lock was taken (held %v)", time.Since(start).Round(time.Millisecond), hold)
}
