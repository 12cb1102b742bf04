package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"gopkg.in/yaml.v3"

	"github.com/couponmesh/couponmesh/persistence/cache"
	"github.com/couponmesh/couponmesh/persistence/mongodb"
)

// Config is the node configuration: configs/node.yaml, then the environment
// (COUPONMESH_<KEY>) on top.
type Config struct {
	HTTPAddr       string   `yaml:"http_addr" env:"HTTP_ADDR"`
	AdminAddr      string   `yaml:"admin_addr" env:"ADMIN_ADDR"`
	NodeName       string   `yaml:"node_name" env:"NODE_NAME"`
	RemoteAddr     string   `yaml:"remote_addr" env:"REMOTE_ADDR"`
	ClusterAddr    string   `yaml:"cluster_addr" env:"CLUSTER_ADDR"`
	Seeds          []string `yaml:"seeds" env:"SEEDS" envSeparator:","`
	MongoURI       string   `yaml:"mongo_uri" env:"MONGO_URI"`
	MongoDatabase  string   `yaml:"mongo_database" env:"MONGO_DATABASE"`
	DataDir        string   `yaml:"data_dir" env:"DATA_DIR"`
	Dev            bool     `yaml:"dev" env:"DEV"`
	JWTSecret      string   `yaml:"jwt_secret" env:"JWT_SECRET"`
	JWTIssuer      string   `yaml:"jwt_issuer" env:"JWT_ISSUER"`
	JWTAudience    string   `yaml:"jwt_audience" env:"JWT_AUDIENCE"`
	TokenTTL       Duration `yaml:"token_ttl" env:"TOKEN_TTL"`
	AllowedOrigins []string `yaml:"allowed_origins" env:"ALLOWED_ORIGINS" envSeparator:","`
	LogLevel       string   `yaml:"log_level" env:"LOG_LEVEL"`
	Actors         struct {
		PassivateAfter Duration `yaml:"passivate_after" env:"PASSIVATE_AFTER"`
		SnapshotDelay  Duration `yaml:"snapshot_delay" env:"SNAPSHOT_DELAY"`
		HubLease       Duration `yaml:"hub_lease" env:"HUB_LEASE"`
		HubRefresh     Duration `yaml:"hub_refresh" env:"HUB_REFRESH"`
		RequestTimeout Duration `yaml:"request_timeout" env:"REQUEST_TIMEOUT"`
	} `yaml:"actors" envPrefix:"ACTORS_"`
	// Mongo tunes the connection and the group commit. Options written in
	// mongo_uri (w, maxPoolSize, readPreference, …) win over these keys.
	Mongo struct {
		PoolMin                uint64   `yaml:"pool_min" env:"POOL_MIN"`
		PoolMax                uint64   `yaml:"pool_max" env:"POOL_MAX"`
		ConnectTimeout         Duration `yaml:"connect_timeout" env:"CONNECT_TIMEOUT"`
		ServerSelectionTimeout Duration `yaml:"server_selection_timeout" env:"SERVER_SELECTION_TIMEOUT"`
		OpTimeout              Duration `yaml:"op_timeout" env:"OP_TIMEOUT"`
		Heartbeat              Duration `yaml:"heartbeat" env:"HEARTBEAT"`
		WriteConcern           string   `yaml:"write_concern" env:"WRITE_CONCERN"`
		WriteTimeout           Duration `yaml:"write_timeout" env:"WRITE_TIMEOUT"`
		BatchMaxOps            int      `yaml:"batch_max_ops" env:"BATCH_MAX_OPS"`
		BatchMaxDelay          Duration `yaml:"batch_max_delay" env:"BATCH_MAX_DELAY"`
		QueueSize              int      `yaml:"queue_size" env:"QUEUE_SIZE"`
		Flushers               int      `yaml:"flushers" env:"FLUSHERS"`
	} `yaml:"mongo" envPrefix:"MONGO_"`
	Cache struct {
		SizeMB      int      `yaml:"size_mb" env:"SIZE_MB"`
		SnapshotTTL Duration `yaml:"snapshot_ttl" env:"SNAPSHOT_TTL"`
		BrowseTTL   Duration `yaml:"browse_ttl" env:"BROWSE_TTL"`
		// BrowseStaleIfDown: while the database is down, browse pages up
		// to this old are served rather than an error.
		BrowseStaleIfDown Duration `yaml:"browse_stale_if_down" env:"BROWSE_STALE_IF_DOWN"`
		// SnapshotFlush: snapshots are written to the database behind the
		// grains, each entity at most once per this interval.
		SnapshotFlush Duration `yaml:"snapshot_flush" env:"SNAPSHOT_FLUSH"`
	} `yaml:"cache" envPrefix:"CACHE_"`
	WS struct {
		ReadLimit    int64    `yaml:"read_limit" env:"READ_LIMIT"`
		SendQueue    int      `yaml:"send_queue" env:"SEND_QUEUE"`
		PingInterval Duration `yaml:"ping_interval" env:"PING_INTERVAL"`
		AuthTimeout  Duration `yaml:"auth_timeout" env:"AUTH_TIMEOUT"`
	} `yaml:"ws" envPrefix:"WS_"`
}

