// Package client is the Go SDK of couponmesh: a protocol v1 WebSocket client
// (docs/PROTOCOL.md) and helpers for the HTTP API. Tests, the load
// generator and, through gomobile, the mobile apps use it.
//
// A Client owns one WebSocket connection. Its request methods may be called
// concurrently; each sends one request and waits for the reply with the same
// id, so replies may arrive in any order. Pushes are delivered to the
// Options callbacks on the client's single reader goroutine, in the order
// the server sent them; a callback must not block for long and must not wait
// for a reply of the same client (that would stall the reader).
//
// The server may put several messages in one text frame, separated by '\n';
// the reader splits them.
//
// No reconnect yet: when the connection ends, Done is closed, CloseStatus
// tells the server's close code and every call fails with an error wrapping
// ErrClosed. The connection state lives in a link value apart from the
// Client so that a reconnecting Client can swap links later.
//
// It imports the domain package and coder/websocket; never the server's
// transport packages.
package client
