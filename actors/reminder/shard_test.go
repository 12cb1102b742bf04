package reminder

import (
	"errors"
	"slices"
	"strconv"
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
	if !s.reloadDue(t0.Add(reloadRetry*3/2 + time.Millisecond)) {
		t.Fatal("not tried again after 1.5 × reloadRetry")
	}
	// Failing again and again, the re-reads come less often, down to one
	// each reloadEvery (+20%).
	var last time.Duration
	for range 10 {
		last = s.reloadFailed(t0)
	}
	if last < reloadEvery*4/5 || last > reloadEvery*6/5 {
		t.Fatalf("after 11 failed re-reads the next one in %s, want reloadEvery %s ±20%%", last, reloadEvery)
	}
}

// A failed wake-up is tried again after a jittered, growing backoff, which
// starts longer when the target was unavailable: the wake-ups of a burst
// that failed together (timed out behind a busy database) are not all
// tried again at the same moment.
func TestShardRetriesWithJitteredBackoff(t *testing.T) {
	t0 := time.Now()
	s := &Shard{firing: map[rkey]bool{}, retry: map[rkey]retry{}}
	unavailable := couponmesh.Errorf(couponmesh.CodeUnavailable, "busy")
	at := map[time.Duration]bool{}
	for i := range 50 {
		r := couponmesh.Reminder{Target: "coupon/c" + string(rune('A'+i)), Name: "expire", Due: t0}
		s.inFlight++
		s.done(r, unavailable, t0)
		d := s.retry[keyOf(r)].at.Sub(t0)
		if d < unavailableAfter/2 || d > unavailableAfter*3/2 {
			t.Fatalf("first retry after unavailable in %s, want %s ±50%%", d, unavailableAfter)
		}
		at[d] = true
	}
	if len(at) < 25 {
		t.Fatalf("50 wake-ups failed together are retried at %d distinct moments: no jitter", len(at))
	}
	r := couponmesh.Reminder{Target: "coupon/x", Name: "expire", Due: t0}
	var last time.Duration
	for i := range 10 {
		s.inFlight++
		s.done(r, errors.New("early"), t0)
		d := s.retry[keyOf(r)].at.Sub(t0)
		if i == 0 && (d < retryAfter/2 || d > retryAfter*3/2) {
			t.Fatalf("first retry after an error in %s, want %s ±50%%", d, retryAfter)
		}
		if d > retryMax*3/2 {
			t.Fatalf("retry %d after %s, want at most %s +50%%", i, d, retryMax)
		}
		last = d
	}
	if last < retryMax/2 {
		t.Fatalf("the 10th retry after %s: the backoff does not grow", last)
	}
}

// Woken reminders are deleted after the node's burst of wake-ups (a delete
// is a write per reminder on the embedded database, competing with the
// burst's journal appends), once the node was quiet for deleteQuiet,
// unless many wait or the oldest waited long.
func TestShardDeletesAfterTheBurst(t *testing.T) {
	t0 := time.Now()
	quiet := t0.Add(-deleteQuiet) // the node's last wake-up, long enough ago
	s := &Shard{firing: map[rkey]bool{}, retry: map[rkey]retry{}}
	if s.deleteDue(t0, 0, quiet) {
		t.Fatal("a delete with nothing woken")
	}
	for i := range 10 {
		s.inFlight++
		s.done(couponmesh.Reminder{Target: "coupon/c" + string(rune('A'+i)), Name: "expire", Due: t0}, nil, t0)
	}
	if s.deleteDue(t0.Add(time.Second), 100, quiet) {
		t.Fatal("deleted while 100 wake-ups are in flight on the node")
	}
	if s.deleteDue(t0.Add(time.Second), 0, t0) {
		t.Fatalf("deleted %s after the node's last wake-up: another burst may follow (a dead member's shards)", time.Second)
	}
	if !s.deleteDue(t0.Add(time.Second), 0, quiet) {
		t.Fatal("not deleted once the node's wake-ups are done")
	}
	if !s.deleteDue(t0.Add(deleteAfter), 100, quiet) {
		t.Fatalf("not deleted after %s although the node stays busy", deleteAfter)
	}
	for i := len(s.woken); i < deleteBatch; i++ {
		s.woken = append(s.woken, couponmesh.Reminder{})
	}
	if !s.deleteDue(t0.Add(time.Second), 100, t0) {
		t.Fatalf("%d woken reminders wait: they fill the shard's window", deleteBatch)
	}
	s.deleting = true
	if s.deleteDue(t0.Add(time.Hour), 0, quiet) {
		t.Fatal("two deletes in flight")
	}
}

