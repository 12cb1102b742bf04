// Package user is the user grain: one shopper's follows, wallet and feed.
//
// Messages accepted (actors.User* methods): claim (takes a write token,
// calls the coupon grain off the mailbox, records the claim once the
// coupon grain made it durable), admit and record_claim (the same in two
// steps, for nodes of older builds during a rolling update), follow,
// unfollow, following, wallet, feed,
// attach and detach of node hubs (the nodes holding the user's live
// sessions), and coupon_changed notices from coupon grains; declared once,
// in the grain's actors.Methods table.
//
// The feed is the user's journal: entry seq n is feed position n, with no
// gaps, so a client resumes with a range read. Every new entry is pushed once
// to each attached hub, in seq order: the Machine reports each entry it
// applies (OnEntry), its own and those another activation wrote. A claim
// reaches the wallet before the claim is acknowledged: claim answers once
// the wallet's entry is durable; if that fails the client is told
// unavailable and its retry (same request id, idempotent) records it. While
// a claim's coupon call is out the grain is Busy: it does not passivate or
// leave until the answer came back and was recorded.
//
// Writes are pipelined through actors.Journal: claims and
// coupon_changed entries of a busy feed go out many per write (each answered
// once its own entry is durable); follow and unfollow wait until nothing is
// pending, since they decide on the follows.
//
// Write rate: each activation holds a token bucket (GrainConfig.UserWrites)
// that claim (admit), follow and unfollow take from; without a token they answer
// rate_limited and change nothing. Since a user has one activation in the
// cluster, the bound holds across all of the user's sessions and nodes. It
// is not persisted: a reactivated user starts with a full bucket.
//
// The shared methods actor.inspect, actor.passivate and actor.ping are
// answered by actors.Activation (see package actors).
package user
