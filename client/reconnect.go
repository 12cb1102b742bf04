package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/protocol"
)

// Backoff bounds the delays between reconnect attempts: exponential backoff
// with full jitter. The delay before attempt n (0-based) is drawn uniformly
// from [0, min(Max, Base·2^n)]. Zero or negative fields take the values of
// DefaultBackoff.
type Backoff struct {
	Base time.Duration
	Max  time.Duration
}

// DefaultBackoff is the backoff of a reconnecting client unless
// Options.Backoff says otherwise (the JS SDK's defaults).
var DefaultBackoff = Backoff{Base: 250 * time.Millisecond, Max: 10 * time.Second}

func (b Backoff) withDefaults() Backoff {
	if b.Base <= 0 {
		b.Base = DefaultBackoff.Base
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoff.Max
	}
	return b
}

// Ceiling returns the upper bound of the delay before attempt n:
// min(Max, Base·2^n), without overflow for any n.
func (b Backoff) Ceiling(attempt int) time.Duration {
	b = b.withDefaults()
	attempt = max(attempt, 0)
	if attempt > 62 || b.Base > b.Max>>attempt {
		return b.Max
	}
	return b.Base << attempt
}

// Delay returns the delay before attempt n, drawn uniformly from
// [0, Ceiling(n)] (full jitter). Safe for concurrent use.
func (b Backoff) Delay(attempt int) time.Duration {
	return time.Duration(rand.Int64N(int64(b.Ceiling(attempt)) + 1))
}

// State is the connection state of a Client, reported to Options.OnState.
type State int

const (
	// StateConnected: a connection is open (and, when reconnecting,
	// authenticated and resynced); calls are sent at once.
	StateConnected State = iota + 1
	// StateReconnecting: the connection was lost; the client is waiting for
	// its backoff, dialing or resyncing. Calls wait for the next connection.
	StateReconnecting
	// StateClosed: the client has ended for good (Close, a close code that
	// forbids reconnecting, an auth refusal, or a lost connection without
	// Options.Reconnect). Done is closed and calls fail with ErrClosed.
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateConnected:
		return "connected"
	case StateReconnecting:
		return "reconnecting"
	case StateClosed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// noReconnect lists the close codes after which reconnecting cannot help:
// the client is at fault (1002, 1009) or its token is (1008; get a new one
// and Dial again).
var noReconnect = map[websocket.StatusCode]bool{
	websocket.StatusProtocolError:   true, // 1002
	websocket.StatusPolicyViolation: true, // 1008
	websocket.StatusMessageTooBig:   true, // 1009
}

// authRefused wraps the error of an auth that a reconnect cannot fix.
type authRefused struct{ err error }

func (e *authRefused) Error() string { return "client: re-auth refused: " + e.err.Error() }
func (e *authRefused) Unwrap() error { return e.err }

// nodeURL turns a node address into a WebSocket URL. ws:// and wss:// URLs
// are kept, http:// and https:// mapped to them, and a bare host:port (or
// host, or [v6]:port, maybe followed by a path) takes the scheme and path of
// like ("ws" and "/ws" if like has none). ok is false for anything else.
func nodeURL(addr, like string) (string, bool) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return "", false
	}
	scheme, path := "ws", "/ws"
	if lu, err := url.Parse(like); err == nil {
		if lu.Scheme == "wss" || lu.Scheme == "https" {
			scheme = "wss"
		}
		if lu.Path != "" && lu.Path != "/" {
			path = lu.Path
		}
	}
	if i := strings.Index(addr, "://"); i >= 0 {
		switch strings.ToLower(addr[:i]) {
		case "ws", "http":
			scheme = "ws"
		case "wss", "https":
			scheme = "wss"
		default:
			return "", false
		}
		addr = addr[i+3:]
	}
	host, p, hasPath := strings.Cut(addr, "/")
	if hasPath {
		path = "/" + p
	}
	if !hostPort.MatchString(host) {
		return "", false
	}
	u, err := url.Parse(scheme + "://" + host)
	if err != nil {
		return "", false
	}
	u.Path = path
	return u.String(), true
}

// hostPort matches host, host:port and [v6]:port; withPort, an address
// with a port (and maybe a path).
var (
	hostPort = regexp.MustCompile(`^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$`)
	withPort = regexp.MustCompile(`^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}(/|$)`)
)

