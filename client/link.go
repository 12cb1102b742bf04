package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/protocol"
)

// link is one WebSocket connection with its reader and pending requests. A
// Client holds one link at a time; a reconnecting Client replaces it.
type link struct {
	c    *Client
	conn *websocket.Conn
	url  string

	mu      sync.Mutex
	pending map[int64]chan result
	closed  bool
	status  websocket.StatusCode
	reason  string
	err     error
	cause   error // set when the client itself cuts the connection
	done    chan struct{}

	// A draining push (the node hands its sessions over) sets draining and
	// handoff and closes drainCh; from then on no request is sent on the
	// link. sending counts the requests being written, so that drained
	// goes out after the last of them.
	draining bool
	handoff  []string
	drainCh  chan struct{}
	sending  sync.WaitGroup
}

type result struct {
	ok  json.RawMessage
	err error
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
	l := &link{c: c, conn: conn, url: url, pending: make(map[int64]chan result), status: -1, done: make(chan struct{}), drainCh: make(chan struct{})}
	go l.readLoop()
	if c.opts.PingInterval > 0 {
		go l.keepalive(c.opts.PingInterval)
	}
	return l, nil
}

// keepalive sends a WebSocket ping every d and cuts the connection when a
// pong does not come within d: a connection that died without a FIN (a
// black-holed network) would otherwise hang until TCP gives up.
func (l *link) keepalive(d time.Duration) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), d)
		err := l.conn.Ping(ctx)
		cancel()
		if err != nil {
			l.mu.Lock()
			if l.cause == nil {
				l.cause = fmt.Errorf("client: no pong within %v: %w", d, err)
			}
			l.mu.Unlock()
			l.conn.CloseNow()
			return
		}
	}
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

func (l *link) dispatch(msg []byte) {
	c := l.c
	var env protocol.Message
	if err := json.Unmarshal(msg, &env); err != nil {
		if c.opts.OnError != nil {
			c.opts.OnError(couponmesh.Errorf(couponmesh.CodeInternal, "client: unreadable message from server: %v", err))
		}
		return
	}
	switch {
	case env.Push == protocol.PushCoupon && len(env.Coupon) > 0:
		var cp couponmesh.Coupon
		if err := json.Unmarshal(env.Coupon, &cp); err != nil {
			if c.opts.OnError != nil {
				c.opts.OnError(couponmesh.Errorf(couponmesh.CodeInternal, "client: unreadable coupon push: %v", err))
			}
			return
		}
		c.pushCoupon(cp)
	case env.Push == protocol.PushPresence:
		var id string
		if json.Unmarshal(env.Coupon, &id) == nil && id != "" {
			c.pushPresence(id, env.Watching)
		}
	case env.Push == protocol.PushFeed && env.Entry != nil:
		c.pushFeed(l, *env.Entry)
	case env.Push == protocol.PushDraining:
		l.drain(env.Addresses)
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
		case env.Error != nil && c.opts.OnError != nil:
			c.opts.OnError(env.Error)
		}
	}
}

// finish records why the link ended, tells the Client (which stops handing
// the link to new calls) and fails the requests still waiting, in that
// order: a call that retries after its failure never gets this link again.
func (l *link) finish(err error) {
	l.mu.Lock()
	if l.cause != nil {
		err = l.cause // the client cut the connection, and says why
	}
	l.closed = true
	l.status = websocket.CloseStatus(err)
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		l.reason = ce.Reason
	}
	l.err = err
	pending := l.pending
	l.pending = nil
	l.mu.Unlock()
	l.conn.CloseNow()
	l.c.linkDown(l)
	close(l.done)
	for _, ch := range pending {
		ch <- result{err: l.closedErr()}
	}
}

