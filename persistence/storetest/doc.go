// Package storetest is the conformance suite of couponmesh.Store. Every
// implementation (the MongoDB store, a cache layered over it) runs Run from
// its own tests, against real parts: no fake database.
//
// It imports the standard library (testing included) and the domain package
// only, and is imported by tests only.
//
// Concurrency: Run calls newStore once per subtest and runs subtests in
// parallel, so an implementation must give each call an independent, empty
// store (e.g. a fresh database name on one server).
package storetest
