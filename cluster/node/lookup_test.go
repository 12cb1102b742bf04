package node_test

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/cluster"

	"github.com/couponmesh/couponmesh/cluster/membership"
	"github.com/couponmesh/couponmesh/cluster/node"
)

// TestLookupGivesUpAtTopologyChange: a lookup waiting on an owner that does
// not answer (a member that died) returns at the next topology change, not
// after the lookup timeout, so the caller retries with the new ring at once.
func TestLookupGivesUpAtTopologyChange(t *testing.T) {
	if inOwnProcess(t) {
		return
	}
	log := slog.New(slog.DiscardHandler)
	n, err := node.Start(node.Config{
		RemoteAddr: "127.0.0.1:0", Log: log, LookupTimeout: 5 * time.Second,
		Provider: membership.New(membership.Config{BindAddr: "127.0.0.1:0", Log: log}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop(false) })

	// A member nobody listens for owns kind k.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().(*net.TCPAddr)
	l.Close()
	gone := &cluster.Member{Id: "gone", Host: "127.0.0.1", Port: int32(addr.Port), Kinds: []string{"k"}}
	n.System.EventStream.Publish(&cluster.ClusterTopology{TopologyHash: 1, Members: []*cluster.Member{gone}})
	ci := &cluster.ClusterIdentity{Kind: "k", Identity: "x"}
	if owner := n.Lookup.Owner("k", "x"); owner != gone.Address() {
		t.Fatalf("owner %q, want %q", owner, gone.Address())
	}

	returned := make(chan time.Time, 1)
	go func() {
		n.Lookup.Get(ci)
		returned <- time.Now()
	}()
	time.Sleep(200 * time.Millisecond) // the request is on its way to the silent member
	changed := time.Now()
	n.System.EventStream.Publish(&cluster.ClusterTopology{TopologyHash: 2, Left: []*cluster.Member{gone}})
	select {
	case at := <-returned:
		if d := at.Sub(changed); d > time.Second {
			t.Fatalf("lookup returned %v after the topology change", d)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("lookup still waiting 4 s after the topology change (lookup timeout 5 s)")
	}
}
