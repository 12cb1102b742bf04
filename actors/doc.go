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
// between nodes (see shared/notes/protoactor-guide.md). The one exception
// is deliberate and never leaves the node: Call sends the coupon writes and
// claims to a grain PID of its own node as a localRequest holding the Go
// payload, and a grain answers a caller of its own node with the Coupon,
// Claim or Empty value itself (local_call.go), which spares the JSON of
// both in one process; between nodes both are the envelope above.
//
// A grain kind declares its methods once, in a Methods table (a package
// variable): Handle and HandleLater register a typed handler per method
// name, and the table decodes the payload into the handler's request type
// (bad_request when it does not decode), calls it, and encodes its answer.
// The table changes nothing on the wire: the names and JSON payloads are
// those of messages.go. A grain's state machine reports what the entries
// it applied changed (coupon.Change, the user's feed entries), so the grain
// publishes without comparing states.
//
// Every grain also answers, through the shared Activation, actor.inspect
// (a couponmesh.Inspection: identity, activation time, journal seq, its state machine's
// Inspect view, hubs, and the last RecentSize requests it handled with their
// duration and outcome), actor.passivate (stop after answering) and
// actor.ping (load, then answer a couponmesh.Pong). An inspection is answered between
// two messages, even when the state cannot be loaded, and is not recorded;
// recording a request costs two clock reads and one 16-byte ring slot.
// The debug console and `couponmesh ctl actors` use them through
// GrainInspector (couponmesh.Grains).
//
// Journal writes are pipelined (Journal, Flush): a grain decides each request
// at once on its state plus its entries not yet durable, writes the entries
// of many requests (consecutive seqs) in one ordered Store.AppendOrdered off
// its mailbox, keeps receiving meanwhile, and answers each request (through
// the sender it saved, Replier) when the write reports back to it with a
// BatchResult message and the request's own entry is durable. A failed write
// makes the grain catch up from the journal and decide the rest again.
// Journal.CatchUp may be called only while the journal is Idle (see there).
//
// It may import the domain package, protoactor-go and the standard library;
// never transport/ or a persistence implementation (grains see
// couponmesh.Store).
package actors
