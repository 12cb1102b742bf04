package actors

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
)

// snapState is a State whose snapshots are counted.
type snapState struct{ writes atomic.Int32 }

func (*snapState) Seq() int64                            { return 1 }
func (*snapState) SnapshotDue() bool                     { return true }
func (s *snapState) WriteSnapshot(context.Context) error { s.writes.Add(1); return nil }
func (*snapState) Validate(context.Context) (int, error) { return 0, nil }
func (s *snapState) waitWrites(t *testing.T, n int32, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for s.writes.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d snapshots written after %s, want %d", s.writes.Load(), d, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type scheduleSnapshot struct{}

// TestSnapshotWaitsForBusyPipeline: a snapshot scheduled while the grain's
// journal is busy is written only once it is idle, or once it has waited
// snapshotMaxDefer SnapshotDelays; an idle grain's is written after one
// SnapshotDelay.
func TestSnapshotWaitsForBusyPipeline(t *testing.T) {
	const delay = 100 * time.Millisecond
	sys := actor.NewActorSystem()
	state := &snapState{}
	var busy atomic.Bool
	var busyChecks atomic.Int32
	cfg := &GrainConfig{SnapshotDelay: delay}
	cfg.Fill()
	a := NewActivation(cfg, "test", func(context.Context, string) (*snapState, error) { return state, nil })
	a.Busy = func() bool { busyChecks.Add(1); return busy.Load() }
	pid := sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		a.Receive(ctx)
		if _, ok := ctx.Message().(scheduleSnapshot); ok {
			a.ScheduleSnapshot(ctx)
		}
	}))
	t.Cleanup(func() { _ = sys.Root.StopFuture(pid).Wait() })
	sys.Root.Send(pid, &cluster.ClusterInit{Identity: &cluster.ClusterIdentity{Identity: "s1", Kind: "test"}})

	// Busy: the snapshot waits while the grain looks again several times.
	busy.Store(true)
	sys.Root.Send(pid, scheduleSnapshot{})
	deadline := time.Now().Add(5 * time.Second)
	for busyChecks.Load() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("busy checked %d times in 5 s", busyChecks.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := state.writes.Load(); n != 0 {
		t.Fatalf("%d snapshots written while the pipeline was busy", n)
	}
	// Idle again: written at the next look.
	busy.Store(false)
	state.waitWrites(t, 1, 5*time.Second)

	// Busy for good: written anyway after snapshotMaxDefer delays.
	busy.Store(true)
	start := time.Now()
	sys.Root.Send(pid, scheduleSnapshot{})
	state.waitWrites(t, 2, 10*time.Second)
	if waited := time.Since(start); waited < snapshotMaxDefer*delay {
		t.Fatalf("a busy grain's snapshot was written after %s, before %d delays of %s", waited, snapshotMaxDefer, delay)
	}
}
