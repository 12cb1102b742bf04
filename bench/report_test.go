package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFormatFigure(t *testing.T) {
	for _, c := range []struct {
		v    float64
		unit string
		want string
	}{
		{3000, "sessions/s", "3,000 sessions/s"},
		{24.04, "KiB", "24.0 KiB"},
		{0, "claims", "0 claims"},
		{1234567.8, "deliveries/s", "1,234,568 deliveries/s"},
		{150, "ms", "150 ms"},
	} {
		if got := formatFigure(c.v, c.unit); got != c.want {
			t.Errorf("formatFigure(%v, %q) = %q, want %q", c.v, c.unit, got, c.want)
		}
	}
}

// TestSpliceReport: the generated part replaces the previous one between
// the markers and leaves the hand-written rest alone.
func TestSpliceReport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "B.md")
	os.WriteFile(path, []byte("# Benchmarks\n\nIntro.\n\n## History\n\nold runs\n"), 0o644)
	rec := benchRecord{Scenario: "capacity", Time: time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC), Machine: machine{CPUs: 2, CPUModel: "X", Go: "go1.26", LoadAvg: "0.10 0.2 0.3 1/2 3"},
		Figures: []benchFigure{atLeast("connect", 3100, "sessions/s", 3000), atMost("memory", 40, "KiB", 32)}}
	for range 2 {
		if err := spliceReport(path, renderReport([]benchRecord{rec}, nil, nil, "")); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(path)
	s := string(b)
	for _, want := range []string{"Intro.", "## History", "old runs", "| capacity | connect | 3,100 sessions/s | ≥ 3,000 sessions/s | met |", "| capacity | memory | 40 KiB | ≤ 32 KiB | **missed** |", "1 targets met, 1 missed"} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
	if n := strings.Count(s, reportBegin); n != 1 {
		t.Errorf("%d generated parts, want 1", n)
	}
}
