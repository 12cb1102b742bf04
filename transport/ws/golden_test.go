package ws_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/protocol"
	"github.com/couponmesh/couponmesh/protocol/protocoltest"
	"github.com/couponmesh/couponmesh/transport/ws"
)

// sameFields reports the first field of got (a decoded message of the
// server) that the golden frame has not at the same place: a renamed or
// new field. Arrays are compared element by element with the golden's
// first; objects named in maps hold data as keys.
func sameFields(path string, got, golden any, maps []string) error {
	switch g := got.(type) {
	case map[string]any:
		w, ok := golden.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: an object where the golden frame has %T", path, golden)
		}
		if slices.Contains(maps, path) {
			return nil
		}
		for k, v := range g {
			wv, ok := w[k]
			if !ok {
				return fmt.Errorf("%s.%s: not in the golden frame", path, k)
			}
			if err := sameFields(path+"."+k, v, wv, maps); err != nil {
				return err
			}
		}
	case []any:
		w, ok := golden.([]any)
		if !ok {
			return fmt.Errorf("%s: an array where the golden frame has %T", path, golden)
		}
		for _, v := range g {
			if len(w) == 0 {
				return fmt.Errorf("%s: elements where the golden array has none", path)
			}
			if err := sameFields(path+"[]", v, w[0], maps); err != nil {
				return err
			}
		}
	}
	return nil
}

func goldenMap(t *testing.T, kind, name string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(protocoltest.Frame(t, kind, name), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestGoldenFramesEndToEnd sends every golden request to a real handler,
// in the order of protocol.Ops (the auth with a real token), and checks
// that each is answered ok with the fields of the golden reply, that the
// pushes it gets carry the fields of the golden pushes, and that errors
// carry those of the golden errors: a field renamed on the server fails
// here. drained comes last, as the answer to the draining push of a real
// drain, and the session then ends with 1012.
func TestGoldenFramesEndToEnd(t *testing.T) {
	e := newEnv(t, ws.LocalConfig())
	for _, id := range []string{"c42", "c7"} {
		e.svc.Put(couponmesh.Coupon{ID: id, Merchant: "acme", Title: id, Quantity: 100, Version: 19})
	}
	r := e.raw()
	maps := []string{".ok.watching"}
	pushes := map[string]int{}
	for _, op := range protocol.Ops {
		if op == protocol.OpDrained {
			continue // below, in a drain: the client sends nothing after it
		}
		frame := string(protocoltest.Frame(t, protocoltest.Requests, op))
		if op == protocol.OpAuth {
			var req protocol.AuthParams
			if err := json.Unmarshal([]byte(frame), &req); err != nil {
				t.Fatal(err)
			}
			frame = strings.Replace(frame, req.Token, e.token("alice", couponmesh.RoleShopper), 1)
		}
		req, derr := protocol.DecodeRequest([]byte(frame))
		if derr != nil {
			t.Fatal(derr)
		}
		r.send(frame)
		for {
			m := r.mustNext()
			if kind, ok := m["push"].(string); ok {
				pushes[kind]++
				if err := sameFields("", m, goldenMap(t, protocoltest.Pushes, kind), maps); err != nil {
					t.Errorf("push %s: %v\n%v", kind, err, m)
				}
				continue
			}
			if id, _ := m["id"].(float64); int64(id) != req.ID || m["ok"] == nil {
				t.Fatalf("%s: answered %v", frame, m)
			}
			if err := sameFields("", m, goldenMap(t, protocoltest.Replies, op), maps); err != nil {
				t.Errorf("reply to %s: %v\n%v", op, err, m)
			}
			break
		}
	}
	e.svc.Put(couponmesh.Coupon{ID: "c7", Merchant: "acme", Title: "c7", Quantity: 100, Version: 20})
	untilPush := func(want string) { // checks the pushes until one of kind want has come
		for pushes[want] == 0 {
			m := r.mustNext()
			if kind, ok := m["push"].(string); ok {
				pushes[kind]++
				if err := sameFields("", m, goldenMap(t, protocoltest.Pushes, kind), maps); err != nil {
					t.Errorf("push %s: %v\n%v", kind, err, m)
				}
			}
		}
	}
	untilPush(protocol.PushCoupon)

	for _, tc := range []struct {
		frame string
		code  couponmesh.Code
	}{
		{`{"id":20,"op":"claim","coupon":"gone","rid":"r1"}`, couponmesh.CodeNotFound},
		{`{"id":21,"op":"claim","coupon":"c42"}`, couponmesh.CodeBadRequest},
	} {
		r.send(tc.frame)
		m := r.mustNext()
		for m["push"] != nil {
			m = r.mustNext()
		}
		if err := sameFields("", m, goldenMap(t, protocoltest.Errors, string(tc.code)), nil); err != nil {
			t.Errorf("%s: %v\n%v", tc.frame, err, m)
		}
		if got := m["error"].(map[string]any)["code"]; got != string(tc.code) {
			t.Errorf("%s: answered %v, want %s", tc.frame, m, tc.code)
		}
	}

	go e.h.Drain(context.Background(), []string{"b:8080"}, 0)
	untilPush(protocol.PushDraining)
	drained := protocoltest.Frame(t, protocoltest.Requests, protocol.OpDrained)
	req, derr := protocol.DecodeRequest(drained)
	if derr != nil {
		t.Fatal(derr)
	}
	r.send(string(drained))
	m := r.mustNext()
	if id, _ := m["id"].(float64); int64(id) != req.ID || m["ok"] == nil {
		t.Fatalf("%s: answered %v", drained, m)
	}
	if err := sameFields("", m, goldenMap(t, protocoltest.Replies, protocol.OpDrained), maps); err != nil {
		t.Errorf("reply to drained: %v\n%v", err, m)
	}
	if code := r.closeStatus(); code != websocket.StatusServiceRestart {
		t.Errorf("after drained the session ended with %v, want 1012", code)
	}
}
