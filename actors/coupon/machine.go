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

// ClaimData is the payload of a claimed entry.
type ClaimData struct {
	User string `json:"user"`
	RID  string `json:"rid"`
	Code string `json:"code"`
	N    int    `json:"n"` // the claim's number, 1..quantity
}

// Claims returns the claims among a coupon's journal entries (in seq order,
// from seq 1), by user. It checks what every journal must hold: claim n is
// the n-th claim, and no user claims twice.
func Claims(entries []couponmesh.Entry) (map[string]ClaimData, error) {
	out := make(map[string]ClaimData)
	for _, e := range entries {
		if e.Type != EntryClaimed {
			continue
		}
		d, err := DecodeClaim(e)
		if err != nil {
			return out, err
		}
		if d.N != len(out)+1 {
			return out, fmt.Errorf("%s: claim %d carries n=%d", e.Key(), len(out)+1, d.N)
		}
		if _, twice := out[d.User]; twice {
			return out, fmt.Errorf("%s: %s claims twice", e.Key(), d.User)
		}
		out[d.User] = d
	}
	return out, nil
}

// DecodeClaim returns the payload of a claimed entry (for tools and tests
// that read the journal).
func DecodeClaim(e couponmesh.Entry) (ClaimData, error) {
	var d ClaimData
	if e.Type != EntryClaimed {
		return d, fmt.Errorf("entry %s is %q, not %q", e.Key(), e.Type, EntryClaimed)
	}
	err := json.Unmarshal(e.Data, &d)
	return d, err
}

type couponData struct {
	Coupon couponmesh.Coupon `json:"coupon"`
	RID    string            `json:"rid,omitempty"`
	// Timed marks entries written since coupons have reminders: the
	// reminders of the entry's times were stored before it (Reminders).
	// A coupon whose times come from an entry without it predates them
	// (Backfill).
	Timed bool `json:"timed,omitempty"`
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
	Timed     bool              `json:"timed,omitempty"`  // couponData.Timed of the last created or updated entry
}

type claimRecord struct {
	Claim couponmesh.Claim `json:"claim"`
	RID   string           `json:"rid"`
}

// Machine is the state and rules of one coupon activation, apart from the
// actor plumbing so that tests can run two activations over one journal. It
// is not safe for concurrent use.
//
// Its state (c, claims) is the durable one: what the journal holds up to
// its Seq. Requests are decided on it plus the pending entries of the
// journal's pipeline (pendingClaims, pendingOther), so that many claims are
// in one write; the Start* methods answer through a callback once the
// request's own entry is durable, the others (Claim, Create, …) run the
// pipeline inline for callers without a mailbox.
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
	timed     bool                   // the times' reminders were stored (couponData.Timed)

	pendingClaims int                 // claim entries decided, not yet durable
	pendingOther  int                 // other entries decided, not yet durable
	pendingUsers  map[string]bool     // users with a claim entry pending
	afterUser     map[string][]func() // requests of users with a pending claim, run again once it is answered

	change Change // what the entries applied since the last TakeChange changed

	// built holds the payloads of the created and updated entries this
	// machine decided and has not applied yet, by the first byte of their
	// Data: applying its own entry takes the value it encoded instead of
	// decoding the bytes again (the JSON round trip was ~7% of the node's
	// CPU per update in docs/BENCHMARKS.md's profile). Entries decided
	// again after a failed write are never applied; maxBuilt bounds what
	// they leave behind.
	built map[*byte]couponData
}

// maxBuilt bounds Machine.built: when full it is emptied (the entries then
// applied are decoded from their bytes, as entries read from the journal).
const maxBuilt = 256

