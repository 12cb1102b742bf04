package ws

import (
	"sort"
	"time"
)

// SessionInfo is a read-only view of one open session (the admin API's
// sessions list).
type SessionInfo struct {
	ID            uint64    `json:"id"`
	User          string    `json:"user"` // empty until authenticated
	Since         time.Time `json:"since"`
	Subscriptions int       `json:"subscriptions"`
	Queue         int       `json:"queue"` // frames waiting in the send queue
	Closing       bool      `json:"closing,omitempty"`
}

// SessionList returns at most limit open sessions with an ID above after,
// in ID order (IDs grow with the connection order), and the number of open
// sessions. It takes each session's lock briefly, one at a time; safe for
// concurrent use.
func (h *Handler) SessionList(after uint64, limit int) ([]SessionInfo, int) {
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
	out := make([]SessionInfo, len(open))
	for i, s := range open {
		s.mu.Lock()
		out[i] = SessionInfo{ID: s.id, User: s.principal.User, Since: s.since, Subscriptions: len(s.subs), Queue: len(s.queue), Closing: s.closing}
		s.mu.Unlock()
	}
	return out, total
}
