package client_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
	"github.com/couponmesh/couponmesh/protocol/protocoltest"
)

// FuzzServerMessages: whatever one message from the server holds (a push
// of any type, presence with a coupon object instead of an id, a coupon
// push with an id instead of an object, garbage), the client neither
// panics nor loses the connection: the reply that follows it in the same
// frame still answers the request. The golden pushes are seeds.
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
	for _, kind := range protocoltest.Names(f, protocoltest.Pushes) {
		f.Add(string(protocoltest.Frame(f, protocoltest.Pushes, kind)))
	}
	var frame atomic.Value
	url := scripted(f, func(string) string { return frame.Load().(string) + "\n" + `{"id":ID,"ok":{}}` })
	f.Fuzz(func(t *testing.T, msg string) {
		if strings.ContainsAny(msg, "\n") {
			msg = strings.ReplaceAll(msg, "\n", " ") // one message: the reply must stay its own
		}
		var reply struct {
			ID *int64 `json:"id"`
		}
		if strings.Contains(msg, "ID") || json.Unmarshal([]byte(msg), &reply) == nil && reply.ID != nil && *reply.ID != 0 {
			t.Skip("a reply (or the script's ID placeholder): it may answer the ping itself")
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
