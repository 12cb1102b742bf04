package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/protocol"
)

// Subprotocol is the WebSocket subprotocol of protocol v1.
const Subprotocol = protocol.Subprotocol

// DefaultReadLimit is the largest frame a client accepts unless
// Options.ReadLimit says otherwise. Replies to big subscribes or wallets can
// be large; the server's own frames are bounded by what it sends.
const DefaultReadLimit = 32 << 20

// DefaultDialTimeout bounds one connection attempt of a reconnecting client
// unless Options.DialTimeout says otherwise.
const DefaultDialTimeout = 10 * time.Second

// ErrClosed is wrapped by the errors of calls on a closed connection.
var ErrClosed = errors.New("client: connection closed")

// ErrNotSent is wrapped (with ErrClosed) by the error of a call the node
// never ran, so sending it elsewhere is always safe: the node had announced
// it was draining (a draining push) and the call was not sent, or the node
// closed the connection with 1012 before replying to it (a node closes
// with 1012 only once every request it ran is answered: docs/PROTOCOL.md,
// "Drain handover"). Only a client without Options.Reconnect sees it; a
// reconnecting one sends such calls (any op) on its next connection.
var ErrNotSent = errors.New("client: request not sent")

// Options configures Dial. Every field is optional.
type Options struct {
	// OnCoupon receives coupon pushes (and, after a reconnect, the resync
	// snapshots) in order, one at a time, and only states newer than any the
	// client has seen of that coupon (from a push or the reply to Subscribe,
	// Get or Follow).
	OnCoupon func(couponmesh.Coupon)
	// OnFeed receives feed entries in seq order, one at a time, each once:
	// once Feed has succeeded, every seq after the newest one Feed returned,
	// with gaps filled by the client and, after a reconnect, the entries
	// missed meanwhile.
	OnFeed func(couponmesh.FeedEntry)
	// OnPresence receives presence pushes: the number of signed-in
	// shoppers watching a subscribed coupon, over the cluster, when it
	// changed (at most once a second per coupon). Calls come one at a
	// time, in the order the server sent them. The replies to Subscribe
	// and Get carry the count of the moment in Coupon.Watching.
	OnPresence func(coupon string, watching int)
	// OnError receives error replies that match no pending request, such as
	// the answer to a frame the server could not read.
	OnError func(*couponmesh.Error)
	// HTTPHeader is sent with the upgrade request (e.g. Origin).
	HTTPHeader http.Header
	// HTTPClient dials the connection (default http.DefaultClient).
	HTTPClient *http.Client
	// ReadLimit bounds one incoming frame (default DefaultReadLimit).
	ReadLimit int64

	// Reconnect makes the client reconnect by itself when the connection is
	// lost (no close frame, 1001, 1011, 1012, 1013, …), with Backoff between
	// attempts, and resync: auth, subscribe with the versions seen, feed
	// after the last seq. It never reconnects after Close, after close codes
	// 1002, 1008 or 1009, or when the server refuses the token. Requests
	// (all of protocol v1's are idempotent; a claim keeps its rid) are sent
	// again over the new connection, and also after an unavailable reply,
	// with a jittered backoff, until their context ends. After a draining
	// push the next connection is opened at once, and requests not sent
	// yet (of any op) go there, as do those a 1012 close left unanswered.
	Reconnect bool
	// Addresses lists more node URLs to reconnect to (ws://host:port/ws,
	// http(s) URLs, or host:port which takes the scheme and path of Dial's
	// url). Dial's url is the first address. Nodes named in a draining
	// push or a 1012 close reason are added and tried first.
	Addresses []string
	// Token returns the session token for the auth of each new connection.
	// When set, Dial authenticates at once, and the client authenticates
	// again with a fresh token shortly before the current one expires. When
	// nil, a reconnect authenticates with the last token Auth succeeded
	// with, and re-authenticating before expiry is the caller's job.
	Token func(ctx context.Context) (string, error)
	// Backoff bounds the delays between reconnect attempts (zero fields:
	// DefaultBackoff's).
	Backoff Backoff
	// DialTimeout bounds each step of a reconnect: the handshake and auth,
	// each resync subscribe, the feed read (default DefaultDialTimeout).
	DialTimeout time.Duration
	// PingInterval, when positive, makes the client send a WebSocket ping
	// this often and cut a connection whose pong does not come within the
	// same time (then reconnect, with Reconnect). It detects connections
	// that died without a FIN, which a read would wait on until TCP gives
	// up. 0 (the default): off; the server's own pings keep the session.
	PingInterval time.Duration
	// OnState receives every state change (StateConnected first, from Dial),
	// in order, on a goroutine of its own; it may call any method.
	OnState func(State)
}