// handoverURLs parses the reason of a 1012 close (node draining): addresses
// separated by commas (semicolons and white space are accepted too), each
// turned into a URL by nodeURL. Unreadable items are skipped, duplicates
// dropped. An item must be a URL or name a port: a node with no other node
// to name closes with "node draining", which is prose, not two hosts.
func handoverURLs(reason, like string) []string {
	var out []string
	for _, item := range strings.FieldsFunc(reason, func(r rune) bool {
		return r == ',' || r == ';' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	}) {
		if !strings.Contains(item, "://") && !withPort.MatchString(item) {
			continue
		}
		if u, ok := nodeURL(item, like); ok && !contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// nextURL returns the URL of the next attempt: the addresses handed over by
// the last 1012 close first (but not the node that closed, unless it is the
// only one known), then the known addresses in turn.
func (c *Client) nextURL(prev string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.preferred) > 0 {
		u := c.preferred[0]
		c.preferred = c.preferred[1:]
		if u != prev || len(c.urls) == 1 {
			return u
		}
	}
	u := c.urls[c.urlNext%len(c.urls)]
	c.urlNext = (c.urlNext + 1) % len(c.urls)
	return u
}

// handover records the addresses a draining node named.
func (c *Client) handover(reason, from string) {
	urls := handoverURLs(reason, from)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.preferred = c.preferred[:0]
	for _, u := range urls {
		if !contains(c.urls, u) {
			c.urls = append(c.urls, u)
		}
		if u != from {
			c.preferred = append(c.preferred, u)
		}
	}
}

// linkDown is called by a link's reader when the link has ended, before its
// pending calls fail: no call gets the link after this.
func (c *Client) linkDown(l *link) {
	c.mu.Lock()
	if c.cur == l {
		c.cur = nil
		c.ready = make(chan struct{})
	}
	reconnect := c.opts.Reconnect
	c.mu.Unlock()
	if !reconnect {
		c.end(l.closedErr(), nil)
	}
}

// linkDraining is called when l got a draining push, before l refuses
// requests: a reconnecting client stops handing it to new calls (they wait
// for the next link, which the supervisor connects at once); one that does
// not reconnect keeps it, and its calls fail with ErrNotSent until the node
// closes it.
func (c *Client) linkDraining(l *link) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.leaving = l
	if c.opts.Reconnect && c.cur == l {
		c.cur = nil
		c.ready = make(chan struct{})
	}
}

// publish makes l the link of new calls, unless it has ended already.
func (c *Client) publish(l *link) {
	c.mu.Lock()
	if c.ended || c.closing || l.isClosed() {
		c.mu.Unlock()
		return
	}
	c.cur = l
	c.last = l
	close(c.ready)
	c.mu.Unlock()
	c.setState(StateConnected)
}

// end ends the client for good: calls fail with err from now on. fatal, when
// set, is what Err reports (an auth refusal).
func (c *Client) end(err, fatal error) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.ended = true
	c.final = err
	c.fatal = fatal
	c.cur = nil
	if c.reauthTimer != nil {
		c.reauthTimer.Stop()
	}
	close(c.done)
	c.mu.Unlock()
	c.cancel()
	c.setState(StateClosed)
}

