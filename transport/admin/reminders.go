package admin

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/couponmesh/couponmesh"
)

// ShardInfo is one reminder shard as GET /admin/api/reminders shows it:
// what the shard grain holds, where it lives, and its next due time. Error
// says why a shard did not answer.
type ShardInfo struct {
	couponmesh.ShardStatus
	Node    string     `json:"node,omitempty"`    // the member owning the shard in the asked node's view
	NextDue *time.Time `json:"nextDue,omitempty"` // the earliest reminder it holds (nil: none)
	Error   string     `json:"error,omitempty"`
}

// RemindersInfo answers GET /admin/api/reminders.
type RemindersInfo struct {
	Node    string      `json:"node"` // the node asked
	At      time.Time   `json:"at"`
	Shards  []ShardInfo `json:"shards"`            // every shard, by number
	NextDue *time.Time  `json:"nextDue,omitempty"` // the earliest over the shards that answered
}

const reminderCheckTimeout = 2 * time.Second

// handleReminders asks every reminder shard, through the cluster and in
// parallel, for its status. A shard is a kept-active grain, so asking does
// not change where anything lives; a shard that does not answer within
// reminderCheckTimeout is reported with its error.
func (s *Server) handleReminders(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.remindersInfo(r.Context()))
}

func (s *Server) remindersInfo(ctx context.Context) RemindersInfo {
	out := RemindersInfo{Node: s.self().Name, At: time.Now().UTC(), Shards: make([]ShardInfo, couponmesh.ReminderShards)}
	ctx, cancel := context.WithTimeout(ctx, reminderCheckTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for n := range couponmesh.ReminderShards {
		sh := &out.Shards[n]
		sh.Shard = n
		if m, err := s.ownerOf(couponmesh.KindReminders, couponmesh.ReminderShardID(n)); err == nil {
			sh.Node = m.Name
		}
		wg.Go(func() {
			st, err := s.cfg.Inspector.ReminderShard(ctx, n)
			if err != nil {
				sh.Error = err.Error()
				return
			}
			sh.ShardStatus = st
			if len(st.Next) > 0 {
				due := st.Next[0].Due
				sh.NextDue = &due
			}
		})
	}
	wg.Wait()
	for _, sh := range out.Shards {
		if sh.NextDue != nil && (out.NextDue == nil || sh.NextDue.Before(*out.NextDue)) {
			out.NextDue = sh.NextDue
		}
	}
	return out
}
