// Package httpapi is the public HTTP surface of a node: the REST API for
// coupons, dev login, health and readiness, the static web client, and the
// route to the WebSocket handler (/ws).
//
// It authenticates (Authorization: Bearer, verified with transport/auth) and
// passes the Principal on; authorization (roles, ownership) is the
// Service's. Errors are JSON {"error":{"code":…,"message":…}} with the status
// given by StatusOf, the one table from error codes to HTTP statuses.
// Internal errors are logged, never sent.
//
// It reaches the system only through couponmesh.Service and the handlers it
// is given; it never imports actors, cluster or persistence. The handler New
// returns is safe for concurrent use.
package httpapi
