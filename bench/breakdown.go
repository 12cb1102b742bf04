package bench

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/google/pprof/profile"
)

// couponmesh bench breakdown: the CPU profile of a node during `bench
// coupons` split into the costs of a durable update (docs/BENCHMARKS.md).
// Each sample goes to one cost: the first of the strong rules that a frame
// matches, from the leaf to the root (the code nearest the work it did);
// failing that, of the weak rules (the libraries every path runs through);
// failing that, "other".

// costRule names a cost and the functions whose samples are its own.
type costRule struct {
	cost string
	fn   *regexp.Regexp
}

var (
	strongCosts = []costRule{
		{"snapshot writes", regexp.MustCompile(`WriteSnapshot|PutSnapshot|persistence/cache\.\(\*Store\)\.(write|flush|keep|writeLoop)|\)\.SnapshotNow$|Activation\[.*\]\)\.snapshot$`)},
		{"follower lookups", regexp.MustCompile(`notifyFollowers|coupon\.\(\*followers\)|\)\.Followers$`)},
		{"push encoding", regexp.MustCompile(`couponmesh/protocol\.`)},
		{"hub and session writes", regexp.MustCompile(`actors/hub\.|transport/ws\.|coder/websocket|actors\.\(\*Subscribers\)|actors\.PushTo`)},
		{"change detection and apply", regexp.MustCompile(`coupon\.\(\*Machine\)\.(apply|applyEntry|TakeChange)$|coupon\.\(\*grain\)\.changed$|coupon\.sameTerms|coupon\.Change\.merge`)},
		{"journal encoding and group commit", regexp.MustCompile(`persistence/mongodb\.|actors\.WriteBatch$|actors\.\(\*Journal\)\.(Propose|decide|Next|Settle)$|actors\.Flush|coupon\.\(\*Machine\)\.(couponEntry|Start\w+\.func\d+)$|actors/coupon\.entry$`)},
		{"the grain call (request and reply JSON, future, mailbox, dispatch)", regexp.MustCompile(`couponmesh/actors\.|couponmesh/actors/coupon\.`)},
		{"HTTP handling and auth", regexp.MustCompile(`transport/httpapi\.|transport/auth\.|golang-jwt|main\.Start\.hideAdmin`)},
		{"FerretDB and SQLite (embedded database)", regexp.MustCompile(`FerretDB|ferretdb|modernc\.org/|persistence/devdb\.`)},
	}
	weakCosts = []costRule{
		{"the grain call (request and reply JSON, future, mailbox, dispatch)", regexp.MustCompile(`asynkron/protoactor-go`)},
		{"HTTP handling and auth", regexp.MustCompile(`^net/http\.|^bufio\.|^net\.\(\*conn\)`)},
		{"mongo driver outside the writes (monitoring, pool)", regexp.MustCompile(`mongo-driver`)},
		{"GC background workers", regexp.MustCompile(`^runtime\.(gcBgMarkWorker|bgsweep|bgscavenge)`)},
		{"metrics", regexp.MustCompile(`prometheus`)},
	}
)

// costRules is a breakdown's rules: strong ones (our code, nearest the
// work), weak ones (the libraries every path runs through).
type costRules struct{ strong, weak []costRule }

// updateCosts split a durable update's node CPU (bench coupons).
var updateCosts = costRules{strongCosts, weakCosts}

// costShare is one cost of a breakdown.
type costShare struct {
	Cost  string  `json:"cost"`
	CPUs  float64 `json:"cpuSeconds"` // of the profile's samples
	Share float64 `json:"share"`      // of all samples, 0..1
}

// breakdownProfile splits the CPU samples of p into the costs of rules,
// largest first, and returns them with the samples' total CPU seconds.
func breakdownProfile(p *profile.Profile, rules costRules) ([]costShare, float64, error) {
	vi := slices.IndexFunc(p.SampleType, func(t *profile.ValueType) bool { return t.Type == "cpu" })
	if vi < 0 {
		return nil, 0, errors.New("not a CPU profile (no cpu sample type)")
	}
	unit := 1e-9 // nanoseconds
	by := map[string]float64{}
	var total float64
	for _, s := range p.Sample {
		v := float64(s.Value[vi]) * unit
		total += v
		by[classifySample(s, rules)] += v
	}
	out := make([]costShare, 0, len(by))
	for c, v := range by {
		out = append(out, costShare{Cost: c, CPUs: v, Share: v / max(total, 1e-12)})
	}
	slices.SortFunc(out, func(a, b costShare) int { return cmp.Or(cmp.Compare(b.CPUs, a.CPUs), strings.Compare(a.Cost, b.Cost)) })
	return out, total, nil
}

// classifySample returns the cost of one sample (see the rules above).
func classifySample(s *profile.Sample, cr costRules) string {
	for _, rules := range [][]costRule{cr.strong, cr.weak} {
		for _, loc := range s.Location { // leaf first
			for _, line := range loc.Line { // inlined callees first, their caller last
				if line.Function == nil {
					continue
				}
				name := line.Function.Name
				for _, r := range rules {
					if r.fn.MatchString(name) {
						return r.cost
					}
				}
			}
		}
	}
	return "other (scheduler, network poller, runtime)"
}

// writeBreakdown writes the breakdown as a markdown table; perUpdateUs,
// when positive, is the node's CPU per update that the shares divide.
func writeBreakdown(w io.Writer, costs []costShare, total, perUpdateUs float64) {
	fmt.Fprintln(w, "| cost | share of the node's CPU samples | µs per update |")
	fmt.Fprintln(w, "| --- | ---: | ---: |")
	us := func(share float64) string {
		if perUpdateUs <= 0 {
			return ""
		}
		return fmt.Sprintf("%.0f", share*perUpdateUs)
	}
	for _, c := range costs {
		fmt.Fprintf(w, "| %s | %.1f %% | %s |\n", c.Cost, 100*c.Share, us(c.Share))
	}
	fmt.Fprintf(w, "| all (%.2f s of samples) | 100 %% | %s |\n", total, us(1))
}

// benchBreakdown runs `couponmesh bench breakdown [--per-update-us N]
// PROFILE…`: the breakdown of each CPU profile, as a markdown table.
func benchBreakdown(args []string) error {
	fs := flag.NewFlagSet("bench breakdown", flag.ContinueOnError)
	per := fs.Float64("per-update-us", 0, "the node's CPU per update (µs, from bench coupons) to split over the costs")
	claims := fs.Bool("claims", false, "split by the costs of a claim across nodes (bench cluster-claims) instead of a coupon update's")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rules := updateCosts
	if *claims {
		rules = claimCosts
	}
	if fs.NArg() == 0 {
		return errors.New("usage: couponmesh bench breakdown [--per-update-us N] PROFILE…")
	}
	for _, path := range fs.Args() {
		p, err := readProfile(path)
		if err != nil {
			return err
		}
		costs, total, err := breakdownProfile(p, rules)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		fmt.Printf("%s:\n\n", path)
		writeBreakdown(os.Stdout, costs, total, *per)
		fmt.Println()
	}
	return nil
}

// readProfile parses the profile file at path.
func readProfile(path string) (*profile.Profile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// breakdownFile is breakdownProfile of the profile file at path.
func breakdownFile(path string, rules costRules) ([]costShare, error) {
	p, err := readProfile(path)
	if err != nil {
		return nil, err
	}
	costs, _, err := breakdownProfile(p, rules)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return costs, nil
}
