package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/transport/auth"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"
)

// MaxBody is the largest request body the API reads, but for a bulk update.
const MaxBody = 64 << 10

// MaxBulkBody is the largest body of a bulk update (POST
// /api/coupons/bulk-update), which carries up to couponmesh.MaxBulkUpdates
// items.
const MaxBulkBody = 1 << 20

// BulkConcurrency is how many coupons of one bulk update are updated at
// once; the items of one coupon run one after another, in request order.
const BulkConcurrency = 16

// DefaultBulkInFlight bounds the items of all bulk updates in the Service
// at once on a node: as many as 256 connections of single updates put
// there. Without it 256 connections of bulk updates put 4,096 at once
// into a node and it collapsed (docs/BENCHMARKS.md, bulk updates).
const DefaultBulkInFlight = 256

// Options configures New.
type Options struct {
	// Service answers every API call.
	Service couponmesh.Service
	// Tokens verifies bearer tokens and, in dev mode, issues them.
	Tokens *auth.Tokens
	// WS serves /ws (nil: 404).
	WS http.Handler
	// Dev turns on POST /api/dev/login.
	Dev bool
	// Ready reports readiness for /readyz (nil: always ready).
	Ready func(ctx context.Context) error
	// Static is the web client; nil serves a placeholder page at /.
	Static fs.FS
	// Log receives internal errors (nil: slog.Default()).
	Log *slog.Logger
	// BulkInFlight bounds the bulk update items in the Service at once,
	// over every request (0: DefaultBulkInFlight); items wait for a place.
	BulkInFlight int
}

// statuses is the one table from error codes to HTTP statuses.
var statuses = map[couponmesh.Code]int{
	couponmesh.CodeBadRequest:     http.StatusBadRequest,
	couponmesh.CodeUnauthorized:   http.StatusUnauthorized,
	couponmesh.CodeForbidden:      http.StatusForbidden,
	couponmesh.CodeNotFound:       http.StatusNotFound,
	couponmesh.CodeSoldOut:        http.StatusConflict,
	couponmesh.CodeExpired:        http.StatusConflict,
	couponmesh.CodeNotStarted:     http.StatusConflict,
	couponmesh.CodeAlreadyClaimed: http.StatusConflict,
	couponmesh.CodeRateLimited:    http.StatusTooManyRequests,
	couponmesh.CodeUnavailable:    http.StatusServiceUnavailable,
	couponmesh.CodeInternal:       http.StatusInternalServerError,
}

// StatusOf returns the HTTP status of an error code (500 for a code not on
// the closed list).
func StatusOf(code couponmesh.Code) int {
	if s, ok := statuses[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

type api struct {
	Options
	mux    *http.ServeMux // every route but the static files
	static http.Handler
	bulk   *semaphore.Weighted // BulkInFlight places
}

// New returns the public HTTP handler.
func New(o Options) http.Handler {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.BulkInFlight <= 0 {
		o.BulkInFlight = DefaultBulkInFlight
	}
	a := &api{Options: o, mux: http.NewServeMux(), bulk: semaphore.NewWeighted(int64(o.BulkInFlight))}
	a.static = a.staticHandler()
	m := a.mux
	if o.WS != nil {
		m.Handle("GET /ws", o.WS)
	}
	m.HandleFunc("POST /api/coupons", a.createCoupon)
	m.HandleFunc("GET /api/coupons", a.browse)
	m.HandleFunc("GET /api/coupons/{id}", a.getCoupon)
	m.HandleFunc("PUT /api/coupons/{id}", a.updateCoupon)
	m.HandleFunc("POST /api/coupons/bulk-update", a.bulkUpdate)
	m.HandleFunc("DELETE /api/coupons/{id}", a.withdrawCoupon)
	if o.Dev {
		m.HandleFunc("POST /api/dev/login", a.devLogin)
	}
	m.HandleFunc("GET /healthz", a.healthz)
	m.HandleFunc("GET /readyz", a.readyz)
	return a
}

// ServeHTTP routes to the API mux; what it does not take goes to the static
// files (GET and HEAD outside /api/) or gets a JSON 404 or 405 (under /api/).
func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setSecurityHeaders(w.Header(), r)
	h, pattern := a.mux.Handler(r)
	if pattern != "" {
		a.mux.ServeHTTP(w, r) // not h: the mux fills in the path values
		return
	}
	api := r.URL.Path == "/api" || strings.HasPrefix(r.URL.Path, "/api/")
	if !api && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		a.static.ServeHTTP(w, r)
		return
	}
	if api {
		rec := &statusRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		if rec.status == http.StatusMethodNotAllowed {
			w.Header()["Allow"] = rec.header["Allow"]
			writeJSON(w, http.StatusMethodNotAllowed, errorBody{couponmesh.Errorf(couponmesh.CodeBadRequest,
				"method %s not allowed on %s", r.Method, r.URL.Path)})
			return
		}
		writeJSON(w, http.StatusNotFound, errorBody{couponmesh.Errorf(couponmesh.CodeNotFound, "no endpoint %s %s", r.Method, r.URL.Path)})
		return
	}
	h.ServeHTTP(w, r)
}

