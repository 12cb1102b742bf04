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
)

// Ops lists every op of protocol v1, in the order of docs/PROTOCOL.md.
var Ops = []string{OpAuth, OpPing, OpSubscribe, OpUnsubscribe, OpGet, OpClaim, OpFollow, OpUnfollow, OpWallet, OpFeed}

// The push kinds of protocol v1: the value of a push's "push". Clients
// ignore kinds they do not know.
const (
	PushCoupon   = "coupon"
	PushFeed     = "feed"
	PushPresence = "presence"
)

// Pushes lists every push kind of protocol v1.
var Pushes = []string{PushCoupon, PushFeed, PushPresence}

// The drain handover (docs/PROTOCOL.md, "Drain handover"): a draining node
// sends the push PushDraining (DrainingPushFrame); the client sends nothing
// more on that session but the request OpDrained, answered with an empty
// ok before the 1012 close. They are control frames of the session, not
// in Ops or Pushes, and have no golden frames: the drain tests of
// cmd/couponmesh, transport/ws, client and webclient cover them.
const (
	OpDrained    = "drained"
	PushDraining = "draining"
)
