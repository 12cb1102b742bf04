package mongodb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/couponmesh/couponmesh"
)

// Config configures the connection and the group commit. Zero fields take
// the DefaultConfig values (MinPoolSize stays 0). Options written in the URI
// (w, maxPoolSize, readPreference, heartbeatFrequencyMS, …) win over the
// fields here, so a production replica set URI works unchanged.
//
// The yaml and env tags are the node configuration's keys (the mongo
// section of configs/node.yaml, COUPONMESH_MONGO_<KEY>), declared here once:
// the node embeds Config. It sets URI and Database from its mongo_uri and
// mongo_database keys, and the pool sizes from pool_max and pool_min.
type Config struct {
	// URI is a mongodb:// or mongodb+srv:// URI; required. Production: a
	// replica set, e.g. mongodb://a,b,c/?replicaSet=rs0&w=majority.
	URI string `yaml:"-"`
	// Database holds the collections.
	Database string `yaml:"-"`
	// ConnectTimeout bounds each dial and Open (connect, ping, indexes).
	ConnectTimeout time.Duration `yaml:"connect_timeout" env:"CONNECT_TIMEOUT"`
	// ServerSelectionTimeout bounds the wait for a suitable server (the
	// primary, for writes and actor loads) when the driver knows none.
	ServerSelectionTimeout time.Duration `yaml:"server_selection_timeout" env:"SERVER_SELECTION_TIMEOUT"`
	// OpTimeout bounds every Store operation and every BulkWrite attempt,
	// under the caller's context.
	OpTimeout time.Duration `yaml:"op_timeout" env:"OP_TIMEOUT"`
	// HeartbeatInterval is how often the driver checks each server; it
	// bounds how fast a returning database is noticed.
	HeartbeatInterval time.Duration `yaml:"heartbeat" env:"HEARTBEAT"`
	// MaxPoolSize and MinPoolSize size the connection pool per server.
	MaxPoolSize, MinPoolSize uint64 `yaml:"-"`
	// WriteConcern: "majority" (default), a number of nodes ("1"), or
	// "default" for the server's default. A w= in the URI wins.
	WriteConcern string `yaml:"write_concern" env:"WRITE_CONCERN"`

	// WriteTimeout bounds an Append as a whole (queueing, BulkWrite
	// attempts, retries), under the caller's context: after it the caller
	// gets unavailable. Default: OpTimeout.
	WriteTimeout time.Duration `yaml:"write_timeout" env:"WRITE_TIMEOUT"`
	// BatchMaxOps is the largest BulkWrite of the group commit.
	BatchMaxOps int `yaml:"batch_max_ops" env:"BATCH_MAX_OPS"`
	// BatchMaxDelay is how long a flusher waits for more appends before
	// sending a batch that is not full (0: send what is queued at once).
	BatchMaxDelay time.Duration `yaml:"batch_max_delay" env:"BATCH_MAX_DELAY"`
	// QueueSize bounds the appends waiting for a flusher; when it is full,
	// Append waits (backpressure) until its deadline.
	QueueSize int `yaml:"queue_size" env:"QUEUE_SIZE"`
	// Flushers is the number of new BulkWrites in flight at once (retries
	// run apart). FerretDB on SQLite writes one batch at a time, so more
	// flushers only make smaller batches there (measured with 200 writers:
	// 75% of the raw bulk insert rate with 1 flusher, 42% with 2). A
	// replica set far away may want more.
	Flushers int `yaml:"flushers" env:"FLUSHERS"`
	// RetryBackoff and RetryMaxBackoff shape the exponential backoff between
	// attempts of a batch whose outcome is unknown.
	RetryBackoff, RetryMaxBackoff time.Duration `yaml:"-"`
	// ProbeInterval is how often the database is pinged while it is known
	// to be down (operations fail fast meanwhile).
	ProbeInterval time.Duration `yaml:"-"`

	// Metrics receives the group commit's metrics (nil: unregistered).
	Metrics *Metrics `yaml:"-"`
}

