// Package benchutil is the timed loop shared by the module's benchmarks:
// run an operation from several goroutines, for a duration or a number of
// operations, and summarise its rate and latency percentiles.
//
// Test support only: it imports testing and is imported by _test files
// only. It imports the standard library only.
package benchutil
