package ws_test

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/internal/testutil"
	"github.com/couponmesh/couponmesh/transport/ws"
)

// tcpWS is a hand-made WebSocket client on a bare TCP connection, for frames
// no library would send: endless fragments of one message.
type tcpWS struct {
	t    *testing.T
	conn net.Conn
	rd   *bufio.Reader
}

func (e *env) tcp() *tcpWS {
	e.t.Helper()
	addr := strings.TrimPrefix(e.srv.URL, "http://")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	var key [16]byte
	rand.Read(key[:])
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n",
		addr, base64.StdEncoding.EncodeToString(key[:]), ws.Subprotocol)
	rd := bufio.NewReader(conn)
	resp, err := http.ReadResponse(rd, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		e.t.Fatalf("upgrade: %s", resp.Status)
	}
	return &tcpWS{t: e.t, conn: conn, rd: rd}
}

// frame writes one masked client frame.
func (c *tcpWS) frame(fin bool, opcode byte, payload []byte) error {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	hdr := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, 0x80|byte(n))
	case n <= 0xffff:
		hdr = append(hdr, 0x80|126, byte(n>>8), byte(n))
	default:
		hdr = binary.BigEndian.AppendUint64(append(hdr, 0x80|127), uint64(n))
	}
	mask := [4]byte{1, 2, 3, 4}
	hdr = append(hdr, mask[:]...)
	masked := make([]byte, len(payload))
	for i, b := range payload {
		masked[i] = b ^ mask[i%4]
	}
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.conn.Write(append(hdr, masked...))
	return err
}

// closeCode reads server frames until a close frame and returns its code.
func (c *tcpWS) closeCode() (websocket.StatusCode, string) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var h [2]byte
		if _, err := io.ReadFull(c.rd, h[:]); err != nil {
			c.t.Fatalf("no close frame: %v", err)
		}
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			io.ReadFull(c.rd, b[:])
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			io.ReadFull(c.rd, b[:])
			n = binary.BigEndian.Uint64(b[:])
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(c.rd, payload); err != nil {
			c.t.Fatalf("read frame: %v", err)
		}
		if h[0]&0x0f == 0x8 {
			if len(payload) < 2 {
				return websocket.StatusNoStatusRcvd, ""
			}
			return websocket.StatusCode(binary.BigEndian.Uint16(payload)), string(payload[2:])
		}
	}
}

// TestFragmentedFloodCloses1009: a message sent as many continuation frames
// counts as one message against ReadLimit; the session is closed with 1009
// once the fragments add up past it (before the message ends), and the node
// keeps serving others.
func TestFragmentedFloodCloses1009(t *testing.T) {
	cfg := ws.LocalConfig()
	// The flooders never authenticate: on a busy machine 32 KiB of 1-byte
	// frames can take longer than LocalConfig's 1 s auth timeout, which
	// would close them with 1008 first.
	cfg.AuthTimeout = time.Minute
	e := newEnv(t, cfg)
	other := e.login("bob", client.Options{})
	for _, tc := range []struct {
		name string
		size int // bytes per fragment
	}{
		{"1 KiB fragments", 1 << 10},
		{"1-byte fragments", 1},
		{"64 KiB fragments", 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.tcp()
			frag := make([]byte, tc.size)
			for i := range frag {
				frag[i] = 'x'
			}
			// Never a final frame: up to 4 MiB, or until the server stops
			// reading us.
			sent, opcode := 0, byte(0x1)
			for sent < 4<<20 {
				if err := c.frame(false, opcode, frag); err != nil {
					break
				}
				opcode = 0x0
				sent += tc.size
				if sent > 2*16<<10 && sent%(64<<10) < tc.size {
					// Well past the limit: give the server's close a chance
					// to arrive before we keep writing.
					c.conn.SetReadDeadline(time.Now().Add(time.Millisecond))
					if _, err := c.rd.Peek(1); err == nil {
						break
					}
				}
			}
			code, reason := c.closeCode()
			if code != websocket.StatusMessageTooBig {
				t.Fatalf("close %v %q, want 1009", code, reason)
			}
			t.Logf("closed 1009 (%q) after %d bytes sent", reason, sent)
		})
	}
	// The node survives: other sessions work, the flooders are gone.
	if err := other.Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	testutil.Until(t, 5*time.Second, "flooding sessions to end", func() bool { return e.h.Sessions() == 1 })
}

