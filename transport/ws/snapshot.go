package ws

import (
	"sort"

	"github.com/couponmesh/couponmesh"
)

var _ couponmesh.Sessions = (*Handler)(nil)

// SessionList returns at most limit open sessions with an ID above after,
// in ID order (IDs grow with the connection order), and the number of open
// sessions. It takes each session's lock briefly, one at a time; safe for
// concurrent use.
func (h *Handler) SessionList(after uint64, limit int) ([]couponmesh.SessionInfo, int) {
	h.mu.Lock()
	open := make([]*session, 0, len(h.sessions))
	for s := range h.sessions {
		if s.id > after {
			open = append(open, s)
		}
	}
	total := len(h.sessions)
	h.mu.Unlock()
	sort.Slice(open, func(i, j int) bool { return open[i].id < open[j].id })
	if limit > 0 && len(open) > limit {
		open = open[:limit]
	}
	out := make([]couponmesh.SessionInfo, len(open))
	for i, s := range open {
		s.mu.Lock()
		out[i] = couponmesh.SessionInfo{ID: s.id, User: s.principal.User, Since: s.since, Subscriptions: len(s.subs), Queue: len(s.queue), Closing: s.closing}
		s.mu.Unlock()
	}
	return out, total
}
