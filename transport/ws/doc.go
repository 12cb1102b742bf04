// Package ws is the WebSocket endpoint of protocol v1 (docs/PROTOCOL.md):
// sessions, request dispatch, and the bounded per-session writer through
// which replies and hub pushes leave the node.
//
// It reaches the rest of the system only through couponmesh.Service (every
// request) and couponmesh.Hub (push registrations); it never imports the
// actors, the cluster or persistence packages. Tokens are checked with
// transport/auth. The frames, ops and limits of protocol v1 are package
// protocol's (its request decoder and frame encoders included); this package
// keeps only what it encodes or reads by hand for speed (couponFrame, the
// push prefixes of conflation), checked against protocol's golden frames.
//
// Sessions. An idle session costs one goroutine, its reader (started when
// the upgrade is done, so that net/http's request and buffers are freed),
// and read/write buffers of 1 and 2 KiB. Writing is done by the Handler's
// few writer goroutines, which take the sessions with frames waiting in turn
// (see writers.go: a fan-out never makes thousands of goroutines runnable,
// and a client that stops reading holds a writer for at most 10 ms before
// another one starts). Requests other than auth and ping run in their own
// short-lived goroutines, at most Config.MaxInflight per session, each
// bounded by Config.RequestTimeout, so replies may leave out of order (their
// ids match them to requests). A WebSocket ping goes out every
// Config.PingInterval from a short-lived goroutine, so a slow pong never
// holds back queued frames; a missing pong ends the session.
//
// Send queue. Replies and pushes share one bounded queue per session (a
// mutex-guarded slice: an idle session holds no buffer). A session's Send
// (its couponmesh.Sink side) never blocks: when the queue holds
// Config.SendQueue frames besides the conflated pushes (at most one per
// coupon and one per coupon's presence, conflate.go) the session is dropped with close code 1013 and
// detached from the hub (asynchronously, so a hub calling Send under its own
// lock cannot deadlock). The writer drains everything queued into as few
// text frames as possible, several messages per frame separated by '\n', up
// to 64 KiB per frame; a push frame is written as the hub encoded it, never
// re-encoded.
//
// Limits (Config). Before the upgrade, per client address (the TCP peer, or
// the X-Forwarded-For hop named by a trusted proxy; IPv6 per /64): a token
// bucket of handshakes and a count of open sessions, both answered with HTTP
// 429. Per session: ReadLimit per message (fragments included: 1009), a token
// bucket over every frame (rate_limited, then 1008 when the refusals go on),
// MaxInflight and MaxSubscriptions. Per user on the node: SessionsPerUser
// authenticated sessions (the auth over it answers rate_limited, then 1008).
// Per-user write rates across the cluster are the user grain's business,
// behind couponmesh.Service.
//
// Anonymous sessions: a session that sends subscribe, unsubscribe or get
// before any auth becomes anonymous (a visitor browsing the web app): it may
// use those ops only (the rest answer unauthorized), has no auth deadline,
// counts against Config.AnonymousPerIP of its client address and has the
// anonymous request rate and subscription limit. A later auth makes it a
// normal session on the same connection, its subscriptions kept.
//
// Inspection: Handler.SessionList is a read-only, paged view of the open
// sessions (user, subscriptions, send queue length) for the admin API.
//
// Concurrency: Handler's methods are safe for concurrent use. A session's
// Send may be called from any goroutine (the hub's, an actor's).
package ws
