package ws_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/transport/auth"
	"github.com/couponmesh/couponmesh/transport/transporttest"
	"github.com/couponmesh/couponmesh/transport/ws"
)

var secret = []byte("test secret that is long enough!!")

// env is one ws.Handler on a loopback httptest server with the in-memory
// service and hub.
type env struct {
	t      *testing.T
	svc    *transporttest.Service
	hub    *transporttest.Hub
	tokens *auth.Tokens
	h      *ws.Handler
	reg    *prometheus.Registry
	srv    *httptest.Server
	url    string
	logs   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newEnv(t *testing.T, cfg ws.Config) *env {
	t.Helper()
	e := &env{t: t, hub: transporttest.NewHub(), reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	e.svc = transporttest.NewService(e.hub)
	var err error
	e.tokens, err = auth.New(auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.h = ws.NewHandler(cfg, e.svc, e.hub, e.tokens, e.reg, log)
	e.srv = httptest.NewServer(e.h)
	e.url = "ws" + strings.TrimPrefix(e.srv.URL, "http")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.h.Shutdown(ctx)
		e.srv.Close()
	})
	return e
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (e *env) token(user string, role couponmesh.Role) string {
	e.t.Helper()
	tok, _, err := e.tokens.Issue(couponmesh.Principal{User: user, Role: role})
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// signed makes a token with the given claims, signed with key.
func signed(t *testing.T, key []byte, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claimsFor(user string, exp time.Time) jwt.MapClaims {
	return jwt.MapClaims{"iss": auth.DefaultIssuer, "aud": auth.DefaultAudience, "sub": user, "role": "shopper", "exp": exp.Unix()}
}

func (e *env) dial(opts client.Options) *client.Client {
	e.t.Helper()
	c, err := client.Dial(ctxT(e.t), e.url, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

func (e *env) login(user string, opts client.Options) *client.Client {
	e.t.Helper()
	c := e.dial(opts)
	if _, err := c.Auth(ctxT(e.t), e.token(user, couponmesh.RoleShopper)); err != nil {
		e.t.Fatal(err)
	}
	return c
}

// metric returns the value of a counter or gauge, 0 when absent.
func (e *env) metric(name string, labels ...string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if labelValue(m, labels[i]) != labels[i+1] {
					continue next
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	return 0
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// rawConn is a bare protocol connection for frames the client would not send.
type rawConn struct {
	t    *testing.T
	c    *websocket.Conn
	msgs [][]byte // split but not yet returned
}

func (e *env) raw(subprotocols ...string) *rawConn {
	e.t.Helper()
	if subprotocols == nil {
		subprotocols = []string{ws.Subprotocol}
	}
	c, _, err := websocket.Dial(ctxT(e.t), e.url, &websocket.DialOptions{Subprotocols: subprotocols})
	if err != nil {
		e.t.Fatal(err)
	}
	c.SetReadLimit(-1)
	e.t.Cleanup(func() { c.CloseNow() })
	return &rawConn{t: e.t, c: c}
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if err := r.c.Write(ctxT(r.t), websocket.MessageText, []byte(s)); err != nil {
		r.t.Fatal(err)
	}
}

// next returns the next message, or the read error.
func (r *rawConn) next(ctx context.Context) (map[string]any, error) {
	for len(r.msgs) == 0 {
		_, data, err := r.c.Read(ctx)
		if err != nil {
			return nil, err
		}
		r.msgs = bytes.Split(data, []byte("\n"))
	}
	msg := r.msgs[0]
	r.msgs = r.msgs[1:]
	var m map[string]any
	if err := json.Unmarshal(msg, &m); err != nil {
		r.t.Fatalf("server sent invalid JSON %q: %v", msg, err)
	}
	return m, nil
}

func (r *rawConn) mustNext() map[string]any {
	r.t.Helper()
	m, err := r.next(ctxT(r.t))
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	return m
}

// closeStatus reads until the connection ends and returns its close code.
func (r *rawConn) closeStatus() websocket.StatusCode {
	r.t.Helper()
	for {
		if _, err := r.next(ctxT(r.t)); err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

func (r *rawConn) auth(tok string) {
	r.t.Helper()
	r.send(`{"id":1000000,"op":"auth","token":"` + tok + `"}`)
	m := r.mustNext()
	if m["ok"] == nil {
		r.t.Fatalf("auth failed: %v", m)
	}
}
