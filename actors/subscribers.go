package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
)

// Subscribers is a grain's set of node hubs that want its pushes, each held
// on a lease that the hub renews; a hub of a dead node simply stops renewing
// and is dropped. With each lease it keeps the hub's last presence count
// (HubRef.Watching), so a dropped hub stops counting with its lease. Owned
// by one grain; not safe for concurrent use.
type Subscribers struct {
	Lease time.Duration
	hubs  map[string]hubLease // hub address → lease
	gone  map[string]hubLease // hubs that unregistered: their Seq, until a lease from then has run out
}

type hubLease struct {
	at       time.Time // last renewal (gone: when it unregistered)
	watching int
	seq      uint64
}

// Renew adds or renews hub addr and reports whether it was known.
func (s *Subscribers) Renew(addr string) (known bool) {
	return s.apply(HubRef{Address: addr})
}

// apply renews the lease of p.Address with p's count, unless p is older
// than what the grain applied from that hub (then it changes nothing and
// reports known).
func (s *Subscribers) apply(p HubRef) (known bool) {
	if s.hubs == nil {
		s.hubs = make(map[string]hubLease)
	}
	cur, known := s.hubs[p.Address]
	if p.Seq != 0 {
		if g, ok := s.gone[p.Address]; ok {
			if p.Seq < g.seq && time.Since(g.at) < s.Lease {
				return true // sent before the hub unregistered
			}
			delete(s.gone, p.Address)
		}
		if known && p.Seq < cur.seq {
			cur.at = time.Now() // the hub is alive; its newer count stands
			s.hubs[p.Address] = cur
			return true
		}
	}
	s.hubs[p.Address] = hubLease{at: time.Now(), watching: max(p.Watching, 0), seq: p.Seq}
	return known
}

// Known reports whether hub addr holds a lease (Subscribe with a renewal
// from it returns "": the grain need not push it its state).
func (s *Subscribers) Known(addr string) bool {
	_, ok := s.hubs[addr]
	return ok
}

// Remove drops hub addr.
func (s *Subscribers) Remove(addr string) { delete(s.hubs, addr) }

// unregister drops hub p.Address unless a newer ref of it was applied, and
// remembers p.Seq so that older refs still on their way are ignored.
func (s *Subscribers) unregister(p HubRef) {
	if cur, ok := s.hubs[p.Address]; ok && p.Seq != 0 && p.Seq < cur.seq {
		return // the hub registered again after sending this
	}
	delete(s.hubs, p.Address)
	if p.Seq != 0 {
		if s.gone == nil {
			s.gone = make(map[string]hubLease)
		}
		s.gone[p.Address] = hubLease{at: time.Now(), seq: p.Seq}
	}
}

// Len returns the number of hubs whose lease holds.
func (s *Subscribers) Len() int {
	s.expire()
	return len(s.hubs)
}

// Watching returns the sum of the presence counts of the hubs whose lease
// holds.
func (s *Subscribers) Watching() int {
	s.expire()
	n := 0
	for _, l := range s.hubs {
		n += l.watching
	}
	return n
}

// Watchers returns the presence count of each hub whose lease holds and
// that counts someone, by hub address.
func (s *Subscribers) Watchers() map[string]int {
	s.expire()
	var out map[string]int
	for addr, l := range s.hubs {
		if l.watching > 0 {
			if out == nil {
				out = make(map[string]int)
			}
			out[addr] = l.watching
		}
	}
	return out
}

// NextCountExpiry returns when the earliest lease of a hub that counts
// someone runs out (zero: none counts), so that the grain can notice the
// count dropping without a message.
func (s *Subscribers) NextCountExpiry() time.Time {
	var next time.Time
	for _, l := range s.hubs {
		if l.watching > 0 {
			if at := l.at.Add(s.Lease); next.IsZero() || at.Before(next) {
				next = at
			}
		}
	}
	return next
}

func (s *Subscribers) expire() {
	cutoff := time.Now().Add(-s.Lease)
	for addr, l := range s.hubs {
		if l.at.Before(cutoff) {
			delete(s.hubs, addr)
		}
	}
	for addr, l := range s.gone {
		if l.at.Before(cutoff) {
			delete(s.gone, addr)
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
	if addr != ctx.ActorSystem().Address() {
		remotePushes.Inc()
	}
	ctx.Send(actor.NewPID(addr, HubName), &cluster.GrainRequest{MessageTypeName: method + ":" + key, MessageData: frame})
}

// Subscribe applies a hub's registration or renewal (the subscribe method
// of a grain kind). It returns the hub's address when the hub renewed a
// lease this grain did not know (p.Refresh): the hub may have missed changes
// (the grain moved or was reactivated), so the grain should push it its
// state. Else it returns "".
func (s *Subscribers) Subscribe(p HubRef) (sendCurrent string) {
	if known := s.apply(p); p.Refresh && !known {
		return p.Address
	}
	return ""
}

// Unsubscribe applies a hub's unregistration (the unsubscribe method of a
// grain kind).
func (s *Subscribers) Unsubscribe(p HubRef) { s.unregister(p) }
