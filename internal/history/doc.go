// Package history is the claim-history checker shared by the cluster tests
// and the fault-injection suite: a Recorder keeps every claim request a
// test's clients send and the answer each got (ok with n and code,
// sold_out, already_claimed, another error code, no answer), and Check
// reads the coupon and user journals straight from the database (not
// through the grains) and reports every broken invariant:
//
//   - no coupon has more claims in its journal than its quantity;
//   - no unit n of a coupon is granted twice (in the journal, or in the
//     answers clients got);
//   - every acknowledged claim is in the coupon's journal, and in its
//     user's journal (the wallet), with the same n and code;
//   - no claim is in the journal under a request id whose client was told
//     a definite failure (sold_out, already_claimed, …);
//   - one claim per user and coupon.
//
// FeedEnd and CheckFeed check a feed a client received against its user's
// journal: no gap, no repeat, ending at the journal's last seq. Report also
// gives what a fault scenario prints: outcomes, error codes as clients saw
// them, and the longest time without an acknowledged claim.
//
// Test support only: it is imported by _test files and by nothing the
// binary ships. It imports the domain package, actors/coupon and
// actors/user (for their journal formats) and persistence/mongodb. A
// Recorder is safe for concurrent use; Check is a plain function.
package history
