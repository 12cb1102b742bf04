package actors

import (
	"fmt"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
)

// TestPidCacheBounded: the PIDs Call keeps stay at MaxCachedPIDs; the
// least recently called go first, a grain called again stays.
func TestPidCacheBounded(t *testing.T) {
	c := &cluster.Cluster{PidCache: cluster.NewPidCache()}
	use := func(i int) {
		id := fmt.Sprintf("g%d", i)
		if pid, _ := c.PidCache.Get(id, "coupon"); pid == nil {
			c.PidCache.Set(id, "coupon", actor.NewPID("n1:1", id))
		}
		cachedPID(c, "coupon", id)
	}
	for i := range MaxCachedPIDs {
		use(i)
	}
	use(0) // called again: the most recent now
	for i := MaxCachedPIDs; i < MaxCachedPIDs+10; i++ {
		use(i)
	}
	cached := func(i int) bool { pid, _ := c.PidCache.Get(fmt.Sprintf("g%d", i), "coupon"); return pid != nil }
	if !cached(0) {
		t.Error("g0, called again, was forgotten")
	}
	for i := 1; i <= 10; i++ {
		if cached(i) {
			t.Errorf("g%d, the least recently called, is still cached", i)
		}
	}
	if !cached(11) || !cached(MaxCachedPIDs+9) {
		t.Error("recent grains were forgotten")
	}
	n := 0
	for i := range MaxCachedPIDs + 10 {
		if cached(i) {
			n++
		}
	}
	if n != MaxCachedPIDs {
		t.Errorf("%d PIDs cached, want %d", n, MaxCachedPIDs)
	}
}
