package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors"
	"github.com/couponmesh/couponmesh/actors/coupon"
	"github.com/couponmesh/couponmesh/actors/hub"
	"github.com/couponmesh/couponmesh/actors/reminder"
	"github.com/couponmesh/couponmesh/actors/user"
	"github.com/couponmesh/couponmesh/cluster/membership"
	"github.com/couponmesh/couponmesh/cluster/node"
	"github.com/couponmesh/couponmesh/persistence/cache"
	"github.com/couponmesh/couponmesh/persistence/devdb"
	"github.com/couponmesh/couponmesh/persistence/mongodb"
	"github.com/couponmesh/couponmesh/transport/admin"
	"github.com/couponmesh/couponmesh/transport/auth"
	"github.com/couponmesh/couponmesh/transport/httpapi"
	"github.com/couponmesh/couponmesh/transport/ws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// App is a running node: database, cluster member, hub, listeners.
type App struct {
	cfg       Config
	log       *slog.Logger
	db        *devdb.DB // nil with an external MongoDB
	mongo     *mongodb.Store
	store     *cache.Store // over mongo: what the actors and the service use
	node      *node.Node
	hub       *hub.Hub
	ws        *ws.Handler
	publicSrv *http.Server
	admin     *http.Server
	adminAPI  *admin.Server
	httpLn    net.Listener
	adminLn   net.Listener
	draining  atomic.Bool
	svc       *actors.Service
	churn     *actors.Churn
	members   *membership.Provider
	public    string // host:port clients reach this node at

	stopRate chan struct{} // closed by stop: ends KeepShards

	drainOnce sync.Once
	drained   chan struct{} // closed when a drain has finished
	evicted   chan struct{} // closed when the cluster evicted this member
}

