package placement

import (
	"github.com/asynkron/protoactor-go/actor"
	"github.com/couponmesh/couponmesh"
)

// View returns the lookup as the admin API sees it (couponmesh.Placement).
func (l *Lookup) View() couponmesh.Placement { return view{l} }

type view struct{ l *Lookup }

func (v view) ActorCounts() map[string]int { return v.l.Counts() }

func (v view) LocalActivations(kind, after string, limit int) []couponmesh.Activation {
	acts := v.l.Activations(kind, after, limit)
	out := make([]couponmesh.Activation, len(acts))
	for i, a := range acts {
		out[i] = a.domain()
	}
	return out
}

func (v view) LocalActivation(kind, id string) (couponmesh.Activation, bool) {
	a, ok := v.l.Find(kind, id)
	return a.domain(), ok
}

func (v view) OwnerAddress(kind, id string) string { return v.l.Owner(kind, id) }

func (a Activation) domain() couponmesh.Activation {
	return couponmesh.Activation{Kind: a.Kind, ID: a.ID, Since: a.Since, Mailbox: a.MailboxLen()}
}

// PID returns the PID of the local activation of kind/id, if there is one
// (what actors.NewGrainInspector asks).
func (l *Lookup) PID(kind, id string) (*actor.PID, bool) {
	a, ok := l.Find(kind, id)
	return a.PID, ok
}
