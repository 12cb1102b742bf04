// Package user is the user grain: one shopper's follows, wallet and feed.
//
// Messages accepted (actors.User* methods): admit (before a claim: takes a
// write token), record_claim (after the coupon grain made a claim durable),
// follow, unfollow, following, wallet, feed,
// attach and detach of node hubs (the nodes holding the user's live
// sessions), and coupon_changed notices from coupon grains; declared once,
// in the grain's actors.Methods table.
//
// The feed is the user's journal: entry seq n is feed position n, with no
// gaps, so a client resumes with a range read. Every new entry is pushed once
// to each attached hub, in seq order: the Machine reports each entry it
// applies (OnEntry), its own and those another activation wrote. A claim reaches the wallet through
// record_claim, which the service sends before it acknowledges the claim;
// if that fails the client is told unavailable and its retry (same request
// id, idempotent) records it.
//
// Writes are pipelined through actors.Journal: record_claim and
// coupon_changed entries of a busy feed go out many per write (each answered
// once its own entry is durable); follow and unfollow wait until nothing is
// pending, since they decide on the follows.
//
// Write rate: each activation holds a token bucket (GrainConfig.UserWrites)
// that admit, follow and unfollow take from; without a token they answer
// rate_limited and change nothing. Since a user has one activation in the
// cluster, the bound holds across all of the user's sessions and nodes. It
// is not persisted: a reactivated user starts with a full bucket.
//
// The shared methods actor.inspect, actor.passivate and actor.ping are
// answered by actors.Activation (see package actors).
package user