// statusRecorder captures the status and headers the mux's own 404/405
// handler would write.
type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header         { return s.header }
func (s *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
}

type errorBody struct {
	Error *couponmesh.Error `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// writeError maps err with couponmesh.AsError and StatusOf, logging internal
// errors with what caused them.
func (a *api) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := a.asError(r, err)
	if e.Code == couponmesh.CodeUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="couponmesh"`)
	}
	writeJSON(w, StatusOf(e.Code), errorBody{e})
}

// asError maps err with couponmesh.AsError, logging an internal error with
// what caused it (the answer then says "internal" only).
func (a *api) asError(r *http.Request, err error) *couponmesh.Error {
	e := couponmesh.AsError(err)
	if e.Code == couponmesh.CodeInternal {
		a.Log.LogAttrs(r.Context(), slog.LevelError, "http: request failed",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
	}
	return e
}

// principal authenticates the request's bearer token.
func (a *api) principal(r *http.Request) (couponmesh.Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return couponmesh.Principal{}, couponmesh.Errorf(couponmesh.CodeUnauthorized, "missing bearer token: send Authorization: Bearer <token>")
	}
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return couponmesh.Principal{}, couponmesh.Errorf(couponmesh.CodeUnauthorized, "Authorization must use the Bearer scheme")
	}
	p, _, err := a.Tokens.Verify(strings.TrimSpace(token))
	return p, err
}

// decode reads one JSON object from the body into v: at most MaxBody bytes,
// no unknown fields, nothing after it.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeMax(w, r, v, MaxBody)
}

// decodeMax is decode with a body of at most limit bytes.
func decodeMax(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return bodyError(err)
		}
		return couponmesh.Errorf(couponmesh.CodeBadRequest, "request body must hold a single JSON object")
	}
	return nil
}

