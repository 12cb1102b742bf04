package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Markers of the generated part of docs/BENCHMARKS.md; the rest of the
// file is written by hand.
const (
	reportBegin = "<!-- bench report: begin (written by `couponmesh bench report`; edit outside the markers) -->"
	reportEnd   = "<!-- bench report: end -->"
)

// scenarioOrder is the order of the report's table; other scenarios follow
// by name.
var scenarioOrder = []string{"capacity", "fanout", "coupons", "coupons-embedded", "claims", "cluster-claims", "flashsale", "reads", "failover", "drain", "presence", "timers"}

// benchRecord is what the report reads of any scenario's JSON result.
type benchRecord struct {
	Scenario string        `json:"scenario"`
	Time     time.Time     `json:"time"`
	Machine  machine       `json:"machine"`
	Figures  []benchFigure `json:"figures"`
	file     string
}

// benchReport writes the table of the newest result of every scenario in
// --in, against the targets, into --doc between the report markers (or
// appends it), and prints it.
func benchReport(args []string) error {
	fs := flag.NewFlagSet("bench report", flag.ContinueOnError)
	in := fs.String("in", "bench-results", "directory of the scenarios' JSON results")
	doc := fs.String("doc", "docs/BENCHMARKS.md", "markdown file to write the report into (empty: print only)")
	micro := fs.String("micro", "", "output of the Go micro-benchmarks to include (go test -bench)")
	plots := fs.String("plots", "bench", "directory of the plots, relative to --doc's directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	recs, err := latestResults(*in)
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return fmt.Errorf("bench report: no results in %s: run the scenarios first", *in)
	}
	var microOut []byte
	if *micro != "" {
		if microOut, err = os.ReadFile(*micro); err != nil {
			return err
		}
	}
	var svgs []string
	if *doc != "" {
		svgs, _ = filepath.Glob(filepath.Join(filepath.Dir(*doc), *plots, "*.svg"))
	}
	report := renderReport(recs, microOut, svgs, filepath.Dir(*doc))
	fmt.Print(report)
	if *doc == "" {
		return nil
	}
	return spliceReport(*doc, report)
}

// latestResults returns the newest result of each scenario in dir, in
// scenarioOrder.
func latestResults(dir string) ([]benchRecord, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	newest := map[string]benchRecord{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var r benchRecord
		if err := json.Unmarshal(b, &r); err != nil || r.Scenario == "" {
			continue // not a scenario result
		}
		r.file = f
		if cur, ok := newest[r.Scenario]; !ok || r.Time.After(cur.Time) {
			newest[r.Scenario] = r
		}
	}
	out := make([]benchRecord, 0, len(newest))
	for _, r := range newest {
		out = append(out, r)
	}
	rank := func(s string) int {
		if i := slices.Index(scenarioOrder, s); i >= 0 {
			return i
		}
		return len(scenarioOrder)
	}
	slices.SortFunc(out, func(a, b benchRecord) int {
		if d := rank(a.Scenario) - rank(b.Scenario); d != 0 {
			return d
		}
		return strings.Compare(a.Scenario, b.Scenario)
	})
	return out, nil
}

func renderReport(recs []benchRecord, micro []byte, svgs []string, docDir string) string {
	var b strings.Builder
	first, last := recs[0].Time, recs[0].Time
	for _, r := range recs {
		first, last = minTime(first, r.Time), maxTime(last, r.Time)
	}
	m := recs[0].Machine
	fmt.Fprintf(&b, "%s\n## The targets, measured: the newest result of each scenario (`make bench`)\n\n", reportBegin)
	fmt.Fprintf(&b, "Results of %s to %s UTC on %d × %s, %s. ", first.UTC().Format("2006-01-02 15:04"), last.UTC().Format("15:04"), m.CPUs, m.CPUModel, m.Go)
	if m.NodeCPUs != "" {
		fmt.Fprintf(&b, "Nodes pinned to CPU %s with `taskset`, the load generator (`couponmesh bench`) on the other core, unless a figure's note says otherwise. ", m.NodeCPUs)
	}
	fmt.Fprintf(&b, "Load average when each scenario started: %s. The settings of each run are in its JSON file in `bench-results/`.\n\n", loadAverages(recs))
	b.WriteString("| scenario | figure | measured | target | |\n| --- | --- | --- | --- | --- |\n")
	met, missed := 0, 0
	for _, r := range recs {
		for _, f := range r.Figures {
			target, verdict := "", ""
			switch f.Better {
			case "higher":
				target = "≥ " + formatFigure(f.Target, f.Unit)
			case "lower":
				target = "≤ " + formatFigure(f.Target, f.Unit)
			}
			if f.Better != "" {
				if f.met() {
					verdict = "met"
					met++
				} else {
					verdict = "**missed**"
					missed++
				}
			}
			what := f.What
			if f.Note != "" {
				what += " (" + f.Note + ")"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.Scenario, what, formatFigure(f.Value, f.Unit), target, verdict)
		}
	}
	fmt.Fprintf(&b, "\n%d targets met, %d missed; the causes of the gaps are below the generated part.\n", met, missed)
	for _, svg := range svgs {
		rel, err := filepath.Rel(docDir, svg)
		if err != nil {
			rel = svg
		}
		name := strings.TrimSuffix(filepath.Base(svg), ".svg")
		fmt.Fprintf(&b, "\n![%s](%s)\n", name, filepath.ToSlash(rel))
	}
	if lines := microLines(micro); len(lines) > 0 {
		b.WriteString("\nGo micro-benchmarks of the hot paths (`make bench-micro`):\n\n```text\n")
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
		b.WriteString("```\n")
	}
	b.WriteString(reportEnd + "\n")
	return b.String()
}

// microLines keeps the result lines of go test -bench output.
func microLines(out []byte) []string {
	var lines []string
	for l := range strings.Lines(string(out)) {
		l = strings.TrimRight(l, "\n")
		if strings.HasPrefix(l, "Benchmark") || strings.HasPrefix(l, "pkg: ") {
			lines = append(lines, l)
		}
	}
	return lines
}

func loadAverages(recs []benchRecord) string {
	var parts []string
	for _, r := range recs {
		if f := strings.Fields(r.Machine.LoadAvg); len(f) > 0 {
			parts = append(parts, r.Scenario+" "+f[0])
		}
	}
	return strings.Join(parts, ", ")
}

// formatFigure prints v with its unit: thousands separated, one decimal
// below 100 (none for counts).
func formatFigure(v float64, unit string) string {
	var s string
	switch {
	case v != float64(int64(v)) && v < 100:
		s = strconv.FormatFloat(v, 'f', 1, 64)
	default:
		s = groupThousands(int64(v + 0.5))
	}
	return s + " " + unit
}

func groupThousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i, c := range []byte(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, c)
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// spliceReport replaces the part of path between the report markers with
// report, or inserts report after the first heading when there are none.
func spliceReport(path, report string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var out []byte
	i, j := bytes.Index(old, []byte(reportBegin)), bytes.Index(old, []byte(reportEnd))
	switch {
	case i >= 0 && j > i:
		out = append(append(append(out, old[:i]...), report...), bytes.TrimPrefix(old[j+len(reportEnd):], []byte("\n"))...)
	case len(old) == 0:
		out = []byte("# Benchmarks\n\n" + report)
	default:
		// After the first paragraph that follows the title.
		k := bytes.Index(old, []byte("\n\n"))
		if k < 0 {
			k = len(old)
		}
		out = append(append(append(out, old[:k]...), "\n\n"+report...), old[k:]...)
	}
	return os.WriteFile(path, out, 0o644)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
