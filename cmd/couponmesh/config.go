package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"gopkg.in/yaml.v3"

	"github.com/couponmesh/couponmesh/actors"
	"github.com/couponmesh/couponmesh/actors/hub"
	"github.com/couponmesh/couponmesh/cluster/membership"
	"github.com/couponmesh/couponmesh/cluster/node"
	"github.com/couponmesh/couponmesh/persistence/cache"
	"github.com/couponmesh/couponmesh/persistence/mongodb"
	"github.com/couponmesh/couponmesh/transport/auth"
	"github.com/couponmesh/couponmesh/transport/ws"
)

// Config is the node configuration: configs/node.yaml, then the environment
// (COUPONMESH_<KEY>) on top.
type Config struct {
	HTTPAddr       string                        `yaml:"http_addr" env:"HTTP_ADDR"`
	AdminAddr      string                        `yaml:"admin_addr" env:"ADMIN_ADDR"`
	AdminToken     string                        `yaml:"admin_token" env:"ADMIN_TOKEN"` // required when admin_addr is not loopback
	NodeName       string                        `yaml:"node_name" env:"NODE_NAME"`
	RemoteAddr     string                        `yaml:"remote_addr" env:"REMOTE_ADDR"`
	ClusterAddr    string                        `yaml:"cluster_addr" env:"CLUSTER_ADDR"`
	Seeds          []string                      `yaml:"seeds" env:"SEEDS" envSeparator:","`
	MongoURI       string                        `yaml:"mongo_uri" env:"MONGO_URI"`
	MongoDatabase  string                        `yaml:"mongo_database" env:"MONGO_DATABASE"`
	DataDir        string                        `yaml:"data_dir" env:"DATA_DIR"`
	Dev            bool                          `yaml:"dev" env:"DEV"`
	JWTSecret      string                        `yaml:"jwt_secret" env:"JWT_SECRET"`
	JWTPublicKeys  string                        `yaml:"jwt_public_keys" env:"JWT_PUBLIC_KEYS"` // JWKS or PEM file of the identity provider (ES256, EdDSA)
	AuthConfig     `yaml:",inline" envPrefix:""` // jwt_issuer, jwt_audience, token_ttl (auth.Config; the node sets its keys from jwt_secret and jwt_public_keys)
	AllowedOrigins []string                      `yaml:"allowed_origins" env:"ALLOWED_ORIGINS" envSeparator:","`
	LogLevel       string                        `yaml:"log_level" env:"LOG_LEVEL"`
	TLSCertFile    string                        `yaml:"tls_cert_file" env:"TLS_CERT_FILE"`                    // PEM chain; with tls_key_file the public listener serves HTTPS/WSS (tls.go)
	TLSKeyFile     string                        `yaml:"tls_key_file" env:"TLS_KEY_FILE"`                      // PEM private key
	AllowInsecure  []string                      `yaml:"allow_insecure" env:"ALLOW_INSECURE" envSeparator:","` // production checks turned off: mongo, remote, gossip
	// Cluster holds membership (membership.Config's keys), the member's
	// remote (node.Config's keys), and the node's own cluster keys.
	Cluster clusterSection `yaml:"cluster" envPrefix:"CLUSTER_"`
	// Actors holds the grains' keys (actors.GrainConfig), the hub's
	// (hub.Config) and the node's own.
	Actors actorsSection `yaml:"actors" envPrefix:"ACTORS_"`
	// Mongo tunes the connection and the group commit: the keys of
	// mongodb.Config. Options written in mongo_uri (w, maxPoolSize,
	// readPreference, …) win over these keys.
	Mongo mongoSection `yaml:"mongo" envPrefix:"MONGO_"`
	// Cache sizes the snapshot and browse caches and the snapshots written
	// behind: the keys of cache.Config.
	Cache cache.Config `yaml:"cache" envPrefix:"CACHE_"`
	// WS holds the WebSocket limits: the keys of ws.Config, and the
	// trusted proxies.
	WS     wsSection `yaml:"ws" envPrefix:"WS_"`
	Limits struct {
		UserWriteRate  float64 `yaml:"user_write_rate" env:"USER_WRITE_RATE"` // claims, follows, unfollows per second per user, cluster-wide; negative: no limit
		UserWriteBurst int     `yaml:"user_write_burst" env:"USER_WRITE_BURST"`
	} `yaml:"limits" envPrefix:"LIMITS_"`
}

// MemberlistConfig, NodeConfig and HubConfig name the parts' configs
// embedded in the sections (their types are all called Config).
type (
	MemberlistConfig = membership.Config
	NodeConfig       = node.Config
	HubConfig        = hub.Config
	AuthConfig       = auth.Config
)

