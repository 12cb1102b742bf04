package main

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors"
)

// ShardInfo is one reminder shard as GET /admin/api/reminders shows it:
// what the shard grain holds (actors.ReminderCheck), where it lives, and
// its next due time. Error says why a shard did not answer.
type ShardInfo struct {
	actors.ShardStatus
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
func (a *App) handleReminders(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.remindersInfo(r.Context()))
}

func (a *App) remindersInfo(ctx context.Context) RemindersInfo {
	out := RemindersInfo{Node: a.members.Self().Name, At: time.Now().UTC(), Shards: make([]ShardInfo, couponmesh.ReminderShards)}
	cfg := actors.DefaultCallConfig()
	cfg.Timeout = reminderCheckTimeout
	var wg sync.WaitGroup
	for n := range couponmesh.ReminderShards {
		id := actors.ShardID(n)
		s := &out.Shards[n]
		s.Shard = n
		if m, err := a.ownerOf(actors.KindReminders, id); err == nil {
			s.Node = m.Name
		}
		wg.Go(func() {
			var st actors.ShardStatus
			if err := actors.Call(ctx, a.node.Cluster, cfg, actors.KindReminders, id, actors.ReminderCheck, actors.Empty{}, &st); err != nil {
				s.Error = err.Error()
				return
			}
			s.ShardStatus = st
			if len(st.Next) > 0 {
				due := st.Next[0].Due
				s.NextDue = &due
			}
		})
	}
	wg.Wait()
	for _, s := range out.Shards {
		if s.NextDue != nil && (out.NextDue == nil || s.NextDue.Before(*out.NextDue)) {
			out.NextDue = s.NextDue
		}
	}
	return out
}
