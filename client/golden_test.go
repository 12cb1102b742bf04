package client_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/protocol"
	"github.com/couponmesh/couponmesh/protocol/protocoltest"
)

// withID returns golden frame b with the id of request id replaced by
// scripted's "ID" placeholder.
func withID(t *testing.T, b []byte, id int64) string {
	t.Helper()
	prefix := []byte(`{"id":` + strconv.FormatInt(id, 10) + `,`)
	if !bytes.HasPrefix(b, prefix) {
		t.Fatalf("golden frame %s does not start with %s", b, prefix)
	}
	return `{"id":ID,` + string(b[len(prefix):])
}

// withoutID returns request frame b after its id.
func withoutID(b []byte) string {
	return string(b[bytes.IndexByte(b, ',')+1:])
}

// goldenOK returns the ok payload of op's golden reply.
func goldenOK(t *testing.T, op string) []byte {
	t.Helper()
	var m protocol.Message
	if err := json.Unmarshal(protocoltest.Frame(t, protocoltest.Replies, op), &m); err != nil {
		t.Fatal(err)
	}
	return m.OK
}

// goldenReq decodes op's golden request.
func goldenReq(t *testing.T, op string) protocol.Request {
	t.Helper()
	req, err := protocol.DecodeRequest(protocoltest.Frame(t, protocoltest.Requests, op))
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestGoldenFrames calls every op of the SDK with the values of the golden
// requests against a server that answers with the golden replies: each
// request must be the golden one byte for byte (but its id), and each
// result must hold every field of the golden reply.
func TestGoldenFrames(t *testing.T) {
	replies := map[string]string{}
	for _, op := range protocol.Ops {
		replies[op] = withID(t, protocoltest.Frame(t, protocoltest.Replies, op), goldenReq(t, op).ID)
	}
	var (
		mu   sync.Mutex
		sent = map[string][]byte{}
	)
	url := scripted(t, func(frame string) string {
		req, err := protocol.DecodeRequest([]byte(frame))
		if err != nil || replies[req.Op] == "" {
			return `{"id":ID,"error":{"code":"bad_request","message":"not a golden request"}}`
		}
		mu.Lock()
		sent[req.Op] = []byte(frame)
		mu.Unlock()
		return replies[req.Op]
	})
	c, err := client.Dial(ctxT(t), url, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxT(t)

	var subs []protocol.Sub
	if err := json.Unmarshal(goldenReq(t, protocol.OpSubscribe).Coupons, &subs); err != nil {
		t.Fatal(err)
	}
	var unsubs []string
	if err := json.Unmarshal(goldenReq(t, protocol.OpUnsubscribe).Coupons, &unsubs); err != nil {
		t.Fatal(err)
	}
	call := map[string]func() (any, error){
		protocol.OpAuth: func() (any, error) { return c.Auth(ctx, goldenReq(t, protocol.OpAuth).Token) },
		protocol.OpPing: func() (any, error) { return protocol.Empty{}, c.Ping(ctx) },
		protocol.OpSubscribe: func() (any, error) {
			return c.SubscribeReport(ctx, subs)
		},
		protocol.OpUnsubscribe: func() (any, error) { return protocol.Empty{}, c.Unsubscribe(ctx, unsubs...) },
		protocol.OpGet: func() (any, error) {
			cp, err := c.Get(ctx, goldenReq(t, protocol.OpGet).Coupon)
			return protocol.CouponReply{Coupon: cp}, err
		},
		protocol.OpClaim: func() (any, error) {
			r := goldenReq(t, protocol.OpClaim)
			cl, err := c.Claim(ctx, r.Coupon, r.Rid)
			return protocol.ClaimReply{Claim: cl}, err
		},
		protocol.OpFollow: func() (any, error) {
			cp, err := c.Follow(ctx, goldenReq(t, protocol.OpFollow).Coupon)
			return protocol.CouponReply{Coupon: cp}, err
		},
		protocol.OpUnfollow: func() (any, error) {
			return protocol.Empty{}, c.Unfollow(ctx, goldenReq(t, protocol.OpUnfollow).Coupon)
		},
		protocol.OpWallet: func() (any, error) {
			cl, err := c.Wallet(ctx)
			return protocol.WalletReply{Claims: cl}, err
		},
		protocol.OpFeed: func() (any, error) {
			r := goldenReq(t, protocol.OpFeed)
			entries, err := c.Feed(ctx, r.After, r.Limit)
			return protocol.FeedReply{Entries: entries}, err
		},
	}
	for _, op := range protocol.Ops {
		if op == protocol.OpDrained {
			continue // no call sends it: the SDK answers a draining push with it (TestGoldenDrainHandover)
		}
		f, ok := call[op]
		if !ok {
			t.Errorf("no SDK call for op %s", op)
			continue
		}
		res, err := f()
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		if got, _ := json.Marshal(res); !bytes.Equal(got, goldenOK(t, op)) {
			t.Errorf("%s: the SDK returned\n%s\nthe golden reply holds\n%s", op, got, goldenOK(t, op))
		}
		mu.Lock()
		frame := sent[op]
		mu.Unlock()
		golden := protocoltest.Frame(t, protocoltest.Requests, op)
		if frame == nil || withoutID(frame) != withoutID(golden) {
			t.Errorf("%s: the SDK sent\n%s\nthe golden request is\n%s", op, frame, golden)
		}
	}
}

// TestGoldenPushesAndErrors: the golden pushes reach OnCoupon, OnFeed and
// OnPresence with every field, and each golden error reply comes back from
// the call as that *couponmesh.Error.
func TestGoldenPushesAndErrors(t *testing.T) {
	var batch []string // the pushes, then the reply
	for _, kind := range protocol.Pushes {
		if kind == protocol.PushDraining {
			continue // it ends the use of the connection: TestGoldenDrainHandover
		}
		batch = append(batch, string(protocoltest.Frame(t, protocoltest.Pushes, kind)))
	}
	batch = append(batch, `{"id":ID,"ok":{}}`)
	var errFrame sync.Map // op claim answers with the error frame stored under "claim"
	url := scripted(t, func(frame string) string {
		req, _ := protocol.DecodeRequest([]byte(frame))
		if req.Op == protocol.OpClaim {
			v, _ := errFrame.Load("claim")
			return v.(string)
		}
		return strings.Join(batch, "\n")
	})
	var (
		mu       sync.Mutex
		coupons  []couponmesh.Coupon
		entries  []couponmesh.FeedEntry
		presence []protocol.PresencePushFrame
	)
	c, err := client.Dial(ctxT(t), url, client.Options{
		OnCoupon: func(cp couponmesh.Coupon) { mu.Lock(); coupons = append(coupons, cp); mu.Unlock() },
		OnFeed:   func(e couponmesh.FeedEntry) { mu.Lock(); entries = append(entries, e); mu.Unlock() },
		OnPresence: func(id string, n int) {
			mu.Lock()
			presence = append(presence, protocol.PresencePushFrame{Push: protocol.PushPresence, Coupon: id, Watching: n})
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Ping(ctxT(t)); err != nil { // the pushes come before its reply
		t.Fatal(err)
	}
	mu.Lock()
	if len(coupons) != 1 || len(entries) != 1 || len(presence) != 1 {
		t.Fatalf("pushes delivered: %d coupons, %d feed entries, %d presence", len(coupons), len(entries), len(presence))
	}
	got := map[string][]byte{
		protocol.PushCoupon:   protocol.CouponPush(coupons[0]),
		protocol.PushFeed:     protocol.FeedPush(entries[0]),
		protocol.PushPresence: protocol.PresencePush(presence[0].Coupon, presence[0].Watching),
	}
	mu.Unlock()
	for _, kind := range protocol.Pushes {
		if kind == protocol.PushDraining {
			continue
		}
		if want := protocoltest.Frame(t, protocoltest.Pushes, kind); !bytes.Equal(got[kind], want) {
			t.Errorf("push %s delivered as\n%s\nthe golden push is\n%s", kind, got[kind], want)
		}
	}

	for _, code := range couponmesh.Codes {
		golden := protocoltest.Frame(t, protocoltest.Errors, string(code))
		var m protocol.Message
		if err := json.Unmarshal(golden, &m); err != nil {
			t.Fatal(err)
		}
		errFrame.Store("claim", withID(t, golden, m.ID))
		_, err := c.Claim(ctxT(t), "c42", "r1")
		var ce *couponmesh.Error
		if !errors.As(err, &ce) || *ce != *m.Error {
			t.Errorf("error %s: the call returned %v, want %+v", code, err, m.Error)
		}
	}
}

// TestGoldenDrainHandover: the golden draining push makes the SDK send the
// golden drained request (but its id), which reads the golden reply, and
// nothing more on that connection: a later call fails with ErrNotSent,
// naming the addresses of the push.
func TestGoldenDrainHandover(t *testing.T) {
	push := protocoltest.Frame(t, protocoltest.Pushes, protocol.PushDraining)
	var want protocol.DrainingPushFrame
	if err := json.Unmarshal(push, &want); err != nil || len(want.Addresses) == 0 {
		t.Fatalf("golden draining push %s: %v", push, err)
	}
	golden := protocoltest.Frame(t, protocoltest.Requests, protocol.OpDrained)
	reply := withID(t, protocoltest.Frame(t, protocoltest.Replies, protocol.OpDrained), goldenReq(t, protocol.OpDrained).ID)
	sent := make(chan string, 1)
	url := scripted(t, func(frame string) string {
		req, _ := protocol.DecodeRequest([]byte(frame))
		if req.Op == protocol.OpDrained {
			sent <- frame
			return reply
		}
		return string(push) + "\n" + `{"id":ID,"ok":{}}`
	})
	c, err := client.Dial(ctxT(t), url, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Ping(ctxT(t)); err != nil { // answered after the push, on the same connection
		t.Fatal(err)
	}
	select {
	case frame := <-sent:
		if withoutID([]byte(frame)) != withoutID(golden) {
			t.Errorf("the SDK answered the draining push with\n%s\nthe golden drained request is\n%s", frame, golden)
		}
	case <-ctxT(t).Done():
		t.Fatal("no drained request after the draining push")
	}
	err = c.Ping(ctxT(t))
	if !errors.Is(err, client.ErrNotSent) || !strings.Contains(err.Error(), strings.Join(want.Addresses, " ")) {
		t.Errorf("a call after the draining push: %v, want ErrNotSent naming %v", err, want.Addresses)
	}
}
