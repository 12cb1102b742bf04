// Package auth issues and verifies the session tokens that the WebSocket
// protocol (op "auth") and the HTTP API (Authorization: Bearer) accept.
//
// Tokens are JWTs signed with HMAC-SHA256 and a shared secret of at least 32
// bytes. Verification pins the algorithm (HS256 only: "none", RS256 and
// every other method are refused), checks issuer and audience, requires an
// expiry and allows 30 s of clock skew. The subject is the user id (it must
// satisfy couponmesh.ValidID) and the private claim "role" one of
// couponmesh's roles. Every verification error is a *couponmesh.Error with
// code unauthorized and a message fit for a client ("token expired", "token
// signature is invalid", …).
//
// It imports the domain package, the standard library and golang-jwt only.
// A *Tokens is immutable after New and safe for concurrent use.
package auth