// DefaultConfig returns the production defaults, without a URI.
func DefaultConfig() Config {
	return Config{
		Database:               "couponmesh",
		ConnectTimeout:         10 * time.Second,
		ServerSelectionTimeout: 5 * time.Second,
		OpTimeout:              5 * time.Second,
		HeartbeatInterval:      time.Second,
		MaxPoolSize:            100,
		MinPoolSize:            20,
		WriteConcern:           "majority",
		WriteTimeout:           0, // OpTimeout
		BatchMaxOps:            256,
		BatchMaxDelay:          time.Millisecond,
		QueueSize:              4096,
		Flushers:               1,
		RetryBackoff:           20 * time.Millisecond,
		RetryMaxBackoff:        time.Second,
		ProbeInterval:          250 * time.Millisecond,
	}
}

// Effective returns c as Open uses it: zero fields set to their defaults
// (what `couponmesh node --check-config` prints).
func (c Config) Effective() Config { return c.withDefaults() }

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	set := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	if c.Database == "" {
		c.Database = d.Database
	}
	set(&c.ConnectTimeout, d.ConnectTimeout)
	set(&c.ServerSelectionTimeout, d.ServerSelectionTimeout)
	set(&c.OpTimeout, d.OpTimeout)
	set(&c.HeartbeatInterval, d.HeartbeatInterval)
	set(&c.WriteTimeout, c.OpTimeout)
	set(&c.RetryBackoff, d.RetryBackoff)
	set(&c.RetryMaxBackoff, d.RetryMaxBackoff)
	set(&c.ProbeInterval, d.ProbeInterval)
	if c.BatchMaxDelay < 0 {
		c.BatchMaxDelay = 0
	}
	if c.MaxPoolSize == 0 {
		c.MaxPoolSize = d.MaxPoolSize
	}
	if c.WriteConcern == "" {
		c.WriteConcern = d.WriteConcern
	}
	if c.BatchMaxOps <= 0 {
		c.BatchMaxOps = d.BatchMaxOps
	}
	if c.QueueSize <= 0 {
		c.QueueSize = d.QueueSize
	}
	if c.Flushers <= 0 {
		c.Flushers = d.Flushers
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	return c
}

// writeConcern parses Config.WriteConcern: nil for "default" (the
// server's).
func writeConcern(s string) (*writeconcern.WriteConcern, error) {
	switch s {
	case "default":
		return nil, nil
	case "majority":
		return writeconcern.Majority(), nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("write concern %q: want majority, default or a number", s)
	}
	return &writeconcern.WriteConcern{W: n}, nil
}

// Validate reports the settings Open would refuse: a write concern that is
// not majority, default or a number, and a pool minimum above its maximum.
// Each error names the field's key. Zero fields are valid (defaults).
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if _, err := writeConcern(c.WriteConcern); err != nil {
		errs = append(errs, fmt.Errorf("write_concern: %w", err))
	}
	if c.MinPoolSize > c.MaxPoolSize {
		errs = append(errs, fmt.Errorf("pool_min %d above pool_max %d", c.MinPoolSize, c.MaxPoolSize))
	}
	return errors.Join(errs...)
}

// maxConnecting is how many connections a node's pool opens at once (the
// driver's default is 2; a maxConnecting in the URI wins). With the pool
// grown only to what steady traffic needed (~20 connections), a burst of
// grain loads at a node's death waited to check out a connection while
// the pool opened the rest two at a time: 543 loads queued in the pool,
// 16 reading, 1 s after the death was seen (`bench timers --profile-dir`,
// goroutine dump). MinPoolSize keeps some open for the same reason.
const maxConnecting = 8

