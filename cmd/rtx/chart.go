package main

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Chart geometry: one row per policy, the delays on the left and the
// cumulative time on the right.
const (
	chartWidth     = 26 * vg.Centimeter
	chartRowHeight = 8 * vg.Centimeter
	bandHalfWidth  = 0.3  // of a retry's slot on the x axis
	headroom       = 1.35 // y axis above the data, where the legend goes
)

var (
	bandFill    = color.RGBA{R: 0x9e, G: 0xc5, B: 0xe8, A: 0xff}
	bandEdge    = color.RGBA{R: 0x31, G: 0x6b, B: 0xa8, A: 0xff}
	medianColor = color.RGBA{R: 0x0b, G: 0x2e, B: 0x59, A: 0xff}
	worstColor  = color.RGBA{R: 0xc0, G: 0x1c, B: 0x28, A: 0xff}
	typColor    = color.RGBA{R: 0xe6, G: 0x8a, B: 0x00, A: 0xff}
	bestColor   = color.RGBA{R: 0x2a, G: 0x8a, B: 0x3e, A: 0xff}
)

// unit is the time unit of a chart's y axis.
type unit struct {
	name string
	d    time.Duration
}

// unitFor picks the unit that keeps the policy's longest time readable.
func unitFor(longest time.Duration) unit {
	switch {
	case longest >= 2*time.Minute:
		return unit{"minutes", time.Minute}
	case longest >= 2*time.Second:
		return unit{"seconds", time.Second}
	}
	return unit{"milliseconds", time.Millisecond}
}

func (u unit) of(d time.Duration) float64 { return float64(d) / float64(u.d) }

// writeChartFile draws the schedules into path as "svg" or "png".
func writeChartFile(path, format string, scheds []schedule) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	return writeChart(f, format, scheds)
}

// writeChart draws the schedules as an SVG or PNG image into w.
func writeChart(w io.Writer, format string, scheds []schedule) error {
	if len(scheds) == 0 {
		return errors.New("no policy to draw")
	}
	plots := make([][]*plot.Plot, len(scheds))
	for i, s := range scheds {
		d, c, err := policyPlots(s)
		if err != nil {
			return fmt.Errorf("drawing %s: %w", s.Name, err)
		}
		plots[i] = []*plot.Plot{d, c}
	}
	h := chartRowHeight * vg.Length(len(scheds))
	var canvas interface {
		vg.CanvasSizer
		io.WriterTo
	}
	switch format {
	case "svg":
		canvas = vgsvg.New(chartWidth, h)
	case "png":
		canvas = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(chartWidth, h), vgimg.UseDPI(110))}
	default:
		return fmt.Errorf("unknown image format %q (want svg or png)", format)
	}
	dc := draw.New(canvas)
	if format == "png" { // the PNG canvas starts transparent
		dc.SetColor(color.White)
		dc.Fill(dc.Rectangle.Path())
	}
	tiles := draw.Tiles{
		Rows: len(scheds), Cols: 2,
		PadX: vg.Centimeter, PadY: vg.Centimeter,
		PadTop: vg.Millimeter * 3, PadBottom: vg.Millimeter * 3,
		PadLeft: vg.Millimeter * 3, PadRight: vg.Millimeter * 3,
	}
	cs := plot.Align(plots, tiles, dc)
	for i := range plots {
		for j := range plots[i] {
			plots[i][j].Draw(cs[i][j])
		}
	}
	_, err := canvas.WriteTo(w)
	return err
}

