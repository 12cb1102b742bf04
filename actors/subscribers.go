package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
)

// Subscribers is a grain's set of node hubs that want its pushes, each held
// on a lease that the hub renews; a hub of a dead node simply stops renewing
// and is dropped. Owned by one grain; not safe for concurrent use.
type Subscribers struct {
	Lease time.Duration
	hubs  map[string]time.Time // hub address → last renewal
}

// Renew adds or renews hub addr and reports whether it was known.
func (s *Subscribers) Renew(addr string) (known bool) {
	if s.hubs == nil {
		s.hubs = make(map[string]time.Time)
	}
	_, known = s.hubs[addr]
	s.hubs[addr] = time.Now()
	return known
}

// Remove drops hub addr.
func (s *Subscribers) Remove(addr string) { delete(s.hubs, addr) }

// Len returns the number of hubs whose lease holds.
func (s *Subscribers) Len() int {
	s.expire()
	return len(s.hubs)
}

func (s *Subscribers) expire() {
	cutoff := time.Now().Add(-s.Lease)
	for addr, t := range s.hubs {
		if t.Before(cutoff) {
			delete(s.hubs, addr)
		}
	}
}

// Push sends frame to every hub, tagged method:key.
func (s *Subscribers) Push(ctx actor.Context, method, key string, frame []byte) {
	s.expire()
	for addr := range s.hubs {
		PushTo(ctx, addr, method, key, frame)
	}
}

// Nudge tells every hub that the grain kind/id is passivating (HubRenew).
func (s *Subscribers) Nudge(ctx actor.Context, kind, id string) {
	s.expire()
	for addr := range s.hubs {
		PushTo(ctx, addr, HubRenew, kind+"/"+id, nil)
	}
}

// PushTo sends one push frame to the hub at addr.
func PushTo(ctx actor.Context, addr, method, key string, frame []byte) {
	ctx.Send(actor.NewPID(addr, HubName), &cluster.GrainRequest{MessageTypeName: method + ":" + key, MessageData: frame})
}

// HandleHubRef handles a subscribe (renew) or unsubscribe request. It
// returns true when the request was one of them, and sendCurrent when a hub
// renewed a lease this grain did not know: the hub may have missed changes
// (the grain moved or was reactivated), so the grain should push its state.
func (s *Subscribers) HandleHubRef(ctx actor.Context, req *cluster.GrainRequest, subscribe, unsubscribe string) (handled bool, sendCurrent string) {
	if req.MessageTypeName != subscribe && req.MessageTypeName != unsubscribe {
		return false, ""
	}
	var p HubRef
	if !Unpack(ctx, req, &p) {
		return true, ""
	}
	if req.MessageTypeName == unsubscribe {
		s.Remove(p.Address)
		Respond(ctx, Empty{}, nil)
		return true, ""
	}
	known := s.Renew(p.Address)
	Respond(ctx, Empty{}, nil)
	if p.Refresh && !known {
		return true, p.Address
	}
	return true, ""
}
