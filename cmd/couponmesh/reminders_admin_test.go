package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/actors"
	"github.com/couponmesh/couponmesh/actors/coupon"
	"github.com/couponmesh/couponmesh/client"
)

// remindersOf asks node admin for every reminder shard's status.
func remindersOf(t testing.TB, admin string) RemindersInfo {
	t.Helper()
	var res RemindersInfo
	if st := adminDo(t, admin, http.MethodGet, "/admin/api/reminders", &res); st != http.StatusOK {
		t.Fatalf("GET /admin/api/reminders: %d", st)
	}
	if len(res.Shards) != couponmesh.ReminderShards {
		t.Fatalf("%d shards, want %d: %+v", len(res.Shards), couponmesh.ReminderShards, res)
	}
	return res
}

// The debug surfaces of the durable timers on one node: a scheduled
// coupon's inspection lists its pending start and expiry, the admin API
// (and ctl reminders) shows the shard holding them with its next due time,
// and once a reminder has fired it is gone from both.
func TestAdminReminders(t *testing.T) {
	a := startApp(t, nil)
	admin := a.AdminAddr()
	starts := time.Now().Add(2 * time.Second).UTC().Truncate(time.Millisecond)
	ends := starts.Add(time.Hour)
	createCoupon(t, a, "acme", couponmesh.CouponSpec{ID: "c18", Title: ptr("Timed"), Quantity: ptr(5), StartsAt: &starts, ExpiresAt: &ends})
	start := couponmesh.Reminder{Target: coupon.Entity("c18"), Name: coupon.RemindStart, Due: starts}
	shard := start.Shard()

	// The grain's pending reminders.
	pending := func() []couponmesh.Reminder {
		var st struct {
			Reminders []couponmesh.Reminder `json:"reminders"`
		}
		if err := json.Unmarshal(inspectActor(t, admin, "coupon/c18").Inspect.State, &st); err != nil {
			t.Fatal(err)
		}
		return st.Reminders
	}
	if got := pending(); len(got) != 2 || got[0].Name != coupon.RemindStart || !got[0].Due.Equal(starts) ||
		got[1].Name != coupon.RemindExpire || !got[1].Due.Equal(ends) {
		t.Fatalf("pending reminders %+v, want the start at %s and the expiry at %s", got, starts, ends)
	}

	// The shard holds both, the start first: its next due time.
	res := remindersOf(t, admin)
	for _, s := range res.Shards {
		if s.Error != "" || s.Node != "test" {
			t.Errorf("shard %d: %+v, want an answer from node test", s.Shard, s)
		}
	}
	s := res.Shards[shard]
	if s.Shard != shard || s.Pending != 2 || s.NextDue == nil || !s.NextDue.Equal(starts) || s.Next[0].Key() != start.Key() {
		t.Fatalf("shard %d: %+v, want the start (%s) next of 2", shard, s, starts)
	}
	if res.NextDue == nil || !res.NextDue.Equal(starts) {
		t.Fatalf("next due over the shards %v, want %s", res.NextDue, starts)
	}
	out := runCtlOut(t, admin, "reminders")
	if !strings.Contains(out, fmt.Sprintf("%d      test  2     0       %s", shard, starts.Format("2006-01-02T15:04:05.000Z"))) ||
		!strings.Contains(out, "coupon/c18 start in ") || !strings.Contains(out, "next due "+starts.Format(time.RFC3339Nano)) {
		t.Errorf("ctl reminders:\n%s", out)
	}
	t.Logf("ctl reminders:\n%s", out)
	var asJSON RemindersInfo
	if err := json.Unmarshal([]byte(runCtlOut(t, admin, "--json", "reminders")), &asJSON); err != nil || len(asJSON.Shards) != couponmesh.ReminderShards {
		t.Errorf("ctl --json reminders: %v %+v", err, asJSON)
	}
	// A shard is also found by identity.
	var st actors.ShardStatus
	if d := inspectActor(t, admin, fmt.Sprintf("reminders/%d", shard)); json.Unmarshal(d.Inspect.State, &st) != nil ||
		st.Pending != 2 || len(st.Next) != 2 || st.Next[0].Key() != start.Key() {
		t.Errorf("reminders/%d inspected: %s", shard, d.Inspect.State)
	}

	// After the start: the grain waits for the expiry only, the shard
	// holds only it.
	checkFor(t, 10*time.Second, "the start fired and deleted", func() error {
		if got := pending(); len(got) != 1 || got[0].Name != coupon.RemindExpire {
			return fmt.Errorf("pending %+v, want the expiry only", got)
		}
		s := remindersOf(t, admin).Shards[shard]
		if s.Pending != 1 || s.NextDue == nil || !s.NextDue.Equal(ends) {
			return fmt.Errorf("shard %d: %+v, want only the expiry", shard, s)
		}
		return nil
	})
	if c, err := client.NewAPI(baseURL(a), "").Coupon(context.Background(), "c18"); err != nil || c.Status != couponmesh.StatusActive {
		t.Fatalf("after the start: %+v %v", c, err)
	}
}

// Three node processes: any node's GET /admin/api/reminders asks every
// shard through the cluster, wherever it lives, and names the node it lives
// on; the shards are spread over the nodes, one activation each.
func TestClusterReminderShards(t *testing.T) {
	c := startCluster(t, 3)
	ends := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	if _, err := merchantAPI(t, c.nodes[0]).CreateCoupon(context.Background(), couponmesh.CouponSpec{ID: "c18", Title: ptr("Timed"), Quantity: ptr(5), ExpiresAt: &ends}); err != nil {
		t.Fatal(err)
	}
	shard := couponmesh.Reminder{Target: coupon.Entity("c18")}.Shard()
	checkFor(t, 15*time.Second, "every shard answering from its one activation, on every node's view", func() error {
		holders := c.owners(actors.KindReminders)
		nodes := map[string]bool{}
		for _, p := range c.nodes {
			res := remindersOf(t, p.admin)
			for _, s := range res.Shards {
				ident := fmt.Sprintf("reminders/%d", s.Shard)
				if s.Error != "" || len(holders[ident]) != 1 || holders[ident][0] != s.Node {
					return fmt.Errorf("asked %s: shard %d on %q (%s), active on %v", p.name, s.Shard, s.Node, s.Error, holders[ident])
				}
				nodes[s.Node] = true
			}
			if s := res.Shards[shard]; s.Pending != 1 || s.NextDue == nil || !s.NextDue.Equal(ends) {
				return fmt.Errorf("asked %s: shard %d %+v, want the expiry of c18 next", p.name, shard, s)
			}
		}
		if len(nodes) < 2 {
			return fmt.Errorf("every shard on %v", nodes)
		}
		return nil
	})
	if out := ctl(t, c.nodes[2], "reminders"); !strings.Contains(out, "coupon/c18 expire in ") {
		t.Errorf("ctl reminders via %s:\n%s", c.nodes[2].name, out)
	}
}
