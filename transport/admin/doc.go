// Package admin is the admin listener of a node: the admin API (JSON under
// /admin/api/, what `couponmesh ctl` calls), the debug console (/debug, one
// self-contained page over the API), Go profiles (/debug/pprof/) and
// whatever metrics handler it is given (/metrics), all behind the admin
// token; and Call, the client of the API that ctl and other nodes use.
//
// Any node answers for the whole cluster: the members list asks every
// member for its counts, and a request about one grain is forwarded to the
// admin API of the member owning it (?local=1 stops the forwarding), so
// that only that member talks to the grain, and only if it has a local
// activation: inspecting never activates; a probe does.
//
// It sees the node only through the domain's interfaces
// (couponmesh.Inspector, couponmesh.Sessions) and the funcs of its Config:
// it never imports protoactor, actors, cluster or persistence. The handler
// of a Server is safe for concurrent use.
package admin
