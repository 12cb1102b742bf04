package ws

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/protocol"
	"github.com/couponmesh/couponmesh/transport/auth"
	"github.com/couponmesh/couponmesh/transport/transporttest"
)

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
		protocol.CouponPush(couponmesh.Coupon{ID: "a", Version: 1}),
		protocol.FeedPush(couponmesh.FeedEntry{Seq: 1, Type: "claimed", Coupon: "a"}),
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
		big[i] = protocol.CouponPush(couponmesh.Coupon{ID: "b", Version: int64(i + 1), Description: strings.Repeat("x", 4000)})
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
			want, err := okFrame(id, protocol.CouponReply{Coupon: c})
			if err != nil {
				t.Fatal(err)
			}
			if got := couponFrame(id, js); !bytes.Equal(got, want) {
				t.Fatalf("id %d:\n got %s\nwant %s", id, got, want)
			}
		}
	}
}
