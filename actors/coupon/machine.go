package coupon

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors"
)

// Journal entry types of a coupon.
const (
	EntryCreated   = "created"
	EntryUpdated   = "updated"
	EntryWithdrawn = "withdrawn"
	EntryClaimed   = "claimed"
	EntryStarted   = "started" // a scheduled coupon reached its startsAt (transitionData)
	EntryExpired   = "expired" // the coupon reached its expiresAt (transitionData)
)

// Reminder names of a coupon: its start and its expiry.
const (
	RemindStart  = "start"
	RemindExpire = "expire"
)

// transitionData is the due time a started or expired entry records: a
// wake-up for a due time already recorded does nothing.
type transitionData struct {
	Due time.Time `json:"due"`
}

// Entity returns the journal entity of coupon id.
func Entity(id string) string { return "coupon/" + id }

// ClaimKey is the unique key of user's claim of coupon: one claim per user.
func ClaimKey(coupon, user string) string { return "claim/" + coupon + "/" + user }

type claimData struct {
	User string `json:"user"`
	RID  string `json:"rid"`
	Code string `json:"code"`
	N    int    `json:"n"`
}

type couponData struct {
	Coupon couponmesh.Coupon `json:"coupon"`
	RID    string            `json:"rid,omitempty"`
}

// snapshotData holds every claim, so that an activation answers
// already_claimed and idempotent retries from memory: FerretDB answers only
// exact _id reads without scanning a whole collection.
type snapshotData struct {
	Coupon    couponmesh.Coupon `json:"coupon"`
	Withdrawn bool              `json:"withdrawn,omitempty"`
	CreateRID string            `json:"createRid,omitempty"`
	Claims    []claimRecord     `json:"claims,omitempty"`
	Started   time.Time         `json:"started,omitzero"` // due of the last started entry
	Expired   time.Time         `json:"expired,omitzero"` // due of the last expired entry
}

type claimRecord struct {
	Claim couponmesh.Claim `json:"claim"`
	RID   string           `json:"rid"`
}

// Machine is the state and rules of one coupon activation, apart from the
// actor plumbing so that tests can run two activations over one journal. It
// is not safe for concurrent use.
type Machine struct {
	id        string
	store     couponmesh.Store
	now       func() time.Time
	journal   actors.Journal
	c         couponmesh.Coupon
	exists    bool
	createRID string
	claims    map[string]claimRecord // user → claim, every claim
	snapSeq   int64                  // seq of the last snapshot written
	started   time.Time              // due of the last started entry
	expired   time.Time              // due of the last expired entry
}

// Load restores coupon id from its snapshot and journal.
func Load(ctx context.Context, store couponmesh.Store, id string, now func() time.Time) (*Machine, error) {
	if now == nil {
		now = time.Now
	}
	m := &Machine{id: id, store: store, now: now, claims: make(map[string]claimRecord)}
	m.journal = actors.Journal{Store: store, Entity: Entity(id), Apply: m.apply}
	err := m.journal.Load(ctx, func(s couponmesh.Snapshot) error {
		var d snapshotData
		if err := json.Unmarshal(s.Data, &d); err != nil {
			return err
		}
		m.c, m.exists, m.createRID = d.Coupon, true, d.CreateRID
		m.c.Withdrawn = d.Withdrawn
		m.started, m.expired = d.Started, d.Expired
		for _, r := range d.Claims {
			m.claims[r.Claim.User] = r
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	m.snapSeq = m.journal.Seq
	return m, nil
}

func (m *Machine) apply(e couponmesh.Entry) error {
	switch e.Type {
	case EntryCreated, EntryUpdated:
		var d couponData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return err
		}
		claimed, withdrawn := m.c.Claimed, m.c.Withdrawn
		m.c = d.Coupon
		m.c.Claimed, m.c.Withdrawn = claimed, withdrawn
		if e.Type == EntryCreated {
			m.exists, m.createRID = true, d.RID
			m.c.CreatedAt = e.At
		}
	case EntryWithdrawn:
		m.c.Withdrawn = true
	case EntryStarted, EntryExpired:
		var d transitionData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return err
		}
		if e.Type == EntryStarted {
			m.started = d.Due
		} else {
			m.expired = d.Due
		}
	case EntryClaimed:
		var d claimData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return err
		}
		m.c.Claimed++
		m.claims[d.User] = claimRecord{Claim: couponmesh.Claim{Coupon: m.id, User: d.User, N: m.c.Claimed, Code: d.Code, At: e.At}, RID: d.RID}
	default:
		return fmt.Errorf("unknown entry type %q", e.Type)
	}
	m.c.ID = m.id
	m.c.Version = e.Seq
	m.c.UpdatedAt = e.At
	return nil
}

