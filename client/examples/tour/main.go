// Command tour walks through couponmesh with the Go SDK against a running
// node (`make run`): a merchant creates a coupon, a shopper follows and
// claims it, and the live pushes and the feed are printed.
//
//	go run ./client/examples/tour [-base http://localhost:8080]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/client"
)

func main() {
	base := flag.String("base", "http://localhost:8080", "node URL")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	merchant, err := client.DevLogin(ctx, *base, "acme", couponmesh.RoleMerchant)
	check(err)
	api := client.NewAPI(*base, merchant)
	title, qty := "Half off coffee", 3
	cp, err := api.CreateCoupon(ctx, couponmesh.CouponSpec{Title: &title, Quantity: &qty})
	check(err)
	fmt.Printf("created %s: %q, %d left\n", cp.ID, cp.Title, cp.Remaining)

	shopper, err := client.DevLogin(ctx, *base, "alice", couponmesh.RoleShopper)
	check(err)
	ws := "ws" + strings.TrimPrefix(*base, "http") + "/ws"
	c, err := client.Dial(ctx, ws, client.Options{
		// Reconnect after a lost connection or a node drain, re-auth with
		// this token and resync subscriptions and feed.
		Reconnect: true,
		Token:     func(context.Context) (string, error) { return shopper, nil },
		OnState:   func(s client.State) { fmt.Println("connection:", s) },
		OnCoupon: func(c couponmesh.Coupon) {
			fmt.Printf("push: %s v%d claimed %d/%d (%s)\n", c.ID, c.Version, c.Claimed, c.Quantity, c.Status)
		},
		OnFeed: func(e couponmesh.FeedEntry) { fmt.Printf("feed push: #%d %s %s\n", e.Seq, e.Type, e.Coupon) },
	})
	check(err)
	defer c.Close()            // Dial has authenticated with Options.Token
	_, err = c.Feed(ctx, 0, 0) // start the live feed
	check(err)
	_, err = c.Follow(ctx, cp.ID)
	check(err)
	claim, err := c.Claim(ctx, cp.ID, "tour-"+cp.ID)
	check(err)
	fmt.Printf("claimed #%d of %s, code %s\n", claim.N, claim.Coupon, claim.Code)
	more := "Half off coffee, all day"
	_, err = api.UpdateCoupon(ctx, cp.ID, couponmesh.CouponSpec{Title: &more})
	check(err)
	time.Sleep(500 * time.Millisecond) // let the pushes arrive before printing the feed
	entries, err := c.Feed(ctx, 0, 0)
	check(err)
	for _, e := range entries {
		fmt.Printf("feed: #%d %s %s\n", e.Seq, e.Type, e.Coupon)
	}
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