// Start brings a node up. On error everything started so far is stopped.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (_ *App, err error) {
	a := &App{cfg: cfg, log: log, drained: make(chan struct{}), evicted: make(chan struct{}), stopRate: make(chan struct{})}
	defer func() {
		if err != nil {
			a.stop(context.Background())
		}
	}()
	uri := cfg.MongoURI
	if uri == "" {
		a.db, err = devdb.Start(ctx, devdb.Config{Addr: "127.0.0.1:0", Dir: filepath.Join(cfg.DataDir, "db")}, log)
		if err != nil {
			return nil, fmt.Errorf("embedded database: %w", err)
		}
		uri = a.db.URI()
		log.Info("embedded database started", "dir", filepath.Join(cfg.DataDir, "db"), "uri", uri)
	}
	// Bind the listeners first: their addresses go into the node's metadata.
	if a.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("public listener: %w", err)
	}
	if a.httpLn, err = tlsListener(a.httpLn, cfg); err != nil {
		return nil, fmt.Errorf("public listener: %w", err)
	}
	if a.adminLn, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	a.public = cfg.Cluster.PublicAddr
	if a.public == "" {
		a.public = reachable(a.httpLn.Addr().String(), cfg.RemoteAddr)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mcfg := cfg.mongoConfig(uri)
	mcfg.Metrics = mongodb.NewMetrics(reg)
	if a.mongo, err = mongodb.Open(ctx, mcfg, log); err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	ccfg := cfg.Cache
	ccfg.Registerer = reg
	a.store, err = cache.New(a.mongo, ccfg)
	if err != nil {
		return nil, err
	}
	call := actors.DefaultCallConfig()
	if d := cfg.Actors.RequestTimeout.D(); d > 0 {
		call.Timeout = d
	}
	// Churn: after membership changes, active grains validate against the
	// journal before they answer (DESIGN.md invariant 8).
	churn := actors.NewChurn()
	a.churn = churn
	gcfg := cfg.Actors.GrainConfig
	gcfg.Store, gcfg.Call, gcfg.Local, gcfg.Churn, gcfg.Metrics, gcfg.Log = a.store, call, actors.NewLocalCoupons(churn), churn, actors.NewMetrics(reg), log
	gcfg.UserWrites = actors.RateLimit{Rate: cfg.Limits.UserWriteRate, Burst: cfg.Limits.UserWriteBurst}
	lcfg, err := cfg.memberlistConfig() // validated by LoadConfig
	if err != nil {
		return nil, err
	}
	lcfg.HTTPAddr, lcfg.AdminAddr = a.public, reachable(a.adminLn.Addr().String(), cfg.RemoteAddr)
	lcfg.OnEvicted, lcfg.OnChurn, lcfg.Log = func() { close(a.evicted) }, churn.Changed, log
	a.members = membership.New(lcfg)
	var remoteTLS *node.RemoteTLS
	if cl := cfg.Cluster; cl.RemoteTLSCert != "" || cl.RemoteTLSKey != "" || cl.RemoteTLSCA != "" {
		if remoteTLS, err = node.LoadRemoteTLS(cl.RemoteTLSCert, cl.RemoteTLSKey, cl.RemoteTLSCA, cl.RemoteTLSServerName); err != nil {
			return nil, err
		}
	}
	ncfg := cfg.nodeConfig()
	ncfg.RequestTimeout, ncfg.Provider, ncfg.TLS, ncfg.Log = call.Timeout, a.members, remoteTLS, log
	a.node, err = node.Start(ncfg, coupon.Kind(gcfg), user.Kind(gcfg), reminder.Kind(gcfg))
	if err != nil {
		return nil, err
	}
	// The reminder shards this node owns are activated and kept active (a
	// dead node's shards come up on their new owner within a tick).
	self := a.node.Address()
	go actors.KeepShards(a.node.Cluster, call, func(kind, id string) bool { return a.node.Lookup.Owner(kind, id) == self },
		time.Second, log, a.stopRate)
	hcfg := cfg.Actors.HubConfig
	hcfg.Call, hcfg.Log, hcfg.Presence = call, log, !cfg.Actors.PresenceOff
	if a.hub, err = hub.Start(a.node.Cluster, hcfg, reg); err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	svc := actors.NewService(a.node.Cluster, a.store, call, log)
	svc.UseLocal(gcfg.Local)
	a.svc = svc

	var public []auth.PublicKey
	if cfg.JWTPublicKeys != "" {
		if public, err = auth.LoadPublicKeys(cfg.JWTPublicKeys); err != nil {
			return nil, err
		}
	}
	tokens, err := auth.New(cfg.authConfig(public))
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	wcfg, err := cfg.wsConfig()
	if err != nil {
		return nil, err
	}
	a.ws = ws.NewHandler(wcfg, svc, a.hub, tokens, reg, log)
	api := httpapi.New(httpapi.Options{
		Service: svc, Tokens: tokens, WS: a.ws, Dev: cfg.Dev, Ready: a.ready, Static: webFS(), Log: log,
	})

	// Header limits: a request line and headers over MaxHeaderBytes get 431,
	// headers that take longer than ReadHeaderTimeout (slowloris) a closed
	// connection; idle keep-alive connections close after IdleTimeout.
	// Bodies are bounded per route (httpapi.MaxBody); WebSocket sessions
	// have their own limits (ws.Config).
	a.publicSrv = &http.Server{Handler: hideAdmin(api), ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: publicMaxHeaderBytes,
		IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	a.adminAPI = admin.New(admin.Config{
		Inspector: struct {
			couponmesh.Membership
			couponmesh.Placement
			couponmesh.Grains
		}{a.members.View(), a.node.Lookup.View(), actors.NewGrainInspector(a.node.Cluster, a.node.Lookup.PID)},
		Sessions: a.ws, Token: cfg.AdminToken, Messages: gcfg.Metrics.Messages, Draining: a.draining.Load,
		Drain:   func() { a.drainOnce.Do(func() { go a.drain() }) },
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
	})
	a.admin = &http.Server{Handler: a.adminAPI.Handler(), ReadHeaderTimeout: 5 * time.Second}
	a.admin.RegisterOnShutdown(a.adminAPI.Close)
	go a.serve(a.publicSrv, a.httpLn, "public")
	go a.serve(a.admin, a.adminLn, "admin")
	log.Info("node ready", "http", "http://"+a.httpLn.Addr().String(), "admin", "http://"+a.adminLn.Addr().String(),
		"public", a.public, "member", a.node.System.ID, "dev", cfg.Dev)
	return a, nil
}

// publicMaxHeaderBytes bounds the request line and headers of the public
// listener (net/http allows 4 KiB of slack on top).
const publicMaxHeaderBytes = 16 << 10

func (a *App) serve(s *http.Server, ln net.Listener, name string) {
	if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		a.log.Error("listener failed", "listener", name, "err", err)
	}
}

// HTTPAddr is the bound public address.
func (a *App) HTTPAddr() string { return a.httpLn.Addr().String() }

// AdminAddr is the bound admin address.
func (a *App) AdminAddr() string { return a.adminLn.Addr().String() }