// drain handles the draining push: the node will close the link with 1012
// once it has answered what it received. The Client stops handing out the
// link (a reconnecting one connects to the next node at once), no request
// is sent on it any more, and drained tells the node so once the requests
// being written are out: the node then answers them and closes, and no
// request crosses the close frame.
func (l *link) drain(addresses []string) {
	l.c.linkDraining(l)
	l.mu.Lock()
	if l.draining || l.closed {
		l.mu.Unlock()
		return
	}
	l.draining = true
	l.handoff = addresses
	close(l.drainCh)
	l.mu.Unlock()
	go func() {
		l.sending.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// Its reply matches no pending request and is dropped.
		_ = l.conn.Write(ctx, websocket.MessageText, protocol.RequestFrame(l.c.nextID.Add(1), []byte(`,"op":"`+protocol.OpDrained+`"}`)))
	}()
}

// notSentErr is the error of a request not sent because the link is
// draining.
func (l *link) notSentErr() error {
	return fmt.Errorf("%w: %w: the node is draining (it named %v)", ErrClosed, ErrNotSent, l.handoff)
}

func (l *link) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// closedErr is the error of a request the link did not answer because it
// ended. After a 1012 close it also wraps ErrNotSent: a node closes with
// 1012 only once every request it ran is answered (docs/PROTOCOL.md,
// "Drain handover"), so it ran none of those left unanswered, and sending
// them elsewhere is safe. After any other end their outcome is unknown.
func (l *link) closedErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ce websocket.CloseError
	if errors.As(l.err, &ce) {
		if ce.Code == websocket.StatusServiceRestart {
			return fmt.Errorf("%w: %w: status %d %q: the node did not run it", ErrClosed, ErrNotSent, ce.Code, ce.Reason)
		}
		return fmt.Errorf("%w: status %d %q", ErrClosed, ce.Code, ce.Reason)
	}
	return fmt.Errorf("%w: %v", ErrClosed, l.err)
}

// roundTrip sends the request with the given id and body (the frame after
// its id: `,"op":…}`) and waits for its reply. An error wrapping ErrClosed
// means the link ended before the reply came; one that also wraps
// ErrNotSent, that the node did not run it: the link is draining and the
// request was not sent, or the link ended with 1012 before its reply. If
// ctx ends while the frame is being written, the library closes the
// connection.
func (l *link) roundTrip(ctx context.Context, id int64, body []byte) (json.RawMessage, error) {
	frame := protocol.RequestFrame(id, body)

	ch := make(chan result, 1)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, l.closedErr()
	}
	if l.draining {
		err := l.notSentErr()
		l.mu.Unlock()
		return nil, err
	}
	l.pending[id] = ch
	l.sending.Add(1) // before draining is set: drained waits for this write
	l.mu.Unlock()
	forget := func() {
		l.mu.Lock()
		delete(l.pending, id)
		l.mu.Unlock()
	}
	err := l.conn.Write(ctx, websocket.MessageText, frame)
	l.sending.Done()
	if err != nil {
		forget()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// The connection is broken; make sure the reader notices, so that
		// a retry does not get this link again.
		l.conn.CloseNow()
		select {
		case <-l.done:
			return nil, l.closedErr()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	select {
	case r := <-ch:
		return r.ok, r.err
	case <-ctx.Done():
		forget()
		return nil, ctx.Err()
	}
}

// encodeBody returns the part of a request frame after its id
// (protocol.RequestBody).
func encodeBody(op string, params any) ([]byte, error) {
	body, err := protocol.RequestBody(op, params)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return body, nil
}

// call sends one request on this link (no retry) and decodes the ok payload
// into out (nil: ignored).
func (l *link) call(ctx context.Context, op string, params, out any) error {
	body, err := encodeBody(op, params)
	if err != nil {
		return err
	}
	raw, err := l.roundTrip(ctx, l.c.nextID.Add(1), body)
	if err != nil {
		return err
	}
	return decodeReply(op, raw, out)
}

func decodeReply(op string, raw json.RawMessage, out any) error {
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("client: decode %s reply: %w", op, err)
	}
	return nil
}
