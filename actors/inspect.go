package actors

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/couponmesh/couponmesh"
)

// Inspector is what a grain's state machine shows of itself: a JSON-ready
// value of its public state (no secrets, bounded in size).
type Inspector interface {
	Inspect() any
}

// RecentSize is the number of handled requests an activation remembers.
const RecentSize = 32

// recentRing remembers the last RecentSize requests in 16 bytes each; it
// grows to its full size only for grains that handle that many.
type recentRing struct {
	entries []ringEntry
	next    int    // index of the next write once full
	total   uint64 // requests recorded
	// the request being handled
	start   time.Time
	method  uint8
	outcome uint8
	pending bool
}

type ringEntry struct {
	at      int64 // unix nanoseconds
	micros  int32
	method  uint8 // index in methodNames
	outcome uint8 // index in outcomeNames; 0: not answered
}

func (r *recentRing) begin(method string) {
	r.start, r.method, r.outcome, r.pending = time.Now(), methodNames.index(method), 0, true
}

func (r *recentRing) answered(code string) {
	if r.pending {
		r.outcome = outcomeNames.index(code)
	}
}

func (r *recentRing) end() {
	if !r.pending {
		return
	}
	r.pending = false
	d := time.Since(r.start).Microseconds()
	e := ringEntry{at: r.start.UnixNano(), micros: int32(min(d, 1<<31-1)), method: r.method, outcome: r.outcome}
	if len(r.entries) < RecentSize {
		r.entries = append(r.entries, e)
	} else {
		r.entries[r.next] = e
		r.next = (r.next + 1) % RecentSize
	}
	r.total++
}

// records returns the remembered requests, newest first.
func (r *recentRing) records() []couponmesh.HandledRecord {
	out := make([]couponmesh.HandledRecord, 0, len(r.entries))
	n := len(r.entries)
	for i := range n {
		// newest is just before next (or the last appended while growing)
		j := (r.next - 1 - i + 2*n) % n
		if n < RecentSize {
			j = n - 1 - i
		}
		e := r.entries[j]
		rec := couponmesh.HandledRecord{At: time.Unix(0, e.at), Method: methodNames.name(e.method), Micros: int64(e.micros), Outcome: "-"}
		if e.outcome != 0 {
			rec.Outcome, rec.Answered = outcomeNames.name(e.outcome), true
		}
		out = append(out, rec)
	}
	return out
}

// nameTable interns the few method names and outcomes into one byte, so
// that a ring entry holds no pointer. At most 255 names; later ones share
// the index of "other". Lookups of known names take no lock.
type nameTable struct {
	byName sync.Map // string → uint8
	mu     sync.Mutex
	names  []string
}

func newNameTable(first ...string) *nameTable {
	t := &nameTable{}
	for _, n := range first {
		t.byName.Store(n, uint8(len(t.names)))
		t.names = append(t.names, n)
	}
	return t
}

func (t *nameTable) index(name string) uint8 {
	if i, ok := t.byName.Load(name); ok {
		return i.(uint8)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if i, ok := t.byName.Load(name); ok {
		return i.(uint8)
	}
	if len(t.names) >= 255 || len(name) > 64 {
		i, _ := t.byName.Load("other")
		return i.(uint8)
	}
	i := uint8(len(t.names))
	name = string([]byte(name)) // do not keep the request's buffer
	t.names = append(t.names, name)
	t.byName.Store(name, i)
	return i
}

func (t *nameTable) name(i uint8) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if int(i) < len(t.names) {
		return t.names[i]
	}
	return "other"
}

var (
	methodNames  = newNameTable("other")
	outcomeNames = newNameTable("-", "ok", "other")
)

// outcomeRecorder is implemented by every grain embedding *Activation:
// Respond tells it what the request being handled was answered; a request
// answered in a later message (a pipelined write) is found again by the
// number it had in the ring (current).
type outcomeRecorder interface {
	recordOutcome(code string)
	current() uint64
	recordLate(id uint64, code string)
}

func (a *Activation[M]) recordOutcome(code string) { a.recent.answered(code) }
func (a *Activation[M]) current() uint64           { return a.recent.total }
func (a *Activation[M]) recordLate(id uint64, code string) {
	a.recent.answeredLate(id, code)
}

// answeredLate records the outcome of request id (its number in the ring)
// if the ring still holds it.
func (r *recentRing) answeredLate(id uint64, code string) {
	if id >= r.total || r.total-id > uint64(len(r.entries)) {
		return
	}
	if e := &r.entries[id%RecentSize]; e.outcome == 0 {
		e.outcome = outcomeNames.index(code)
	}
}

func outcomeCode(err error) string {
	if err == nil {
		return "ok"
	}
	return string(couponmesh.ErrorCode(err))
}

func recordOutcome(ctx actor.Context, err error) {
	if r, ok := ctx.Actor().(outcomeRecorder); ok {
		r.recordOutcome(outcomeCode(err))
	}
}

// inspect builds the answer to ActorInspect.
func (a *Activation[M]) inspect() couponmesh.Inspection {
	in := couponmesh.Inspection{
		Identity:    a.Kind + "/" + a.ID,
		ActivatedAt: a.activatedAt,
		Loaded:      a.loaded,
		Hubs:        a.Hubs.Len(),
		Watchers:    a.Hubs.Watchers(),
		Handled:     a.recent.total,
		Recent:      a.recent.records(),
		Validated:   a.validated,
		Stale:       a.loaded && a.Cfg.Churn.Stale(a.validated),
	}
	if a.loaded {
		in.Seq = a.M.Seq()
		if i, ok := any(a.M).(Inspector); ok {
			if b, err := json.Marshal(i.Inspect()); err == nil {
				in.State = b
			}
		}
	}
	return in
}
