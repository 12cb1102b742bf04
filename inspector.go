package couponmesh

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"time"
)

// What the admin API and the debug console see of a node (transport/admin):
// its cluster members, the grains it hosts, what one grain tells of itself,
// and its sessions. The interfaces are implemented by cluster/membership
// (Membership), cluster/placement (Placement), actors (Grains) and
// transport/ws (Sessions); cmd/couponmesh puts them together.

// The grain kinds, as identities name them ("coupon/c42", "reminders/3").
const (
	KindCoupon    = "coupon"
	KindUser      = "user"
	KindReminders = "reminders" // reminder shards: reminders/0 … reminders/(ReminderShards-1)
)

// ErrNotActive is returned by Grains for an identity that has no activation
// on this node.
var ErrNotActive = errors.New("not active on this node")

// Member is a cluster member as one node sees it. Its first fields are what
// the member publishes about itself; Gossip, Status and Since are this
// node's view.
type Member struct {
	ID     string    `json:"id"`    // protoactor member ID (a new one per process start)
	Host   string    `json:"host"`  // protoactor remote host
	Port   int       `json:"port"`  // protoactor remote port
	Kinds  []string  `json:"kinds"` // grain kinds hosted
	Name   string    `json:"name"`
	HTTP   string    `json:"http,omitempty"`  // public address
	Admin  string    `json:"admin,omitempty"` // admin API address
	Gossip string    `json:"gossip"`          // memberlist address
	Status string    `json:"status"`          // alive, suspect, gone (left or declared dead)
	Since  time.Time `json:"since"`           // when this node last saw the status change
}

// Address is the protoactor address of the member (host:port).
func (m Member) Address() string { return net.JoinHostPort(m.Host, strconv.Itoa(m.Port)) }

// Membership is the cluster as this node sees it. Safe for concurrent use.
type Membership interface {
	// Self is this node (Status "alive").
	Self() Member
	// Members is every member this node knows, itself and the ones that
	// left or died a short while ago included, sorted by name.
	Members() []Member
}

// Activation is one grain living on this node.
type Activation struct {
	Kind    string
	ID      string
	Since   time.Time // when placement spawned it
	Mailbox int       // messages waiting when asked (-1: unknown)
}

// Placement is where grains live, in this node's view. Safe for concurrent
// use; none of its methods activates a grain.
type Placement interface {
	// ActorCounts is the number of local activations per kind.
	ActorCounts() map[string]int
	// LocalActivations returns the local activations of kind ("": all),
	// sorted by identity ("kind/id"), at most limit (≤0: all) after the
	// identity after.
	LocalActivations(kind, after string, limit int) []Activation
	// LocalActivation returns the local activation of kind/id, if any.
	LocalActivation(kind, id string) (Activation, bool)
	// OwnerAddress is the protoactor address of the member owning kind/id
	// in this node's view ("" when no member hosts kind).
	OwnerAddress(kind, id string) string
}

// Inspection is what a grain tells about itself: a snapshot taken between
// two messages, so it never sees a half-applied change.
type Inspection struct {
	Identity    string    `json:"identity"` // kind/id
	ActivatedAt time.Time `json:"activatedAt"`
	Loaded      bool      `json:"loaded"` // false: the state could not be loaded yet (database down)
	Seq         int64     `json:"seq"`    // journal seq of the state
	// Validated is the cluster churn epoch the state was last loaded or
	// checked against the journal at; Stale, that churn since asks for a
	// validation before the next answer (docs/OPERATIONS.md, partitions).
	Validated uint64          `json:"validatedEpoch"`
	Stale     bool            `json:"stale,omitempty"`
	State     json.RawMessage `json:"state,omitempty"`
	Hubs      int             `json:"hubs"`    // node hubs subscribed to its pushes
	Handled   uint64          `json:"handled"` // requests handled by this activation
	Recent    []HandledRecord `json:"recent"`  // the last ones, newest first
	// Watchers is each subscribed hub's presence count (distinct signed-in
	// shoppers on that node), by hub address; only hubs counting someone.
	Watchers map[string]int `json:"watchers,omitempty"`
}

// HandledRecord is one request a grain handled.
type HandledRecord struct {
	At       time.Time `json:"at"`
	Method   string    `json:"method"`
	Micros   int64     `json:"micros"`  // time in the grain
	Outcome  string    `json:"outcome"` // ok or the error code answered
	Answered bool      `json:"answered"`
}

// Pong is a grain's answer to a probe.
type Pong struct {
	Identity    string    `json:"identity"`
	Address     string    `json:"address"` // protoactor address of the member hosting it
	ActivatedAt time.Time `json:"activatedAt"`
}

// ShardStatus is what a reminder shard holds.
type ShardStatus struct {
	Shard   int        `json:"shard"`
	Pending int        `json:"pending"` // in memory (at most the shard's window)
	Next    []Reminder `json:"next"`    // the earliest few, earliest first
	Firing  int        `json:"firing"`  // wake-ups in flight
}

// Grains talks to grains for the admin API. Safe for concurrent use; each
// call waits at most until ctx is done.
type Grains interface {
	// InspectActor asks the local activation of kind/id for its Inspection,
	// directly (never through placement, so it never activates anything):
	// ErrNotActive when there is none here.
	InspectActor(ctx context.Context, kind, id string) (Inspection, error)
	// PassivateActor asks the local activation of kind/id to stop once it
	// has answered what its mailbox holds (ErrNotActive when there is none
	// here) and waits for it to go: stopped is false if it was still
	// stopping when ctx was done.
	PassivateActor(ctx context.Context, kind, id string) (stopped bool, err error)
	// ProbeActor sends kind/id a ping through the cluster, as a client
	// request goes: it activates the grain if needed.
	ProbeActor(ctx context.Context, kind, id string) (Pong, error)
	// ReminderShard asks reminder shard n, through the cluster, what it
	// holds. Shards are kept active, so asking does not move anything.
	ReminderShard(ctx context.Context, n int) (ShardStatus, error)
}

// Inspector is everything the admin API asks of a node's actor system.
type Inspector interface {
	Membership
	Placement
	Grains
}

// SessionInfo is a read-only view of one open client session.
type SessionInfo struct {
	ID            uint64    `json:"id"`
	User          string    `json:"user"` // empty until authenticated
	Since         time.Time `json:"since"`
	Subscriptions int       `json:"subscriptions"`
	Queue         int       `json:"queue"` // frames waiting in the send queue
	Closing       bool      `json:"closing,omitempty"`
}

// Sessions is the open client sessions of a node. Safe for concurrent use.
type Sessions interface {
	// Sessions is the number of open sessions.
	Sessions() int
	// SessionList returns at most limit open sessions with an ID above
	// after, in ID order, and the number of open sessions.
	SessionList(after uint64, limit int) ([]SessionInfo, int)
}

// ReminderShardID is the grain ID of reminder shard n (kind KindReminders).
func ReminderShardID(n int) string { return strconv.Itoa(n) }