// policyPlots returns the two panels of one policy: the delay band of each
// retry with its median, and the cumulative time to give up.
func policyPlots(s schedule) (delays, cumulative *plot.Plot, err error) {
	p := s.Policy
	delays, cumulative = plot.New(), plot.New()
	for _, pl := range []*plot.Plot{delays, cumulative} {
		pl.Title.TextStyle.Font.Size = vg.Points(11)
		pl.Y.Min = 0
		pl.Y.Tick.Marker = niceTicks{}
		pl.Legend.Top, pl.Legend.Left = true, true
		pl.Legend.TextStyle.Font.Size = vg.Points(9)
		pl.Add(plotter.NewGrid())
	}
	delays.Title.Text = fmt.Sprintf("%s: delay before retry n (%s, %s..%s, backoff %s, %s)",
		s.Name, plural(p.Attempts, "attempt"), fmtDur(p.WaitMin), fmtDur(p.WaitMax), fmtNum(p.Backoff), jitterText(p.Jitter))
	if len(s.Steps) == 0 {
		delays.Title.Text = s.Name + ": 1 attempt, no retries"
		cumulative.Title.Text = s.Name + ": gives up when its one attempt fails"
		for _, pl := range []*plot.Plot{delays, cumulative} {
			pl.X.Min, pl.X.Max, pl.Y.Max = 0, 1, 1
			pl.HideAxes()
		}
		return delays, cumulative, nil
	}
	u := unitFor(s.GiveUpWorst)

	// Delay bands: min..max per retry, the median as a thick bar.
	delays.X.Label.Text = "retry n"
	delays.Y.Label.Text = u.name
	delays.X.Min, delays.X.Max = 0.5, float64(len(s.Steps))+0.5
	var ticks []plot.Tick
	var band *plotter.Polygon
	var median *plotter.Line
	for _, st := range s.Steps {
		x := float64(st.Retry)
		ticks = append(ticks, plot.Tick{Value: x, Label: strconv.Itoa(st.Retry)})
		lo, hi := u.of(st.Min), u.of(st.Max)
		band, err = plotter.NewPolygon(plotter.XYs{
			{X: x - bandHalfWidth, Y: lo}, {X: x + bandHalfWidth, Y: lo},
			{X: x + bandHalfWidth, Y: hi}, {X: x - bandHalfWidth, Y: hi},
		})
		if err != nil {
			return nil, nil, err
		}
		band.Color = bandFill
		band.LineStyle.Color = bandEdge
		band.LineStyle.Width = vg.Points(0.75)
		m := u.of(st.Median)
		median, err = plotter.NewLine(plotter.XYs{{X: x - bandHalfWidth, Y: m}, {X: x + bandHalfWidth, Y: m}})
		if err != nil {
			return nil, nil, err
		}
		median.LineStyle.Color = medianColor
		median.LineStyle.Width = vg.Points(2.5)
		delays.Add(band, median)
	}
	delays.X.Tick.Marker = plot.ConstantTicks(ticks)
	delays.Y.Max = headroom * u.of(s.Steps[len(s.Steps)-1].Max) // the longest delay is the last one's
	delays.Legend.Add("delay min..max", band)
	delays.Legend.Add("median", median)

	// Cumulative time: when retry n starts, and when the policy gives up.
	worstName := "worst (every attempt runs to its " + fmtDur(p.Timeout) + " timeout)"
	worstTitle := fmtDur(s.GiveUpWorst)
	if s.Unbounded {
		worstName = "worst (delays only: no timeout, attempt time unbounded)"
		worstTitle += " + attempt time"
	}
	cumulative.Title.Text = fmt.Sprintf("%s: time until retry n starts, gives up (worst %s)", s.Name, worstTitle)
	cumulative.X.Label.Text = "retry n"
	cumulative.Y.Label.Text = u.name
	last := float64(len(s.Steps) + 1)
	cumulative.X.Min, cumulative.X.Max = 0, last
	cticks := []plot.Tick{{Value: 0, Label: "start"}}
	cticks = append(cticks, ticks...)
	cticks = append(cticks, plot.Tick{Value: last, Label: "give up"})
	cumulative.X.Tick.Marker = plot.ConstantTicks(cticks)
	cumulative.Y.Max = headroom * u.of(s.GiveUpWorst)
	series := []struct {
		name  string
		color color.Color
		dash  []vg.Length
		at    func(step) time.Duration
		end   time.Duration
	}{
		{worstName, worstColor, nil, func(st step) time.Duration { return st.Worst }, s.GiveUpWorst},
		{"typical (median delays)", typColor, []vg.Length{vg.Points(6), vg.Points(3)}, func(st step) time.Duration { return st.Typical }, s.GiveUpTypical},
		{"best (shortest delays)", bestColor, []vg.Length{vg.Points(2), vg.Points(2)}, func(st step) time.Duration { return st.Best }, s.GiveUpBest},
	}
	for _, se := range series {
		xys := plotter.XYs{{X: 0, Y: 0}}
		for _, st := range s.Steps {
			xys = append(xys, plotter.XY{X: float64(st.Retry), Y: u.of(se.at(st))})
		}
		xys = append(xys, plotter.XY{X: last, Y: u.of(se.end)})
		l, pts, err := plotter.NewLinePoints(xys)
		if err != nil {
			return nil, nil, err
		}
		l.LineStyle.Color, l.LineStyle.Width, l.LineStyle.Dashes = se.color, vg.Points(1.5), se.dash
		pts.GlyphStyle.Color, pts.GlyphStyle.Radius, pts.GlyphStyle.Shape = se.color, vg.Points(2), draw.CircleGlyph{}
		cumulative.Add(l, pts)
		cumulative.Legend.Add(se.name, l, pts)
	}
	return delays, cumulative, nil
}

// niceTicks labels an axis every 1, 2 or 5 times a power of ten, about five
// labels over the range, with no needless decimals; plot's default often
// labels only the two ends.
type niceTicks struct{}

// Ticks implements plot.Ticker.
func (niceTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) {
		return []plot.Tick{{Value: lo, Label: trimFloat(lo, 3)}}
	}
	raw := (hi - lo) / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if step = m * mag; step >= raw {
			break
		}
	}
	var ticks []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		ticks = append(ticks, plot.Tick{Value: v, Label: trimFloat(v, 6)})
		for i := 1; i < 5; i++ { // minor ticks
			if m := v + step*float64(i)/5; m <= hi {
				ticks = append(ticks, plot.Tick{Value: m})
			}
		}
	}
	return ticks
}