// actorsSection is the actors key: the keys of actors.GrainConfig and
// hub.Config, and the node's own.
type actorsSection struct {
	actors.GrainConfig `yaml:",inline" envPrefix:""`
	HubConfig          `yaml:",inline" envPrefix:""`
	// PresenceOff turns presence (watcher counts, presence pushes) off
	// (HubConfig.Presence).
	PresenceOff    bool     `yaml:"presence_off" env:"PRESENCE_OFF"`
	RequestTimeout Duration `yaml:"request_timeout" env:"REQUEST_TIMEOUT"` // one call to a grain, retries included (actors.CallConfig.Timeout)
}

// clusterSection is the cluster key: the keys of membership.Config and
// node.Config, and the node's own.
type clusterSection struct {
	MemberlistConfig    `yaml:",inline" envPrefix:""`
	NodeConfig          `yaml:",inline" envPrefix:""`
	PublicAddr          string   `yaml:"public_addr" env:"PUBLIC_ADDR"` // host:port clients reach this node at (1012 hand-overs)
	GossipKey           string   `yaml:"gossip_key" env:"GOSSIP_KEY"`   // base64 of 16, 24 or 32 bytes (MemberlistConfig.SecretKey)
	DrainSpread         Duration `yaml:"drain_spread" env:"DRAIN_SPREAD"`
	DrainDelay          Duration `yaml:"drain_delay" env:"DRAIN_DELAY"`         // /readyz is 503 this long before sessions are handed over (load balancers stop routing first)
	RemoteTLSCert       string   `yaml:"remote_tls_cert" env:"REMOTE_TLS_CERT"` // node-to-node mutual TLS: this node's certificate,
	RemoteTLSKey        string   `yaml:"remote_tls_key" env:"REMOTE_TLS_KEY"`   // its key,
	RemoteTLSCA         string   `yaml:"remote_tls_ca" env:"REMOTE_TLS_CA"`     // the cluster's CA
	RemoteTLSServerName string   `yaml:"remote_tls_server_name" env:"REMOTE_TLS_SERVER_NAME"`
}

// mongoSection is the mongo key: mongodb.Config (its tags are the keys),
// with the pool sizes under the names they had before the section embedded
// it (mongodb.Config calls them MaxPoolSize and MinPoolSize, and an
// environment error names the field).
type mongoSection struct {
	mongodb.Config `yaml:",inline" envPrefix:""`
	PoolMin        uint64 `yaml:"pool_min" env:"POOL_MIN"`
	PoolMax        uint64 `yaml:"pool_max" env:"POOL_MAX"`
}

// wsSection is the ws key: ws.Config (its tags are the keys), with the
// trusted proxies as written (CIDRs or single addresses; trustedProxies
// parses them).
type wsSection struct {
	ws.Config      `yaml:",inline" envPrefix:""`
	TrustedProxies []string `yaml:"trusted_proxies" env:"TRUSTED_PROXIES" envSeparator:","` // CIDRs whose X-Forwarded-For names the client
}

// DefaultConfig returns the node configuration before the file and the
// environment: the sections that embed a part's Config start from that
// part's DefaultConfig (the only place their defaults are written).
func DefaultConfig() Config {
	var c Config
	c.Mongo.Config = mongodb.DefaultConfig()
	c.Cache = cache.DefaultConfig()
	c.Mongo.PoolMin, c.Mongo.PoolMax = c.Mongo.MinPoolSize, c.Mongo.MaxPoolSize
	c.WS.Config = ws.DefaultConfig()
	c.Cluster.MemberlistConfig = membership.DefaultConfig()
	c.Cluster.NodeConfig = node.DefaultConfig()
	c.Actors.GrainConfig = actors.DefaultGrainConfig()
	c.Actors.HubConfig = hub.DefaultConfig()
	c.AuthConfig = auth.DefaultConfig()
	c.TTL = 24 * time.Hour // dev-login tokens live a day on a node
	return c
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
	cfg := DefaultConfig()
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
	def(&c.LogLevel, "info")
	if c.NodeName == "" {
		c.NodeName, _ = os.Hostname()
	}
	if c.TTL <= 0 {
		c.TTL = DefaultConfig().TTL
	}
	if c.Cluster.RemoteTLSServerName == "" {
		c.Cluster.RemoteTLSServerName = "couponmesh-node"
	}
	if c.Cluster.DrainSpread <= 0 {
		c.Cluster.DrainSpread = Duration(3 * time.Second)
	}
	if len(c.AllowedOrigins) == 0 {
		c.AllowedOrigins = []string{"localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*"}
	}
	// The limits print as they apply (--check-config).
	defInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	defRate := func(v *float64, def float64) {
		if *v == 0 {
			*v = def
		}
	}
	defRate(&c.Limits.UserWriteRate, actors.DefaultUserWrites.Rate)
	defInt(&c.Limits.UserWriteBurst, actors.DefaultUserWrites.Burst)
}

