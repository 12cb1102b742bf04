// Package chaos is couponmesh's fault-injection suite (`make chaos`): three
// node processes and the embedded database, each in a network namespace of
// its own on a private bridge (internal/netlab), under a steady claim load
// from the test process, while one real fault happens at a time: a
// partition, a paused or killed node, a paused, killed or full database,
// lost gossip packets, a node added and one drained.
//
// Every scenario records each claim and the answer its client saw
// (internal/history), shoppers without SDK retries apart from shoppers with
// them, then reads the journal straight from the database and checks the
// invariants of DESIGN.md: no coupon over its quantity, no unit granted
// twice, every acknowledged claim in the journal with its n and code, no
// claim in the journal that a client was told failed; every watcher (one
// per node, reconnecting with the versions it saw) ends at the final state;
// every user's feed read through a node equals its journal. It prints a
// table per run (docs/RELIABILITY.md keeps the latest).
//
// TestSoak (`make soak`, outside CI; skipped unless SOAK_DURATION is set)
// runs the same cluster under the same load, plus rounds of new coupons and
// users, for SOAK_DURATION, samples each node's RSS and Go heap, and checks
// that they level off (soak_verdict_test.go says how).
//
// The tests carry the build tag chaos (run by `make chaos`, which .ci/run
// calls), need root and iproute2 and iptables, and remove every namespace,
// rule, mount and process they create. Test-only code.
package chaos
