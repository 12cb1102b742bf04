package devdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// DefaultAddr listens on loopback at a port the kernel picks.
const DefaultAddr = "127.0.0.1:0"

// startTimeout bounds the wait for the listener when ctx has no deadline.
const startTimeout = 30 * time.Second

// Config says where the embedded database listens and keeps its files.
type Config struct {
	// Addr is the TCP host:port to listen on. Port 0 (and an empty Addr,
	// meaning DefaultAddr) picks a free port; DB.Addr reports it.
	Addr string
	// Dir holds the SQLite files (one per database). It is created if
	// missing; required.
	Dir string
	// Pragmas are SQLite pragmas for every connection, in the driver's
	// form NAME(VALUE), e.g. "cache_size(-65536)": FerretDB's own
	// (busy_timeout, journal_mode WAL, auto_vacuum) apply unless one of
	// them is named here. For measuring the database's settings.
	Pragmas []string
}

// DB is a running embedded FerretDB.
type DB struct {
	addr string
	uri  string

	stop    context.CancelFunc
	done    chan struct{} // closed when Run has returned
	indexer *idIndexer
	err     error // Run's result, written before done is closed

	closeOnce sync.Once
}

var pragmaForm = regexp.MustCompile(`^[a-z_]+\([A-Za-z0-9_-]+\)$`)

// newMu serialises ferretdb.New: it writes a package-level variable
// (version.Get().Package), which races when two databases start at once.
var newMu sync.Mutex

// Start creates cfg.Dir, starts FerretDB on cfg.Addr and returns once the
// port accepts connections. ctx bounds the start only (if it has no deadline,
// 30 s do); the database runs until Close. FerretDB logs through a logger
// derived from log (slog.Default() if nil) that passes errors only: at lower
// levels it dumps whole wire messages for routine commands such as
// endSessions.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*DB, error) {
	if cfg.Dir == "" {
		return nil, errors.New("devdb: Config.Dir is required")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if log == nil {
		log = slog.Default()
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("devdb: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("devdb: %w", err)
	}
	sqliteURL := &url.URL{Scheme: "file", Path: dir + "/", OmitHost: true}
	if len(cfg.Pragmas) > 0 {
		q := url.Values{}
		for _, p := range cfg.Pragmas {
			if !pragmaForm.MatchString(p) {
				return nil, fmt.Errorf("devdb: pragma %q: want NAME(VALUE)", p)
			}
			q.Add("_pragma", p)
		}
		sqliteURL.RawQuery = q.Encode()
	}

	// When ferretdb.New fails to bind, it leaks its SQLite backend, whose
	// leak-check finalizer later panics and kills the process. So refuse a
	// taken address before New sees it (a port taken in the instant between
	// the two binds remains a risk; port 0 has none).
	l, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("devdb: %w", err)
	}
	_ = l.Close()

	newMu.Lock()
	// New binds the listener itself, so with port 0 the bound address is
	// known as soon as it returns: no free-port guessing is needed.
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: cfg.Addr},
		Logger:    slog.New(minLevel{log.Handler(), slog.LevelError}),
		Handler:   "sqlite",
		SQLiteURL: sqliteURL.String(),
	})
	newMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("devdb: start on %s: %w", cfg.Addr, err)
	}

	u, err := url.Parse(f.MongoDBURI())
	if err != nil {
		return nil, fmt.Errorf("devdb: %w", err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	db := &DB{addr: u.Host, uri: u.String(), stop: stop, done: make(chan struct{}), indexer: startIDIndexer(dir, log)}
	go func() {
		defer close(db.done)
		db.err = f.Run(runCtx)
	}()

	if err := db.waitReady(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("devdb: %w", err)
	}
	log.Info("devdb started", "addr", db.addr, "dir", dir)
	return db, nil
}

// waitReady polls until the port accepts a connection, Run returns early,
// or the start deadline passes.
func (db *DB) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", db.addr)
		if err == nil {
			return c.Close()
		}
		select {
		case <-db.done:
			return fmt.Errorf("stopped while starting: %v", db.err)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last: %v)", db.addr, ctx.Err(), err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Addr returns the host:port the database listens on.
func (db *DB) Addr() string { return db.addr }

// URI returns a mongodb:// URI for the official driver.
func (db *DB) URI() string { return db.uri }

// Close stops the database and waits until its listener, connections and
// SQLite files are closed. Clients still connected get up to 3 s (FerretDB's
// grace period) to finish. Close is idempotent.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.indexer.close()
		db.stop()
	})
	<-db.done
	return db.err
}

// minLevel passes records at or above min to h.
type minLevel struct {
	h   slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}

func (m minLevel) Handle(ctx context.Context, r slog.Record) error { return m.h.Handle(ctx, r) }

func (m minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{m.h.WithAttrs(as), m.min}
}

func (m minLevel) WithGroup(name string) slog.Handler {
	return minLevel{m.h.WithGroup(name), m.min}
}