// trustedProxies parses ws.trusted_proxies: CIDRs, or single addresses.
func (c *Config) trustedProxies() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range c.WS.TrustedProxies {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("ws.trusted_proxies: %q is neither a CIDR nor an address", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// mongoConfig is the store configuration for uri.
func (c *Config) mongoConfig(uri string) mongodb.Config {
	m := c.Mongo.Config
	m.URI, m.Database = uri, c.MongoDatabase
	m.MaxPoolSize, m.MinPoolSize = c.Mongo.PoolMax, c.Mongo.PoolMin
	return m
}

// authConfig is the token configuration with the HS256 secret and the
// public keys (loaded from jwt_public_keys by the caller).
func (c *Config) authConfig(public []auth.PublicKey) auth.Config {
	a := c.AuthConfig
	a.Secret, a.PublicKeys = []byte(c.JWTSecret), public
	return a
}

// memberlistConfig is the membership configuration, with the gossip key
// decoded; the caller sets the listeners' addresses and the hooks.
func (c *Config) memberlistConfig() (membership.Config, error) {
	m := c.Cluster.MemberlistConfig
	m.NodeName, m.BindAddr, m.Seeds = c.NodeName, c.ClusterAddr, c.Seeds
	if c.Cluster.GossipKey != "" {
		k, err := base64.StdEncoding.DecodeString(c.Cluster.GossipKey)
		if err != nil {
			return m, fmt.Errorf("cluster.gossip_key: not base64: %w", err)
		}
		m.SecretKey = k
	}
	return m, nil
}

// nodeConfig is the member's configuration; the caller sets the request
// timeout, the provider, the TLS and the log.
func (c *Config) nodeConfig() node.Config {
	n := c.Cluster.NodeConfig
	n.RemoteAddr = c.RemoteAddr
	return n
}

// wsConfig is the WebSocket configuration, with the trusted proxies parsed.
func (c *Config) wsConfig() (ws.Config, error) {
	w := c.WS.Config
	w.OriginPatterns = c.AllowedOrigins
	var err error
	w.TrustedProxies, err = c.trustedProxies()
	return w, err
}

func (c *Config) validate() error {
	var errs []error
	if err := c.mongoConfig(c.MongoURI).Validate(); err != nil {
		errs = append(errs, fmt.Errorf("mongo: %w", err))
	}
	if err := c.WS.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("ws: %w", err))
	}
	if c.AdminToken == "" && !loopback(c.AdminAddr) {
		errs = append(errs, fmt.Errorf("admin_addr %s is not a loopback address: set admin_token (COUPONMESH_ADMIN_TOKEN)", c.AdminAddr))
	}
	if c.JWTSecret == "" && c.JWTPublicKeys == "" {
		errs = append(errs, errors.New("jwt_secret (HS256, at least 32 bytes) or jwt_public_keys (an identity provider's JWKS or PEM file) is required"))
	}
	if err := c.authConfig(nil).Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Dev && c.JWTSecret == "" {
		errs = append(errs, errors.New("dev login signs tokens with jwt_secret: set it, or dev: false"))
	}
	if m, err := c.memberlistConfig(); err != nil {
		errs = append(errs, err)
	} else if err := m.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("cluster: %w", err))
	}
	if err := c.nodeConfig().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("cluster: %w", err))
	}
	if err := c.Cache.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("cache: %w", err))
	}
	if err := c.Actors.GrainConfig.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("actors: %w", err))
	}
	if err := c.Actors.HubConfig.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("actors: %w", err))
	}
	if err := c.validateTLS(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.productionErrors()...)
	if _, err := c.trustedProxies(); err != nil {
		errs = append(errs, err)
	}
	if c.Limits.UserWriteBurst < 0 {
		errs = append(errs, errors.New("limits.user_write_burst must be positive"))
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}

// Redacted returns the config as YAML with secrets masked, the sections of
// the parts with the values in force (zero fields at their defaults).
func (c Config) Redacted() string {
	c.Mongo.Config, c.WS.Config = c.Mongo.Effective(), c.WS.Effective()
	if c.JWTSecret != "" {
		c.JWTSecret = "<redacted>"
	}
	if c.AdminToken != "" {
		c.AdminToken = "<redacted>"
	}
	if c.Cluster.GossipKey != "" {
		c.Cluster.GossipKey = "<redacted>"
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

// loopback reports whether the listen address addr (host:port) only
// accepts connections from this machine. An empty host, 0.0.0.0 or any name
// other than localhost is not.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
