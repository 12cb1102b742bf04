package actors

import (
	"runtime"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
)

// protoactor's default dispatcher starts a goroutine for every run of a
// mailbox (each time an idle actor gets a message). A fresh goroutine
// starts with a small stack, and a grain's request (JSON, the journal, the
// driver) grows it, which copies it, every time: runtime.copystack was 9%
// of the nodes' CPU in `bench cluster-claims` (docs/BENCHMARKS.md). The
// pool dispatcher hands a run to a goroutine that is waiting for one, whose
// stack has grown already; when none waits, it starts one as protoactor
// does, so a run never waits for a worker.

// poolDispatcher is an actor.Dispatcher over long-lived worker goroutines.
type poolDispatcher struct {
	work       chan func()
	throughput int
}

// Schedule runs fn on an idle worker, or on a new goroutine when none is
// idle.
func (d *poolDispatcher) Schedule(fn func()) {
	select {
	case d.work <- fn:
	default:
		go fn()
	}
}

// Throughput is how many messages a run handles before it yields.
func (d *poolDispatcher) Throughput() int { return d.throughput }

func (d *poolDispatcher) worker() {
	for fn := range d.work {
		fn()
	}
}

var (
	dispatcherOnce sync.Once
	dispatcher     *poolDispatcher
)

// Dispatcher returns the process's pool dispatcher for grain and hub
// mailboxes (protoactor's throughput, 300; 8 workers per CPU, started at
// the first call, kept for the life of the process).
func Dispatcher() actor.Dispatcher {
	dispatcherOnce.Do(func() {
		dispatcher = &poolDispatcher{work: make(chan func()), throughput: 300}
		for range 8 * runtime.GOMAXPROCS(0) {
			go dispatcher.worker()
		}
	})
	return dispatcher
}
