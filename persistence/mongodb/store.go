package mongodb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/couponmesh/couponmesh"
)

// Config configures the connection. Zero fields take the DefaultConfig
// values (MinPoolSize stays 0).
type Config struct {
	// URI is a mongodb:// or mongodb+srv:// URI; required. Write concern,
	// replica set and retryable writes are taken from it (production:
	// replicaSet=…&w=majority).
	URI string
	// Database holds the collections.
	Database string
	// ConnectTimeout bounds Open (connect, ping, index creation), each
	// dial, and the driver's server selection.
	ConnectTimeout time.Duration
	// OpTimeout bounds every Store operation, under the caller's context.
	OpTimeout time.Duration
	// MaxPoolSize and MinPoolSize size the connection pool per server.
	MaxPoolSize, MinPoolSize uint64
}

// DefaultConfig returns the production defaults, without a URI.
func DefaultConfig() Config {
	return Config{
		Database:       "couponmesh",
		ConnectTimeout: 10 * time.Second,
		OpTimeout:      5 * time.Second,
		MaxPoolSize:    100,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Database == "" {
		c.Database = d.Database
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = d.ConnectTimeout
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = d.OpTimeout
	}
	if c.MaxPoolSize == 0 {
		c.MaxPoolSize = d.MaxPoolSize
	}
	return c
}

// Collection names.
const (
	journalColl   = "journal"
	snapshotsColl = "snapshots"
	followsColl   = "follows"
)

// Store is a couponmesh.Store over one MongoDB database.
type Store struct {
	cfg    Config
	log    *slog.Logger
	client *mongo.Client

	journal   *mongo.Collection
	snapshots *mongo.Collection
	follows   *mongo.Collection
}

var _ couponmesh.Store = (*Store)(nil)

// Open connects to cfg.URI, checks that the server answers and creates the
// indexes (idempotently). It fails with an error wrapping
// couponmesh.ErrUnavailable when the server cannot be reached within
// cfg.ConnectTimeout. log may be nil (slog.Default()).
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Store, error) {
	cfg = cfg.withDefaults()
	if cfg.URI == "" {
		return nil, errors.New("mongodb: Config.URI is required")
	}
	if log == nil {
		log = slog.Default()
	}
	opts := options.Client().ApplyURI(cfg.URI).
		SetConnectTimeout(cfg.ConnectTimeout).
		SetServerSelectionTimeout(cfg.ConnectTimeout).
		SetMaxPoolSize(cfg.MaxPoolSize).
		SetMinPoolSize(cfg.MinPoolSize)
	client, err := mongo.Connect(opts)
	if err != nil {
		return nil, fmt.Errorf("mongodb: connect: %w", err)
	}
	db := client.Database(cfg.Database)
	s := &Store{
		cfg:       cfg,
		log:       log,
		client:    client,
		journal:   db.Collection(journalColl),
		snapshots: db.Collection(snapshotsColl),
		follows:   db.Collection(followsColl),
	}
	octx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	if err := client.Ping(octx, nil); err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, unavailable("mongodb: ping", err)
	}
	if err := s.createIndexes(octx); err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, err
	}
	log.Info("mongodb store open", "database", cfg.Database)
	return s, nil
}

// createIndexes creates the indexes every query relies on. Creating an
// index that exists with the same keys and options is a no-op.
func (s *Store) createIndexes(ctx context.Context) error {
	idx := map[*mongo.Collection][]mongo.IndexModel{
		s.journal: {
			{Keys: bson.D{{Key: "uk", Value: 1}}, Options: options.Index().SetUnique(true)},
		},
		// cid is in the browse indexes so that they also serve the
		// tie-break of the sort (created, cid).
		s.snapshots: {
			{Keys: bson.D{{Key: "merchant", Value: 1}, {Key: "created", Value: -1}, {Key: "cid", Value: -1}}},
			{Keys: bson.D{{Key: "status", Value: 1}, {Key: "created", Value: -1}, {Key: "cid", Value: -1}}},
			{Keys: bson.D{{Key: "created", Value: -1}, {Key: "cid", Value: -1}}},
		},
		s.follows: {
			{Keys: bson.D{{Key: "c", Value: 1}, {Key: "u", Value: 1}}},
		},
	}
	// One index per command: FerretDB v1.24 panics (and drops the
	// connection) when one createIndexes command names two or more indexes
	// that exist already, i.e. on every restart with CreateMany.
	for coll, models := range idx {
		for _, m := range models {
			if _, err := coll.Indexes().CreateOne(ctx, m); err != nil {
				return unavailable("mongodb: create index on "+coll.Name(), err)
			}
		}
	}
	return nil
}

// Close disconnects, waiting for in-flight operations until ctx is done.
// Operations after Close fail with couponmesh.ErrUnavailable. Closing twice
// is not an error.
func (s *Store) Close(ctx context.Context) error {
	err := s.client.Disconnect(ctx)
	if errors.Is(err, mongo.ErrClientDisconnected) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mongodb: disconnect: %w", err)
	}
	s.log.Info("mongodb store closed", "database", s.cfg.Database)
	return nil
}

// Ping checks that the server answers within OpTimeout.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	if err := s.client.Ping(ctx, nil); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// op derives the context of one operation.
func (s *Store) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.OpTimeout)
}

// unavailable wraps err from the driver: the database did not answer (or
// not in time), so the outcome of a write is unknown.
func unavailable(what string, err error) error {
	return fmt.Errorf("%s: %w: %w", what, couponmesh.ErrUnavailable, err)
}

// readErr maps a failed single-document read.
func readErr(what string, err error) error {
	if errors.Is(err, mongo.ErrNoDocuments) {
		return fmt.Errorf("%s: %w", what, couponmesh.ErrNotFound)
	}
	return unavailable(what, err)
}