// clientOptions builds the driver options: the fields of c, then the URI's
// own options on top.
func (c Config) clientOptions() (*options.ClientOptions, error) {
	opts := options.Client().
		SetConnectTimeout(c.ConnectTimeout).
		SetServerSelectionTimeout(c.ServerSelectionTimeout).
		SetHeartbeatInterval(c.HeartbeatInterval).
		SetMaxPoolSize(c.MaxPoolSize).
		SetMinPoolSize(c.MinPoolSize).
		SetMaxConnecting(maxConnecting)
	wc, err := writeConcern(c.WriteConcern)
	if err != nil {
		return nil, fmt.Errorf("mongodb: %w", err)
	}
	if wc != nil {
		opts.SetWriteConcern(wc)
	}
	opts.ApplyURI(c.URI)
	if min, max := opts.MinPoolSize, opts.MaxPoolSize; min != nil && max != nil && *max > 0 && *min > *max && c.MinPoolSize == *min {
		// A maxPoolSize in the URI below pool_min: the URI wins.
		opts.SetMinPoolSize(*max)
	}
	return opts, opts.Validate()
}

// writerPool is how many connections the group commit may hold beyond one
// per flusher: its retries and read-backs run apart from the flushers.
const writerPool = 4

// writerOptions are the options of the group commit's own client: opts with
// a pool of its own, Flushers + writerPool connections at most (less if the
// URI's maxPoolSize says so), one per flusher kept open. Appends used to
// share the pool of every read: at a node's death, the grains that moved
// here queued ~600 loads for a connection and the one flusher waited
// behind them, so every journal append on the node did, the expiries of
// the coupons that had not moved too (`bench timers --profile-dir`,
// goroutine dump 1 s after the first due time).
func writerOptions(opts *options.ClientOptions, flushers int) *options.ClientOptions {
	w := *opts
	size := uint64(flushers + writerPool)
	if opts.MaxPoolSize != nil && *opts.MaxPoolSize > 0 {
		size = min(size, *opts.MaxPoolSize)
	}
	return w.SetMaxPoolSize(size).SetMinPoolSize(min(uint64(flushers), size))
}

// Collection names.
const (
	journalColl   = "journal"
	snapshotsColl = "snapshots"
	followsColl   = "follows"
)

// Store is a couponmesh.Store over one MongoDB database.
type Store struct {
	cfg     Config
	log     *slog.Logger
	client  *mongo.Client
	writer  *mongo.Client // the group commit's own connections (writerPool)
	metrics *Metrics
	commit  *committer

	journal *mongo.Collection
	// appends is the journal on the writer client: the group commit's
	// BulkWrites and read-backs. appendsMajority reads with read concern
	// majority; set when writes use write concern majority (read-backs of
	// unknown outcomes).
	appends, appendsMajority *mongo.Collection
	snapshots                *mongo.Collection
	browse                   *mongo.Collection // snapshots, with the URI's read preference
	follows                  *mongo.Collection
	reminders                [couponmesh.ReminderShards]*mongo.Collection // by shard: remindersColl
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
	opts, err := cfg.clientOptions()
	if err != nil {
		return nil, err
	}
	client, err := mongo.Connect(opts)
	if err != nil {
		return nil, fmt.Errorf("mongodb: connect: %w", err)
	}
	writer, err := mongo.Connect(writerOptions(opts, cfg.Flushers))
	if err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("mongodb: connect: %w", err)
	}
	disconnect := func() {
		_ = writer.Disconnect(context.WithoutCancel(ctx))
		_ = client.Disconnect(context.WithoutCancel(ctx))
	}
	db := client.Database(cfg.Database)
	// Actor loads (journal, snapshots) read the primary whatever the URI
	// says: a secondary may lag behind an acknowledged write. Browse reads
	// follow the URI's read preference.
	primary := options.Collection().SetReadPreference(readpref.Primary())
	s := &Store{
		cfg:       cfg,
		log:       log,
		client:    client,
		writer:    writer,
		metrics:   cfg.Metrics,
		journal:   db.Collection(journalColl, primary),
		appends:   writer.Database(cfg.Database).Collection(journalColl, primary),
		snapshots: db.Collection(snapshotsColl, primary),
		browse:    db.Collection(snapshotsColl),
		follows:   db.Collection(followsColl, primary),
	}
	for n := range s.reminders {
		s.reminders[n] = db.Collection(remindersColl(n), primary)
	}
	octx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	if err := client.Ping(octx, nil); err != nil {
		disconnect()
		return nil, unavailable("mongodb: ping", err)
	}
	if err := s.createIndexes(octx); err != nil {
		disconnect()
		return nil, err
	}
	if err := s.migrateReminders(ctx, db); err != nil {
		disconnect()
		return nil, err
	}
	if wcString(opts.WriteConcern) == "majority" {
		s.appendsMajority = writer.Database(cfg.Database).Collection(journalColl, options.Collection().
			SetReadPreference(readpref.Primary()).SetReadConcern(readconcern.Majority()))
	}
	s.commit = newCommitter(s)
	log.Info("mongodb store open", "database", cfg.Database, "write_concern", wcString(opts.WriteConcern),
		"batch_max_ops", cfg.BatchMaxOps, "batch_max_delay", cfg.BatchMaxDelay, "queue", cfg.QueueSize)
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
	for _, c := range s.reminders {
		idx[c] = []mongo.IndexModel{{Keys: bson.D{{Key: "due", Value: 1}}}}
	}
	// One index per command: FerretDB v1.24 panics (and drops the
	// connection) when one createIndexes command names two or more indexes
	// that exist already, i.e. on every restart with CreateMany.
	//
	// The embedded database (SQLite under FerretDB) may answer SQLITE_BUSY
	// when another writer holds a database file for longer than its busy
	// timeout, as seen on a loaded machine (issue 15); creating an index is
	// idempotent, so such an answer is retried with backoff until ctx ends.
	for coll, models := range idx {
		for _, m := range models {
			_, err := backoff.Retry(ctx, func() (struct{}, error) {
				_, err := coll.Indexes().CreateOne(ctx, m)
				if err != nil && !sqliteBusy(err) {
					return struct{}{}, backoff.Permanent(err)
				}
				return struct{}{}, err
			}, backoff.WithBackOff(&backoff.ExponentialBackOff{
				InitialInterval: 50 * time.Millisecond, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: time.Second,
			}))
			if err != nil {
				return unavailable("mongodb: create index on "+coll.Name(), err)
			}
		}
	}
	return nil
}