func (a *App) ready(ctx context.Context) error {
	if a.draining.Load() {
		return errors.New("draining")
	}
	if !a.members.Joined() {
		return errors.New("not joined to the cluster yet")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := a.store.Ping(ctx); err != nil {
		return errors.New("database unreachable")
	}
	return nil
}

// Drained is closed when a drain (Drain or Stop) has finished.
func (a *App) Drained() <-chan struct{} { return a.drained }

// Evicted is closed when a majority of the cluster declared this member
// dead while it was still running (paused, partitioned): the process must
// exit, and its supervisor starts a new member with a new identity.
func (a *App) Evicted() <-chan struct{} { return a.evicted }

// Drain leaves the cluster without a client-visible error: readiness goes
// false (the load balancer stops sending new clients), sessions are handed
// over to the other nodes (after cluster.drain_delay; close 1012 with
// their addresses, spread over cluster.drain_spread), the hub stops, grains
// passivate after answering what they hold (their writes are durable when
// answered; snapshots are flushed), the member leaves memberlist, and the
// database is closed. Only the first call drains; every call waits for it
// or ctx.
func (a *App) Drain(ctx context.Context) {
	a.drainOnce.Do(func() { go a.drain() })
	select {
	case <-a.drained:
	case <-ctx.Done():
	}
}

func (a *App) drain() {
	defer close(a.drained)
	start := time.Now()
	a.draining.Store(true)
	a.log.Info("draining", "sessions", a.sessions())
	if d := a.cfg.Cluster.DrainDelay.D(); d > 0 {
		// Load balancers see /readyz 503 and take this node out before its
		// clients reconnect, so none of them lands here again.
		time.Sleep(d)
	}
	// Each session: its draining push, up to DrainGrace for the client's
	// drained, then its requests' answers (1011 for one still running
	// AnswerSlack past its timeout).
	wsd := ws.DefaultConfig()
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.Cluster.DrainSpread.D()+wsd.DrainGrace+wsd.RequestTimeout+ws.AnswerSlack)
	defer cancel()
	if a.ws != nil {
		if err := a.ws.Drain(ctx, a.otherNodes(), a.cfg.Cluster.DrainSpread.D()); err != nil {
			a.log.Warn("sessions did not all leave in time", "left", a.ws.Sessions())
		}
	}
	a.stop(ctx)
	a.log.Info("drained", "took", time.Since(start).Round(time.Millisecond))
}

// Stop drains the node (see Drain) and waits for it or ctx.
func (a *App) Stop(ctx context.Context) { a.Drain(ctx) }

// stop ends what Start started, in order.
func (a *App) stop(ctx context.Context) {
	a.draining.Store(true)
	select {
	case <-a.stopRate:
	default:
		close(a.stopRate)
	}
	if a.publicSrv != nil {
		_ = a.publicSrv.Shutdown(ctx)
	}
	if a.ws != nil {
		_ = a.ws.Shutdown(ctx)
	}
	if a.hub != nil {
		a.hub.Stop()
	}
	if a.node != nil {
		a.node.Stop(true)
	}
	if a.admin != nil {
		_ = a.admin.Shutdown(ctx)
	}
	if a.adminAPI != nil {
		a.adminAPI.Close()
	}
	if a.store != nil {
		_ = a.store.Close(ctx) // writes the snapshots still dirty
	}
	if a.mongo != nil {
		_ = a.mongo.Close(ctx)
	}
	if a.db != nil {
		_ = a.db.Close()
	}
}

func (a *App) sessions() int {
	if a.ws == nil {
		return 0
	}
	return a.ws.Sessions()
}

// otherNodes returns the public addresses of the other alive members,
// shuffled so that successive drains spread their clients.
func (a *App) otherNodes() []string {
	var out []string
	if a.members == nil {
		return nil
	}
	self := a.members.Self().ID
	for _, m := range a.members.Members() {
		if m.ID != self && m.Status == "alive" && m.HTTP != "" && !slices.Contains(out, m.HTTP) { // behind a load balancer all name it
			out = append(out, m.HTTP)
		}
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// reachable turns a bound address into one others can dial: an unspecified
// host (":8080", "0.0.0.0:8080") takes the host of hint (the remote address).
func reachable(bound, hint string) string {
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return bound
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
		return bound
	}
	h, _, err := net.SplitHostPort(hint)
	if err != nil || h == "" || net.ParseIP(h) != nil && net.ParseIP(h).IsUnspecified() {
		h = "127.0.0.1"
	}
	return net.JoinHostPort(h, port)
}

// hideAdmin answers 404 on the public listener for the paths of the admin
// listener (the web client would otherwise serve its entry page for them,
// as client-side routes), so that no one mistakes the public port for the
// admin one and nothing there ever looks like the console.
func hideAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := path.Clean("/" + r.URL.Path)
		for _, prefix := range []string{"/debug", "/admin", "/metrics"} {
			if p == prefix || strings.HasPrefix(p, prefix+"/") {
				http.NotFound(w, r)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
