package reminder

import (
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
)

// A shard re-reads the store only every reloadEvery (each read scans the
// reminders collection on the embedded database), or when its window in
// memory is used up and the store holds more; not at every keep-alive
// tick.
func TestShardReloadsRarely(t *testing.T) {
	t0 := time.Now()
	s := &Shard{loadedAt: t0, pending: []couponmesh.Reminder{{Target: "coupon/c1", Name: "expire", Due: t0.Add(time.Hour)}}}
	for tick := time.Second; tick < reloadEvery; tick += time.Second {
		if s.reloadDue(t0.Add(tick)) {
			t.Fatalf("a tick %s after the load re-reads the store", tick)
		}
	}
	if reloadEvery < 30*time.Second {
		t.Fatalf("reloadEvery %s: with 10,000 reminders a read of the 16 shards took 5.5 s of the embedded database", reloadEvery)
	}
	if !s.reloadDue(t0.Add(reloadEvery)) {
		t.Fatal("no re-read after reloadEvery")
	}
	s.pending, s.more = nil, true
	if !s.reloadDue(t0.Add(time.Second)) {
		t.Fatal("a shard whose window is used up does not read the rest")
	}
}
