// Package actors hosts the virtual actors of couponmesh on protoactor-go's
// cluster: the coupon and user grains (subpackages coupon and user), the
// per-node hub (subpackage hub), and Service, the couponmesh.Service the
// transport layer calls.
//
// Messages between nodes are protobuf: every request is a
// cluster.GrainRequest whose MessageTypeName names the method and whose
// MessageData is the JSON payload; replies are cluster.GrainResponse (JSON) or
// cluster.GrainErrorResponse (Reason = error code, Message = client-safe
// text). A plain Go struct would work on one node and be silently dropped
// between nodes (see shared/notes/protoactor-guide.md).
//
// Every grain also answers, through the shared Activation, actor.inspect
// (an Inspection: identity, activation time, journal seq, its state machine's
// Inspect view, hubs, and the last RecentSize requests it handled with their
// duration and outcome), actor.passivate (stop after answering) and
// actor.ping (load, then answer a Pong). An inspection is answered between
// two messages, even when the state cannot be loaded, and is not recorded;
// recording a request costs two clock reads and one 16-byte ring slot.
// The debug console and `couponmesh ctl actors` use them.
//
// It may import the domain package, protoactor-go and the standard library;
// never transport/ or a persistence implementation (grains see
// couponmesh.Store).
package actors
