package protocol

import "github.com/couponmesh/couponmesh"

// Subprotocol is the WebSocket subprotocol of protocol v1: a client offers
// it, a server that does not accept it is not speaking v1.
const Subprotocol = "couponmesh.v1"

// The limits of protocol v1 (docs/PROTOCOL.md, "Limits"). Those the domain
// enforces too are the domain's constants; the server's configurable limits
// (rates, queue sizes, subscriptions per session) are in transport/ws.
const (
	// MaxIDLen is the longest coupon or user id: 1 to MaxIDLen characters
	// of [A-Za-z0-9_.-] (couponmesh.ValidID).
	MaxIDLen = couponmesh.MaxIDLen
	// MaxRIDLen is the longest idempotency key (rid) a claim may carry:
	// 1 to MaxRIDLen bytes.
	MaxRIDLen = couponmesh.MaxRIDLen
	// DefaultFeedLimit is the page size of a feed request without limit,
	// MaxFeedLimit the largest it may ask for.
	DefaultFeedLimit = couponmesh.DefaultFeedLimit
	MaxFeedLimit     = couponmesh.MaxFeedLimit
	// MaxRequestBytes is the largest client message a server accepts by
	// default (fragments included; the server's ws.read_limit): over it the
	// session is closed with 1009. A client keeps each request below it.
	MaxRequestBytes = 16 << 10
	// BatchBytes caps a server frame that holds several messages ('\n'
	// between them); a single message larger than this goes alone.
	BatchBytes = 64 << 10
)