// Sub names a coupon to subscribe to and the version the caller holds (0:
// none, always send the snapshot).
type Sub = protocol.Sub

// AuthInfo is the reply to auth.
type AuthInfo = protocol.AuthReply

// SubscribeResult is the full reply to subscribe: the snapshots newer than
// the versions given, the ids of coupons that do not exist, and in
// Watching the presence count (> 0) of the coupons subscribed that are not
// in Coupons (the client held their version); those in Coupons carry theirs
// in Coupon.Watching.
type SubscribeResult = protocol.SubscribeReply[couponmesh.Coupon]

// Client is a protocol v1 session over one connection at a time. Safe for
// concurrent use.
type Client struct {
	opts        Options
	backoff     Backoff
	dialTimeout time.Duration
	nextID      atomic.Int64
	ctx         context.Context // ends with the client
	cancel      context.CancelFunc
	wg          sync.WaitGroup // the supervisor and feed gap readers
	stateKick   chan struct{}

	mu          sync.Mutex
	cur         *link         // the link for calls; nil while reconnecting
	last        *link         // the newest link, open or ended
	ready       chan struct{} // closed when cur is set; replaced when cleared
	closing     bool          // Close was called
	ended       bool
	final       error // what calls fail with once ended
	fatal       error // an auth refusal that ended the client
	done        chan struct{}
	state       State
	stateQ      []State
	token       string // the last token Auth succeeded with
	reauthTimer *time.Timer
	urls        []string // known node URLs, Dial's first
	urlNext     int
	preferred   []string // handed over by a 1012 close, tried first
	leaving     *link    // the last link that got a draining push

	deliverMu sync.Mutex // see resync.go
	smu       sync.Mutex
	versions  map[string]int64
	subs      map[string]struct{}
	feedOn    bool
	lastSeq   int64
	fetching  int
	feedBuf   map[int64]couponmesh.FeedEntry
}

// Dial opens a protocol v1 session at url (ws://, wss://, http:// or
// https://, path included, e.g. "ws://localhost:8080/ws"). It authenticates
// only if Options.Token is set; otherwise call Auth next. With
// Options.Reconnect, Dial tries url and then each of Options.Addresses once
// and returns the last error if none answers.
func Dial(ctx context.Context, url string, opts Options) (*Client, error) {
	c := &Client{
		opts:        opts,
		backoff:     opts.Backoff.withDefaults(),
		dialTimeout: opts.DialTimeout,
		stateKick:   make(chan struct{}, 1),
		ready:       make(chan struct{}),
		done:        make(chan struct{}),
		urls:        []string{url},
		versions:    make(map[string]int64),
		subs:        make(map[string]struct{}),
		feedBuf:     make(map[int64]couponmesh.FeedEntry),
	}
	if c.dialTimeout <= 0 {
		c.dialTimeout = DefaultDialTimeout
	}
	for _, a := range opts.Addresses {
		u, ok := nodeURL(a, url)
		if !ok {
			return nil, fmt.Errorf("client: bad address %q", a)
		}
		if !contains(c.urls, u) {
			c.urls = append(c.urls, u)
		}
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	tries := c.urls[:1]
	if opts.Reconnect {
		tries = c.urls
	}
	var (
		l   *link
		err error
	)
	for i, u := range tries {
		if l, err = c.dial(ctx, u); err == nil {
			c.urlNext = (i + 1) % len(c.urls)
			break
		}
	}
	if err != nil {
		c.cancel()
		return nil, err
	}
	c.last = l
	if opts.Token != nil {
		tok, err := opts.Token(ctx)
		if err == nil {
			_, err = c.authLink(ctx, l, tok)
		}
		if err != nil {
			l.conn.CloseNow()
			<-l.done
			c.cancel()
			return nil, fmt.Errorf("client: auth: %w", err)
		}
	}
	if opts.OnState != nil {
		go c.notify()
	}
	c.publish(l)
	if opts.Reconnect {
		c.wg.Add(1)
		go c.supervise(l)
	}
	return c, nil
}

// idempotent lists the ops a reconnecting client sends again on the next
// connection when the connection is lost before their reply: all of v1's
// (a claim is retried with its rid, which the server answers as the first
// time).
var idempotent = map[string]bool{
	"auth": true, "ping": true, "subscribe": true, "unsubscribe": true, "get": true,
	"claim": true, "follow": true, "unfollow": true, "wallet": true, "feed": true,
}

// call sends op with the fields of the JSON object params encodes to (nil:
// none) and decodes the ok payload into out (nil: ignored). A reconnecting
// client waits for a connection and, for the ops in idempotent, sends the
// request again when the connection is lost before the reply, and when the
// server answers unavailable (its grain is moving or its database is slow:
// the protocol says retry), after unavailableBackoff, until ctx ends or the
// client is closed.
func (c *Client) call(ctx context.Context, op string, params, out any) error {
	body, err := encodeBody(op, params)
	if err != nil {
		return err
	}
	retry := c.opts.Reconnect && idempotent[op]
	for attempt := 0; ; {
		l, err := c.awaitLink(ctx)
		if err != nil {
			return err
		}
		raw, err := l.roundTrip(ctx, c.nextID.Add(1), body)
		switch {
		case err == nil:
			return decodeReply(op, raw, out)
		case c.opts.Reconnect && errors.Is(err, ErrNotSent) && ctx.Err() == nil:
			// Never sent (any op): wait for the next connection.
		case !retry || ctx.Err() != nil:
			return err
		case errors.Is(err, ErrClosed):
			// Once done is closed the client no longer hands out l.
			select {
			case <-l.done:
			case <-ctx.Done():
				return ctx.Err()
			}
		case couponmesh.ErrorCode(err) == couponmesh.CodeUnavailable:
			t := time.NewTimer(unavailableBackoff.Delay(attempt))
			attempt++
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return err
			}
		default:
			return err
		}
	}
}