// Exists reports whether the coupon was created.
func (m *Machine) Exists() bool { return m.exists }

// Coupon returns the current state, derived fields computed now.
func (m *Machine) Coupon() couponmesh.Coupon {
	c := m.c
	c.Refresh(m.now())
	return c
}

// Seq returns the journal seq applied.
func (m *Machine) Seq() int64 { return m.journal.Seq }

// Validate implements actors.State: it applies the entries another
// activation appended (Journal.Validate).
func (m *Machine) Validate(ctx context.Context) (int, error) { return m.journal.Validate(ctx) }

// Get returns the coupon or not_found.
func (m *Machine) Get() (couponmesh.Coupon, error) {
	if !m.exists {
		return couponmesh.Coupon{}, m.notFound()
	}
	return m.Coupon(), nil
}

func (m *Machine) notFound() error {
	return couponmesh.Errorf(couponmesh.CodeNotFound, "coupon %s not found", m.id)
}

// Create makes the coupon exist. A retry with the same rid returns the
// coupon; any other create of an existing id is refused.
func (m *Machine) Create(ctx context.Context, p couponmesh.Principal, spec couponmesh.CouponSpec, rid string) (couponmesh.Coupon, error) {
	if !p.CanCreateCoupons() {
		return couponmesh.Coupon{}, couponmesh.Errorf(couponmesh.CodeForbidden, "only merchants create coupons")
	}
	if err := spec.Validate(true, m.now()); err != nil {
		return couponmesh.Coupon{}, err
	}
	_, err := m.journal.Commit(ctx, func(int64) (couponmesh.Entry, error) {
		if m.exists {
			if rid != "" && rid == m.createRID {
				return couponmesh.Entry{}, errDone
			}
			return couponmesh.Entry{}, couponmesh.Errorf(couponmesh.CodeBadRequest, "coupon id %s is taken", m.id)
		}
		c := couponmesh.Coupon{ID: m.id, Merchant: p.User}
		_ = spec.Apply(&c)
		return entry(EntryCreated, "", "", couponData{Coupon: c, RID: rid}), nil
	})
	if err != nil && !errors.Is(err, errDone) {
		return couponmesh.Coupon{}, err
	}
	return m.Coupon(), nil
}

// errDone stops a commit whose effect is already in the journal.
var errDone = errors.New("already done")

// Update changes the fields spec sets.
func (m *Machine) Update(ctx context.Context, p couponmesh.Principal, spec couponmesh.CouponSpec) (couponmesh.Coupon, error) {
	if err := spec.Validate(false, m.now()); err != nil {
		return couponmesh.Coupon{}, err
	}
	spec.ID = ""
	_, err := m.journal.Commit(ctx, func(int64) (couponmesh.Entry, error) {
		if err := m.editable(p); err != nil {
			return couponmesh.Entry{}, err
		}
		c := m.c
		if err := spec.Apply(&c); err != nil {
			return couponmesh.Entry{}, err
		}
		return entry(EntryUpdated, "", "", couponData{Coupon: c}), nil
	})
	if err != nil {
		return couponmesh.Coupon{}, err
	}
	return m.Coupon(), nil
}

// Withdraw ends the coupon; withdrawing twice is a no-op.
func (m *Machine) Withdraw(ctx context.Context, p couponmesh.Principal) (couponmesh.Coupon, error) {
	_, err := m.journal.Commit(ctx, func(int64) (couponmesh.Entry, error) {
		if err := m.editable(p); err != nil {
			return couponmesh.Entry{}, err
		}
		if m.c.Withdrawn {
			return couponmesh.Entry{}, errDone
		}
		return entry(EntryWithdrawn, "", "", struct{}{}), nil
	})
	if err != nil && !errors.Is(err, errDone) {
		return couponmesh.Coupon{}, err
	}
	return m.Coupon(), nil
}

