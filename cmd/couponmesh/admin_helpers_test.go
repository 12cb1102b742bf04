package main

import (
	"context"
	"os"

	"github.com/couponmesh/couponmesh/transport/admin"
)

// The admin API's types and client under the names the node-process tests
// of this package use.
type (
	MemberInfo    = admin.MemberInfo
	ActorInfo     = admin.ActorInfo
	ActorDetail   = admin.ActorDetail
	ProbeResult   = admin.ProbeResult
	RemindersInfo = admin.RemindersInfo
	DrainRequest  = admin.DrainRequest
)

// adminCall calls a node's admin API with the token in
// COUPONMESH_ADMIN_TOKEN (if set); see admin.Call.
func adminCall(ctx context.Context, addr, method, path string, body, out any) error {
	return admin.Call(ctx, os.Getenv("COUPONMESH_ADMIN_TOKEN"), addr, method, path, body, out)
}
