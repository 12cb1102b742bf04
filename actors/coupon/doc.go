// Package coupon is the coupon grain: the single writer of one coupon's
// state, fenced in the database by its journal.
//
// Messages accepted (actors.Coupon* methods): get, create, update, withdraw
// (merchant or admin), claim (idempotent per user and request id), subscribe
// and unsubscribe of node hubs, follower (a user's follow or unfollow, after
// it is in the database), and the reminders' wake-up (actors.RemindMethod).
// They are declared once, in the grain's actors.Methods table. Replies: the
// coupon JSON or a claim; errors are domain codes.
//
// Events published: after every change, one push frame per subscribed node
// hub (protocol.CouponPush, encoded once); after a change of title, terms,
// quantity or status (the Machine reports it: Change), one coupon_changed notice to each follower's user grain
// (for their feeds), from a follower set the grain keeps (followers.go),
// read when missing or older than 30 s in batches shared by the node's
// coupon grains (followerloads.go).
// Pushes to one hub leave in version order.
//
// A claim is answered only after its journal entry is durable. Claims are
// pipelined (actors.Journal): the grain decides each on the durable state
// plus the claims pending (their count holds stock, their users are
// remembered), writes many in one ordered write while it keeps deciding new
// ones, and publishes one push per write, not per claim. Answered from memory
// at once, without waiting on the database or the pending write: a user's
// claim that is durable (the same rid gets its first answer, another rid
// already_claimed) and a coupon durably sold out, expired or withdrawn. A
// claim of a user whose claim is pending waits for that one; a claim while
// pending claims hold the last units waits for them (they could still fail)
// and is never refused sold_out before. Create, update and withdraw wait
// until nothing is pending, and claims wait behind them. Two activations of
// one coupon can exist during membership churn: the journal's unique keys
// decide, and the loser catches up and decides again, so the quantity is
// never exceeded.
//
// The shared methods actor.inspect, actor.passivate and actor.ping are
// answered by actors.Activation (see package actors).
package coupon