// sqliteBusy reports whether err is the embedded database's SQLite "database
// is locked" (SQLITE_BUSY), which FerretDB passes on in its error message.
func sqliteBusy(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "SQLITE_BUSY") || strings.Contains(msg, "database is locked")
}

// Close stops the group commit (appends queued already are written, new
// ones fail) and disconnects, waiting for in-flight operations until ctx is
// done.
// Operations after Close fail with couponmesh.ErrUnavailable. Closing twice
// is not an error.
func (s *Store) Close(ctx context.Context) error {
	s.commit.stop(ctx)
	err := errors.Join(s.writer.Disconnect(ctx), s.client.Disconnect(ctx))
	if errors.Is(err, mongo.ErrClientDisconnected) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mongodb: disconnect: %w", err)
	}
	s.log.Info("mongodb store closed", "database", s.cfg.Database)
	return nil
}

// Database is the name of the store's database.
func (s *Store) Database() string { return s.cfg.Database }

// Ping checks that the server answers within OpTimeout.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	if err := s.client.Ping(ctx, nil); err != nil {
		return s.unavailable("ping", err)
	}
	s.commit.setDown(false)
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

// unavailable wraps err like the function of that name; when the driver
// got no answer (network error, timeout) it has a ping check whether the
// database is down (operations then fail fast until a ping succeeds).
func (s *Store) unavailable(what string, err error) error {
	if mongo.IsNetworkError(err) || mongo.IsTimeout(err) {
		s.commit.suspect(s.client)
	}
	return unavailable(what, err)
}

// readErr maps a failed single-document read.
func (s *Store) readErr(what string, err error) error {
	if errors.Is(err, mongo.ErrNoDocuments) {
		return fmt.Errorf("%s: %w", what, couponmesh.ErrNotFound)
	}
	return s.unavailable(what, err)
}

func wcString(wc *writeconcern.WriteConcern) string {
	if wc == nil || wc.W == nil {
		return "default"
	}
	return fmt.Sprint(wc.W)
}
