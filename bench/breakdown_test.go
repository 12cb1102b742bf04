package bench

import (
	"strings"
	"testing"

	"github.com/google/pprof/profile"
)

// Each sample goes to the cost of the frame nearest its leaf that a strong
// rule names (inlined callees before their caller), else to a weak rule's,
// else to other; the shares add up to the samples.
func TestBreakdownProfile(t *testing.T) {
	fn := map[string]*profile.Function{}
	loc := func(names ...string) *profile.Location { // names: innermost first (inlined)
		l := &profile.Location{}
		for _, n := range names {
			if fn[n] == nil {
				fn[n] = &profile.Function{ID: uint64(len(fn) + 1), Name: n}
			}
			l.Line = append(l.Line, profile.Line{Function: fn[n]})
		}
		return l
	}
	sample := func(ns int64, locs ...*profile.Location) *profile.Sample {
		return &profile.Sample{Value: []int64{1, ns}, Location: locs}
	}
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		Sample: []*profile.Sample{
			// JSON decode of the entry under apply, all under the HTTP server: apply.
			sample(40e6, loc("encoding/json.Unmarshal"), loc("github.com/couponmesh/couponmesh/actors/coupon.(*Machine).applyEntry"),
				loc("github.com/couponmesh/couponmesh/actors.(*Journal).Settle"), loc("net/http.(*conn).serve")),
			// An inlined push encoder inside the grain's changed: push encoding.
			sample(10e6, loc("github.com/couponmesh/couponmesh/protocol.CouponPush", "github.com/couponmesh/couponmesh/actors/coupon.(*grain).changed")),
			// The driver under the group commit: the commit, not the driver.
			sample(30e6, loc("go.mongodb.org/mongo-driver/v2/mongo.(*Collection).BulkWrite"),
				loc("github.com/couponmesh/couponmesh/persistence/mongodb.(*committer).flusher")),
			// Only libraries: the weak rules.
			sample(15e6, loc("syscall.write"), loc("bufio.(*Writer).Flush"), loc("net/http.(*conn).serve")),
			sample(5e6, loc("runtime.futex"), loc("runtime.schedule")),
		},
	}
	costs, total, err := breakdownProfile(p, updateCosts)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	var sum float64
	for _, c := range costs {
		got[c.Cost] = c.CPUs
		sum += c.Share
	}
	want := map[string]float64{
		"change detection and apply":                 0.040,
		"push encoding":                              0.010,
		"journal encoding and group commit":          0.030,
		"HTTP handling and auth":                     0.015,
		"other (scheduler, network poller, runtime)": 0.005,
	}
	for c, v := range want {
		if d := got[c] - v; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s: %.3f s, want %.3f (all: %v)", c, got[c], v, got)
		}
	}
	if len(got) != len(want) || total < 0.0999 || total > 0.1001 || sum < 0.999 || sum > 1.001 {
		t.Errorf("costs %v, total %.4f s, shares sum to %.4f", got, total, sum)
	}
	if costs[0].Cost != "change detection and apply" {
		t.Errorf("largest first: got %q first", costs[0].Cost)
	}
	var b strings.Builder
	writeBreakdown(&b, costs, total, 200)
	if !strings.Contains(b.String(), "| change detection and apply | 40.0 % | 80 |") {
		t.Errorf("table:\n%s", b.String())
	}
}

// The claims' rules: a gRPC write under an actor's mailbox run is a message
// between nodes; a user grain's own frame is the user grain's; the journal
// under a user grain is the group commit's (the frame nearest the leaf).
func TestClaimCosts(t *testing.T) {
	for _, tc := range []struct {
		frames []string // leaf first
		want   string
	}{
		{[]string{"syscall.write", "google.golang.org/grpc/internal/transport.(*loopyWriter).run"}, "cross-node messages (protoactor remote, gRPC, HTTP/2, protobuf)"},
		{[]string{"encoding/json.Marshal", "github.com/asynkron/protoactor-go/remote.(*endpointWriter).sendEnvelopes", "github.com/couponmesh/couponmesh/actors.Call"}, "cross-node messages (protoactor remote, gRPC, HTTP/2, protobuf)"},
		{[]string{"runtime.mallocgc", "github.com/couponmesh/couponmesh/actors/user.(*grain).claim", "github.com/asynkron/protoactor-go/actor.(*defaultMailbox).run"}, "user grain (admit, wallet, feed)"},
		{[]string{"github.com/couponmesh/couponmesh/persistence/mongodb.(*committer).bulk", "github.com/couponmesh/couponmesh/actors/user.(*grain).record"}, "journal encoding and group commit"},
		{[]string{"runtime.futex", "github.com/asynkron/protoactor-go/actor.(*defaultMailbox).run"}, "grain calls (envelopes, futures, local dispatch)"},
		{[]string{"runtime.futex", "runtime.schedule"}, "other (scheduler, network poller, runtime)"},
	} {
		s := &profile.Sample{}
		for i, name := range tc.frames {
			s.Location = append(s.Location, &profile.Location{Line: []profile.Line{{Function: &profile.Function{ID: uint64(i + 1), Name: name}}}})
		}
		if got := classifySample(s, claimCosts); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.frames, got, tc.want)
		}
	}
}

// Three nodes against one is checked against 1.5×, ten against 2×; a size
// without a target (or without the one-node run) only reports its figure.
func TestClusterClaimsFigures(t *testing.T) {
	res := clusterClaimsResult{Rate: 200, Runs: []clusterClaimsRun{{Nodes: 1, NodeUs: 700}, {Nodes: 3, NodeUs: 1000}, {Nodes: 10, NodeUs: 1500}, {Nodes: 5, NodeUs: 1200}}}
	ratios := map[string]bool{}
	for _, f := range clusterClaimsFigures(res) {
		if strings.Contains(f.What, "against one") {
			ratios[f.What] = f.met()
		}
	}
	want := map[string]bool{"node CPU per claim, 3 nodes against one": true, "node CPU per claim, 10 nodes against one": false}
	if len(ratios) != len(want) || ratios["node CPU per claim, 3 nodes against one"] != true || ratios["node CPU per claim, 10 nodes against one"] != false {
		t.Fatalf("ratio figures %v, want %v", ratios, want)
	}
}