// Duration is a time.Duration written as "5s" in YAML and the environment.
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler (used by env).
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error { return d.UnmarshalText([]byte(n.Value)) }

// MarshalYAML prints the duration as text.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// LoadConfig reads the YAML file (empty path: none) and applies the
// environment. Unknown YAML keys are an error.
func LoadConfig(path string, environ map[string]string) (Config, error) {
	var cfg Config
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("read config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return cfg, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := env.ParseWithOptions(&cfg, env.Options{Prefix: "COUPONMESH_", Environment: environ}); err != nil {
		return cfg, fmt.Errorf("config from environment: %w", err)
	}
	cfg.fill()
	return cfg, cfg.validate()
}

func (c *Config) fill() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.HTTPAddr, ":8080")
	def(&c.AdminAddr, "127.0.0.1:8081")
	def(&c.RemoteAddr, "127.0.0.1:0")
	def(&c.ClusterAddr, "127.0.0.1:7946")
	def(&c.MongoDatabase, "couponmesh")
	def(&c.DataDir, "./data")
	def(&c.JWTIssuer, "couponmesh")
	def(&c.JWTAudience, "couponmesh")
	def(&c.LogLevel, "info")
	if c.NodeName == "" {
		c.NodeName, _ = os.Hostname()
	}
	c.fillStore()
	if c.TokenTTL <= 0 {
		c.TokenTTL = Duration(24 * time.Hour)
	}
	if len(c.AllowedOrigins) == 0 {
		c.AllowedOrigins = []string{"localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*"}
	}
}

// fillStore fills the mongo and cache sections from the packages'
// defaults, so that --check-config shows the values in force.
func (c *Config) fillStore() {
	md := mongodb.DefaultConfig()
	m := &c.Mongo
	dur := func(d *Duration, v time.Duration) {
		if *d <= 0 {
			*d = Duration(v)
		}
	}
	if m.PoolMax == 0 {
		m.PoolMax = md.MaxPoolSize
	}
	dur(&m.ConnectTimeout, md.ConnectTimeout)
	dur(&m.ServerSelectionTimeout, md.ServerSelectionTimeout)
	dur(&m.OpTimeout, md.OpTimeout)
	dur(&m.Heartbeat, md.HeartbeatInterval)
	dur(&m.WriteTimeout, m.OpTimeout.D())
	if m.WriteConcern == "" {
		m.WriteConcern = md.WriteConcern
	}
	if m.BatchMaxOps <= 0 {
		m.BatchMaxOps = md.BatchMaxOps
	}
	if m.BatchMaxDelay <= 0 {
		m.BatchMaxDelay = Duration(md.BatchMaxDelay)
	}
	if m.QueueSize <= 0 {
		m.QueueSize = md.QueueSize
	}
	if m.Flushers <= 0 {
		m.Flushers = md.Flushers
	}
	cd := cache.DefaultConfig()
	if c.Cache.SizeMB <= 0 {
		c.Cache.SizeMB = cd.SizeMB
	}
	dur(&c.Cache.SnapshotTTL, cd.SnapshotTTL)
	dur(&c.Cache.BrowseTTL, cd.BrowseTTL)
	dur(&c.Cache.SnapshotFlush, cd.FlushInterval)
	dur(&c.Cache.BrowseStaleIfDown, cd.StaleIfDown)
}

