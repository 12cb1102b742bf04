package ws

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/transport/auth"
	"github.com/couponmesh/couponmesh/transport/transporttest"
)

func TestDecodeRequest(t *testing.T) {
	cases := []struct {
		in     string
		id     int64
		op     string
		errMsg string // "" means success
	}{
		{in: `{"id":1,"op":"ping"}`, id: 1, op: "ping"},
		{in: `{"id":9007199254740991,"op":"get","coupon":"c1","extra":{"x":[1]}}`, id: 9007199254740991, op: "get"},
		{in: `{"id":2,"op":"claim","coupon":"c","rid":"r","user":"mallory"}`, id: 2, op: "claim"},
		{in: `{"id":3,"op":"get","coupon":5}`, id: 3, errMsg: "coupon must be a string"},
		{in: `{"id":3,"op":"feed","limit":1.5}`, id: 3, errMsg: "limit must be an integer"},
		{in: `{"id":"x","op":"get"}`, errMsg: "id must be a positive integer"},
		{in: `{"id":1e40,"op":"get"}`, errMsg: "id must be a positive integer"},
		{in: `{"id":-1,"op":"get","coupon":5}`, errMsg: "coupon must be a string"},
		{in: `{"id":4}`, id: 4, errMsg: "op is required"},
		{in: `null`, errMsg: "id must be a positive integer"},
		{in: `"str"`, errMsg: "must be a JSON object"},
		{in: `{`, errMsg: "malformed JSON"},
		{in: "{\"id\":1,\"op\":\"ping\"}\n{}", errMsg: "malformed JSON"},
	}
	for _, tc := range cases {
		req, err := decodeRequest([]byte(tc.in))
		if tc.errMsg == "" {
			if err != nil || req.ID != tc.id || req.Op != tc.op {
				t.Errorf("decode %s = %+v, %v", tc.in, req, err)
			}
			continue
		}
		if err == nil || err.Code != couponmesh.CodeBadRequest || !strings.Contains(err.Message, tc.errMsg) {
			t.Errorf("decode %s: error %v, want bad_request with %q", tc.in, err, tc.errMsg)
		}
		if req.ID != tc.id {
			t.Errorf("decode %s: id %d, want %d", tc.in, req.ID, tc.id)
		}
	}
}

// FuzzDecodeRequest: no input panics; every rejection is a bad_request with
// a message and a reply frame that is one line of valid JSON; an echoed id
// is positive; an accepted request has an id and an op.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"id":1,"op":"ping"}`,
		`{"id":2,"op":"subscribe","coupons":[{"id":"c1","version":3}]}`,
		`{"id":3,"op":"claim","coupon":"c1","rid":"r"}`,
		`{"id":4,"op":"feed","after":10,"limit":5}`,
		`{"id":"5"}`, `[]`, `{`, ``, `{"id":1,"op":"a\nb"}`, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeRequest(b)
		if err == nil {
			if req.ID <= 0 || req.Op == "" {
				t.Fatalf("accepted %q as %+v", b, req)
			}
			return
		}
		if err.Code != couponmesh.CodeBadRequest || err.Message == "" {
			t.Fatalf("rejection of %q: %+v", b, err)
		}
		if req.ID < 0 {
			t.Fatalf("negative id echoed for %q", b)
		}
		frame := errorFrame(req.ID, err)
		if bytes.IndexByte(frame, '\n') >= 0 || !json.Valid(frame) || !utf8.Valid(frame) {
			t.Fatalf("error frame %q is not one line of valid JSON", frame)
		}
	})
}

// TestWriterBatches queues several frames at once and checks that they
// leave in one text frame, '\n'-separated, untouched, and that the batch
// cap splits bigger backlogs.
func TestWriterBatches(t *testing.T) {
	hub := transporttest.NewHub()
	tokens, err := auth.New(auth.LocalConfig("batch"))
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandler(LocalConfig(), transporttest.NewService(hub), hub, tokens, nil, nil)
	srv := httptest.NewServer(h)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), &websocket.DialOptions{Subprotocols: []string{Subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(-1)

	var s *session
	for s == nil {
		h.mu.Lock()
		for x := range h.sessions {
			s = x
		}
		h.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	enqueue := func(frames ...[]byte) {
		s.mu.Lock()
		s.queue = append(s.queue, frames...)
		start := s.wakeLocked()
		s.mu.Unlock()
		if start {
			h.writers.schedule(s)
		}
	}

	small := [][]byte{
		couponmesh.CouponPush(couponmesh.Coupon{ID: "a", Version: 1}),
		couponmesh.FeedPush(couponmesh.FeedEntry{Seq: 1, Type: "claimed", Coupon: "a"}),
		[]byte(`{"id":7,"ok":{}}`),
	}
	enqueue(small...)
	_, data, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := bytes.Join(small, []byte("\n")); !bytes.Equal(data, want) {
		t.Fatalf("frame\n%s\nwant\n%s", data, want)
	}

	// 40 messages of 4 KiB: more than one 64 KiB frame.
	big := make([][]byte, 40)
	for i := range big {
		big[i] = couponmesh.CouponPush(couponmesh.Coupon{ID: "b", Version: int64(i + 1), Description: strings.Repeat("x", 4000)})
	}
	enqueue(big...)
	var got [][]byte
	frames := 0
	for len(got) < len(big) {
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > BatchBytes {
			t.Fatalf("frame of %d bytes exceeds BatchBytes", len(data))
		}
		frames++
		got = append(got, bytes.Split(data, []byte("\n"))...)
	}
	if frames < 3 || frames >= len(big) {
		t.Fatalf("%d frames for %d messages of 4 KiB, want batches of at most 64 KiB", frames, len(big))
	}
	for i := range big {
		if !bytes.Equal(got[i], big[i]) {
			t.Fatalf("message %d changed or out of order", i)
		}
	}
}

// couponFrame writes the same bytes as okFrame with a couponReply.
func TestCouponFrameIsOKFrame(t *testing.T) {
	exp := time.Date(2027, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, id := range []int64{0, 1, 42, 9007199254740991} {
		for _, c := range []couponmesh.Coupon{
			{},
			{ID: "c1", Merchant: "m", Title: "<b>50% & more</b>", Description: "\u2028 \"quoted\"", Quantity: 3, Claimed: 1, Version: 9, ExpiresAt: exp, Status: couponmesh.StatusActive},
		} {
			js, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			want, err := okFrame(id, couponReply{c})
			if err != nil {
				t.Fatal(err)
			}
			if got := couponFrame(id, js); !bytes.Equal(got, want) {
				t.Fatalf("id %d:\n got %s\nwant %s", id, got, want)
			}
		}
	}
}
