package client_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
)

// FuzzServerMessages: whatever one message from the server holds (a push
// of any type, presence with a coupon object instead of an id, a coupon
// push with an id instead of an object, garbage), the client neither
// panics nor loses the connection: the reply that follows it in the same
// frame still answers the request.
func FuzzServerMessages(f *testing.F) {
	for _, seed := range []string{
		`{"push":"presence","coupon":"c42","watching":1234}`,
		`{"push":"presence","coupon":{"id":"c42"},"watching":"many"}`,
		`{"push":"presence","watching":-1}`,
		`{"push":"coupon","coupon":"c42"}`,
		`{"push":"coupon","coupon":{"id":"a","version":3,"watching":7}}`,
		`{"push":"feed","entry":{"seq":1,"type":"claimed","coupon":"a"}}`,
		`{"push":"future","x":[1,2]}`,
		`{"id":"x","ok":1}`,
		`not json`,
	} {
		f.Add(seed)
	}
	var frame atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{client.Subprotocol}})
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			_, data, err := c.Read(context.Background())
			if err != nil {
				return
			}
			id := strings.TrimPrefix(string(data), `{"id":`)
			id = id[:strings.IndexByte(id, ',')]
			out := frame.Load().(string) + "\n" + `{"id":` + id + `,"ok":{}}`
			if err := c.Write(context.Background(), websocket.MessageText, []byte(out)); err != nil {
				return
			}
		}
	}))
	f.Cleanup(srv.Close)
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	f.Fuzz(func(t *testing.T, msg string) {
		if strings.ContainsAny(msg, "\n") {
			msg = strings.ReplaceAll(msg, "\n", " ") // one message: the reply must stay its own
		}
		var reply struct {
			ID *int64 `json:"id"`
		}
		if json.Unmarshal([]byte(msg), &reply) == nil && reply.ID != nil && *reply.ID != 0 {
			t.Skip("a reply: it may answer the ping itself")
		}
		frame.Store(msg)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := client.Dial(ctx, url, client.Options{
			OnCoupon:   func(couponmesh.Coupon) {},
			OnPresence: func(string, int) {},
			OnError:    func(*couponmesh.Error) {},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Ping(ctx); err != nil {
			t.Fatalf("after %q: ping: %v", msg, err)
		}
	})
}
