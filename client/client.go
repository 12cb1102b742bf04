package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/couponmesh/couponmesh"
)

// Subprotocol is the WebSocket subprotocol of protocol v1.
const Subprotocol = "couponmesh.v1"

// DefaultReadLimit is the largest frame a client accepts unless
// Options.ReadLimit says otherwise. Replies to big subscribes or wallets can
// be large; the server's own frames are bounded by what it sends.
const DefaultReadLimit = 32 << 20

// ErrClosed is wrapped by the errors of calls on a closed connection.
var ErrClosed = errors.New("client: connection closed")

// Options configures Dial. Every field is optional.
type Options struct {
	// OnCoupon receives coupon pushes, on the reader goroutine, in order.
	OnCoupon func(couponmesh.Coupon)
	// OnFeed receives feed pushes, on the reader goroutine, in order.
	OnFeed func(couponmesh.FeedEntry)
	// OnError receives error replies that match no pending request, such as
	// the answer to a frame the server could not read.
	OnError func(*couponmesh.Error)
	// HTTPHeader is sent with the upgrade request (e.g. Origin).
	HTTPHeader http.Header
	// HTTPClient dials the connection (default http.DefaultClient).
	HTTPClient *http.Client
	// ReadLimit bounds one incoming frame (default DefaultReadLimit).
	ReadLimit int64
}

// Sub names a coupon to subscribe to and the version the caller holds (0:
// none, always send the snapshot).
type Sub struct {
	ID      string `json:"id"`
	Version int64  `json:"version"`
}

// AuthInfo is the reply to auth.
type AuthInfo struct {
	User      string          `json:"user"`
	Role      couponmesh.Role `json:"role"`
	ExpiresAt time.Time       `json:"expiresAt"`
}

// SubscribeResult is the full reply to subscribe: the snapshots newer than
// the versions given, and the ids of coupons that do not exist.
type SubscribeResult struct {
	Coupons []couponmesh.Coupon `json:"coupons"`
	Missing []string            `json:"missing"`
}

// Client is a protocol v1 connection. Safe for concurrent use.
type Client struct {
	opts   Options
	nextID atomic.Int64
	l      *link // the current connection; a reconnecting client swaps it
}

// link is one WebSocket connection with its reader and pending requests.
type link struct {
	c    *Client
	conn *websocket.Conn

	mu      sync.Mutex
	pending map[int64]chan result
	closed  bool
	status  websocket.StatusCode
	err     error
	done    chan struct{}
}

type result struct {
	ok  json.RawMessage
	err error
}

// Dial opens a protocol v1 session at url (ws://, wss://, http:// or
// https://, path included, e.g. "ws://localhost:8080/ws"). It does not
// authenticate: call Auth next.
func Dial(ctx context.Context, url string, opts Options) (*Client, error) {
	c := &Client{opts: opts}
	l, err := c.dial(ctx, url)
	if err != nil {
		return nil, err
	}
	c.l = l
	return c, nil
}

func (c *Client) dial(ctx context.Context, url string) (*link, error) {
	conn, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPClient:   c.opts.HTTPClient,
		HTTPHeader:   c.opts.HTTPHeader,
		Subprotocols: []string{Subprotocol},
	})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("client: dial %s: %s: %w", url, resp.Status, err)
		}
		return nil, fmt.Errorf("client: dial %s: %w", url, err)
	}
	if conn.Subprotocol() != Subprotocol {
		conn.Close(websocket.StatusProtocolError, "subprotocol "+Subprotocol+" required")
		return nil, fmt.Errorf("client: server did not accept subprotocol %s", Subprotocol)
	}
	limit := c.opts.ReadLimit
	if limit == 0 {
		limit = DefaultReadLimit
	}
	conn.SetReadLimit(limit)
	l := &link{c: c, conn: conn, pending: make(map[int64]chan result), status: -1, done: make(chan struct{})}
	go l.readLoop()
	return l, nil
}

// readLoop reads frames until the connection ends, splitting each on '\n'.
func (l *link) readLoop() {
	ctx := context.Background()
	for {
		typ, data, err := l.conn.Read(ctx)
		if err != nil {
			l.finish(err)
			return
		}
		if typ != websocket.MessageText {
			continue
		}
		for len(data) > 0 {
			msg := data
			if i := bytes.IndexByte(data, '\n'); i >= 0 {
				msg, data = data[:i], data[i+1:]
			} else {
				data = nil
			}
			if len(bytes.TrimSpace(msg)) > 0 {
				l.dispatch(msg)
			}
		}
	}
}

