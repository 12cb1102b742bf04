package bench

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// plotFanout writes an SVG of the fanout latency percentiles (per delivery)
// and the last delivery per update (p99) against the update rate, with the
// target as a dashed line, on a log scale.
func plotFanout(path string, res fanoutResult) error {
	if len(res.Rates) == 0 {
		return nil
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("couponmesh fanout: one coupon, %d followers, one node", res.Connected)
	p.X.Label.Text = "updates/s"
	p.Y.Label.Text = "latency from update sent (ms)"
	p.Legend.Top = true
	p.Legend.Left = true
	// Log scale: the target and latencies of seconds under overload fit.
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	series := []struct {
		name string
		get  func(fanoutRate) float64
		c    color.RGBA
	}{
		{"p50", func(r fanoutRate) float64 { return r.P50ms }, color.RGBA{0x1f, 0x77, 0xb4, 0xff}},
		{"p95", func(r fanoutRate) float64 { return r.P95ms }, color.RGBA{0x2c, 0xa0, 0x2c, 0xff}},
		{"p99", func(r fanoutRate) float64 { return r.P99ms }, color.RGBA{0xff, 0x7f, 0x0e, 0xff}},
		{"max", func(r fanoutRate) float64 { return r.MaxMs }, color.RGBA{0xd6, 0x27, 0x28, 0xff}},
	}
	var maxX, maxY float64
	for _, s := range series {
		pts := make(plotter.XYs, len(res.Rates))
		for i, r := range res.Rates {
			pts[i].X, pts[i].Y = r.Rate, max(s.get(r), 1) // log scale: no 0
			maxX, maxY = max(maxX, r.Rate), max(maxY, pts[i].Y)
		}
		l, sc, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		l.Color, sc.Color = s.c, s.c
		sc.Shape = draw.CircleGlyph{}
		p.Add(l, sc)
		p.Legend.Add(s.name, l, sc)
	}
	target, err := plotter.NewLine(plotter.XYs{{X: 0, Y: res.TargetP99ms}, {X: maxX, Y: res.TargetP99ms}})
	if err != nil {
		return err
	}
	target.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	target.Color = color.Gray{0x60}
	p.Add(target)
	p.Legend.Add(fmt.Sprintf("target p99 %g ms", res.TargetP99ms), target)
	p.X.Min, p.Y.Min, p.Y.Max = 0, 1, max(maxY, res.TargetP99ms)*20 // room for the legend
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return p.Save(7*vg.Inch, 4.5*vg.Inch, path)
}

// plotMemory writes an SVG of the node's RSS against the sessions open
// (capacity): read while they were opening, and once they were idle, with
// the target of 32 KiB per session from the RSS before the first session
// as a dashed line.
func plotMemory(path string, res capacityResult) error {
	if len(res.Memory) < 2 {
		return nil
	}
	p := plot.New()
	p.Title.Text = "couponmesh capacity: node RSS against sessions (one node)"
	p.X.Label.Text = "authenticated sessions, each subscribed to one coupon"
	p.Y.Label.Text = "node RSS (MiB)"
	p.Legend.Top = true
	p.Legend.Left = true
	pts := make(plotter.XYs, len(res.Memory))
	for i, m := range res.Memory {
		pts[i].X, pts[i].Y = float64(m.Sessions), float64(m.RSSKiB)/1024
	}
	l, sc, err := plotter.NewLinePoints(pts)
	if err != nil {
		return err
	}
	l.Color, sc.Color = color.RGBA{0x1f, 0x77, 0xb4, 0xff}, color.RGBA{0x1f, 0x77, 0xb4, 0xff}
	sc.Shape = draw.CircleGlyph{}
	p.Add(l, sc)
	p.Legend.Add("while the sessions open", l, sc)
	idle, err := plotter.NewScatter(plotter.XYs{{X: float64(res.Sessions - res.Failed), Y: float64(res.RSSAfterKiB) / 1024}})
	if err != nil {
		return err
	}
	idle.Color, idle.Shape = color.RGBA{0xd6, 0x27, 0x28, 0xff}, draw.PyramidGlyph{}
	idle.Radius = vg.Points(4)
	p.Add(idle)
	p.Legend.Add(fmt.Sprintf("idle (%.1f KiB per session)", res.RSSPerSessionKB), idle)
	base, last := res.Memory[0], res.Memory[len(res.Memory)-1]
	target, err := plotter.NewLine(plotter.XYs{
		{X: 0, Y: float64(base.RSSKiB) / 1024},
		{X: float64(last.Sessions), Y: (float64(base.RSSKiB) + res.TargetRSSKiB*float64(last.Sessions)) / 1024},
	})
	if err != nil {
		return err
	}
	target.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	target.Color = color.Gray{0x60}
	p.Add(target)
	p.Legend.Add(fmt.Sprintf("target %g KiB per session", res.TargetRSSKiB), target)
	p.X.Min, p.Y.Min = 0, 0
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return p.Save(7*vg.Inch, 4.5*vg.Inch, path)
}