// unavailableBackoff spaces the retries of a request answered unavailable.
var unavailableBackoff = Backoff{Base: 50 * time.Millisecond, Max: time.Second}

// Do sends a request with any op and fields (id and op are set by Do and
// override fields of the same name) and returns the raw ok payload. Error
// replies come back as *couponmesh.Error. Do does not track subscriptions
// or the feed for a resync; it is retried across a reconnect only for the
// ops of protocol v1.
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

// WriteRaw sends b as one text frame, as is, on the current connection
// (never retried). For tests of bad input: an error reply to it reaches
// Options.OnError when it carries no id.
func (c *Client) WriteRaw(ctx context.Context, b []byte) error {
	c.mu.Lock()
	l := c.cur
	c.mu.Unlock()
	if l == nil {
		return fmt.Errorf("%w: not connected", ErrClosed)
	}
	return l.conn.Write(ctx, websocket.MessageText, b)
}

// Auth authenticates the session with token. It may be called again with a
// fresh token for the same user before the current one expires. Unless
// Options.Token is set, a reconnecting client re-authenticates with the last
// token Auth succeeded with.
func (c *Client) Auth(ctx context.Context, token string) (AuthInfo, error) {
	var out AuthInfo
	err := c.call(ctx, protocol.OpAuth, protocol.AuthParams{Token: token}, &out)
	if err == nil {
		c.mu.Lock()
		c.token = token
		c.mu.Unlock()
		c.scheduleReauth(out.ExpiresAt)
	}
	return out, err
}

// Subscribe subscribes to the coupons and returns the snapshots newer than
// the versions given. Coupons that do not exist are left out; use
// SubscribeReport to learn which. A reconnecting client resubscribes to
// them after each reconnect.
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
	err := c.call(ctx, protocol.OpSubscribe, protocol.SubscribeParams{Coupons: subs}, &out)
	if err == nil {
		c.subscribed(subs, out)
	}
	return out, err
}

// Unsubscribe stops the pushes of the coupons (and their resubscription
// after a reconnect).
func (c *Client) Unsubscribe(ctx context.Context, ids ...string) error {
	if ids == nil {
		ids = []string{}
	}
	c.forget(ids...)
	return c.call(ctx, protocol.OpUnsubscribe, protocol.UnsubscribeParams{Coupons: ids}, nil)
}

// Get returns the current state of a coupon.
func (c *Client) Get(ctx context.Context, id string) (couponmesh.Coupon, error) {
	var out protocol.CouponReply
	err := c.call(ctx, protocol.OpGet, protocol.CouponParams{Coupon: id}, &out)
	if err == nil {
		c.noteCoupon(out.Coupon)
	}
	return out.Coupon, err
}

// Claim claims one unit of coupon. rid is the idempotency key (1 to
// protocol.MaxRIDLen characters): retrying with the same rid returns the
// first answer. A reconnecting client sends a claim whose reply was lost
// with a connection again, with the same rid, on the next connection.
func (c *Client) Claim(ctx context.Context, coupon, rid string) (couponmesh.Claim, error) {
	var out protocol.ClaimReply
	err := c.call(ctx, protocol.OpClaim, protocol.ClaimParams{Coupon: coupon, Rid: rid}, &out)
	return out.Claim, err
}

