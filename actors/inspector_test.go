package actors

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
)

// A reminder shard answers ReminderCheck with a ShardStatus, which
// GrainInspector decodes as a couponmesh.ShardStatus: both must have the
// same JSON, or the console would show empty shards.
func TestShardStatusJSONMatchesTheDomain(t *testing.T) {
	due := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
	st := ShardStatus{Shard: 3, Pending: 2, Firing: 1, Next: []couponmesh.Reminder{{Target: "coupon/c1", Name: "expire", Due: due}}}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var d couponmesh.ShardStatus
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if again, _ := json.Marshal(d); string(again) != string(b) {
		t.Fatalf("as couponmesh.ShardStatus: %s, want %s", again, b)
	}
}
