package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
)

// rawFollower is a session that speaks protocol v1 directly: it
// authenticates, subscribes to one coupon, then only reads, taking the
// version and updatedAt out of each coupon push without decoding the rest.
// The fan-out figures are the node's, not the client library's: the Go SDK
// decodes every push in full, which on the bench's one core costs more per
// delivery than the node spends sending it.
type rawFollower struct {
	conn *websocket.Conn
	done chan struct{}
}

func (r *rawFollower) Close() {
	r.conn.Close(websocket.StatusNormalClosure, "")
	<-r.done
}

// dialRaw opens one raw follower of coupon as user; onPush gets the version
// and updatedAt (unix ns) of every coupon push, from the follower's reader
// goroutine.
func dialRaw(ctx context.Context, e *benchEnv, node *benchNode, opts *websocket.DialOptions, user, coupon string, onPush func(version, updated int64)) (*rawFollower, error) {
	conn, _, err := websocket.Dial(ctx, node.ws(), opts)
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(-1)
	tok, err := e.token(user, couponmesh.RoleShopper)
	if err != nil {
		conn.CloseNow()
		return nil, err
	}
	call := func(id int, req map[string]any) error { return rawCall(ctx, conn, id, req) }
	if err := call(1, map[string]any{"op": "auth", "token": tok}); err != nil {
		conn.CloseNow()
		return nil, fmt.Errorf("auth: %w", err)
	}
	if err := call(2, map[string]any{"op": "subscribe", "coupons": []map[string]any{{"id": coupon}}}); err != nil {
		conn.CloseNow()
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	r := &rawFollower{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			_, data, err := conn.Read(context.Background())
			if err != nil {
				return
			}
			for msg := range bytes.SplitSeq(data, []byte{'\n'}) {
				if v, u, ok := pushVersion(msg); ok {
					onPush(v, u)
				}
			}
		}
	}()
	return r, nil
}

// rawCall sends req with id and reads until its reply, skipping pushes.
func rawCall(ctx context.Context, conn *websocket.Conn, id int, req map[string]any) error {
	req["id"] = id
	b, _ := json.Marshal(req)
	if err := conn.Write(ctx, websocket.MessageText, b); err != nil {
		return err
	}
	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			return err
		}
		for msg := range bytes.SplitSeq(data, []byte{'\n'}) {
			var rep struct {
				ID    int               `json:"id"`
				Error *couponmesh.Error `json:"error"`
			}
			if json.Unmarshal(msg, &rep) != nil || rep.ID != id {
				continue // a push
			}
			if rep.Error != nil {
				return rep.Error
			}
			return nil
		}
	}
}

// rawSession is an authenticated session speaking protocol v1 directly for
// request/reply benchmarks: one request at a time, its reply found by its
// id, pushes skipped, nothing decoded but the reply's first bytes.
type rawSession struct {
	mu   sync.Mutex
	conn *websocket.Conn
	next int
}

func dialRawSession(ctx context.Context, e *benchEnv, node *benchNode, opts *websocket.DialOptions, user string) (*rawSession, error) {
	conn, _, err := websocket.Dial(ctx, node.ws(), opts)
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(-1)
	tok, err := e.token(user, couponmesh.RoleShopper)
	if err == nil {
		err = rawCall(ctx, conn, 1, map[string]any{"op": "auth", "token": tok})
	}
	if err != nil {
		conn.CloseNow()
		return nil, fmt.Errorf("auth: %w", err)
	}
	return &rawSession{conn: conn, next: 1}, nil
}

// get reads coupon id (an id of letters, digits, '_', '-' and '.': no
// escaping needed) and checks that the reply is ok.
func (r *rawSession) get(ctx context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	prefix := `{"id":` + strconv.Itoa(r.next) + `,`
	if err := r.conn.Write(ctx, websocket.MessageText, []byte(prefix+`"op":"get","coupon":"`+id+`"}`)); err != nil {
		return err
	}
	for {
		_, data, err := r.conn.Read(ctx)
		if err != nil {
			return err
		}
		for msg := range bytes.SplitSeq(data, []byte{'\n'}) {
			if rest, ok := bytes.CutPrefix(msg, []byte(prefix)); ok {
				if !bytes.HasPrefix(rest, []byte(`"ok"`)) {
					return fmt.Errorf("get %s: %s", id, msg)
				}
				return nil
			}
		}
	}
}

func (r *rawSession) Close() { r.conn.Close(websocket.StatusNormalClosure, "") }

var (
	couponPushPrefix = []byte(`{"push":"coupon"`)
	versionKey       = []byte(`"version":`)
	updatedKey       = []byte(`"updatedAt":"`)
)

// pushVersion returns the version and updatedAt (unix ns) of a coupon push
// frame, found by their keys (the node encodes the Coupon's fields once, in
// order, and a string field cannot hold an unescaped quote).
func pushVersion(msg []byte) (version, updated int64, ok bool) {
	if !bytes.HasPrefix(msg, couponPushPrefix) {
		return 0, 0, false
	}
	i := bytes.Index(msg, versionKey)
	if i < 0 {
		return 0, 0, false
	}
	rest := msg[i+len(versionKey):]
	end := bytes.IndexAny(rest, ",}")
	if end < 0 {
		return 0, 0, false
	}
	v, err := strconv.ParseInt(string(rest[:end]), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	if i := bytes.Index(msg, updatedKey); i >= 0 {
		rest := msg[i+len(updatedKey):]
		if end := bytes.IndexByte(rest, '"'); end > 0 {
			if t, err := time.Parse(time.RFC3339Nano, string(rest[:end])); err == nil {
				updated = t.UnixNano()
			}
		}
	}
	return v, updated, true
}

// connectRaw opens n raw followers of coupon(i), from workers goroutines,
// like connectAll does with the SDK; follower i is user "s<first+i>". A nil
// entry is a session that failed. opened, when not nil, counts the sessions
// set up so far.
func connectRaw(ctx context.Context, e *benchEnv, node *benchNode, f benchFlags, first, n int, coupon func(i int) string, onPush func(i int) func(version, updated int64), opened *atomic.Int64) ([]*rawFollower, time.Duration, int, error) {
	hcs := sourceClients(f.sources)
	out := make([]*rawFollower, n)
	took, failed, firstErr := inParallel(ctx, f.workers, n, func(i int) error {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		r, err := dialRaw(cctx, e, node, &websocket.DialOptions{HTTPClient: hcs[i%len(hcs)], Subprotocols: []string{client.Subprotocol}},
			"s"+strconv.Itoa(first+i), coupon(i), onPush(i))
		out[i] = r
		if err == nil && opened != nil {
			opened.Add(1)
		}
		return err
	})
	return out, took, failed, firstErr
}

// closeRaw closes the followers, 64 at a time.
func closeRaw(rs []*rawFollower) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, r := range rs {
		if r == nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() { r.Close(); <-sem })
	}
	wg.Wait()
}
