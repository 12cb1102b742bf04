package couponmesh

import (
	"context"
	"errors"
	"time"
)

// Entry is one journal entry of an actor. Its key is "<Entity>#<Seq>", unique
// in the database, which fences concurrent activations of one actor: only one
// of them can append a given seq. Unique, when set, is a second unique key
// (e.g. one claim per user and coupon); when empty the store uses the entry's
// own key.
type Entry struct {
	Entity string    // "coupon/c42", "user/alice"
	Seq    int64     // 1, 2, 3, … per entity
	Type   string    // what happened, e.g. "claimed"
	Unique string    // optional second unique key
	User   string    // the user an entry concerns, if any (for operators' queries)
	At     time.Time // when it was appended
	Data   []byte    // JSON payload, owned by the actor kind
}

// Key is the entry's unique journal key.
func (e Entry) Key() string { return EntryKey(e.Entity, e.Seq) }

// EntryKey formats a journal key.
func EntryKey(entity string, seq int64) string {
	return entity + "#" + itoa(seq)
}

func itoa(n int64) string {
	var b [20]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

// Store errors. Implementations wrap them; test with errors.Is.
var (
	// ErrDuplicate: the entry's key or its Unique key is taken.
	ErrDuplicate = errors.New("duplicate key")
	// ErrNotFound: no such document.
	ErrNotFound = errors.New("not found")
)

// Snapshot is an actor's state at a journal seq: a read optimisation, state =
// snapshot + the entries after Seq. Coupon snapshots double as the browse view.
type Snapshot struct {
	Entity string // "coupon/c42"
	Seq    int64
	Data   []byte // JSON state, owned by the actor kind
	// Coupon is set on coupon snapshots: the fields browse queries select on.
	Coupon *Coupon
}

// Store is the persistence seam the actors see. Every method may be called
// concurrently. Errors other than ErrDuplicate and ErrNotFound mean the
// database could not answer: the outcome of a write is then unknown, and
// callers must not report it as a success (they retry with the same key or
// answer unavailable).
type Store interface {
	// Append writes e durably (write concern from the connection settings).
	// ErrDuplicate when e.Key() or e.Unique exists already.
	Append(ctx context.Context, e Entry) error
	// AppendOrdered writes entries durably in their order (one round trip
	// where the store can) and stops at the first one that fails: a
	// pipelining actor sends consecutive seqs of its entity, and an entry
	// must never be written after one that was not. It returns n, how many
	// entries (a prefix) are known durable, and when n < len(entries) the
	// error of entries[n]: ErrDuplicate (entries[n] was refused, the later
	// ones were not written) or an unavailable error (the outcome of
	// entries[n:] is unknown: some may be written). n is never more than
	// what is durable; it may be less only with an error.
	AppendOrdered(ctx context.Context, entries []Entry) (int, error)
	// Entries returns up to limit entries of entity with Seq > after, in seq
	// order (limit <= 0: all). Seqs are contiguous by construction, so it
	// stops at the first missing seq.
	Entries(ctx context.Context, entity string, after int64, limit int) ([]Entry, error)

	// Snapshot returns the latest snapshot of entity, or ErrNotFound.
	Snapshot(ctx context.Context, entity string) (Snapshot, error)
	// PutSnapshot replaces the snapshot of s.Entity. A snapshot older than
	// the stored one may overwrite it; that only costs replay, never
	// correctness, since state is always snapshot + later entries.
	PutSnapshot(ctx context.Context, s Snapshot) error
	// BrowseCoupons lists coupon snapshots, newest first.
	BrowseCoupons(ctx context.Context, q BrowseQuery) (BrowsePage, error)

	// AddFollower and RemoveFollower maintain the coupon → followers index
	// (idempotent). Followers lists the users who follow coupon.
	AddFollower(ctx context.Context, coupon, user string) error
	RemoveFollower(ctx context.Context, coupon, user string) error
	Followers(ctx context.Context, coupon string) ([]string, error)
	// FollowersOf lists the followers of each of coupons in one read (a
	// coupon nobody follows may be absent from the map).
	FollowersOf(ctx context.Context, coupons []string) (map[string][]string, error)

	// PutReminder stores r (idempotent: a reminder is its Key).
	// DeleteReminders removes them, in one write (idempotent). DueReminders
	// returns up to limit reminders of shard, earliest Due first (limit <=
	// 0: all).
	PutReminder(ctx context.Context, r Reminder) error
	DeleteReminders(ctx context.Context, rs ...Reminder) error
	DueReminders(ctx context.Context, shard, limit int) ([]Reminder, error)

	// Ping checks that the database answers.
	Ping(ctx context.Context) error
}