// due skips the reminders already fired without losing any that is to fire
// again: one whose wake-up failed, one added before them, and those left
// after a delete.
func TestShardDueSkipsTheFiredOnly(t *testing.T) {
	t0 := time.Now()
	s := &Shard{firing: map[rkey]bool{}, retry: map[rkey]retry{}}
	for i := range 5 {
		s.pending = append(s.pending, couponmesh.Reminder{Target: "coupon/c" + string(rune('A'+i)), Name: "expire", Due: t0.Add(time.Duration(i-10) * time.Millisecond)})
	}
	fire := func(now time.Time) []couponmesh.Reminder {
		rs, lanes, _ := s.due(now)
		for i, r := range rs {
			s.started(r, lanes[i])
		}
		return rs
	}
	if got := fire(t0); len(got) != 5 {
		t.Fatalf("fired %d of 5 due", len(got))
	}
	if got := fire(t0); len(got) != 0 || s.head != 5 {
		t.Fatalf("fired %d again (head %d)", len(got), s.head)
	}
	s.done(s.pending[2], errors.New("early"), t0)
	if got := fire(t0.Add(time.Minute)); len(got) != 1 || got[0].Key() != s.pending[2].Key() {
		t.Fatalf("after a failed wake-up fired %v, want the failed one", got)
	}
	early := couponmesh.Reminder{Target: "coupon/early", Name: "expire", Due: t0.Add(-time.Second)}
	s.add(early)
	if got := fire(t0); len(got) != 1 || got[0].Key() != early.Key() {
		t.Fatalf("after adding an earlier reminder fired %v, want it", got)
	}
	// A failed delete fires nothing again (the targets answered): the
	// reminders wait for the next delete, after deleteRetry.
	woken := slices.Clone(s.pending[:2])
	for _, r := range woken {
		s.done(r, nil, t0)
	}
	s.woken, s.deleting = nil, true
	s.deleted(woken, errors.New("down"), t0)
	if got := fire(t0); len(got) != 0 {
		t.Fatalf("after a failed delete fired %v again", got)
	}
	if s.deleteDue(t0.Add(deleteRetry/2), 0, time.Time{}) || !s.deleteDue(t0.Add(deleteRetry), 0, time.Time{}) || len(s.woken) != 2 {
		t.Fatalf("after a failed delete: due at once %v, after deleteRetry %v, waiting %d; want false, true, 2",
			s.deleteDue(t0.Add(deleteRetry/2), 0, time.Time{}), s.deleteDue(t0.Add(deleteRetry), 0, time.Time{}), len(s.woken))
	}
	s.deleted(woken, nil, t0)
	if len(s.pending) != 4 || len(s.firing) != 4 { // 6 - 2 deleted; the 4 others still in flight
		t.Fatalf("after the delete: %d pending, %d firing, want 4 and 4", len(s.pending), len(s.firing))
	}
}

// After churn a shard re-reads the store soon, not at once (the store is
// nil here: a read would panic): every shard of every node re-reading the
// whole collection at a node's death timed the database out.
func TestShardRereadsSoonAfterChurn(t *testing.T) {
	s := &Shard{loadedAt: time.Now()}
	if _, err := s.Validate(t.Context()); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if s.reloadDue(now) {
		t.Fatal("a re-read at once after churn")
	}
	if !s.reloadDue(now.Add(churnReload)) {
		t.Fatalf("no re-read within %s of churn", churnReload)
	}
}

