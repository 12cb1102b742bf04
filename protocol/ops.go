package protocol

// The ops of protocol v1: the value of a request's "op".
const (
	OpAuth        = "auth"
	OpPing        = "ping"
	OpSubscribe   = "subscribe"
	OpUnsubscribe = "unsubscribe"
	OpGet         = "get"
	OpClaim       = "claim"
	OpFollow      = "follow"
	OpUnfollow    = "unfollow"
	OpWallet      = "wallet"
	OpFeed        = "feed"
	// OpDrained is the client's answer to a draining push: it sends nothing
	// more on the session (docs/PROTOCOL.md, "Drain handover"). The session
	// answers it itself (an empty ok, before the 1012 close); it is not an
	// op a service serves, and the SDKs send it by themselves, never for
	// their callers.
	OpDrained = "drained"
)

// Ops lists every op of protocol v1, in the order of docs/PROTOCOL.md
// (OpDrained last: a client sends nothing after it on a session).
var Ops = []string{OpAuth, OpPing, OpSubscribe, OpUnsubscribe, OpGet, OpClaim, OpFollow, OpUnfollow, OpWallet, OpFeed, OpDrained}

// The push kinds of protocol v1: the value of a push's "push". Clients
// ignore kinds they do not know.
const (
	PushCoupon   = "coupon"
	PushFeed     = "feed"
	PushPresence = "presence"
	// PushDraining announces a drain (DrainingPushFrame): the node will
	// close the session with 1012 once what it received is answered.
	PushDraining = "draining"
)

// Pushes lists every push kind of protocol v1.
var Pushes = []string{PushCoupon, PushFeed, PushPresence, PushDraining}
