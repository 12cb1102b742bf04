package main

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh/cluster/clustertest"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestDevDBProcessKillRestart: the devdb subcommand serves the MongoDB wire
// protocol, survives kill -9 with what it acknowledged, and starts again on
// the same port and directory.
func TestDevDBProcessKillRestart(t *testing.T) {
	p := clustertest.StartDB(t, nil, testAddr(t), t.TempDir())
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI(p.URI()).SetServerSelectionTimeout(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	coll := client.Database("t").Collection("c")
	for i := range 10 {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	p.Kill()
	if c, err := net.DialTimeout("tcp", p.Addr, time.Second); err == nil {
		c.Close()
		t.Fatal("port still open after kill")
	}
	p.Restart(t)
	for i := range 10 {
		var d bson.M
		if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprint(i)}}).Decode(&d); err != nil {
			t.Fatalf("doc %d after restart: %v", i, err)
		}
	}
}