// A periodic re-read waits while a burst is on (wake-ups in flight on the
// node, or the shard's next reminder due within burstAhead), at most
// reloadWaitMax; one that fires reminders or that churn asked for does
// not wait.
func TestShardRereadWaitsForTheBurst(t *testing.T) {
	t0 := time.Now()
	at := t0.Add(reloadEvery) // a periodic re-read is due
	s := &Shard{loadedAt: t0, pending: []couponmesh.Reminder{{Target: "coupon/c1", Name: "expire", Due: at.Add(time.Hour)}}}
	if !s.reloadDue(at) || s.reloadWaits(at, 0) {
		t.Fatal("a re-read due with nothing due soon and nothing in flight waits")
	}
	if !s.reloadWaits(at, 3) {
		t.Fatal("a re-read does not wait while wake-ups are in flight on the node")
	}
	s.pending[0].Due = at.Add(burstAhead - time.Second)
	if !s.reloadWaits(at, 0) {
		t.Fatal("a re-read does not wait for a reminder due within burstAhead")
	}
	if s.reloadWaits(t0.Add(reloadEvery+reloadWaitMax), 3) {
		t.Fatal("a re-read waits more than reloadWaitMax")
	}
	// One that churn asked for waits too (at a node's death those of every
	// shard that stayed scanned the collection in the middle of the burst),
	// at most reloadWaitMax past its time.
	s.Validate(t.Context())
	now := time.Now()
	if !s.reloadDue(now.Add(churnReload)) || !s.reloadWaits(now.Add(churnReload), 3) {
		t.Fatal("a re-read churn asked for does not wait for the burst")
	}
	if s.reloadWaits(now.Add(churnReload+reloadWaitMax), 3) {
		t.Fatal("a re-read churn asked for waits more than reloadWaitMax")
	}
	s.pending, s.more = nil, true
	if s.reloadWaits(at, 3) {
		t.Fatal("a shard whose window is used up waits to read the rest")
	}
}

// A lane whose wake-ups do not come back (its member died and the cluster
// has not noticed yet) holds up only its own reminders: those of the other
// lanes keep firing, at most maxFiring in flight each.
func TestShardLaneOfADeadMemberHoldsUpOnlyItsOwn(t *testing.T) {
	t0 := time.Now()
	lane := func(r couponmesh.Reminder) string { return r.Target[len(r.Target)-1:] } // "coupon/…a" or "coupon/…b"
	s := &Shard{firing: map[rkey]bool{}, retry: map[rkey]retry{}, lane: lane}
	for i := range 300 {
		l := "a"
		if i%3 == 0 {
			l = "b" // the dead member: every third, as for one of three nodes
		}
		s.pending = append(s.pending, couponmesh.Reminder{Target: "coupon/c" + strconv.Itoa(i) + l, Name: "expire", Due: t0.Add(time.Duration(i) * time.Millisecond)})
	}
	now := t0.Add(time.Second)
	fired := map[string]int{}
	var inFlightA []couponmesh.Reminder
	for round := 0; round < 10; round++ {
		rs, lanes, _ := s.due(now)
		for i, r := range rs {
			s.started(r, lanes[i])
			fired[lanes[i]]++
			if lanes[i] == "a" {
				inFlightA = append(inFlightA, r)
			}
		}
		if s.lanes["a"] > maxFiring || s.lanes["b"] > maxFiring {
			t.Fatalf("round %d: %d and %d in flight per lane, at most %d each", round, s.lanes["a"], s.lanes["b"], maxFiring)
		}
		// The live member answers everything in flight; the dead one nothing.
		for _, r := range inFlightA {
			s.done(r, nil, now)
		}
		inFlightA = nil
	}
	if fired["a"] != 200 {
		t.Fatalf("fired %d of the 200 reminders of the live member, want all: held up by the dead one's %d", fired["a"], fired["b"])
	}
	if fired["b"] != maxFiring {
		t.Fatalf("fired %d of the dead member's reminders, want %d (its lane full)", fired["b"], maxFiring)
	}
}