func (m *Machine) editable(p couponmesh.Principal) error {
	if !m.exists {
		return m.notFound()
	}
	if !p.CanEdit(m.c) {
		return couponmesh.Errorf(couponmesh.CodeForbidden, "coupon %s belongs to another merchant", m.id)
	}
	if m.c.Withdrawn {
		return couponmesh.Errorf(couponmesh.CodeBadRequest, "coupon %s was withdrawn", m.id)
	}
	return nil
}

// Claim claims one unit for user. The same rid gets the first successful
// answer again, another rid of the same user gets already_claimed.
func (m *Machine) Claim(ctx context.Context, user, rid string) (couponmesh.Claim, error) {
	if !m.exists {
		return couponmesh.Claim{}, m.notFound()
	}
	var claim couponmesh.Claim
	e, err := m.journal.Commit(ctx, func(int64) (couponmesh.Entry, error) {
		if r, ok := m.claims[user]; ok {
			return couponmesh.Entry{}, answerExisting(r, rid)
		}
		if err := m.c.CheckClaim(m.now()); err != nil {
			return couponmesh.Entry{}, err
		}
		claim = couponmesh.Claim{Coupon: m.id, User: user, N: m.c.Claimed + 1, Code: newCode()}
		e := entry(EntryClaimed, ClaimKey(m.id, user), user, claimData{User: user, RID: rid, Code: claim.Code, N: claim.N})
		return e, nil
	})
	var existing *existingClaim
	switch {
	case errors.As(err, &existing):
		return existing.claim, existing.err
	case errors.Is(err, actors.ErrFenced):
		// Up to date, yet the user's claim key is taken: another activation
		// is making that claim right now and its seq is not visible yet.
		return couponmesh.Claim{}, fmt.Errorf("claim %s/%s is being made elsewhere: %w", m.id, user, couponmesh.ErrUnavailable)
	case err != nil:
		return couponmesh.Claim{}, err
	}
	claim.At = e.At
	return claim, nil
}

type existingClaim struct {
	claim couponmesh.Claim
	err   error
}

func (e *existingClaim) Error() string { return "existing claim" }

func answerExisting(r claimRecord, rid string) error {
	if r.RID == rid {
		return &existingClaim{claim: r.Claim}
	}
	return &existingClaim{err: couponmesh.Errorf(couponmesh.CodeAlreadyClaimed, "user %s already claimed coupon %s", r.Claim.User, r.Claim.Coupon)}
}

// Reminders returns the reminders that spec's times need on coupon id: its
// start and its expiry, when spec sets them. The grain sets them before it
// commits spec (actors.SetReminders).
func Reminders(id string, spec couponmesh.CouponSpec) []couponmesh.Reminder {
	var rs []couponmesh.Reminder
	if spec.StartsAt != nil && !spec.StartsAt.IsZero() {
		rs = append(rs, couponmesh.Reminder{Target: Entity(id), Name: RemindStart, Due: couponmesh.ReminderTime(*spec.StartsAt)})
	}
	if spec.ExpiresAt != nil && !spec.ExpiresAt.IsZero() {
		rs = append(rs, couponmesh.Reminder{Target: Entity(id), Name: RemindExpire, Due: couponmesh.ReminderTime(*spec.ExpiresAt)})
	}
	return rs
}

// sameMilli reports whether a and b are the same time to the millisecond: a
// reminder read back from the store has its due time to the millisecond,
// and a coupon stored before its times were kept that way may have more.
func sameMilli(a, b time.Time) bool {
	return a.IsZero() == b.IsZero() && a.UnixMilli() == b.UnixMilli()
}

// ErrEarly is returned by Wake for a reminder that is not due yet by this
// node's clock: the shard tries again.
var ErrEarly = errors.New("reminder not due yet")

