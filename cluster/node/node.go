// Package node starts and stops one cluster member: the actor system, the
// protoactor remote, the cluster with the kinds it is given, and its
// membership provider. It knows nothing of coupons or users.
//
// Start and Stop are called once each, from one goroutine.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/couponmesh/couponmesh/cluster/placement"
)

// Config of a member. Zero fields take the DefaultConfig values.
//
// The yaml and env tags are the node configuration's keys (its cluster
// section, COUPONMESH_CLUSTER_<KEY>), declared here once: the node embeds
// Config. Fields tagged yaml:"-" are set by the node (remote_addr is a
// top-level key, the TLS comes from the remote_tls_* files, the request
// timeout from actors.request_timeout).
type Config struct {
	ClusterName    string                  `yaml:"-"`
	RemoteAddr     string                  `yaml:"-"`                                                 // protoactor remote bind host:port; port 0 picks one
	AdvertisedAddr string                  `yaml:"remote_advertise_addr" env:"REMOTE_ADVERTISE_ADDR"` // host:port other members dial; empty: the bound address
	RequestTimeout time.Duration           `yaml:"-"`
	LookupTimeout  time.Duration           `yaml:"lookup_timeout" env:"LOOKUP_TIMEOUT"` // placement: wait for an owner's answer (default 1 s)
	Provider       cluster.ClusterProvider `yaml:"-"`
	// TLS, when set, secures node-to-node actor traffic (gRPC): Server for
	// the listener (mutual TLS: set ClientCAs and ClientAuth), Client for
	// the connections to the other members.
	TLS *RemoteTLS   `yaml:"-"`
	Log *slog.Logger `yaml:"-"`
}

// DefaultConfig returns the defaults: cluster couponmesh, requests of 5 s,
// placement lookups of 1 s.
// remoteWindow is the fixed HTTP/2 flow-control window (stream and
// connection) of the gRPC connections between nodes (see Start).
const remoteWindow = 1 << 20

func DefaultConfig() Config {
	return Config{ClusterName: "couponmesh", RequestTimeout: 5 * time.Second, LookupTimeout: time.Second}
}

// Validate reports settings Start would refuse: a remote address or an
// advertised address that is not host:port. Each error names the field's
// key.
func (c Config) Validate() error {
	var errs []error
	if c.RemoteAddr != "" {
		if _, _, err := net.SplitHostPort(c.RemoteAddr); err != nil {
			errs = append(errs, fmt.Errorf("remote_addr %q: %w", c.RemoteAddr, err))
		}
	}
	if c.AdvertisedAddr != "" {
		if _, _, err := net.SplitHostPort(c.AdvertisedAddr); err != nil {
			errs = append(errs, fmt.Errorf("remote_advertise_addr %q: %w", c.AdvertisedAddr, err))
		}
	}
	if c.LookupTimeout < 0 {
		errs = append(errs, fmt.Errorf("lookup_timeout %s is negative", c.LookupTimeout))
	}
	return errors.Join(errs...)
}

// RemoteTLS is the TLS of protoactor's remote.
type RemoteTLS struct {
	Server, Client *tls.Config
}

// Node is a started cluster member.
type Node struct {
	System  *actor.ActorSystem
	Cluster *cluster.Cluster
	Lookup  *placement.Lookup
	log     *slog.Logger
}

// Start brings up the member with kinds. protoactor's StartMember panics on
// errors and always sleeps a second; Start turns the panic into an error.
func Start(cfg Config, kinds ...*cluster.Kind) (n *Node, err error) {
	d := DefaultConfig()
	if cfg.ClusterName == "" {
		cfg.ClusterName = d.ClusterName
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = d.RequestTimeout
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	host, portStr, err := net.SplitHostPort(cfg.RemoteAddr)
	if err != nil {
		return nil, fmt.Errorf("remote address %q: %w", cfg.RemoteAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("remote port %q: %w", portStr, err)
	}
	// protoactor logs every connection at info; keep its warnings only.
	plog := slog.New(levelFilter{cfg.Log.Handler(), slog.LevelWarn}).With("component", "protoactor")
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return plog }))
	var ropts []remote.ConfigOption
	if cfg.AdvertisedAddr != "" {
		ropts = append(ropts, remote.WithAdvertisedHost(cfg.AdvertisedAddr))
	}
	// protoactor's remote implements only Receive; its other RPCs panic
	// ("implement me"), which would let anyone who reaches the port crash
	// the node. Answer them Unimplemented instead.
	//
	// Flow-control windows of a fixed size: with gRPC's default dynamic
	// window, a receiver that gets data while no bandwidth probe is out
	// sends one (a window update and a PING, answered by a PING ack), so at
	// the message rates of a cluster nearly every message between nodes
	// cost two more writes and two more reads, one pair on each side
	// (docs/BENCHMARKS.md, claims across nodes). A fixed window turns the
	// probes off; 1 MiB is more than a node's messages to one peer ever
	// have in flight.
	sopts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(onlyReceive),
		grpc.InitialWindowSize(remoteWindow), grpc.InitialConnWindowSize(remoteWindow)}
	dopts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(remoteWindow), grpc.WithInitialConnWindowSize(remoteWindow)}
	if cfg.TLS != nil {
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(cfg.TLS.Server)))
		dopts[0] = grpc.WithTransportCredentials(credentials.NewTLS(cfg.TLS.Client))
	}
	ropts = append(ropts, remote.WithDialOptions(dopts...))
	// The queue of messages to each other node starts at 4,096 and doubles
	// as needed: protoactor's default allocates 1,000,000 slots (16 MB) per
	// peer up front, 30 MB of each node's heap in a three-node cluster.
	ropts = append(ropts, remote.WithServerOptions(sopts...), remote.WithEndpointWriterQueueSize(4096))
	lookup := placement.New(cfg.LookupTimeout)
	ccfg := cluster.Configure(cfg.ClusterName, cfg.Provider, lookup, remote.Configure(host, port, ropts...),
		cluster.WithKinds(kinds...), cluster.WithRequestTimeout(cfg.RequestTimeout),
		cluster.WithHeartbeatExpiration(20*time.Second))
	c := cluster.New(sys, ccfg)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("start cluster member: %v", r)
		}
	}()
	c.StartMember()
	cfg.Log.Info("cluster member started", "address", sys.Address(), "member", sys.ID)
	return &Node{System: sys, Cluster: c, Lookup: lookup, log: cfg.Log}, nil
}

// onlyReceive refuses protoactor's unary RPCs (all unimplemented).
func onlyReceive(context.Context, any, *grpc.UnaryServerInfo, grpc.UnaryHandler) (any, error) {
	return nil, status.Error(codes.Unimplemented, "not served")
}

// Address returns the member's protoactor address.
func (n *Node) Address() string { return n.System.Address() }

// Stop leaves the cluster. Graceful: grains are poisoned (they flush their
// snapshots) and the provider leaves; otherwise the process is going away.
func (n *Node) Stop(graceful bool) {
	n.Cluster.Shutdown(graceful)
	n.log.Info("cluster member stopped", "graceful", graceful)
}
