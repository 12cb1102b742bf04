package ws

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// writers runs the session writers of a Handler. A fan-out to 10,000
// sessions with one goroutine each would make 10,000 goroutines runnable at
// once, and every other goroutine of the node (the request that made the
// change, its commit, the next change) would wait behind all of them. Here at
// most size goroutines write at a time, taking sessions with frames waiting
// in turn (one batch per turn, so a busy session cannot hold a writer); the
// rest of the node keeps its share of the CPU.
//
// A write can block on a client that stopped reading. When sessions wait and
// no writer has finished a turn for stall, one more goroutine starts; extra
// goroutines end when nothing waits. So stuck clients delay the others by
// stall at most, never for the length of their writes.
type writers struct {
	size  int
	stall time.Duration

	mu       sync.Mutex
	ready    []*session // FIFO of sessions waiting for a writer
	running  int
	watching bool
	turns    atomic.Uint64
}

func newWriters() *writers {
	return &writers{size: max(4, 2*runtime.GOMAXPROCS(0)), stall: 10 * time.Millisecond}
}

// schedule queues s for a writer turn.
func (w *writers) schedule(s *session) {
	w.mu.Lock()
	if w.running < w.size {
		w.running++
		w.mu.Unlock()
		go w.work(s)
		return
	}
	w.ready = append(w.ready, s)
	watch := !w.watching
	w.watching = true
	w.mu.Unlock()
	if watch {
		go w.watch()
	}
}

// work gives s a turn, then the waiting sessions, until none waits. A write
// to a socket with room does not block, so a writer would keep its thread
// for a whole scheduler time slice (10 ms) at a time: it yields after every
// turn, and the goroutines it woke (a reply, a commit) run first.
func (w *writers) work(s *session) {
	for s != nil {
		if s.writeTurn() {
			w.mu.Lock()
			w.ready = append(w.ready, s)
			w.mu.Unlock()
		}
		w.turns.Add(1)
		if s = w.next(); s != nil {
			runtime.Gosched()
		}
	}
}

func (w *writers) next() *session {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ready) == 0 {
		w.running--
		w.ready = nil // let a burst's backing array go
		return nil
	}
	s := w.ready[0]
	w.ready[0] = nil
	w.ready = w.ready[1:]
	return s
}

// watch adds a writer whenever sessions wait and no turn ended for stall;
// it returns when nothing waits.
func (w *writers) watch() {
	t := time.NewTicker(w.stall)
	defer t.Stop()
	last := w.turns.Load()
	for range t.C {
		now := w.turns.Load()
		w.mu.Lock()
		if len(w.ready) == 0 {
			w.watching = false
			w.mu.Unlock()
			return
		}
		var s *session
		if now == last {
			s = w.ready[0]
			w.ready[0] = nil
			w.ready = w.ready[1:]
			w.running++
		}
		w.mu.Unlock()
		if s != nil {
			go w.work(s)
		}
		last = now
	}
}
