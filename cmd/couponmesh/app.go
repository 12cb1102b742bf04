package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/couponmesh/couponmesh/actors"
	"github.com/couponmesh/couponmesh/actors/coupon"
	"github.com/couponmesh/couponmesh/actors/hub"
	"github.com/couponmesh/couponmesh/actors/user"
	"github.com/couponmesh/couponmesh/cluster/membership"
	"github.com/couponmesh/couponmesh/cluster/node"
	"github.com/couponmesh/couponmesh/persistence/cache"
	"github.com/couponmesh/couponmesh/persistence/devdb"
	"github.com/couponmesh/couponmesh/persistence/mongodb"
	"github.com/couponmesh/couponmesh/transport/auth"
	"github.com/couponmesh/couponmesh/transport/httpapi"
	"github.com/couponmesh/couponmesh/transport/ws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// App is a running node: database, cluster member, hub, listeners.
type App struct {
	cfg      Config
	log      *slog.Logger
	db       *devdb.DB // nil with an external MongoDB
	mongo    *mongodb.Store
	store    *cache.Store // over mongo: what the actors and the service use
	node     *node.Node
	hub      *hub.Hub
	ws       *ws.Handler
	public   *http.Server
	admin    *http.Server
	httpLn   net.Listener
	adminLn  net.Listener
	draining atomic.Bool
	svc      *actors.Service
}

// Start brings a node up. On error everything started so far is stopped.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (_ *App, err error) {
	a := &App{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			a.Stop(context.Background())
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
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mcfg := cfg.mongoConfig(uri)
	mcfg.Metrics = mongodb.NewMetrics(reg)
	if a.mongo, err = mongodb.Open(ctx, mcfg, log); err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	a.store, err = cache.New(a.mongo, cache.Config{
		SizeMB: cfg.Cache.SizeMB, SnapshotTTL: cfg.Cache.SnapshotTTL.D(), BrowseTTL: cfg.Cache.BrowseTTL.D(),
		FlushInterval: cfg.Cache.SnapshotFlush.D(), StaleIfDown: cfg.Cache.BrowseStaleIfDown.D(), Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	call := actors.DefaultCallConfig()
	if d := cfg.Actors.RequestTimeout.D(); d > 0 {
		call.Timeout = d
	}
	gcfg := actors.GrainConfig{
		Store:          a.store,
		PassivateAfter: cfg.Actors.PassivateAfter.D(),
		SnapshotDelay:  cfg.Actors.SnapshotDelay.D(),
		HubLease:       cfg.Actors.HubLease.D(),
		Call:           call,
		Metrics:        actors.NewMetrics(reg),
		Log:            log,
	}
	a.node, err = node.Start(node.Config{
		RemoteAddr: cfg.RemoteAddr, RequestTimeout: call.Timeout, Provider: membership.NewStatic(), Log: log,
	}, coupon.Kind(gcfg), user.Kind(gcfg))
	if err != nil {
		return nil, err
	}
	if a.hub, err = hub.Start(a.node.Cluster, hub.Config{Refresh: cfg.Actors.HubRefresh.D(), Call: call, Log: log}, reg); err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	svc := actors.NewService(a.node.Cluster, a.store, call, log)
	a.svc = svc

	tokens, err := auth.New(auth.Config{Secret: []byte(cfg.JWTSecret), Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, TTL: cfg.TokenTTL.D()})
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	a.ws = ws.NewHandler(ws.Config{
		ReadLimit:      cfg.WS.ReadLimit,
		SendQueue:      cfg.WS.SendQueue,
		PingInterval:   cfg.WS.PingInterval.D(),
		AuthTimeout:    cfg.WS.AuthTimeout.D(),
		OriginPatterns: cfg.AllowedOrigins,
	}, svc, a.hub, tokens, reg, log)
	api := httpapi.New(httpapi.Options{
		Service: svc, Tokens: tokens, WS: a.ws, Dev: cfg.Dev, Ready: a.ready, Static: webFS(), Log: log,
	})

	if a.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("public listener: %w", err)
	}
	if a.adminLn, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	a.public = &http.Server{Handler: api, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 16 << 10, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	a.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go a.serve(a.public, a.httpLn, "public")
	go a.serve(a.admin, a.adminLn, "admin")
	log.Info("node ready", "http", "http://"+a.httpLn.Addr().String(), "admin", "http://"+a.adminLn.Addr().String(), "dev", cfg.Dev)
	return a, nil
}

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
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := a.store.Ping(ctx); err != nil {
		return errors.New("database unreachable")
	}
	return nil
}

// Stop shuts the node down: readiness off, sessions closed, grains
// passivated (snapshots flushed), database closed.
func (a *App) Stop(ctx context.Context) {
	a.draining.Store(true)
	if a.public != nil {
		_ = a.public.Shutdown(ctx)
	}
	if a.ws != nil {
		a.ws.Shutdown(ctx)
	}
	if a.admin != nil {
		_ = a.admin.Shutdown(ctx)
	}
	if a.hub != nil {
		a.hub.Stop()
	}
	if a.node != nil {
		a.node.Stop(true)
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
