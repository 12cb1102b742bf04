package ws

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/protocol"
	"github.com/couponmesh/couponmesh/protocol/protocoltest"
)

// TestServesEveryOp: the server answers every op of protocol v1 and no
// other. auth, ping and drained are answered by the session itself
// (handle), the others by the ops table, which must not hold them: drained
// is a control frame of the drain handover, not an op a service serves.
func TestServesEveryOp(t *testing.T) {
	for _, op := range []string{protocol.OpAuth, protocol.OpPing, protocol.OpDrained} {
		if _, ok := ops[op]; ok {
			t.Errorf("op %s is in the ops table: the session answers it itself", op)
		}
	}
	served := []string{protocol.OpAuth, protocol.OpPing, protocol.OpDrained}
	for op := range ops {
		served = append(served, op)
	}
	if slices.Sort(served); !slices.Equal(served, slices.Sorted(slices.Values(protocol.Ops))) {
		t.Fatalf("ops served %v, protocol v1 has %v", served, protocol.Ops)
	}
}

// TestHandEncodedFramesAreGolden checks what the server writes or reads by
// hand, for speed, against the golden frames: couponFrame (get answered
// from memory), the subscribe reply made of coupons' JSON, the error
// frames, and the push prefixes conflation looks for.
func TestHandEncodedFramesAreGolden(t *testing.T) {
	decode := func(b []byte) protocol.Message {
		t.Helper()
		var m protocol.Message
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		return m
	}

	get := protocoltest.Frame(t, protocoltest.Replies, protocol.OpGet)
	var cr protocol.CouponReply
	m := decode(get)
	if err := json.Unmarshal(m.OK, &cr); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(cr.Coupon)
	if err != nil {
		t.Fatal(err)
	}
	if got := couponFrame(m.ID, js); !bytes.Equal(got, get) {
		t.Errorf("couponFrame writes\n%s\nthe golden get reply is\n%s", got, get)
	}

	sub := protocoltest.Frame(t, protocoltest.Replies, protocol.OpSubscribe)
	m = decode(sub)
	var sr protocol.SubscribeReply[json.RawMessage]
	if err := json.Unmarshal(m.OK, &sr); err != nil {
		t.Fatal(err)
	}
	if got, err := okFrame(m.ID, sr); err != nil || !bytes.Equal(got, sub) {
		t.Errorf("the subscribe reply of coupons' JSON is\n%s (%v)\nthe golden one\n%s", got, err, sub)
	}
	for _, c := range sr.Coupons {
		if n := watchingOf(c); n <= 0 {
			t.Errorf("watchingOf(%s) = %d", c, n)
		}
	}

	for _, code := range couponmesh.Codes {
		golden := protocoltest.Frame(t, protocoltest.Errors, string(code))
		m := decode(golden)
		if got := errorFrame(m.ID, m.Error); !bytes.Equal(got, golden) {
			t.Errorf("errorFrame writes\n%s\nthe golden %s is\n%s", got, code, golden)
		}
	}

	h := &Handler{}
	for _, kind := range protocol.Pushes {
		frame := protocoltest.Frame(t, protocoltest.Pushes, kind)
		m := decode(frame)
		coupon, version, ok := h.couponPush(frame)
		switch kind {
		case protocol.PushCoupon:
			var c couponmesh.Coupon
			if err := json.Unmarshal(m.Coupon, &c); err != nil {
				t.Fatal(err)
			}
			if coupon != c.ID || version != c.Version || !ok {
				t.Errorf("coupon push read as %q %d %v, want %q %d", coupon, version, ok, c.ID, c.Version)
			}
		case protocol.PushPresence:
			var id string
			if err := json.Unmarshal(m.Coupon, &id); err != nil {
				t.Fatal(err)
			}
			if coupon != presenceKey+id || !ok {
				t.Errorf("presence push read as %q %v, want %q", coupon, ok, presenceKey+id)
			}
		default:
			if ok {
				t.Errorf("push %s read as a coupon's (%q): it would be conflated", kind, coupon)
			}
		}
	}
}
