// Package client is the Go SDK of couponmesh: a protocol v1 WebSocket client
// (docs/PROTOCOL.md) and helpers for the HTTP API. Tests, the load
// generator and, through gomobile, the mobile apps use it. Its frames are
// package protocol's (Sub, AuthInfo and SubscribeResult are aliases of
// protocol types); its tests hold it to protocol's golden frames.
//
// A Client's request methods may be called concurrently; each sends one
// request and waits for the reply with the same id, so replies may arrive
// in any order. The server may put several messages in one text frame,
// separated by '\n'; the reader splits them.
//
// Pushes reach the Options callbacks one at a time, in order: on the
// connection's reader goroutine, or, for the snapshots and feed entries a
// client reads by itself (resync, feed gaps), on the goroutine reading them.
// A callback must not block for long and must not wait for a reply of the
// same client (that would stall the reader). The client applies the
// protocol's ordering rules before calling them: OnCoupon gets a coupon
// state only if it is newer than any version the client has seen of that
// coupon (pushes, and the replies to Subscribe, Get and Follow); once Feed
// has succeeded, OnFeed gets each later seq once, in order, and the client
// reads the feed after the last seq itself when a push reveals a gap.
//
// Without Options.Reconnect a Client owns one connection: when it ends, Done
// is closed, CloseStatus tells the server's close code and every call fails
// with an error wrapping ErrClosed.
//
// With Options.Reconnect the Client outlives its connections. When one is
// lost (no close frame, 1001, 1011, 1012, 1013, …) it reconnects with
// exponential backoff and full jitter (Options.Backoff), trying first the
// nodes a draining node named in its 1012 close reason, then the known
// addresses (Dial's url and Options.Addresses) in turn. On the new
// connection it resyncs before any call goes out (docs/PROTOCOL.md, "Resync
// after a reconnect"): auth with Options.Token or the last token given to
// Auth, subscribe to every coupon subscribed to or followed with the newest
// version seen, and, if Feed was called, read the feed after the last seq
// delivered; newer snapshots and the missed entries reach OnCoupon and
// OnFeed. Calls made while reconnecting wait for the new connection (until
// their ctx ends); calls whose connection was lost before the reply are
// sent again on the next one: every v1 op is idempotent, a claim thanks to
// its rid. The client does not reconnect after Close, after close codes
// 1002, 1008 and 1009, or when the server refuses the token (unauthorized,
// forbidden): it ends (StateClosed, Done closed) and Err tells why.
//
// A draining node first sends a draining push (docs/PROTOCOL.md, "Drain
// handover"). The Client then sends nothing more on that connection and
// tells the node so (op drained, after the requests being written); the
// node answers what it received and closes with 1012. With Reconnect the
// next connection is opened at once, to the nodes the push names first,
// and calls not sent yet wait for it (any op: the server never saw them).
// Without Reconnect a call made after the push fails at once with an error
// wrapping ErrNotSent and ErrClosed.
//
// A 1012 close means the node ran none of the requests it left unanswered
// (docs/PROTOCOL.md, "Drain handover", revision 6): their calls fail with
// an error wrapping ErrNotSent and ErrClosed, or, with Reconnect, are sent
// again on the next connection (any op). After any other close, or a
// connection lost without one, an unanswered call's outcome is unknown: it
// fails with ErrClosed alone (with Reconnect, the v1 ops are sent again, as
// they are idempotent).
// Options.OnState reports StateConnected, StateReconnecting and
// StateClosed.
//
// The connection state lives in a link value apart from the Client; a
// supervisor goroutine replaces the link after a loss.
//
// It imports the domain package and coder/websocket; never the server's
// transport packages.
package client
