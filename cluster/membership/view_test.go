package membership

import (
	"encoding/json"
	"testing"
	"time"
)

// The admin API shows members as couponmesh.Member: the same JSON as a
// Member of this package, field for field, so that the members list did not
// change when it moved to transport/admin and cannot drift from Meta.
func TestDomainMemberJSON(t *testing.T) {
	m := Member{
		Meta:   Meta{ID: "id1", Host: "127.0.0.1", Port: 7001, Kinds: []string{"coupon", "user"}, Name: "n1", HTTP: "127.0.0.1:8080", Admin: "127.0.0.1:8081"},
		Gossip: "127.0.0.1:7946", Status: "suspect", Since: time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC),
	}
	for _, m := range []Member{m, {Status: "gone"}} {
		want, _ := json.Marshal(m)
		got, _ := json.Marshal(m.domain())
		if string(got) != string(want) {
			t.Errorf("domain member JSON\n%s\nwant\n%s", got, want)
		}
		if m.domain().Address() != m.Address() {
			t.Errorf("address %s, want %s", m.domain().Address(), m.Address())
		}
	}
}