func bodyError(err error) error {
	var (
		mbe *http.MaxBytesError
		se  *json.SyntaxError
		te  *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &mbe):
		return couponmesh.Errorf(couponmesh.CodeBadRequest, "request body is larger than %d bytes", mbe.Limit)
	case errors.Is(err, io.EOF):
		return couponmesh.Errorf(couponmesh.CodeBadRequest, "request body is empty: a JSON object is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return couponmesh.Errorf(couponmesh.CodeBadRequest, "malformed JSON: unexpected end of body")
	case errors.As(err, &se):
		return couponmesh.Errorf(couponmesh.CodeBadRequest, "malformed JSON at byte %d: %s", se.Offset, se.Error())
	case errors.As(err, &te):
		if te.Field == "" {
			return couponmesh.Errorf(couponmesh.CodeBadRequest, "request body must be a JSON object, not %s", te.Value)
		}
		return couponmesh.Errorf(couponmesh.CodeBadRequest, "field %s has the wrong type (%s)", te.Field, te.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return couponmesh.Errorf(couponmesh.CodeBadRequest, "%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	// Other decode errors (e.g. a bad time format) describe the input only.
	return couponmesh.Errorf(couponmesh.CodeBadRequest, "invalid request body: %s", strings.TrimPrefix(err.Error(), "json: "))
}

func (a *api) createCoupon(w http.ResponseWriter, r *http.Request) {
	p, err := a.principal(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	var spec couponmesh.CouponSpec
	if err := decode(w, r, &spec); err != nil {
		a.writeError(w, r, err)
		return
	}
	c, err := a.Service.CreateCoupon(r.Context(), p, spec)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/coupons/"+c.ID)
	writeJSON(w, http.StatusCreated, c)
}

// pathID returns the {id} of the route, checked.
func pathID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if !couponmesh.ValidID(id) {
		return "", couponmesh.Errorf(couponmesh.CodeBadRequest, "coupon id must be 1-%d characters of letters, digits, '_', '-' or '.'", couponmesh.MaxIDLen)
	}
	return id, nil
}

func (a *api) updateCoupon(w http.ResponseWriter, r *http.Request) {
	p, err := a.principal(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	id, err := pathID(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	var spec couponmesh.CouponSpec
	if err := decode(w, r, &spec); err != nil {
		a.writeError(w, r, err)
		return
	}
	if spec.ID != "" && spec.ID != id {
		a.writeError(w, r, couponmesh.Errorf(couponmesh.CodeBadRequest, "id in the body (%q) does not match the path", spec.ID))
		return
	}
	spec.ID = ""
	c, err := a.Service.UpdateCoupon(r.Context(), p, id, spec)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// bulkRequest is the body of POST /api/coupons/bulk-update: each item is a
// coupon update as PUT /api/coupons/{id} takes it, its id in the item.
type bulkRequest struct {
	Updates []couponmesh.CouponSpec `json:"updates"`
}

// bulkResponse is its answer: one result per item, in request order.
type bulkResponse struct {
	Results []couponmesh.BulkUpdateResult `json:"results"`
}

// bulkUpdate applies up to couponmesh.MaxBulkUpdates coupon updates of one
// principal. The request as a whole fails (its status and error body) only
// when it cannot be read: no or bad token, malformed or oversized body, no
// items or too many. Otherwise it answers 200 with one result per item, each
// item answered as PUT /api/coupons/{id} would answer it (the same checks in
// the same Service call, durable before it is answered), so one bad item
// does not fail the others. Different coupons are updated concurrently (at
// most BulkConcurrency at once, and BulkInFlight over every bulk request of
// the node); the items of one coupon in request order.
func (a *api) bulkUpdate(w http.ResponseWriter, r *http.Request) {
	p, err := a.principal(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	var in bulkRequest
	if err := decodeMax(w, r, &in, MaxBulkBody); err != nil {
		a.writeError(w, r, err)
		return
	}
	if n := len(in.Updates); n == 0 || n > couponmesh.MaxBulkUpdates {
		a.writeError(w, r, couponmesh.Errorf(couponmesh.CodeBadRequest,
			"updates must hold 1-%d coupon updates, got %d", couponmesh.MaxBulkUpdates, n))
		return
	}
	results := make([]couponmesh.BulkUpdateResult, len(in.Updates))
	byID := make(map[string][]int, len(in.Updates)) // coupon → its items, in order
	var ids []string                                // coupons in order of first item
	for i, spec := range in.Updates {
		results[i].ID = spec.ID
		if !couponmesh.ValidID(spec.ID) {
			results[i].Error = couponmesh.Errorf(couponmesh.CodeBadRequest,
				"id must be 1-%d characters of letters, digits, '_', '-' or '.'", couponmesh.MaxIDLen)
			continue
		}
		if _, ok := byID[spec.ID]; !ok {
			ids = append(ids, spec.ID)
		}
		byID[spec.ID] = append(byID[spec.ID], i)
	}
	var g errgroup.Group
	g.SetLimit(BulkConcurrency)
	for _, id := range ids {
		g.Go(func() error {
			for _, i := range byID[id] {
				spec := in.Updates[i]
				spec.ID = ""
				if err := a.bulk.Acquire(r.Context(), 1); err != nil {
					results[i].Error = couponmesh.Errorf(couponmesh.CodeUnavailable, "the node is busy: retry")
					continue
				}
				c, err := a.Service.UpdateCoupon(r.Context(), p, id, spec)
				a.bulk.Release(1)
				if err != nil {
					results[i].Error = a.asError(r, err)
					continue
				}
				results[i].Coupon = &c
			}
			return nil
		})
	}
	g.Wait()
	writeJSON(w, http.StatusOK, bulkResponse{results})
}

func (a *api) withdrawCoupon(w http.ResponseWriter, r *http.Request) {
	p, err := a.principal(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	id, err := pathID(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	c, err := a.Service.WithdrawCoupon(r.Context(), p, id)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (a *api) getCoupon(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	c, err := a.Service.Coupon(r.Context(), id)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (a *api) browse(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	bq := couponmesh.BrowseQuery{Merchant: q.Get("merchant"), Status: couponmesh.Status(q.Get("status")), After: q.Get("after")}
	if bq.Merchant != "" && !couponmesh.ValidID(bq.Merchant) {
		a.writeError(w, r, couponmesh.Errorf(couponmesh.CodeBadRequest, "merchant must be a valid user id"))
		return
	}
	if bq.Status != "" && !bq.Status.Valid() {
		a.writeError(w, r, couponmesh.Errorf(couponmesh.CodeBadRequest, "status must be one of active, sold_out, expired, withdrawn"))
		return
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > couponmesh.MaxBrowseLimit {
			a.writeError(w, r, couponmesh.Errorf(couponmesh.CodeBadRequest, "limit must be an integer between 1 and %d", couponmesh.MaxBrowseLimit))
			return
		}
		bq.Limit = n
	}
	if len(bq.After) > 256 {
		a.writeError(w, r, couponmesh.Errorf(couponmesh.CodeBadRequest, "after is not a cursor from a previous page"))
		return
	}
	page, err := a.Service.Browse(r.Context(), bq)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if page.Coupons == nil {
		page.Coupons = []couponmesh.Coupon{}
	}
	writeJSON(w, http.StatusOK, page)
}

func (a *api) devLogin(w http.ResponseWriter, r *http.Request) {
	var in struct {
		User string          `json:"user"`
		Role couponmesh.Role `json:"role"`
	}
	if err := decode(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	if in.Role == "" {
		in.Role = couponmesh.RoleShopper
	}
	tok, exp, err := a.Tokens.Issue(couponmesh.Principal{User: in.User, Role: in.Role})
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expiresAt"`
	}{tok, exp})
}

func (a *api) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (a *api) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if a.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		err := a.Ready(ctx)
		cancel()
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// Cache-Control values of the static web client: the entry page is
// revalidated on every load, fingerprinted assets are cached for good.
const (
	cacheRevalidate = "no-cache"
	cacheImmutable  = "public, max-age=31536000, immutable"
)

func (a *api) staticHandler() http.Handler {
	if a.Static == nil {
		return http.HandlerFunc(placeholder)
	}
	files := http.FileServerFS(a.Static)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
		if strings.HasPrefix(name, "assets/") {
			w.Header().Set("Cache-Control", cacheImmutable)
			files.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Cache-Control", cacheRevalidate)
		// A path that is no file and has no extension is a client-side
		// route of the single-page app: answer with the entry page. So is
		// a coupon's page, /c/<id>, whatever its id holds ('.' included).
		if isCouponPage(name) || name != "" && path.Ext(name) == "" {
			if _, err := fs.Stat(a.Static, name); err != nil {
				r2 := r.Clone(r.Context())
				r2.URL.Path = "/"
				files.ServeHTTP(w, r2)
				return
			}
		}
		files.ServeHTTP(w, r)
	})
}

// isCouponPage reports whether name (a cleaned path without its leading
// '/') is the page of one coupon, c/<id>.
func isCouponPage(name string) bool {
	id, ok := strings.CutPrefix(name, "c/")
	return ok && couponmesh.ValidID(id)
}

// setSecurityHeaders sets the headers every response of the public listener
// carries: a Content-Security-Policy that lets the app load its scripts,
// styles, images, manifest and service worker from its own origin only (no
// inline script, no eval), connect to its own origin and its own WebSocket
// endpoint only, and never be framed; no MIME sniffing; no referrer sent to
// other sites (coupon URLs stay on the node). They cost nothing on JSON
// answers and protect a JSON body opened in a browser as well.
func setSecurityHeaders(h http.Header, r *http.Request) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy(r.Host))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY") // frame-ancestors for browsers without CSP 2
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

// ContentSecurityPolicy is the policy the node serves with the web client
// for a request to host (the Host header): its own origin only, plus the
// WebSocket endpoint at ws:// and wss://host/ws. A host that is not a plain
// host[:port] is left out (the policy then allows 'self' alone, which
// browsers also apply to same-host WebSockets).
func ContentSecurityPolicy(host string) string {
	connect := "'self'"
	if validHost(host) {
		connect += " ws://" + host + "/ws wss://" + host + "/ws"
	}
	return "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; " +
		"connect-src " + connect + "; manifest-src 'self'; worker-src 'self'; object-src 'none'; " +
		"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}

// validHost reports whether host holds only the characters of a host name,
// an IPv4 or bracketed IPv6 address and a port, so it can go into a policy.
func validHost(host string) bool {
	if host == "" || len(host) > 255 {
		return false
	}
	for _, c := range host {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.ContainsRune(".-:[]", c):
		default:
			return false
		}
	}
	return true
}

const placeholderHTML = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>couponmesh</title></head>
<body>
<h1>couponmesh</h1>
<p>The web client is coming. Meanwhile the node serves its API:</p>
<ul>
<li><a href="/api/coupons">GET /api/coupons</a>: browse coupons</li>
<li>WebSocket protocol v1 at <code>/ws</code> (subprotocol <code>couponmesh.v1</code>)</li>
<li><a href="/healthz">/healthz</a> and <a href="/readyz">/readyz</a></li>
</ul>
</body>
</html>
`

func placeholder(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", cacheRevalidate)
	fmt.Fprint(w, placeholderHTML)
}