// envelope is the union of a reply and a push.
type envelope struct {
	ID     int64                 `json:"id"`
	OK     json.RawMessage       `json:"ok"`
	Error  *couponmesh.Error     `json:"error"`
	Push   string                `json:"push"`
	Coupon *couponmesh.Coupon    `json:"coupon"`
	Entry  *couponmesh.FeedEntry `json:"entry"`
}

func (l *link) dispatch(msg []byte) {
	var env envelope
	if err := json.Unmarshal(msg, &env); err != nil {
		if l.c.opts.OnError != nil {
			l.c.opts.OnError(couponmesh.Errorf(couponmesh.CodeInternal, "client: unreadable message from server: %v", err))
		}
		return
	}
	switch {
	case env.Push == "coupon" && env.Coupon != nil:
		if l.c.opts.OnCoupon != nil {
			l.c.opts.OnCoupon(*env.Coupon)
		}
	case env.Push == "feed" && env.Entry != nil:
		if l.c.opts.OnFeed != nil {
			l.c.opts.OnFeed(*env.Entry)
		}
	case env.Push != "":
		// A push type from a later protocol version: ignore it.
	default:
		var r result
		if env.Error != nil {
			r.err = env.Error
		} else {
			r.ok = env.OK
		}
		l.mu.Lock()
		ch, ok := l.pending[env.ID]
		delete(l.pending, env.ID)
		l.mu.Unlock()
		switch {
		case ok && env.ID != 0:
			ch <- r
		case env.Error != nil && l.c.opts.OnError != nil:
			l.c.opts.OnError(env.Error)
		}
	}
}

func (l *link) finish(err error) {
	l.mu.Lock()
	l.closed = true
	l.status = websocket.CloseStatus(err)
	l.err = err
	pending := l.pending
	l.pending = nil
	l.mu.Unlock()
	l.conn.CloseNow()
	close(l.done)
	for _, ch := range pending {
		ch <- result{err: l.closedErr()}
	}
}

func (l *link) closedErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ce websocket.CloseError
	if errors.As(l.err, &ce) {
		return fmt.Errorf("%w: status %d %q", ErrClosed, ce.Code, ce.Reason)
	}
	return fmt.Errorf("%w: %v", ErrClosed, l.err)
}

// roundTrip sends frame, the request with the given id, and waits for its
// reply. If ctx ends while the frame is being written, the library closes
// the connection.
func (l *link) roundTrip(ctx context.Context, id int64, frame []byte) (json.RawMessage, error) {
	ch := make(chan result, 1)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, l.closedErr()
	}
	l.pending[id] = ch
	l.mu.Unlock()
	forget := func() {
		l.mu.Lock()
		delete(l.pending, id)
		l.mu.Unlock()
	}
	if err := l.conn.Write(ctx, websocket.MessageText, frame); err != nil {
		forget()
		select {
		case <-l.done:
			return nil, l.closedErr()
		default:
		}
		return nil, fmt.Errorf("client: send request: %w", err)
	}
	select {
	case r := <-ch:
		return r.ok, r.err
	case <-ctx.Done():
		forget()
		return nil, ctx.Err()
	}
}

// call sends op with the fields of the JSON object params encodes to (nil:
// none) and decodes the ok payload into out (nil: ignored).
func (c *Client) call(ctx context.Context, op string, params, out any) error {
	id := c.nextID.Add(1)
	frame := []byte(`{"id":` + strconv.FormatInt(id, 10) + `,"op":` + strconv.Quote(op))
	if params != nil {
		b, err := json.Marshal(params)
		if err != nil {
			return fmt.Errorf("client: encode %s: %w", op, err)
		}
		if len(b) < 2 || b[0] != '{' {
			return fmt.Errorf("client: %s params must encode to a JSON object", op)
		}
		if len(b) > 2 {
			frame = append(frame, ',')
			frame = append(frame, b[1:len(b)-1]...)
		}
	}
	frame = append(frame, '}')
	raw, err := c.l.roundTrip(ctx, id, frame)
	if err != nil {
		return err
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("client: decode %s reply: %w", op, err)
		}
	}
	return nil
}

// Do sends a request with any op and fields (id and op are set by Do and
// override fields of the same name) and returns the raw ok payload. Error
// replies come back as *couponmesh.Error.
func (c *Client) Do(ctx context.Context, op string, fields map[string]any) (json.RawMessage, error) {
	m := make(map[string]any, len(fields))
	for k, v := range fields {
		if k != "id" && k != "op" {
			m[k] = v
		}
	}
	var raw json.RawMessage
	err := c.call(ctx, op, m, &raw)
	return raw, err
}

// WriteRaw sends b as one text frame, as is. For tests of bad input: an
// error reply to it reaches Options.OnError when it carries no id.
func (c *Client) WriteRaw(ctx context.Context, b []byte) error {
	return c.l.conn.Write(ctx, websocket.MessageText, b)
}

