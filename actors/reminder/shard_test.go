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

// A failed re-read is not tried again at every tick: on a busy database
// the re-reads of 16 shards each second, each timing out, kept it busy.
func TestShardBacksOffAFailedReload(t *testing.T) {
	t0 := time.Now()
	s := &Shard{loadedAt: t0.Add(-reloadEvery)}
	if !s.reloadDue(t0) {
		t.Fatal("no re-read due")
	}
	s.reloadFailed(t0)
	for tick := time.Second; tick < reloadRetry; tick += time.Second {
		if s.reloadDue(t0.Add(tick)) {
			t.Fatalf("tried again %s after a failed re-read", tick)
		}
	}
	if !s.reloadDue(t0.Add(reloadRetry)) {
		t.Fatal("not tried again after reloadRetry")
	}
}
