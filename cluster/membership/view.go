package membership

import "github.com/couponmesh/couponmesh"

// View returns the provider as the admin API sees it (couponmesh.Membership).
func (p *Provider) View() couponmesh.Membership { return view{p} }

type view struct{ p *Provider }

func (v view) Self() couponmesh.Member {
	return Member{Meta: v.p.Self(), Status: "alive"}.domain()
}

func (v view) Members() []couponmesh.Member {
	ms := v.p.Members()
	out := make([]couponmesh.Member, len(ms))
	for i, m := range ms {
		out[i] = m.domain()
	}
	return out
}

func (m Member) domain() couponmesh.Member {
	return couponmesh.Member{ID: m.ID, Host: m.Host, Port: m.Port, Kinds: m.Kinds, Name: m.Name, HTTP: m.HTTP, Admin: m.Admin,
		Gossip: m.Gossip, Status: m.Status, Since: m.Since}
}
