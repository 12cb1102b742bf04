package actors

import (
	"context"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/couponmesh/couponmesh"
)

// GrainInspector implements couponmesh.Grains for the admin API: inspect and
// passivate go to a local activation directly by PID (they never activate),
// probes and reminder shard checks go through the cluster like any call.
// Safe for concurrent use.
type GrainInspector struct {
	c     *cluster.Cluster
	local func(kind, id string) (*actor.PID, bool)
}

var _ couponmesh.Grains = (*GrainInspector)(nil)

// NewGrainInspector returns the inspector of the grains of c; local returns
// the PID of this node's activation of kind/id, if there is one (the
// identity lookup's view).
func NewGrainInspector(c *cluster.Cluster, local func(kind, id string) (*actor.PID, bool)) *GrainInspector {
	return &GrainInspector{c: c, local: local}
}

// inspectWait bounds a direct request when ctx has no deadline.
const inspectWait = 5 * time.Second

func ctxWait(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return inspectWait
}

// InspectActor implements couponmesh.Grains.
func (g *GrainInspector) InspectActor(ctx context.Context, kind, id string) (couponmesh.Inspection, error) {
	var in couponmesh.Inspection
	pid, ok := g.local(kind, id)
	if !ok {
		return in, couponmesh.ErrNotActive
	}
	res, err := g.c.ActorSystem.Root.RequestFuture(pid, Request(ActorInspect, Empty{}), ctxWait(ctx)).Result()
	if err == nil {
		err = Decode(res, &in)
	}
	return in, err
}

// PassivateActor implements couponmesh.Grains.
func (g *GrainInspector) PassivateActor(ctx context.Context, kind, id string) (bool, error) {
	pid, ok := g.local(kind, id)
	if !ok {
		return false, couponmesh.ErrNotActive
	}
	res, err := g.c.ActorSystem.Root.RequestFuture(pid, Request(ActorPassivate, Empty{}), ctxWait(ctx)).Result()
	if err == nil {
		err = Decode(res, nil)
	}
	if err != nil {
		return false, err
	}
	for {
		if cur, ok := g.local(kind, id); !ok || cur.Id != pid.Id {
			return true, nil
		}
		select {
		case <-ctx.Done():
			return false, nil
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// ProbeActor implements couponmesh.Grains.
func (g *GrainInspector) ProbeActor(ctx context.Context, kind, id string) (couponmesh.Pong, error) {
	var pong couponmesh.Pong
	err := Call(ctx, g.c, DefaultCallConfig(), kind, id, ActorPing, Empty{}, &pong)
	return pong, err
}

// ReminderShard implements couponmesh.Grains.
func (g *GrainInspector) ReminderShard(ctx context.Context, n int) (couponmesh.ShardStatus, error) {
	var st couponmesh.ShardStatus
	cfg := DefaultCallConfig()
	cfg.Timeout = ctxWait(ctx)
	err := Call(ctx, g.c, cfg, KindReminders, couponmesh.ReminderShardID(n), ReminderCheck, Empty{}, &st)
	return st, err
}