// awaitLink returns the link for a call, waiting while the client
// reconnects, until ctx ends or the client ends.
func (c *Client) awaitLink(ctx context.Context) (*link, error) {
	for {
		c.mu.Lock()
		if c.ended {
			err := c.final
			c.mu.Unlock()
			return nil, err
		}
		if c.cur != nil {
			l := c.cur
			c.mu.Unlock()
			return l, nil
		}
		ready, done := c.ready, c.done
		c.mu.Unlock()
		select {
		case <-ready:
		case <-done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// supervise runs while a reconnecting client lives: it waits for the link
// to end and reconnects, with backoff, until Close or a close code or auth
// refusal that forbids it.
func (c *Client) supervise(l *link) {
	defer c.wg.Done()
	attempt := 0
	for {
		select {
		case <-l.done: // Close (or c.end) closes the link
		case <-l.drainCh: // the node hands over: connect the next link now
		}
		if c.ctx.Err() != nil {
			return
		}
		l.mu.Lock()
		status, reason, draining := l.status, l.reason, l.draining
		if draining {
			reason = strings.Join(l.handoff, ",")
		}
		l.mu.Unlock()
		if noReconnect[status] && !draining {
			c.end(l.closedErr(), nil)
			return
		}
		if draining || status == websocket.StatusServiceRestart {
			// Draining: go to the nodes it names, after a short random
			// delay (attempt 0) so that they are not stampeded.
			c.handover(reason, l.url)
			attempt = 0
		}
		c.setState(StateReconnecting)
		prev := l.url
		for {
			if !c.sleep(c.backoff.Delay(attempt)) {
				return
			}
			attempt++
			u := c.nextURL(prev)
			nl, err := c.connect(u)
			if err == nil {
				l = nl
				attempt = 0
				break
			}
			var refused *authRefused
			if errors.As(err, &refused) {
				c.end(fmt.Errorf("%w: %v", ErrClosed, err), err)
				return
			}
			if c.ctx.Err() != nil {
				return
			}
			prev = u
		}
	}
}

// sleep waits for d or until the client is closed; false means closed.
func (c *Client) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// connect dials url, authenticates, resyncs and publishes the new link.
func (c *Client) connect(url string) (*link, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.dialTimeout)
	defer cancel()
	l, err := c.dial(ctx, url)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.closing || c.ended {
		c.mu.Unlock()
		l.conn.CloseNow()
		<-l.done
		return nil, ErrClosed
	}
	c.last = l
	c.mu.Unlock()
	if err := c.resync(l); err != nil {
		l.conn.Close(websocket.StatusGoingAway, "resync failed")
		<-l.done
		return nil, err
	}
	c.publish(l)
	return l, nil
}

// currentToken returns the token for the auth of a new connection: from
// Options.Token, or the last one Auth succeeded with ("" if none).
func (c *Client) currentToken(ctx context.Context) (string, error) {
	if c.opts.Token != nil {
		return c.opts.Token(ctx)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token, nil
}

// authLink authenticates l with tok. An unauthorized or forbidden answer
// comes back as *authRefused.
func (c *Client) authLink(ctx context.Context, l *link, tok string) (AuthInfo, error) {
	var out AuthInfo
	err := l.call(ctx, protocol.OpAuth, protocol.AuthParams{Token: tok}, &out)
	switch couponmesh.ErrorCode(err) {
	case couponmesh.CodeUnauthorized, couponmesh.CodeForbidden:
		return out, &authRefused{err}
	}
	if err == nil {
		c.scheduleReauth(out.ExpiresAt)
	}
	return out, err
}

// scheduleReauth arranges, when Options.Token is set, a fresh auth shortly
// before exp (the server closes the session with 1008 once the token is
// past it): at exp minus a fifth of the time left, at most a minute, and
// at least a second from now.
func (c *Client) scheduleReauth(exp time.Time) {
	if c.opts.Token == nil || exp.IsZero() {
		return
	}
	left := time.Until(exp)
	d := max(left-min(time.Minute, left/5), time.Second)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.ended {
		return
	}
	if c.reauthTimer != nil {
		c.reauthTimer.Stop()
	}
	c.reauthTimer = time.AfterFunc(d, func() { c.reauth(exp) })
}

// reauth sends auth with a fresh token from Options.Token on the current
// connection (waiting for one while reconnecting, whose resync auth then
// supersedes this). On failure it tries again until exp.
func (c *Client) reauth(exp time.Time) {
	ctx, cancel := context.WithTimeout(c.ctx, c.dialTimeout)
	defer cancel()
	tok, err := c.opts.Token(ctx)
	if err == nil {
		_, err = c.Auth(ctx, tok) // schedules the next one
	}
	if err == nil || c.ctx.Err() != nil {
		return
	}
	if ce := (*couponmesh.Error)(nil); errors.As(err, &ce) && c.opts.OnError != nil {
		c.opts.OnError(ce)
	}
	if time.Until(exp) > time.Second {
		c.mu.Lock()
		if !c.closing && !c.ended {
			c.reauthTimer = time.AfterFunc(min(c.backoff.Max, time.Until(exp)/2), func() { c.reauth(exp) })
		}
		c.mu.Unlock()
	}
}

// setState records s and queues it for Options.OnState.
func (c *Client) setState(s State) {
	c.mu.Lock()
	if c.state == s || c.state == StateClosed {
		c.mu.Unlock()
		return
	}
	c.state = s
	if c.opts.OnState != nil {
		c.stateQ = append(c.stateQ, s)
	}
	c.mu.Unlock()
	if c.opts.OnState != nil {
		select {
		case c.stateKick <- struct{}{}:
		default:
		}
	}
}

// notify calls Options.OnState with every state change, in order, on its
// own goroutine (so OnState may call any method, Close included). It ends
// after StateClosed.
func (c *Client) notify() {
	for range c.stateKick {
		c.mu.Lock()
		q := c.stateQ
		c.stateQ = nil
		c.mu.Unlock()
		for _, s := range q {
			c.opts.OnState(s)
			if s == StateClosed {
				return
			}
		}
	}
}
