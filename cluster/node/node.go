// Package node starts and stops one cluster member: the actor system, the
// protoactor remote, the cluster with the kinds it is given, and its
// membership provider. It knows nothing of coupons or users.
//
// Start and Stop are called once each, from one goroutine.
package node

import (
	"context"
	"crypto/tls"
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
	"google.golang.org/grpc/status"

	"github.com/couponmesh/couponmesh/cluster/placement"
)

// Config of a member.
type Config struct {
	ClusterName    string
	RemoteAddr     string // protoactor remote bind host:port; port 0 picks one
	AdvertisedAddr string // host:port other members dial; empty: the bound address
	RequestTimeout time.Duration
	LookupTimeout  time.Duration // placement: wait for an owner's answer (default 1 s)
	Provider       cluster.ClusterProvider
	// TLS, when set, secures node-to-node actor traffic (gRPC): Server for
	// the listener (mutual TLS: set ClientCAs and ClientAuth), Client for
	// the connections to the other members.
	TLS *RemoteTLS
	Log *slog.Logger
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
	if cfg.ClusterName == "" {
		cfg.ClusterName = "couponmesh"
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 5 * time.Second
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
	sopts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(onlyReceive)}
	if cfg.TLS != nil {
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(cfg.TLS.Server)))
		ropts = append(ropts, remote.WithDialOptions(grpc.WithTransportCredentials(credentials.NewTLS(cfg.TLS.Client))))
	}
	ropts = append(ropts, remote.WithServerOptions(sopts...))
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
