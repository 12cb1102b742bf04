package user

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors"
)

// recentFeed is how many feed entries an activation keeps in memory.
const recentFeed = 256

// Entity returns the journal entity of user id.
func Entity(id string) string { return "user/" + id }

type snapshotData struct {
	Following []string           `json:"following"`
	Wallet    []couponmesh.Claim `json:"wallet"`
}

// Machine is the state and rules of one user activation. Not safe for
// concurrent use.
type Machine struct {
	id        string
	store     couponmesh.Store
	journal   actors.Journal
	following []string
	wallet    []couponmesh.Claim
	recent    []couponmesh.FeedEntry // the last entries, in seq order
	snapSeq   int64
	// OnEntry, if set, is told what each entry applied after Load changed:
	// the feed entry it adds, whether this activation appended it or
	// another one (applied by Validate, or by the catch-up after a write
	// found the journal moved). It runs before the entry's request is
	// answered.
	OnEntry func(couponmesh.FeedEntry)
}

// Load restores user id from its snapshot and journal.
func Load(ctx context.Context, store couponmesh.Store, id string) (*Machine, error) {
	m := &Machine{id: id, store: store}
	m.journal = actors.Journal{Store: store, Entity: Entity(id), Apply: m.apply}
	err := m.journal.Load(ctx, func(s couponmesh.Snapshot) error {
		var d snapshotData
		if err := json.Unmarshal(s.Data, &d); err != nil {
			return err
		}
		m.following, m.wallet = d.Following, d.Wallet
		return nil
	})
	if err != nil {
		return nil, err
	}
	m.snapSeq = m.journal.Seq
	return m, nil
}

func (m *Machine) apply(e couponmesh.Entry) error {
	fe, err := toFeed(e)
	if err != nil {
		return err
	}
	switch e.Type {
	case couponmesh.FeedClaimed:
		if fe.Claim == nil {
			return errors.New("claimed entry without claim")
		}
		m.wallet = append(m.wallet, *fe.Claim)
	case couponmesh.FeedFollowed:
		if !slices.Contains(m.following, fe.Coupon) {
			m.following = append(m.following, fe.Coupon)
		}
	case couponmesh.FeedUnfollowed:
		m.following = slices.DeleteFunc(m.following, func(c string) bool { return c == fe.Coupon })
	case couponmesh.FeedCouponChanged:
	default:
		return fmt.Errorf("unknown entry type %q", e.Type)
	}
	m.recent = append(m.recent, fe)
	if len(m.recent) > recentFeed {
		m.recent = slices.Delete(m.recent, 0, len(m.recent)-recentFeed)
	}
	if m.OnEntry != nil {
		m.OnEntry(fe)
	}
	return nil
}

// Journal returns the user's journal: its pipeline is driven by the grain
// (Next, Settle) or by Run.
func (m *Machine) Journal() *actors.Journal { return &m.journal }

// errDone: the entry's effect is in the journal already.
var errDone = errors.New("already done")

// propose queues an entry of typ on the pipeline; done gets nil once it is
// durable (or when skip says it is not needed, or its Unique key is taken:
// the same entry was written before, e.g. a retried notice). barrier makes
// it wait until nothing is pending (its decision reads state that pending
// entries change).
func (m *Machine) propose(ctx context.Context, typ, unique string, data any, barrier bool, skip func() bool, done func(error)) {
	b, err := json.Marshal(data)
	if err != nil {
		done(err)
		return
	}
	m.journal.Propose(ctx, &actors.Proposal{Decide: func(int64) (couponmesh.Entry, error) {
		if barrier && len(m.journal.Pending()) > 0 {
			return couponmesh.Entry{}, actors.ErrWait
		}
		if skip != nil && skip() {
			return couponmesh.Entry{}, errDone
		}
		return couponmesh.Entry{Type: typ, Unique: unique, Data: b}, nil
	}, Done: func(_ couponmesh.Entry, err error) {
		if errors.Is(err, actors.ErrFenced) || errors.Is(err, errDone) {
			done(nil)
			return
		}
		done(err)
	}})
}

// inline runs start's request through the pipeline inline.
func (m *Machine) inline(ctx context.Context, start func(done func(error))) error {
	var (
		err      error
		answered bool
	)
	start(func(e error) { err, answered = e, true })
	m.journal.Run(ctx)
	if !answered {
		return fmt.Errorf("user %s: still pending: %w", m.id, couponmesh.ErrUnavailable)
	}
	return err
}