// Auth authenticates the session with token. It may be called again with a
// fresh token for the same user before the current one expires.
func (c *Client) Auth(ctx context.Context, token string) (AuthInfo, error) {
	var out AuthInfo
	err := c.call(ctx, "auth", struct {
		Token string `json:"token"`
	}{token}, &out)
	return out, err
}

// Subscribe subscribes to the coupons and returns the snapshots newer than
// the versions given. Coupons that do not exist are left out; use
// SubscribeReport to learn which.
func (c *Client) Subscribe(ctx context.Context, subs []Sub) ([]couponmesh.Coupon, error) {
	r, err := c.SubscribeReport(ctx, subs)
	return r.Coupons, err
}

// SubscribeReport is Subscribe with the ids of missing coupons.
func (c *Client) SubscribeReport(ctx context.Context, subs []Sub) (SubscribeResult, error) {
	if subs == nil {
		subs = []Sub{}
	}
	var out SubscribeResult
	err := c.call(ctx, "subscribe", struct {
		Coupons []Sub `json:"coupons"`
	}{subs}, &out)
	return out, err
}

// Unsubscribe stops the pushes of the coupons.
func (c *Client) Unsubscribe(ctx context.Context, ids ...string) error {
	if ids == nil {
		ids = []string{}
	}
	return c.call(ctx, "unsubscribe", struct {
		Coupons []string `json:"coupons"`
	}{ids}, nil)
}

type couponParam struct {
	Coupon string `json:"coupon"`
}

// Get returns the current state of a coupon.
func (c *Client) Get(ctx context.Context, id string) (couponmesh.Coupon, error) {
	var out struct {
		Coupon couponmesh.Coupon `json:"coupon"`
	}
	err := c.call(ctx, "get", couponParam{id}, &out)
	return out.Coupon, err
}

// Claim claims one unit of coupon. rid is the idempotency key (1-64
// characters): retrying with the same rid returns the first answer.
func (c *Client) Claim(ctx context.Context, coupon, rid string) (couponmesh.Claim, error) {
	var out struct {
		Claim couponmesh.Claim `json:"claim"`
	}
	err := c.call(ctx, "claim", struct {
		Coupon string `json:"coupon"`
		Rid    string `json:"rid"`
	}{coupon, rid}, &out)
	return out.Claim, err
}

// Follow follows a coupon (persisted on the user) and subscribes to it.
func (c *Client) Follow(ctx context.Context, coupon string) (couponmesh.Coupon, error) {
	var out struct {
		Coupon couponmesh.Coupon `json:"coupon"`
	}
	err := c.call(ctx, "follow", couponParam{coupon}, &out)
	return out.Coupon, err
}

// Unfollow stops following a coupon and unsubscribes from it.
func (c *Client) Unfollow(ctx context.Context, coupon string) error {
	return c.call(ctx, "unfollow", couponParam{coupon}, nil)
}

// Wallet returns the user's claims, oldest first.
func (c *Client) Wallet(ctx context.Context) ([]couponmesh.Claim, error) {
	var out struct {
		Claims []couponmesh.Claim `json:"claims"`
	}
	err := c.call(ctx, "wallet", nil, &out)
	return out.Claims, err
}

// Feed returns up to limit feed entries with seq > after (limit 0: the
// server's default) and starts the live feed pushes.
func (c *Client) Feed(ctx context.Context, after int64, limit int) ([]couponmesh.FeedEntry, error) {
	var out struct {
		Entries []couponmesh.FeedEntry `json:"entries"`
	}
	err := c.call(ctx, "feed", struct {
		After int64 `json:"after"`
		Limit int   `json:"limit,omitempty"`
	}{after, limit}, &out)
	return out.Entries, err
}

// Ping round-trips a protocol ping (not a WebSocket ping).
func (c *Client) Ping(ctx context.Context) error {
	return c.call(ctx, "ping", nil, nil)
}

// Close closes the connection with 1000 and waits for the reader to end.
func (c *Client) Close() error {
	err := c.l.conn.Close(websocket.StatusNormalClosure, "")
	<-c.l.done
	if err != nil && (errors.Is(err, net.ErrClosed) || websocket.CloseStatus(err) != -1) {
		return nil // the server closed first
	}
	return err
}

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.l.done }

// CloseStatus returns the close code the server sent, or -1 if the
// connection is open or ended without a close frame.
func (c *Client) CloseStatus() websocket.StatusCode {
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	return c.l.status
}

// Err returns why the connection ended, or nil while it is open.
func (c *Client) Err() error {
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	return c.l.err
}
