// Package bench is couponmesh's whole-system load harness, behind
// `couponmesh bench SCENARIO [flags]`: each scenario starts its own
// processes (one `couponmesh devdb` and the nodes, from the running
// executable, on 127.0.0.1 with free ports, optionally pinned to CPUs with
// taskset), loads them from this process through the Go SDK (or raw
// WebSockets where the SDK would be the bottleneck), prints one summary
// line with its DESIGN.md target beside it, writes its results as JSON
// into --out, and stops every process again, also on an error or Ctrl-C.
// `bench report` turns the JSON results into the table of
// docs/BENCHMARKS.md.
//
// One file per scenario (capacity, fanout, coupons, claims, flashsale,
// reads, failover, drain, presence, timers); runner.go is what they share:
// the processes (on cluster/clustertest's Proc and Node), tokens, free
// ports, CPU and memory readings, figures and results. admin.go reads the
// nodes' admin API, journal.go the journal through persistence/mongodb.
//
// It may import the domain package, client/, transport/auth (to sign the
// nodes' tokens), cluster/clustertest, persistence/mongodb and the actor
// kinds and journal formats of actors/; never transport/ws (it speaks the
// protocol as a client does) nor cmd/; layout_test.go checks it. Run is
// the entry point; RawCollection and RawBulkRate (the raw database
// baseline) are shared with BenchmarkDurableClaims in cmd/couponmesh. A
// scenario runs on the calling goroutine and is not meant to run twice at
// once in one process.
package bench