// mongoConfig is the store configuration for uri.
func (c *Config) mongoConfig(uri string) mongodb.Config {
	m := c.Mongo
	return mongodb.Config{
		URI:                    uri,
		Database:               c.MongoDatabase,
		ConnectTimeout:         m.ConnectTimeout.D(),
		ServerSelectionTimeout: m.ServerSelectionTimeout.D(),
		OpTimeout:              m.OpTimeout.D(),
		HeartbeatInterval:      m.Heartbeat.D(),
		MaxPoolSize:            m.PoolMax,
		MinPoolSize:            m.PoolMin,
		WriteConcern:           m.WriteConcern,
		WriteTimeout:           m.WriteTimeout.D(),
		BatchMaxOps:            m.BatchMaxOps,
		BatchMaxDelay:          m.BatchMaxDelay.D(),
		QueueSize:              m.QueueSize,
		Flushers:               m.Flushers,
	}
}

func (c *Config) validate() error {
	var errs []error
	switch wc := c.Mongo.WriteConcern; wc {
	case "majority", "default":
	default:
		if n, err := strconv.Atoi(wc); err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("mongo.write_concern %q: want majority, default or a number", wc))
		}
	}
	if c.Mongo.PoolMin > c.Mongo.PoolMax {
		errs = append(errs, fmt.Errorf("mongo.pool_min %d above pool_max %d", c.Mongo.PoolMin, c.Mongo.PoolMax))
	}
	if len(c.JWTSecret) < 32 {
		errs = append(errs, errors.New("jwt_secret must be at least 32 bytes"))
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}

// Redacted returns the config as YAML with secrets masked.
func (c Config) Redacted() string {
	if c.JWTSecret != "" {
		c.JWTSecret = "<redacted>"
	}
	if i := strings.Index(c.MongoURI, "@"); i > 0 {
		if j := strings.Index(c.MongoURI, "://"); j > 0 && j < i {
			c.MongoURI = c.MongoURI[:j+3] + "<redacted>" + c.MongoURI[i:]
		}
	}
	b, _ := yaml.Marshal(c)
	return string(b) + uriOverrides(c.MongoURI)
}

// uriOptions are the connection-string options that override keys of the
// mongo section (and readPreference, which governs browse reads).
var uriOptions = []string{"replicaSet", "w", "journal", "wtimeoutMS", "retryWrites", "readPreference", "maxPoolSize",
	"minPoolSize", "connectTimeoutMS", "serverSelectionTimeoutMS", "heartbeatFrequencyMS", "timeoutMS"}

// uriOverrides lists, as YAML comments, the options of uri that win over
// the mongo section.
func uriOverrides(uri string) string {
	// Not url.Parse: a replica set URI lists several hosts.
	_, rawQuery, ok := strings.Cut(uri, "?")
	if !ok {
		return ""
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return ""
	}
	var out strings.Builder
	for _, k := range uriOptions {
		for qk, v := range q {
			if strings.EqualFold(qk, k) {
				fmt.Fprintf(&out, "#   %s=%s\n", k, strings.Join(v, ","))
			}
		}
	}
	if out.Len() == 0 {
		return ""
	}
	return "# options in mongo_uri, in force over the mongo section:\n" + out.String()
}
