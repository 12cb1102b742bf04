package actors

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// Runs go to idle workers, and when every worker is busy (here: blocked)
// a run starts on a goroutine of its own at once: Schedule never waits, so
// a run that sends to another mailbox cannot deadlock on a full pool.
func TestPoolDispatcherNeverWaits(t *testing.T) {
	d := Dispatcher()
	if d.Throughput() != 300 {
		t.Fatalf("throughput %d", d.Throughput())
	}
	n := 8*runtime.GOMAXPROCS(0) + 20
	release := make(chan struct{})
	var started, done sync.WaitGroup
	started.Add(n)
	done.Add(n)
	for range n {
		d.Schedule(func() {
			started.Done()
			<-release
			done.Done()
		})
	}
	ok := make(chan struct{})
	go func() { started.Wait(); close(ok) }()
	select {
	case <-ok:
	case <-time.After(10 * time.Second):
		t.Fatalf("not all %d runs started while the workers were blocked", n)
	}
	close(release)
	done.Wait()
	// The workers are idle again and take the next runs.
	ran := make(chan struct{})
	d.Schedule(func() { close(ran) })
	<-ran
}