// errCode reads the next message of r and returns its error code and id.
func (r *rawConn) nextError() (couponmesh.Code, float64) {
	r.t.Helper()
	m := r.mustNext()
	e, _ := m["error"].(map[string]any)
	if e == nil {
		return "", 0
	}
	id, _ := m["id"].(float64)
	code, _ := e["code"].(string)
	return couponmesh.Code(code), id
}

// TestRequestRateLimited: frames beyond a session's token bucket answer
// rate_limited with their id, are not run, and the session stays usable
// once it slows down.
func TestRequestRateLimited(t *testing.T) {
	cfg := ws.LocalConfig()
	cfg.RequestRate, cfg.RequestBurst = 20, 10
	e := newEnv(t, cfg)
	const n = 30
	for i := 1; i <= n; i++ {
		e.svc.Put(couponmesh.Coupon{ID: fmt.Sprintf("c%d", i), Merchant: "m", Title: "t", Quantity: 10})
	}
	r := e.raw()
	r.auth(e.token("alice", couponmesh.RoleShopper)) // 1 token
	for i := 1; i <= n; i++ {
		r.send(fmt.Sprintf(`{"id":%d,"op":"claim","coupon":"c%d","rid":"r%d"}`, i, i, i))
	}
	limited, ok := 0, 0
	for range n {
		code, id := r.nextError()
		switch {
		case code == couponmesh.CodeRateLimited:
			if id == 0 {
				t.Fatal("rate_limited reply without the request's id")
			}
			limited++
		case code == "":
			ok++
		default:
			t.Fatalf("unexpected error %s", code)
		}
	}
	// The burst (minus the auth) plus what refilled while we sent.
	if limited < 10 || ok < 9 || ok > 20 {
		t.Fatalf("ok=%d rate_limited=%d, want about 9-20 ok", ok, limited)
	}
	claimed := 0
	for i := 1; i <= n; i++ {
		c, err := e.svc.Coupon(ctxT(t), fmt.Sprintf("c%d", i))
		if err != nil {
			t.Fatal(err)
		}
		claimed += c.Claimed
	}
	if claimed != ok {
		t.Fatalf("%d claims made, %d answered ok: refused claims ran", claimed, ok)
	}
	if got := e.metric("couponmesh_ws_frames_rate_limited_total"); got != float64(limited) {
		t.Fatalf("frames_rate_limited_total %v, want %d", got, limited)
	}
	time.Sleep(200 * time.Millisecond) // 4 tokens
	r.send(`{"id":99,"op":"ping"}`)
	if m := r.mustNext(); m["id"] != float64(99) || m["ok"] == nil {
		t.Fatalf("ping after slowing down: %v", m)
	}
}

// TestFloodingSessionClosed1008: a session that keeps sending over its rate
// is closed with 1008 and a reason saying why; its user may not reconnect to
// the node (for a fresh bucket) until FloodWindow has passed; others are not
// affected.
func TestFloodingSessionClosed1008(t *testing.T) {
	cfg := ws.LocalConfig()
	cfg.RequestRate, cfg.RequestBurst = 10, 10
	cfg.FloodRefusals, cfg.FloodWindow = 20, 2*time.Second
	e := newEnv(t, cfg)
	bob := e.login("bob", client.Options{})
	r := e.raw()
	r.auth(e.token("mallory", couponmesh.RoleShopper))
	sent := 0
	for ; sent < 10000; sent++ {
		if err := r.c.Write(ctxT(t), websocket.MessageText, []byte(fmt.Sprintf(`{"id":%d,"op":"ping"}`, sent+1))); err != nil {
			break
		}
		if sent == 200 {
			break
		}
	}
	var ok, limited int
	var closeErr error
	for {
		m, err := r.next(ctxT(t))
		if err != nil {
			closeErr = err
			break
		}
		if m["ok"] != nil {
			ok++
		} else {
			limited++
		}
	}
	var ce websocket.CloseError
	if !errors.As(closeErr, &ce) || ce.Code != websocket.StatusPolicyViolation || !strings.Contains(ce.Reason, "rate limit") {
		t.Fatalf("flooder ended with %v, want 1008 with a rate limit reason", closeErr)
	}
	if limited < 20 || limited > 22 {
		t.Fatalf("%d frames refused before the close, want 21", limited)
	}
	t.Logf("flooder: %d answered, %d refused, then closed: %q", ok, limited, ce.Reason)
	if got := e.metric("couponmesh_ws_sessions_dropped_total", "reason", "flood"); got != 1 {
		t.Fatalf("sessions_dropped_total{flood} = %v", got)
	}
	if err := bob.Ping(ctxT(t)); err != nil {
		t.Fatalf("another session after the flood: %v", err)
	}
	closedAt := time.Now()
	again := e.raw()
	again.send(`{"id":1,"op":"auth","token":"` + e.token("mallory", couponmesh.RoleShopper) + `"}`)
	if code, _ := again.nextError(); code != couponmesh.CodeRateLimited {
		t.Fatalf("flooder's new session: auth %q, want rate_limited", code)
	}
	if _, err := again.next(ctxT(t)); !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || !strings.Contains(ce.Reason, "flooded") {
		t.Fatalf("flooder's new session ended with %v, want 1008", err)
	}
	e.login("carol", client.Options{}) // other users still connect
	// Every try is a new handshake from this address: try ten times a
	// second, within the handshake rate (20/s), or the tries themselves
	// would be refused with 429.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		c, err := client.Dial(ctxT(t), e.url, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Auth(ctxT(t), e.token("mallory", couponmesh.RoleShopper))
		c.Close()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the flooder's cooldown did not pass within 5 s: %v", err)
		}
	}
	if waited := time.Since(closedAt); waited < 1500*time.Millisecond {
		t.Fatalf("flooder back after %v, want about FloodWindow (2 s)", waited)
	}
}

