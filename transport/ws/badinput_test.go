package ws_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/transport/ws"
)

// TestBadInput sends frames a correct client never sends over a real
// WebSocket and checks the error reply (or close code) and that the
// connection survives every error but an oversized frame.
func TestBadInput(t *testing.T) {
	e := newEnv(t, ws.LocalConfig())
	e.svc.Put(couponmesh.Coupon{ID: "c1", Merchant: "m", Title: "t", Quantity: 10})
	now := time.Now()
	expired := signed(t, secret, claimsFor("alice", now.Add(-time.Hour)))
	otherKey := signed(t, []byte("another secret, long enough too!!"), claimsFor("alice", now.Add(time.Hour)))

	type frame struct {
		text   string
		binary bool
	}
	cases := []struct {
		name   string
		authed bool
		send   frame
		id     float64 // expected id in the reply; 0: no id
		code   couponmesh.Code
		msg    string               // substring of the error message
		close  websocket.StatusCode // expected close instead of a reply
	}{
		{name: "malformed JSON", send: frame{text: `{"id":1,"op":`}, code: couponmesh.CodeBadRequest, msg: "malformed JSON"},
		{name: "not JSON", send: frame{text: `hello`}, code: couponmesh.CodeBadRequest, msg: "malformed JSON"},
		{name: "empty frame", send: frame{text: ``}, code: couponmesh.CodeBadRequest, msg: "malformed JSON"},
		{name: "two objects", send: frame{text: `{"id":1,"op":"ping"}` + "\n" + `{"id":2,"op":"ping"}`}, code: couponmesh.CodeBadRequest, msg: "malformed JSON"},
		{name: "array", send: frame{text: `[1,2]`}, code: couponmesh.CodeBadRequest, msg: "JSON object"},
		{name: "no id", send: frame{text: `{"op":"ping"}`}, code: couponmesh.CodeBadRequest, msg: "id must be a positive integer"},
		{name: "zero id", send: frame{text: `{"id":0,"op":"ping"}`}, code: couponmesh.CodeBadRequest, msg: "id must be a positive integer"},
		{name: "negative id", send: frame{text: `{"id":-4,"op":"ping"}`}, code: couponmesh.CodeBadRequest, msg: "id must be a positive integer"},
		{name: "string id", send: frame{text: `{"id":"4","op":"ping"}`}, code: couponmesh.CodeBadRequest, msg: "id must be a positive integer"},
		{name: "fractional id", send: frame{text: `{"id":1.5,"op":"ping"}`}, code: couponmesh.CodeBadRequest, msg: "id must be a positive integer"},
		{name: "no op", send: frame{text: `{"id":3}`}, id: 3, code: couponmesh.CodeBadRequest, msg: "op is required"},
		{name: "op not a string", send: frame{text: `{"id":4,"op":5}`}, id: 4, code: couponmesh.CodeBadRequest, msg: "op must be a string"},
		{name: "unknown op", send: frame{text: `{"id":5,"op":"x"}`}, id: 5, code: couponmesh.CodeBadRequest, msg: `unknown op "x"`},
		{name: "binary frame", send: frame{text: `{"id":6,"op":"ping"}`, binary: true}, code: couponmesh.CodeBadRequest, msg: "binary frames"},
		{name: "oversized frame", send: frame{text: `{"id":7,"op":"ping","pad":"` + strings.Repeat("x", 17<<10) + `"}`}, close: websocket.StatusMessageTooBig},

		// get and subscribe make an anonymous session (anonymous_test.go); the rest needs auth.
		{name: "wallet before auth", send: frame{text: `{"id":8,"op":"wallet"}`}, id: 8, code: couponmesh.CodeUnauthorized, msg: "not authenticated"},
		{name: "follow before auth", send: frame{text: `{"id":9,"op":"follow","coupon":"c1"}`}, id: 9, code: couponmesh.CodeUnauthorized},
		{name: "anonymous get of an unknown coupon", send: frame{text: `{"id":16,"op":"get","coupon":"nope"}`}, id: 16, code: couponmesh.CodeNotFound},
		{name: "claim before auth", send: frame{text: `{"id":10,"op":"claim","coupon":"c1","rid":"r"}`}, id: 10, code: couponmesh.CodeUnauthorized},
		{name: "auth without token", send: frame{text: `{"id":11,"op":"auth"}`}, id: 11, code: couponmesh.CodeBadRequest, msg: "token is required"},
		{name: "auth token not a string", send: frame{text: `{"id":12,"op":"auth","token":42}`}, id: 12, code: couponmesh.CodeBadRequest, msg: "token must be a string"},
		{name: "auth expired token", send: frame{text: `{"id":13,"op":"auth","token":"` + expired + `"}`}, id: 13, code: couponmesh.CodeUnauthorized, msg: "expired"},
		{name: "auth bad signature", send: frame{text: `{"id":14,"op":"auth","token":"` + otherKey + `"}`}, id: 14, code: couponmesh.CodeUnauthorized, msg: "signature"},
		{name: "auth garbage token", send: frame{text: `{"id":15,"op":"auth","token":"abc"}`}, id: 15, code: couponmesh.CodeUnauthorized, msg: "malformed"},

		{name: "get without coupon", authed: true, send: frame{text: `{"id":20,"op":"get"}`}, id: 20, code: couponmesh.CodeBadRequest, msg: "coupon is required"},
		{name: "get bad coupon id", authed: true, send: frame{text: `{"id":21,"op":"get","coupon":"a b"}`}, id: 21, code: couponmesh.CodeBadRequest, msg: "coupon must be 1-64 characters"},
		{name: "get coupon not a string", authed: true, send: frame{text: `{"id":22,"op":"get","coupon":7}`}, id: 22, code: couponmesh.CodeBadRequest, msg: "coupon must be a string"},
		{name: "get unknown coupon", authed: true, send: frame{text: `{"id":23,"op":"get","coupon":"nope"}`}, id: 23, code: couponmesh.CodeNotFound},
		{name: "claim without rid", authed: true, send: frame{text: `{"id":24,"op":"claim","coupon":"c1"}`}, id: 24, code: couponmesh.CodeBadRequest, msg: "rid is required"},
		{name: "claim rid too long", authed: true, send: frame{text: `{"id":25,"op":"claim","coupon":"c1","rid":"` + strings.Repeat("r", 65) + `"}`}, id: 25, code: couponmesh.CodeBadRequest, msg: "rid must be at most 64"},
		{name: "claim without coupon", authed: true, send: frame{text: `{"id":26,"op":"claim","rid":"r1"}`}, id: 26, code: couponmesh.CodeBadRequest, msg: "coupon is required"},
		{name: "subscribe without coupons", authed: true, send: frame{text: `{"id":27,"op":"subscribe"}`}, id: 27, code: couponmesh.CodeBadRequest, msg: "coupons is required"},
		{name: "subscribe with ids only", authed: true, send: frame{text: `{"id":28,"op":"subscribe","coupons":["c1"]}`}, id: 28, code: couponmesh.CodeBadRequest, msg: "coupons must be a list"},
		{name: "subscribe bad id", authed: true, send: frame{text: `{"id":29,"op":"subscribe","coupons":[{"id":"c1"},{"id":""}]}`}, id: 29, code: couponmesh.CodeBadRequest, msg: "coupons[1].id is required"},
		{name: "subscribe negative version", authed: true, send: frame{text: `{"id":30,"op":"subscribe","coupons":[{"id":"c1","version":-1}]}`}, id: 30, code: couponmesh.CodeBadRequest, msg: "coupons[0].version"},
		{name: "unsubscribe objects", authed: true, send: frame{text: `{"id":31,"op":"unsubscribe","coupons":[{"id":"c1"}]}`}, id: 31, code: couponmesh.CodeBadRequest, msg: "coupons must be a list of coupon ids"},
		{name: "unsubscribe bad id", authed: true, send: frame{text: `{"id":32,"op":"unsubscribe","coupons":["c1","x y"]}`}, id: 32, code: couponmesh.CodeBadRequest, msg: "coupons[1] must be"},
		{name: "feed negative after", authed: true, send: frame{text: `{"id":33,"op":"feed","after":-1}`}, id: 33, code: couponmesh.CodeBadRequest, msg: "after must be >= 0"},
		{name: "feed limit too big", authed: true, send: frame{text: `{"id":34,"op":"feed","limit":100000}`}, id: 34, code: couponmesh.CodeBadRequest, msg: "limit must be between 1 and 500"},
		{name: "feed after not a number", authed: true, send: frame{text: `{"id":35,"op":"feed","after":"x"}`}, id: 35, code: couponmesh.CodeBadRequest, msg: "after must be an integer"},
		{name: "follow unknown coupon", authed: true, send: frame{text: `{"id":36,"op":"follow","coupon":"nope"}`}, id: 36, code: couponmesh.CodeNotFound},
		{name: "re-auth as another user", authed: true, send: frame{text: `{"id":37,"op":"auth","token":"` + e.token("mallory", couponmesh.RoleShopper) + `"}`}, id: 37, code: couponmesh.CodeForbidden, msg: "another user"},
		{name: "re-auth with expired token", authed: true, send: frame{text: `{"id":38,"op":"auth","token":"` + expired + `"}`}, id: 38, code: couponmesh.CodeUnauthorized, msg: "expired"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.raw()
			if tc.authed {
				// One user per case: the sessions stay open until the end,
				// and a user may hold only SessionsPerUser of them.
				r.auth(e.token(fmt.Sprintf("alice%d", i), couponmesh.RoleShopper))
			}
			typ := websocket.MessageText
			if tc.send.binary {
				typ = websocket.MessageBinary
			}
			if err := r.c.Write(ctxT(t), typ, []byte(tc.send.text)); err != nil {
				t.Fatal(err)
			}
			if tc.close != 0 {
				if got := r.closeStatus(); got != tc.close {
					t.Fatalf("close status %v, want %v", got, tc.close)
				}
				return
			}
			m := r.mustNext()
			if tc.id == 0 {
				if _, ok := m["id"]; ok {
					t.Fatalf("reply %v has an id, want none", m)
				}
			} else if m["id"] != tc.id {
				t.Fatalf("reply %v, want id %v", m, tc.id)
			}
			errObj, _ := m["error"].(map[string]any)
			if errObj == nil {
				t.Fatalf("reply %v is not an error", m)
			}
			if errObj["code"] != string(tc.code) {
				t.Fatalf("code %v, want %v (message %q)", errObj["code"], tc.code, errObj["message"])
			}
			if msg, _ := errObj["message"].(string); !strings.Contains(msg, tc.msg) || msg == "" {
				t.Fatalf("message %q does not contain %q", msg, tc.msg)
			}
			// The connection survives: a ping still answers.
			r.send(`{"id":99,"op":"ping"}`)
			if m := r.mustNext(); m["id"] != float64(99) || m["ok"] == nil {
				t.Fatalf("ping after the error: %v", m)
			}
		})
	}
	if got := e.metric("couponmesh_ws_requests_total", "op", "invalid", "result", "bad_request"); got < 10 {
		t.Errorf("requests_total{op=invalid} = %v, want >= 10", got)
	}
	if got := e.metric("couponmesh_ws_requests_total", "op", "unknown", "result", "bad_request"); got != 1 {
		t.Errorf("requests_total{op=unknown} = %v, want 1", got)
	}
}

// TestOriginChecked keeps the upgrade's origin check on: a browser page from
// another site may not open a session unless OriginPatterns allows it.
func TestOriginChecked(t *testing.T) {
	cfg := ws.LocalConfig()
	cfg.OriginPatterns = []string{"app.example.com"}
	e := newEnv(t, cfg)
	dial := func(origin string) error {
		h := map[string][]string{"Origin": {origin}}
		c, _, err := websocket.Dial(ctxT(t), e.url, &websocket.DialOptions{HTTPHeader: h, Subprotocols: []string{ws.Subprotocol}})
		if err == nil {
			c.CloseNow()
		}
		return err
	}
	if err := dial("https://evil.example.net"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("foreign origin: %v, want 403", err)
	}
	if err := dial("https://app.example.com"); err != nil {
		t.Fatalf("allowed origin: %v", err)
	}
}

// TestSubprotocolRequired closes a client that does not speak couponmesh.v1.
func TestSubprotocolRequired(t *testing.T) {
	e := newEnv(t, ws.LocalConfig())
	r := e.raw("other.v9")
	if got := r.closeStatus(); got != websocket.StatusProtocolError {
		t.Fatalf("close status %v, want 1002", got)
	}
}
