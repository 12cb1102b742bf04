package mongodb_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"

	"github.com/couponmesh/couponmesh/persistence/devdb"
	"github.com/couponmesh/couponmesh/persistence/devdb/devdbtest"
	"github.com/couponmesh/couponmesh/persistence/mongodb"
)

// testDB is the embedded FerretDB shared by the package's tests; each test
// opens its own database on it.
var testDB *devdb.DB

func TestMain(m *testing.M) { os.Exit(devdbtest.Main(m, &testDB)) }

var dbSeq atomic.Int64

// openStore opens a store on a fresh database of the shared server.
func openStore(t testing.TB, mods ...func(*mongodb.Config)) *mongodb.Store {
	t.Helper()
	cfg := mongodb.DefaultConfig()
	cfg.URI = testDB.URI()
	cfg.Database = fmt.Sprintf("test%d", dbSeq.Add(1))
	cfg.MaxPoolSize = 20
	for _, mod := range mods {
		mod(&cfg)
	}
	s, err := mongodb.Open(t.Context(), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return s
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}