// pendingUnique reports whether an entry with Unique key is pending.
func (m *Machine) pendingUnique(key string) bool {
	return slices.ContainsFunc(m.journal.Pending(), func(e couponmesh.Entry) bool { return e.Unique == key })
}

// RecordClaim adds a claim to the wallet and feed (once per coupon).
func (m *Machine) RecordClaim(ctx context.Context, c couponmesh.Claim) error {
	return m.inline(ctx, func(done func(error)) { m.StartRecordClaim(ctx, c, done) })
}

// StartRecordClaim is RecordClaim answering done once the entry is durable
// (at once when the wallet holds the claim).
func (m *Machine) StartRecordClaim(ctx context.Context, c couponmesh.Claim, done func(error)) {
	inWallet := func() bool {
		return slices.ContainsFunc(m.wallet, func(w couponmesh.Claim) bool { return w.Coupon == c.Coupon })
	}
	if inWallet() {
		done(nil)
		return
	}
	type claimed struct {
		Coupon string            `json:"coupon"`
		Claim  *couponmesh.Claim `json:"claim"`
	}
	key := "feed/" + m.id + "/claim/" + c.Coupon
	m.propose(ctx, couponmesh.FeedClaimed, key, claimed{Coupon: c.Coupon, Claim: &c}, false,
		func() bool { return inWallet() || m.pendingUnique(key) }, done)
}

// Follow records that the user follows coupon and keeps the followers index
// in step (idempotent).
func (m *Machine) Follow(ctx context.Context, c string) error {
	return m.inline(ctx, func(done func(error)) { m.StartFollow(ctx, c, done) })
}

// StartFollow is Follow answering done once the entry is durable and the
// index written. It waits for the entries pending before it.
func (m *Machine) StartFollow(ctx context.Context, c string, done func(error)) {
	m.propose(ctx, couponmesh.FeedFollowed, "", actors.CouponRef{Coupon: c}, true,
		func() bool { return slices.Contains(m.following, c) }, func(err error) {
			if err == nil {
				if err = m.store.AddFollower(ctx, c, m.id); err != nil {
					err = fmt.Errorf("follow %s: %w: %w", c, couponmesh.ErrUnavailable, err)
				}
			}
			done(err)
		})
}

// Unfollow is the reverse of Follow (idempotent).
func (m *Machine) Unfollow(ctx context.Context, c string) error {
	return m.inline(ctx, func(done func(error)) { m.StartUnfollow(ctx, c, done) })
}

// StartUnfollow is Unfollow answering done once the entry is durable and
// the index written.
func (m *Machine) StartUnfollow(ctx context.Context, c string, done func(error)) {
	m.propose(ctx, couponmesh.FeedUnfollowed, "", actors.CouponRef{Coupon: c}, true,
		func() bool { return !slices.Contains(m.following, c) }, func(err error) {
			if err == nil {
				if err = m.store.RemoveFollower(ctx, c, m.id); err != nil {
					err = fmt.Errorf("unfollow %s: %w: %w", c, couponmesh.ErrUnavailable, err)
				}
			}
			done(err)
		})
}

// CouponChanged adds a coupon_changed entry when the user follows c (once
// per coupon version).
func (m *Machine) CouponChanged(ctx context.Context, c couponmesh.Coupon) error {
	return m.inline(ctx, func(done func(error)) { m.StartCouponChanged(ctx, c, done) })
}

// StartCouponChanged is CouponChanged answering done once the entry is
// durable (at once when the user does not follow c).
func (m *Machine) StartCouponChanged(ctx context.Context, c couponmesh.Coupon, done func(error)) {
	pendingFollow := m.followPending()
	if !slices.Contains(m.following, c.ID) && !pendingFollow {
		done(nil)
		return
	}
	type changed struct {
		Coupon string             `json:"coupon"`
		Change *couponmesh.Coupon `json:"change"`
	}
	key := "feed/" + m.id + "/change/" + c.ID + "@" + strconv.FormatInt(c.Version, 10)
	m.propose(ctx, couponmesh.FeedCouponChanged, key, changed{Coupon: c.ID, Change: &c}, pendingFollow,
		func() bool { return !slices.Contains(m.following, c.ID) || m.pendingUnique(key) }, done)
}

