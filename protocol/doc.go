// Package protocol defines couponmesh protocol v1 (docs/PROTOCOL.md) once,
// for the server (transport/ws), the Go SDK (client/) and the grains that
// encode pushes (actors/): the subprotocol name and limits, the ops and push
// kinds, the frame types of requests, replies, pushes and errors, the
// request decoder and the frame encoders.
//
// The values the frames carry (Coupon, Claim, FeedEntry, the error codes and
// Error) are the domain's, in the root package couponmesh; the limits the
// domain enforces itself (ids, feed pages, rids) are defined there and
// listed here under the same names.
//
// The golden frames in testdata/ (one file per request op, reply, push kind
// and error code) are the wire format: this package's tests check the
// encoders against them, and the tests of transport/ws, client/ and the JS
// SDK (webclient/test/golden.test.js) decode and produce them, so no side
// can rename a field alone. `go test ./protocol -run Golden -update`
// rewrites them from the encoders (then review the diff: every client reads
// them).
//
// It imports only the standard library and the domain package. Everything
// here is safe for concurrent use.
package protocol