// Load restores coupon id from its snapshot and journal.
func Load(ctx context.Context, store couponmesh.Store, id string, now func() time.Time) (*Machine, error) {
	if now == nil {
		now = time.Now
	}
	m := &Machine{id: id, store: store, now: now, claims: make(map[string]claimRecord),
		pendingUsers: make(map[string]bool), afterUser: make(map[string][]func())}
	m.journal = actors.Journal{Store: store, Entity: Entity(id), Apply: m.apply, Pend: m.pend, Unpend: m.unpend}
	err := m.journal.Load(ctx, func(s couponmesh.Snapshot) error {
		var d snapshotData
		if err := json.Unmarshal(s.Data, &d); err != nil {
			return err
		}
		m.c, m.exists, m.createRID = d.Coupon, true, d.CreateRID
		m.c.Withdrawn = d.Withdrawn
		m.started, m.expired, m.timed = d.Started, d.Expired, d.Timed
		for _, r := range d.Claims {
			m.claims[r.Claim.User] = r
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	m.snapSeq = m.journal.Seq
	m.change = Change{} // the state loaded is the starting point, not a change
	return m, nil
}

// Change is what the entries a Machine applied changed, as the grain
// publishes it: every change is pushed to the hubs; one of more than the
// claimed count (OnlyClaims false) is also snapshotted at once and told to
// the coupon's followers.
type Change struct {
	Version int64 // the coupon's version after the entries; 0: none applied
	Created bool  // a created entry: the coupon came into existence (Terms is set too)
	// Terms: more than the claimed count changed: the text, discount,
	// quantity or times (an updated entry that changed them), the status
	// (withdrawn; a claim that sold the coupon out), or a start or expiry
	// was reached (a started or expired entry).
	Terms bool
	// notExpiry: Terms by something else than an expired entry.
	notExpiry bool
}

// Applied reports whether any entry was applied.
func (c Change) Applied() bool { return c.Version != 0 }

// OnlyClaims reports whether claims were all that changed.
func (c Change) OnlyClaims() bool { return c.Applied() && !c.Created && !c.Terms }

// OnlyExpiry reports whether reaching the expiry (an expired entry) is all
// that changed, claims aside.
func (c Change) OnlyExpiry() bool { return c.Terms && !c.Created && !c.notExpiry }

// merge adds the change of a later entry.
func (c Change) merge(d Change) Change {
	return Change{Version: max(c.Version, d.Version), Created: c.Created || d.Created, Terms: c.Terms || d.Terms, notExpiry: c.notExpiry || d.notExpiry}
}

// TakeChange returns what the entries applied since the last call changed
// (those of Load excepted) and starts over: the grain calls it after each
// message and publishes what it returns.
func (m *Machine) TakeChange() Change {
	c := m.change
	m.change = Change{}
	return c
}

// apply folds e into the state (Journal.Apply) and records what it changed
// (TakeChange).
func (m *Machine) apply(e couponmesh.Entry) error {
	ch, err := m.applyEntry(e)
	if err != nil {
		return err
	}
	m.change = m.change.merge(ch)
	return nil
}

func (m *Machine) applyEntry(e couponmesh.Entry) (Change, error) {
	ch := Change{Version: e.Seq}
	switch e.Type {
	case EntryCreated, EntryUpdated:
		d, ok := m.takeBuilt(e.Data)
		if !ok {
			if err := json.Unmarshal(e.Data, &d); err != nil {
				return Change{}, err
			}
		}
		before := m.c
		claimed, withdrawn := m.c.Claimed, m.c.Withdrawn
		m.c = d.Coupon
		m.c.Claimed, m.c.Withdrawn = claimed, withdrawn
		m.timed = d.Timed
		if e.Type == EntryCreated {
			m.exists, m.createRID = true, d.RID
			m.c.CreatedAt = e.At
			ch.Created = true
		}
		ch.Terms = !sameTerms(before, m.c, m.now())
	case EntryWithdrawn:
		ch.Terms = !m.c.Withdrawn
		m.c.Withdrawn = true
	case EntryStarted, EntryExpired:
		var d transitionData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return Change{}, err
		}
		if e.Type == EntryStarted {
			ch.Terms = !m.started.Equal(d.Due)
			m.started = d.Due
		} else {
			ch.Terms = !m.expired.Equal(d.Due)
			m.expired = d.Due
		}
	case EntryClaimed:
		var d ClaimData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return Change{}, err
		}
		now := m.now()
		before := status(m.c, now)
		m.c.Claimed++
		m.claims[d.User] = claimRecord{Claim: couponmesh.Claim{Coupon: m.id, User: d.User, N: m.c.Claimed, Code: d.Code, At: e.At}, RID: d.RID}
		ch.Terms = status(m.c, now) != before // e.g. the last unit: sold out
	default:
		return Change{}, fmt.Errorf("unknown entry type %q", e.Type)
	}
	ch.notExpiry = ch.Terms && e.Type != EntryExpired
	m.c.ID = m.id
	m.c.Version = e.Seq
	m.c.UpdatedAt = e.At
	return ch, nil
}

// status is c's status at now.
func status(c couponmesh.Coupon, now time.Time) couponmesh.Status {
	c.Refresh(now)
	return c.Status
}

// sameTerms reports whether a and b agree on everything but the claimed
// count: what followers are told about.
func sameTerms(a, b couponmesh.Coupon, now time.Time) bool {
	return a.Title == b.Title && a.Description == b.Description && a.Discount == b.Discount && a.Quantity == b.Quantity &&
		a.StartsAt.Equal(b.StartsAt) && a.ExpiresAt.Equal(b.ExpiresAt) && status(a, now) == status(b, now)
}

// pend and unpend keep the counts of pending entries (Journal.Pend).
func (m *Machine) pend(e couponmesh.Entry) {
	if e.Type == EntryClaimed {
		m.pendingClaims++
		m.pendingUsers[e.User] = true
		return
	}
	m.pendingOther++
}

func (m *Machine) unpend(e couponmesh.Entry) {
	if e.Type == EntryClaimed {
		m.pendingClaims--
		delete(m.pendingUsers, e.User)
		return
	}
	m.pendingOther--
}

// Validate implements actors.State: it applies the entries another
// activation appended (Journal.Validate; ErrBusy while a write is pending).
func (m *Machine) Validate(ctx context.Context) (int, error) { return m.journal.Validate(ctx) }

// Journal returns the coupon's journal: its pipeline is driven by the grain
// (Next, Settle) or by Run.
func (m *Machine) Journal() *actors.Journal { return &m.journal }

// Exists reports whether the coupon was created.
func (m *Machine) Exists() bool { return m.exists }

// Coupon returns the current state, derived fields computed now.
func (m *Machine) Coupon() couponmesh.Coupon {
	c := m.c
	c.Refresh(m.now())
	return c
}

// Stale implements actors.Stale: a write's outcome was unknown and the
// journal could not be read since.
func (m *Machine) Stale() bool { return m.journal.Stale() }

// Seq returns the journal seq applied.
func (m *Machine) Seq() int64 { return m.journal.Seq }

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

// inline runs start's request through the pipeline inline and returns its
// answer.
func inline[T any](ctx context.Context, m *Machine, start func(done func(T, error))) (T, error) {
	var (
		out      T
		err      error
		answered bool
	)
	start(func(v T, e error) { out, err, answered = v, e, true })
	m.journal.Run(ctx)
	if !answered {
		var zero T
		return zero, fmt.Errorf("coupon %s: still pending: %w", m.id, couponmesh.ErrUnavailable)
	}
	return out, err
}

// waitIfPending makes a change of the coupon itself (create, update,
// withdraw) wait until no entry is pending: claims pending were decided on
// the terms before it.
func (m *Machine) waitIfPending() error {
	if m.pendingClaims > 0 || m.pendingOther > 0 {
		return actors.ErrWait
	}
	return nil
}

// couponDone answers done with the coupon once a change is durable;
// errDone (nothing to write) is a success.
func (m *Machine) couponDone(done func(couponmesh.Coupon, error)) func(couponmesh.Entry, error) {
	return func(_ couponmesh.Entry, err error) {
		if err != nil && !errors.Is(err, errDone) {
			done(couponmesh.Coupon{}, err)
			return
		}
		done(m.Coupon(), nil)
	}
}

// Create makes the coupon exist. A retry with the same rid returns the
// coupon; any other create of an existing id is refused.
func (m *Machine) Create(ctx context.Context, p couponmesh.Principal, spec couponmesh.CouponSpec, rid string) (couponmesh.Coupon, error) {
	return inline(ctx, m, func(done func(couponmesh.Coupon, error)) { m.StartCreate(ctx, p, spec, rid, done) })
}

// StartCreate is Create answering done once the entry is durable.
func (m *Machine) StartCreate(ctx context.Context, p couponmesh.Principal, spec couponmesh.CouponSpec, rid string, done func(couponmesh.Coupon, error)) {
	if !p.CanCreateCoupons() {
		done(couponmesh.Coupon{}, couponmesh.Errorf(couponmesh.CodeForbidden, "only merchants create coupons"))
		return
	}
	if err := spec.Validate(true, m.now()); err != nil {
		done(couponmesh.Coupon{}, err)
		return
	}
	m.journal.Propose(ctx, &actors.Proposal{Decide: func(int64) (couponmesh.Entry, error) {
		if err := m.waitIfPending(); err != nil {
			return couponmesh.Entry{}, err
		}
		if m.exists {
			if rid != "" && rid == m.createRID {
				return couponmesh.Entry{}, errDone
			}
			return couponmesh.Entry{}, couponmesh.Errorf(couponmesh.CodeBadRequest, "coupon id %s is taken", m.id)
		}
		c := couponmesh.Coupon{ID: m.id, Merchant: p.User}
		_ = spec.Apply(&c)
		return m.couponEntry(EntryCreated, couponData{Coupon: c, RID: rid, Timed: true}), nil
	}, Done: m.couponDone(done)})
}

// errDone stops a commit whose effect is already in the journal.
var errDone = errors.New("already done")

// Update changes the fields spec sets.
func (m *Machine) Update(ctx context.Context, p couponmesh.Principal, spec couponmesh.CouponSpec) (couponmesh.Coupon, error) {
	return inline(ctx, m, func(done func(couponmesh.Coupon, error)) { m.StartUpdate(ctx, p, spec, done) })
}

// StartUpdate is Update answering done once the entry is durable.
func (m *Machine) StartUpdate(ctx context.Context, p couponmesh.Principal, spec couponmesh.CouponSpec, done func(couponmesh.Coupon, error)) {
	if err := spec.Validate(false, m.now()); err != nil {
		done(couponmesh.Coupon{}, err)
		return
	}
	spec.ID = ""
	m.journal.Propose(ctx, &actors.Proposal{Decide: func(int64) (couponmesh.Entry, error) {
		if err := m.waitIfPending(); err != nil {
			return couponmesh.Entry{}, err
		}
		if err := m.editable(p); err != nil {
			return couponmesh.Entry{}, err
		}
		c := m.c
		if err := spec.Apply(&c); err != nil {
			return couponmesh.Entry{}, err
		}
		return m.couponEntry(EntryUpdated, couponData{Coupon: c, Timed: true}), nil
	}, Done: m.couponDone(done)})
}

// Withdraw ends the coupon; withdrawing twice is a no-op.
func (m *Machine) Withdraw(ctx context.Context, p couponmesh.Principal) (couponmesh.Coupon, error) {
	return inline(ctx, m, func(done func(couponmesh.Coupon, error)) { m.StartWithdraw(ctx, p, done) })
}

// StartWithdraw is Withdraw answering done once the entry is durable.
func (m *Machine) StartWithdraw(ctx context.Context, p couponmesh.Principal, done func(couponmesh.Coupon, error)) {
	m.journal.Propose(ctx, &actors.Proposal{Decide: func(int64) (couponmesh.Entry, error) {
		if err := m.waitIfPending(); err != nil {
			return couponmesh.Entry{}, err
		}
		if err := m.editable(p); err != nil {
			return couponmesh.Entry{}, err
		}
		if m.c.Withdrawn {
			return couponmesh.Entry{}, errDone
		}
		return entry(EntryWithdrawn, "", "", struct{}{}), nil
	}, Done: m.couponDone(done)})
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
	return inline(ctx, m, func(done func(couponmesh.Claim, error)) { m.StartClaim(ctx, user, rid, done) })
}

// errUserPending: the user's claim is pending; the request runs again once
// that claim is answered.
var errUserPending = errors.New("the user's claim is pending")

// StartClaim is Claim answering done: at once from memory when the answer
// is known (the user's durable claim: the same rid's first answer or
// already_claimed; a coupon durably sold out, expired or withdrawn), after
// the user's pending claim when there is one, else once the claim's entry
// is durable. While pending claims hold the last units, a claim waits for
// them rather than being refused sold_out (they could still fail).
func (m *Machine) StartClaim(ctx context.Context, user, rid string, done func(couponmesh.Claim, error)) {
	if cl, err, ok := m.claimFromMemory(user, rid); ok {
		done(cl, err)
		return
	}
	if m.pendingUsers[user] {
		m.afterUser[user] = append(m.afterUser[user], func() { m.StartClaim(ctx, user, rid, done) })
		return
	}
	var claim couponmesh.Claim
	m.journal.Propose(ctx, &actors.Proposal{Decide: func(int64) (couponmesh.Entry, error) {
		if r, ok := m.claims[user]; ok { // caught up with the journal meanwhile
			return couponmesh.Entry{}, answerExisting(r, rid)
		}
		if m.pendingUsers[user] {
			return couponmesh.Entry{}, errUserPending
		}
		if err := m.c.CheckClaim(m.now()); err != nil {
			return couponmesh.Entry{}, err
		}
		if m.pendingOther > 0 || m.c.Claimed+m.pendingClaims >= m.c.Quantity {
			return couponmesh.Entry{}, actors.ErrWait
		}
		claim = couponmesh.Claim{Coupon: m.id, User: user, N: m.c.Claimed + m.pendingClaims + 1, Code: newCode()}
		return entry(EntryClaimed, ClaimKey(m.id, user), user, ClaimData{User: user, RID: rid, Code: claim.Code, N: claim.N}), nil
	}, Done: func(e couponmesh.Entry, err error) {
		var existing *existingClaim
		switch {
		case errors.Is(err, errUserPending):
			m.afterUser[user] = append(m.afterUser[user], func() { m.StartClaim(ctx, user, rid, done) })
			return
		case errors.As(err, &existing):
			done(existing.claim, existing.err)
		case errors.Is(err, actors.ErrFenced):
			// Up to date, yet the user's claim key is taken: another
			// activation is making that claim right now and its seq is
			// not visible yet.
			done(couponmesh.Claim{}, fmt.Errorf("claim %s/%s is being made elsewhere: %w", m.id, user, couponmesh.ErrUnavailable))
		case err != nil:
			done(couponmesh.Claim{}, err)
		default:
			claim.At = e.At
			if r, ok := m.claims[user]; ok {
				claim = r.Claim // as applied
			}
			done(claim, nil)
		}
		if next := m.afterUser[user]; len(next) > 0 {
			delete(m.afterUser, user)
			for _, f := range next {
				f()
			}
		}
	}})
}

// claimFromMemory answers a claim that needs no write: the user's durable
// claim (same rid: its first answer; another: already_claimed), or a coupon
// that is missing, or durably sold out, expired or withdrawn.
func (m *Machine) claimFromMemory(user, rid string) (couponmesh.Claim, error, bool) {
	if !m.exists {
		return couponmesh.Claim{}, m.notFound(), true
	}
	if r, ok := m.claims[user]; ok {
		var existing *existingClaim
		errors.As(answerExisting(r, rid), &existing)
		return existing.claim, existing.err, true
	}
	if err := m.c.CheckClaim(m.now()); err != nil {
		return couponmesh.Claim{}, err, true
	}
	return couponmesh.Claim{}, nil, false
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

// pendingReminders returns the reminders of the transitions (start,
// expiry) the coupon has not journaled yet.
func (m *Machine) pendingReminders() []couponmesh.Reminder {
	if !m.exists || m.c.Withdrawn {
		return nil
	}
	var rs []couponmesh.Reminder
	if !m.c.StartsAt.IsZero() && !sameMilli(m.started, m.c.StartsAt) {
		rs = append(rs, couponmesh.Reminder{Target: Entity(m.id), Name: RemindStart, Due: couponmesh.ReminderTime(m.c.StartsAt)})
	}
	if !m.c.ExpiresAt.IsZero() && !sameMilli(m.expired, m.c.ExpiresAt) {
		rs = append(rs, couponmesh.Reminder{Target: Entity(m.id), Name: RemindExpire, Due: couponmesh.ReminderTime(m.c.ExpiresAt)})
	}
	return rs
}

// Backfill returns the reminders a coupon created before coupons had
// reminders still needs: those of its transitions not journaled yet, when
// its times come from an entry written without reminders (none for every
// coupon created or updated since). The grain stores them when it loads
// the coupon (actors.SetReminders: idempotent), so such a coupon's expiry
// is journaled and pushed, at once when it is past, from its first
// activation on.
func (m *Machine) Backfill() []couponmesh.Reminder {
	if m.timed {
		return nil
	}
	return m.pendingReminders()
}

// ErrEarly is returned by Wake for a reminder that is not due yet by this
// node's clock: the shard tries again.
var ErrEarly = errors.New("reminder not due yet")

// ErrUnchecked is returned by StartWake, when told its state is not
// validated since churn, for a reminder it would do nothing for: the state
// may miss the entry that makes the wake-up due (another activation moved
// the time there), so the caller validates the state and wakes it again.
var ErrUnchecked = errors.New("nothing to do by a state not validated since churn")

// Wake handles a due reminder (inline, for callers without a mailbox).
func (m *Machine) Wake(ctx context.Context, r couponmesh.Reminder) error {
	_, err := inline(ctx, m, func(done func(struct{}, error)) {
		m.StartWake(ctx, r, false, func(err error) { done(struct{}{}, err) })
	})
	return err
}

// StartWake handles a due reminder: at the coupon's startsAt it appends a
// started entry, at its expiresAt an expired entry, each once per due time,
// after the claims pending (decided before it); done is called once that is
// durable. A reminder for a time the coupon no longer has (moved, withdrawn,
// never created) does nothing. Claims are refused by time from expiresAt
// on, so no claim entry follows the expired entry.
//
// unchecked tells that the state was not validated since cluster churn:
// another activation may have appended entries it has not applied. The
// wake-up may still append: the entry's _id (entity#seq) is unique, so an
// append after entries this state misses fails (duplicate key), the
// journal catches up and the wake-up is decided again on the state it read
// (Journal.Settle); one that lands proves the state was the journal's. So
// an expiry on a state not validated since churn costs no read of the
// journal first. Only a decision to do nothing could rest on what the
// state misses: that one is answered ErrUnchecked instead.
func (m *Machine) StartWake(ctx context.Context, r couponmesh.Reminder, unchecked bool, done func(error)) {
	due := r.Due // the coupon's own time when it has more than milliseconds
	if t := m.c.ExpiresAt; r.Name == RemindExpire && sameMilli(t, due) && t.After(due) {
		due = t
	}
	if t := m.c.StartsAt; r.Name == RemindStart && sameMilli(t, due) && t.After(due) {
		due = t
	}
	if m.now().Before(due) {
		done(fmt.Errorf("coupon %s %s at %s: %w", m.id, r.Name, r.Due.Format(time.RFC3339Nano), ErrEarly))
		return
	}
	m.journal.Propose(ctx, &actors.Proposal{Decide: func(int64) (couponmesh.Entry, error) {
		if err := m.waitIfPending(); err != nil {
			return couponmesh.Entry{}, err
		}
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
	}, Done: func(_ couponmesh.Entry, err error) {
		if errors.Is(err, errDone) {
			err = nil
			if unchecked {
				err = ErrUnchecked
			}
		}
		done(err)
	}})
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
		Started: m.started, Expired: m.expired, Timed: m.timed})
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

// couponEntry is entry for a created or updated entry of this machine: it
// keeps d for applying the entry once durable (Machine.built).
func (m *Machine) couponEntry(typ string, d couponData) couponmesh.Entry {
	e := entry(typ, "", "", d)
	if m.built == nil || len(m.built) >= maxBuilt {
		m.built = make(map[*byte]couponData)
	}
	m.built[&e.Data[0]] = d
	return e
}

// takeBuilt returns (and forgets) the payload couponEntry encoded into
// data, if data holds those very bytes.
func (m *Machine) takeBuilt(data []byte) (couponData, bool) {
	if len(data) == 0 || m.built == nil {
		return couponData{}, false
	}
	d, ok := m.built[&data[0]]
	if ok {
		delete(m.built, &data[0])
	}
	return d, ok
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
	v := view{Exists: m.exists, Claims: len(m.claims), SnapshotSeq: m.snapSeq, Reminders: m.pendingReminders()}
	if m.exists {
		c := m.Coupon()
		v.Coupon = &c
	}
	return v
}

var _ actors.Inspector = (*Machine)(nil)