// TestSessionsPerUser: the auth that would give a user more sessions than
// SessionsPerUser on the node answers rate_limited and the session is closed
// with 1008; a slot frees when a session ends.
func TestSessionsPerUser(t *testing.T) {
	cfg := ws.LocalConfig()
	cfg.SessionsPerUser = 3
	e := newEnv(t, cfg)
	var alice []*client.Client
	for range 3 {
		alice = append(alice, e.login("alice", client.Options{}))
	}
	r := e.raw()
	r.send(`{"id":1,"op":"auth","token":"` + e.token("alice", couponmesh.RoleShopper) + `"}`)
	m := r.mustNext()
	if em, _ := m["error"].(map[string]any); em == nil || em["code"] != "rate_limited" || !strings.Contains(em["message"].(string), "at most 3") {
		t.Fatalf("4th session's auth: %v, want rate_limited", m)
	}
	if got := r.closeStatus(); got != websocket.StatusPolicyViolation {
		t.Fatalf("4th session closed with %v, want 1008", got)
	}
	// Re-auth of a counted session does not count again; other users are not
	// affected.
	if _, err := alice[0].Auth(ctxT(t), e.token("alice", couponmesh.RoleShopper)); err != nil {
		t.Fatalf("re-auth: %v", err)
	}
	e.login("bob", client.Options{})
	// A failed auth (bad token) holds no slot.
	bad := e.raw()
	bad.send(`{"id":1,"op":"auth","token":"nope"}`)
	if code, _ := bad.nextError(); code != couponmesh.CodeUnauthorized {
		t.Fatalf("bad token: %s", code)
	}
	alice[2].Close()
	testutil.Until(t, 5*time.Second, "a slot for alice", func() bool {
		c, err := client.Dial(ctxT(t), e.url, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Auth(ctxT(t), e.token("alice", couponmesh.RoleShopper)); err != nil {
			c.Close()
			return false
		}
		t.Cleanup(func() { c.Close() })
		return true
	})
	if got := e.metric("couponmesh_ws_sessions_dropped_total", "reason", "user_sessions"); got < 1 {
		t.Fatalf("sessions_dropped_total{user_sessions} = %v", got)
	}
}

// dialStatus opens a WebSocket with extra headers and returns the HTTP
// status of a refused upgrade (0 when it succeeded; the conn is closed at
// cleanup) and the error body.
func (e *env) dialStatus(h http.Header) (int, map[string]any, http.Header) {
	e.t.Helper()
	c, resp, err := websocket.Dial(ctxT(e.t), e.url, &websocket.DialOptions{HTTPHeader: h, Subprotocols: []string{ws.Subprotocol}})
	if err == nil {
		e.t.Cleanup(func() { c.CloseNow() })
		return 0, nil, nil
	}
	if resp == nil {
		e.t.Fatalf("dial: %v", err)
	}
	var body map[string]any
	if resp.Body != nil {
		b, _ := io.ReadAll(resp.Body)
		json.Unmarshal(b, &body)
	}
	return resp.StatusCode, body, resp.Header
}

func rateLimitedBody(t *testing.T, body map[string]any, msg string) {
	t.Helper()
	e, _ := body["error"].(map[string]any)
	if e == nil || e["code"] != "rate_limited" || !strings.Contains(e["message"].(string), msg) {
		t.Fatalf("body %v, want a rate_limited error saying %q", body, msg)
	}
}

// TestSessionsPerIP: a client address may hold SessionsPerIP sessions; the
// next upgrade gets HTTP 429 before any WebSocket is opened.
func TestSessionsPerIP(t *testing.T) {
	cfg := ws.LocalConfig()
	cfg.SessionsPerIP = 3
	e := newEnv(t, cfg)
	var open []*client.Client
	for range 3 {
		open = append(open, e.dial(client.Options{}))
	}
	status, body, _ := e.dialStatus(nil)
	if status != http.StatusTooManyRequests {
		t.Fatalf("4th session from one address: status %d, want 429", status)
	}
	rateLimitedBody(t, body, "too many WebSocket sessions")
	open[0].Close()
	testutil.Until(t, 5*time.Second, "a slot for the address", func() bool {
		status, _, _ := e.dialStatus(nil)
		return status == 0
	})
	if got := e.metric("couponmesh_ws_upgrades_refused_total", "reason", "ip_sessions"); got < 1 {
		t.Fatalf("upgrades_refused_total{ip_sessions} = %v", got)
	}
}

// TestHandshakeRatePerIP: upgrades from one address beyond its token bucket
// get HTTP 429 with Retry-After; the bucket refills.
func TestHandshakeRatePerIP(t *testing.T) {
	cfg := ws.LocalConfig()
	cfg.HandshakeRate, cfg.HandshakeBurst = 5, 5
	e := newEnv(t, cfg)
	refused := 0
	var hdr http.Header
	for range 10 {
		status, body, h := e.dialStatus(nil)
		if status == http.StatusTooManyRequests {
			rateLimitedBody(t, body, "too many WebSocket handshakes")
			refused++
			hdr = h
		} else if status != 0 {
			t.Fatalf("status %d", status)
		}
	}
	if refused < 4 || refused > 5 {
		t.Fatalf("%d of 10 quick handshakes refused, want 4-5 (burst 5 at 5/s)", refused)
	}
	if hdr.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	time.Sleep(time.Second)
	if status, _, _ := e.dialStatus(nil); status != 0 {
		t.Fatalf("after a second: status %d", status)
	}
	if got := e.metric("couponmesh_ws_upgrades_refused_total", "reason", "handshake_rate"); got != float64(refused) {
		t.Fatalf("upgrades_refused_total{handshake_rate} = %v, want %d", got, refused)
	}
}

// TestForwardedForOnlyFromTrustedProxies: X-Forwarded-For names the client
// only when the peer is a trusted proxy; a client cannot dodge the per-IP
// limits by sending the header itself.
func TestForwardedForOnlyFromTrustedProxies(t *testing.T) {
	xff := func(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip}} }
	t.Run("untrusted peer", func(t *testing.T) {
		cfg := ws.LocalConfig()
		cfg.SessionsPerIP = 1
		e := newEnv(t, cfg)
		if status, _, _ := e.dialStatus(xff("203.0.113.1")); status != 0 {
			t.Fatalf("first: %d", status)
		}
		if status, _, _ := e.dialStatus(xff("203.0.113.2")); status != http.StatusTooManyRequests {
			t.Fatalf("a spoofed X-Forwarded-For got a second session: status %d", status)
		}
	})
	t.Run("trusted proxy", func(t *testing.T) {
		cfg := ws.LocalConfig()
		cfg.SessionsPerIP = 1
		cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		e := newEnv(t, cfg)
		if status, _, _ := e.dialStatus(xff("203.0.113.1")); status != 0 {
			t.Fatalf("client 1: %d", status)
		}
		if status, _, _ := e.dialStatus(xff("203.0.113.2")); status != 0 {
			t.Fatalf("client 2 behind the same proxy: %d", status)
		}
		// Client 1 again, with a forged left-most hop: the proxy appended
		// the real address, which is what counts.
		if status, _, _ := e.dialStatus(xff("198.51.100.9, 203.0.113.1")); status != http.StatusTooManyRequests {
			t.Fatalf("client 1 with a forged hop: status %d, want 429", status)
		}
	})
}