// followPending reports whether a follow or unfollow is pending: a notice
// is then decided after it.
func (m *Machine) followPending() bool {
	return slices.ContainsFunc(m.journal.Pending(), func(e couponmesh.Entry) bool {
		return e.Type == couponmesh.FeedFollowed || e.Type == couponmesh.FeedUnfollowed
	})
}

// Following returns the coupons followed, in the order followed.
func (m *Machine) Following() []string { return slices.Clone(m.following) }

// Wallet returns the claims, oldest first.
func (m *Machine) Wallet() []couponmesh.Claim { return slices.Clone(m.wallet) }

// Feed returns up to limit entries after seq after, from memory when it
// holds them, else from the journal.
func (m *Machine) Feed(ctx context.Context, after int64, limit int) ([]couponmesh.FeedEntry, error) {
	if limit <= 0 {
		limit = couponmesh.DefaultFeedLimit
	}
	limit = min(limit, couponmesh.MaxFeedLimit)
	if after >= m.journal.Seq {
		return []couponmesh.FeedEntry{}, nil
	}
	if len(m.recent) > 0 && after >= m.recent[0].Seq-1 {
		i := int(after - (m.recent[0].Seq - 1))
		return slices.Clone(m.recent[i:min(i+limit, len(m.recent))]), nil
	}
	entries, err := m.store.Entries(ctx, m.journal.Entity, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read feed of %s: %w: %w", m.id, couponmesh.ErrUnavailable, err)
	}
	out := make([]couponmesh.FeedEntry, 0, len(entries))
	for _, e := range entries {
		fe, err := toFeed(e)
		if err != nil {
			return nil, err
		}
		out = append(out, fe)
	}
	return out, nil
}

func toFeed(e couponmesh.Entry) (couponmesh.FeedEntry, error) {
	var d struct {
		Coupon string             `json:"coupon"`
		Claim  *couponmesh.Claim  `json:"claim"`
		Change *couponmesh.Coupon `json:"change"`
	}
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return couponmesh.FeedEntry{}, err
	}
	return couponmesh.FeedEntry{Seq: e.Seq, Type: e.Type, Coupon: d.Coupon, At: e.At, Claim: d.Claim, Change: d.Change}, nil
}

// SnapshotDue reports whether entries were applied since the last snapshot.
func (m *Machine) SnapshotDue() bool { return m.journal.Seq > m.snapSeq }

// WriteSnapshot stores follows and wallet at the current seq.
func (m *Machine) WriteSnapshot(ctx context.Context) error {
	data, err := json.Marshal(snapshotData{Following: m.following, Wallet: m.wallet})
	if err != nil {
		return err
	}
	seq := m.journal.Seq
	if err := m.store.PutSnapshot(ctx, couponmesh.Snapshot{Entity: m.journal.Entity, Seq: seq, Data: data}); err != nil {
		return err
	}
	m.snapSeq = seq
	return nil
}

// Validate implements actors.State: it applies the entries another
// activation appended (Journal.Validate); OnEntry sees each, as if this
// activation had appended it, so that sessions get them as pushes.
func (m *Machine) Validate(ctx context.Context) (int, error) { return m.journal.Validate(ctx) }

// Stale implements actors.Stale: a write's outcome was unknown and the
// journal could not be read since.
func (m *Machine) Stale() bool { return m.journal.Stale() }

// Seq returns the last feed seq.
func (m *Machine) Seq() int64 { return m.journal.Seq }

// Inspect implements actors.Inspector: what the user follows (the first
// 50), the size of the wallet and the feed position.
func (m *Machine) Inspect() any {
	type view struct {
		Following     []string `json:"following"`
		FollowingSize int      `json:"followingSize"`
		WalletSize    int      `json:"walletSize"`
		FeedSeq       int64    `json:"feedSeq"`
		SnapshotSeq   int64    `json:"snapshotSeq"`
	}
	return view{
		Following: append([]string{}, m.following[:min(len(m.following), 50)]...), FollowingSize: len(m.following),
		WalletSize: len(m.wallet), FeedSeq: m.journal.Seq, SnapshotSeq: m.snapSeq,
	}
}

var _ actors.Inspector = (*Machine)(nil)