// Follow follows a coupon (persisted on the user) and subscribes to it.
func (c *Client) Follow(ctx context.Context, coupon string) (couponmesh.Coupon, error) {
	var out protocol.CouponReply
	err := c.call(ctx, protocol.OpFollow, protocol.CouponParams{Coupon: coupon}, &out)
	if err == nil {
		c.subscribed([]Sub{{ID: coupon}}, SubscribeResult{Coupons: []couponmesh.Coupon{out.Coupon}})
	}
	return out.Coupon, err
}

// Unfollow stops following a coupon and unsubscribes from it.
func (c *Client) Unfollow(ctx context.Context, coupon string) error {
	c.forget(coupon)
	return c.call(ctx, protocol.OpUnfollow, protocol.CouponParams{Coupon: coupon}, nil)
}

// Wallet returns the user's claims, oldest first.
func (c *Client) Wallet(ctx context.Context) ([]couponmesh.Claim, error) {
	var out protocol.WalletReply
	err := c.call(ctx, protocol.OpWallet, nil, &out)
	return out.Claims, err
}

// Feed returns up to limit feed entries with seq > after (limit 0: the
// server's default) and starts the live feed pushes to OnFeed. The entries
// returned count as delivered: OnFeed continues after the newest of them
// (or after after, if larger), and a reconnecting client resumes the feed
// from there.
func (c *Client) Feed(ctx context.Context, after int64, limit int) ([]couponmesh.FeedEntry, error) {
	c.smu.Lock()
	c.fetching++ // pushes wait until the page is in
	c.smu.Unlock()
	var out protocol.FeedReply
	err := c.call(ctx, protocol.OpFeed, protocol.FeedParams{After: after, Limit: limit}, &out)

	c.deliverMu.Lock()
	defer c.deliverMu.Unlock()
	c.smu.Lock()
	c.fetching--
	if err == nil {
		c.feedOn = true
		c.lastSeq = max(c.lastSeq, after)
		if n := len(out.Entries); n > 0 {
			c.lastSeq = max(c.lastSeq, out.Entries[n-1].Seq)
		}
	}
	c.smu.Unlock()
	c.drainFeedLocked()
	c.smu.Lock()
	gap := c.feedOn && c.fetching == 0 && len(c.feedBuf) > 0
	if gap {
		c.fetching++
	}
	c.smu.Unlock()
	if gap {
		c.mu.Lock()
		l := c.cur
		c.mu.Unlock()
		if l != nil {
			c.fillGap(l)
		} else {
			c.smu.Lock()
			c.fetching-- // the resync of the next connection reads it
			c.smu.Unlock()
		}
	}
	return out.Entries, err
}

// Ping round-trips a protocol ping (not a WebSocket ping).
func (c *Client) Ping(ctx context.Context) error {
	return c.call(ctx, protocol.OpPing, nil, nil)
}

// Close closes the connection with 1000, stops reconnecting, and waits for
// the client's goroutines to end (OnState's last call may still run). Calls
// waiting for a reconnect fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		<-c.done
		return nil
	}
	c.closing = true
	l, leaving := c.last, c.leaving
	c.mu.Unlock()
	c.cancel()
	if leaving != nil && leaving != l {
		leaving.conn.CloseNow() // still answering what it received
	}
	var err error
	if l != nil && !l.isClosed() {
		err = l.conn.Close(websocket.StatusNormalClosure, "")
		<-l.done
		if err != nil && (errors.Is(err, net.ErrClosed) || websocket.CloseStatus(err) != -1) {
			err = nil // the server closed first
		}
	}
	c.wg.Wait()
	c.end(fmt.Errorf("%w: closed by the client", ErrClosed), nil)
	return err
}

// Done is closed when the client has ended for good: after Close, or when
// the connection is lost and the client does not (or may not) reconnect.
func (c *Client) Done() <-chan struct{} { return c.done }

// State returns the current connection state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// CloseStatus returns the close code the server sent on the newest
// connection, or -1 if it is open or ended without a close frame.
func (c *Client) CloseStatus() websocket.StatusCode {
	c.mu.Lock()
	l := c.last
	c.mu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.status
}

// Err returns why the newest connection ended (or the auth refusal that
// ended a reconnecting client), or nil while it is open.
func (c *Client) Err() error {
	c.mu.Lock()
	l, fatal := c.last, c.fatal
	c.mu.Unlock()
	if fatal != nil {
		return fatal
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}