// Wake handles a due reminder: at the coupon's startsAt it appends a
// started entry, at its expiresAt an expired entry, each once per due time.
// A reminder for a time the coupon no longer has (moved, withdrawn, never
// created) does nothing. Claims are refused by time from expiresAt on, so
// no claim entry follows the expired entry.
func (m *Machine) Wake(ctx context.Context, r couponmesh.Reminder) error {
	due := r.Due // the coupon's own time when it has more than milliseconds
	if t := m.c.ExpiresAt; r.Name == RemindExpire && sameMilli(t, due) && t.After(due) {
		due = t
	}
	if t := m.c.StartsAt; r.Name == RemindStart && sameMilli(t, due) && t.After(due) {
		due = t
	}
	if m.now().Before(due) {
		return fmt.Errorf("coupon %s %s at %s: %w", m.id, r.Name, r.Due.Format(time.RFC3339Nano), ErrEarly)
	}
	_, err := m.journal.Commit(ctx, func(int64) (couponmesh.Entry, error) {
		if !m.exists || m.c.Withdrawn {
			return couponmesh.Entry{}, errDone
		}
		switch r.Name {
		case RemindStart:
			if !sameMilli(m.c.StartsAt, r.Due) || sameMilli(m.started, r.Due) {
				return couponmesh.Entry{}, errDone
			}
			return entry(EntryStarted, "", "", transitionData{Due: r.Due}), nil
		case RemindExpire:
			if !sameMilli(m.c.ExpiresAt, r.Due) || sameMilli(m.expired, r.Due) {
				return couponmesh.Entry{}, errDone
			}
			return entry(EntryExpired, "", "", transitionData{Due: r.Due}), nil
		}
		return couponmesh.Entry{}, errDone // a reminder of another kind: nothing to do
	})
	if errors.Is(err, errDone) {
		return nil
	}
	return err
}

// SnapshotDue reports whether entries were applied since the last snapshot.
func (m *Machine) SnapshotDue() bool { return m.exists && m.journal.Seq > m.snapSeq }

// WriteSnapshot stores the current state (also the browse view).
func (m *Machine) WriteSnapshot(ctx context.Context) error {
	claims := make([]claimRecord, 0, len(m.claims))
	for _, r := range m.claims {
		claims = append(claims, r)
	}
	data, err := json.Marshal(snapshotData{Coupon: m.c, Withdrawn: m.c.Withdrawn, CreateRID: m.createRID, Claims: claims,
		Started: m.started, Expired: m.expired})
	if err != nil {
		return err
	}
	c := m.Coupon()
	seq := m.journal.Seq
	if err := m.store.PutSnapshot(ctx, couponmesh.Snapshot{Entity: Entity(m.id), Seq: seq, Data: data, Coupon: &c}); err != nil {
		return err
	}
	m.snapSeq = seq
	return nil
}

func entry(typ, unique, user string, data any) couponmesh.Entry {
	b, err := json.Marshal(data)
	if err != nil {
		panic(err)
	}
	return couponmesh.Entry{Type: typ, Unique: unique, User: user, Data: b}
}

// newCode returns a claim code: 10 characters from an alphabet without
// look-alike characters.
func newCode() string {
	const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	var b [10]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}

// Inspect implements actors.Inspector: the coupon as clients see it, its
// number of claim records, the seq of its last snapshot and the reminders
// (start, expiry) it still waits for.
func (m *Machine) Inspect() any {
	type view struct {
		Exists      bool                  `json:"exists"`
		Coupon      *couponmesh.Coupon    `json:"coupon,omitempty"`
		Claims      int                   `json:"claims"`
		SnapshotSeq int64                 `json:"snapshotSeq"`
		Reminders   []couponmesh.Reminder `json:"reminders,omitempty"` // transitions not yet journaled
	}
	v := view{Exists: m.exists, Claims: len(m.claims), SnapshotSeq: m.snapSeq}
	if m.exists && !m.c.Withdrawn {
		if !m.c.StartsAt.IsZero() && !sameMilli(m.started, m.c.StartsAt) {
			v.Reminders = append(v.Reminders, couponmesh.Reminder{Target: Entity(m.id), Name: RemindStart, Due: m.c.StartsAt})
		}
		if !m.c.ExpiresAt.IsZero() && !sameMilli(m.expired, m.c.ExpiresAt) {
			v.Reminders = append(v.Reminders, couponmesh.Reminder{Target: Entity(m.id), Name: RemindExpire, Due: m.c.ExpiresAt})
		}
	}
	if m.exists {
		c := m.Coupon()
		v.Coupon = &c
	}
	return v
}

var _ actors.Inspector = (*Machine)(nil)
