package main

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Chart geometry. Each policy is a block, top to bottom: a heading, the two
// panels side by side (the delays on the left, the cumulative time on the
// right), each panel's legend under it, outside the data, and the policy's
// hedging (when it hedges) and warnings. Both panels have a logarithmic time axis labelled in durations,
// so a 100 ms policy and a 5 min one are read the same way, and the first
// retries of a long policy are not flattened by its last ones.
const (
	chartWidth    = 26 * vg.Centimeter
	chartMargin   = 5 * vg.Millimeter
	captionHeight = 9 * vg.Millimeter
	headingHeight = 8 * vg.Millimeter
	panelHeight   = 7 * vg.Centimeter
	legendHeight  = 15 * vg.Millimeter
	noteLine      = 4.2 * vg.Millimeter // one line of a note or warning
	blockGap      = 6 * vg.Millimeter
	bandHalfWidth = 0.3 // of a retry's slot on the x axis
	noteWidth     = 150 // characters per line of a note or warning on the picture
)

var (
	bandFill    = color.RGBA{R: 0x9e, G: 0xc5, B: 0xe8, A: 0xff}
	bandEdge    = color.RGBA{R: 0x31, G: 0x6b, B: 0xa8, A: 0xff}
	medianColor = color.RGBA{R: 0x0b, G: 0x2e, B: 0x59, A: 0xff}
	worstColor  = color.RGBA{R: 0xc0, G: 0x1c, B: 0x28, A: 0xff}
	typColor    = color.RGBA{R: 0xf0, G: 0xa0, B: 0x30, A: 0xff}
	bestColor   = color.RGBA{R: 0x1e, G: 0x6e, B: 0x32, A: 0xff}
	warnColor   = color.RGBA{R: 0x9a, G: 0x3b, B: 0x00, A: 0xff}
	hedgeColor  = color.RGBA{R: 0x20, G: 0x20, B: 0x20, A: 0xff}
)

// A chartRow is one policy's block of the picture: its schedule and the
// findings printed under it, as plan prints them under its table.
type chartRow struct {
	Schedule schedule
	Findings []finding
}

// writeChartFile draws the rows into path as "svg" or "png".
func writeChartFile(path, format, caption string, rows []chartRow) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	return writeChart(f, format, caption, rows)
}

// A note is one line of text under a row's panels.
type note struct {
	text  string
	color color.Color
}

// notes returns the wrapped lines under a row's panels: the hedging
// policy's delay and load, as plan prints them, then the findings.
func (r chartRow) notes() []note {
	var lines []note
	add := func(text, first string, c color.Color) {
		w := wrap(text, first, "    ", noteWidth)
		for _, l := range strings.Split(strings.TrimRight(w, "\n"), "\n") {
			lines = append(lines, note{l, c})
		}
	}
	for _, n := range hedgeNotes(r.Schedule.Policy) {
		add(n.Text, n.Key+": ", hedgeColor)
	}
	for _, f := range r.Findings {
		add(f.Message+" ["+f.Check+"]", f.Severity.String()+": ", warnColor)
	}
	return lines
}

// height is the height of a row's block.
func (r chartRow) height() vg.Length {
	h := headingHeight + panelHeight + legendHeight
	if n := len(r.notes()); n > 0 {
		h += vg.Length(n)*noteLine + 2*vg.Millimeter
	}
	return h
}

// writeChart draws the rows as an SVG or PNG image into w, under caption.
func writeChart(w io.Writer, format, caption string, rows []chartRow) error {
	if len(rows) == 0 {
		return errors.New("no policy to draw")
	}
	h := 2*chartMargin + captionHeight
	for i, r := range rows {
		if i > 0 {
			h += blockGap
		}
		h += r.height()
	}
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
	dc.SetColor(color.White) // the PNG canvas starts transparent
	dc.Fill(dc.Rectangle.Path())

	left, right := chartMargin, chartWidth-chartMargin
	top := h - chartMargin
	dc.FillText(textStyle(13, color.Black), vg.Point{X: left, Y: top}, caption)
	top -= captionHeight
	for i, r := range rows {
		if i > 0 {
			top -= blockGap
		}
		if err := drawRow(dc, r, left, right, top); err != nil {
			return fmt.Errorf("drawing %s: %w", r.Schedule.Name, err)
		}
		top -= r.height()
	}
	_, err := canvas.WriteTo(w)
	return err
}

// textStyle is the picture's text in size points, left and top aligned.
func textStyle(size float64, c color.Color) text.Style {
	return text.Style{
		Color:   c,
		Font:    font.From(plot.DefaultFont, vg.Points(size)),
		XAlign:  draw.XLeft,
		YAlign:  draw.YTop,
		Handler: plot.DefaultTextHandler,
	}
}

// region is the part of dc between x0 and x1, y0 (bottom) and y1 (top).
func region(dc draw.Canvas, x0, x1, y0, y1 vg.Length) draw.Canvas {
	return draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{Min: vg.Point{X: x0, Y: y0}, Max: vg.Point{X: x1, Y: y1}}}
}

// drawRow draws one policy's block with its top edge at top.
func drawRow(dc draw.Canvas, r chartRow, left, right, top vg.Length) error {
	s := r.Schedule
	p := s.Policy
	timeout := "no timeout"
	if p.Timeout > 0 {
		timeout = "timeout " + fmtDur(p.Timeout) + " per attempt"
	}
	heading := fmt.Sprintf("%s: %s, wait %s..%s, backoff %s, %s, %s", s.Name, plural(p.Attempts, "attempt"),
		fmtDur(p.WaitMin), fmtDur(p.WaitMax), fmtNum(p.Backoff), jitterText(p.Jitter), timeout)
	if len(s.Steps) == 0 {
		heading = s.Name + ": 1 attempt, no retries: gives up when its one attempt fails"
	}
	dc.FillText(textStyle(12, color.Black), vg.Point{X: left, Y: top}, heading)
	y := top - headingHeight
	if len(s.Steps) > 0 {
		mid := (left + right) / 2
		delays, dLegend, err := delayPlot(s)
		if err != nil {
			return err
		}
		cumulative, cLegend, err := cumulativePlot(s)
		if err != nil {
			return err
		}
		const pad = 4 * vg.Millimeter
		delays.Draw(region(dc, left, mid-pad, y-panelHeight, y))
		cumulative.Draw(region(dc, mid+pad, right, y-panelHeight, y))
		legendTop := y - panelHeight - 2*vg.Millimeter
		dLegend.Draw(region(dc, left+vg.Centimeter, mid-pad, legendTop-legendHeight, legendTop))
		cLegend.Draw(region(dc, mid+pad+vg.Centimeter, right, legendTop-legendHeight, legendTop))
	}
	y -= panelHeight + legendHeight
	if notes := r.notes(); len(notes) > 0 {
		y -= 2 * vg.Millimeter
		for _, line := range notes {
			dc.FillText(textStyle(9, line.color), vg.Point{X: left, Y: y}, line.text)
			y -= noteLine
		}
	}
	return nil
}

// newPanel returns a plot with a logarithmic time axis from lo to hi
// seconds, labelled in durations.
func newPanel(title string, lo, hi float64) *plot.Plot {
	pl := plot.New()
	pl.Title.Text = title
	pl.Title.TextStyle.Font.Size = vg.Points(11)
	pl.Y.Scale = plot.LogScale{}
	pl.Y.Tick.Marker = durationTicks{}
	pl.Y.Label.Text = "time (log scale)"
	// Room around the data so that no mark sits on the frame.
	pl.Y.Min, pl.Y.Max = lo/1.6, hi*1.6
	pl.Add(plotter.NewGrid())
	return pl
}

// newLegend returns a legend for drawing under a panel, its entries one
// under the other.
func newLegend() plot.Legend {
	l := plot.NewLegend()
	l.TextStyle.Font.Size = vg.Points(9)
	l.Top, l.Left = true, true
	l.ThumbnailWidth = vg.Points(28)
	l.Padding = vg.Points(3)
	return l
}

// delayPlot draws the delay band of each retry (min..max) with its median.
func delayPlot(s schedule) (*plot.Plot, plot.Legend, error) {
	lo, hi := s.Steps[0].Min.Seconds(), s.Steps[0].Max.Seconds()
	for _, st := range s.Steps {
		lo, hi = math.Min(lo, st.Min.Seconds()), math.Max(hi, st.Max.Seconds())
	}
	pl := newPanel("delay before retry n", lo, hi)
	pl.X.Label.Text = "retry n"
	pl.X.Min, pl.X.Max = 0.5, float64(len(s.Steps))+0.5
	var ticks []plot.Tick
	var band *plotter.Polygon
	var median *plotter.Line
	for _, st := range s.Steps {
		x := float64(st.Retry)
		ticks = append(ticks, plot.Tick{Value: x, Label: strconv.Itoa(st.Retry)})
		lo, hi := st.Min.Seconds(), st.Max.Seconds()
		var err error
		band, err = plotter.NewPolygon(plotter.XYs{
			{X: x - bandHalfWidth, Y: lo}, {X: x + bandHalfWidth, Y: lo},
			{X: x + bandHalfWidth, Y: hi}, {X: x - bandHalfWidth, Y: hi},
		})
		if err != nil {
			return nil, plot.Legend{}, err
		}
		band.Color = bandFill
		band.LineStyle.Color = bandEdge
		band.LineStyle.Width = vg.Points(0.75)
		m := st.Median.Seconds()
		median, err = plotter.NewLine(plotter.XYs{{X: x - bandHalfWidth, Y: m}, {X: x + bandHalfWidth, Y: m}})
		if err != nil {
			return nil, plot.Legend{}, err
		}
		median.LineStyle.Color = medianColor
		median.LineStyle.Width = vg.Points(2.5)
		pl.Add(band, median)
	}
	pl.X.Tick.Marker = plot.ConstantTicks(ticks)
	l := newLegend()
	l.Add("delay, min..max (a bar alone: every draw gives the same delay)", band)
	l.Add("median delay", median)
	return pl, l, nil
}

// cumulativePlot draws when each retry starts and when the policy gives
// up: worst, typical and best. Lines that coincide stay visible: the
// typical line is wide and pale and drawn first, the best one thin and
// dark on top, each with its own marker, and the legend says when two are
// the same.
func cumulativePlot(s schedule) (*plot.Plot, plot.Legend, error) {
	p := s.Policy
	first := s.Steps[0]
	pl := newPanel("time until retry n starts, and until it gives up", first.Best.Seconds(), s.GiveUpWorst.Seconds())
	pl.X.Label.Text = "retry n"
	last := float64(len(s.Steps) + 1)
	pl.X.Min, pl.X.Max = 0.5, last+0.5
	var ticks []plot.Tick
	for _, st := range s.Steps {
		ticks = append(ticks, plot.Tick{Value: float64(st.Retry), Label: strconv.Itoa(st.Retry)})
	}
	ticks = append(ticks, plot.Tick{Value: last, Label: "give up"})
	pl.X.Tick.Marker = plot.ConstantTicks(ticks)

	worstName := "worst: every attempt runs to its " + fmtDur(p.Timeout) + " timeout, longest delays"
	if s.Unbounded {
		worstName = "worst: longest delays (no timeout: attempt time unbounded, not counted)"
	}
	typName := "typical: attempts fail at once, median delays"
	same := true
	for _, st := range s.Steps {
		same = same && st.Typical == st.Best
	}
	if same {
		typName += " (here the same as best)"
	}
	series := []struct {
		name   string
		color  color.Color
		width  vg.Length
		dash   []vg.Length
		glyph  draw.GlyphDrawer
		radius vg.Length
		at     func(step) time.Duration
		end    time.Duration
	}{ // in drawing order: the widest first
		{typName, typColor, vg.Points(5), nil, draw.BoxGlyph{}, vg.Points(4.5), func(st step) time.Duration { return st.Typical }, s.GiveUpTypical},
		{worstName, worstColor, vg.Points(1.5), []vg.Length{vg.Points(5), vg.Points(2.5)}, draw.CircleGlyph{}, vg.Points(2.5), func(st step) time.Duration { return st.Worst }, s.GiveUpWorst},
		{"best: attempts fail at once, shortest delays", bestColor, vg.Points(1.2), nil, draw.TriangleGlyph{}, vg.Points(2.5), func(st step) time.Duration { return st.Best }, s.GiveUpBest},
	}
	l := newLegend()
	entries := make([][2]plot.Thumbnailer, len(series))
	for i, se := range series {
		var xys plotter.XYs
		for _, st := range s.Steps {
			xys = append(xys, plotter.XY{X: float64(st.Retry), Y: se.at(st).Seconds()})
		}
		xys = append(xys, plotter.XY{X: last, Y: se.end.Seconds()})
		line, pts, err := plotter.NewLinePoints(xys)
		if err != nil {
			return nil, plot.Legend{}, err
		}
		line.LineStyle.Color, line.LineStyle.Width, line.LineStyle.Dashes = se.color, se.width, se.dash
		pts.GlyphStyle.Color, pts.GlyphStyle.Radius, pts.GlyphStyle.Shape = se.color, se.radius, se.glyph
		pl.Add(line, pts)
		entries[i] = [2]plot.Thumbnailer{line, pts}
	}
	for _, i := range []int{1, 0, 2} { // worst, typical, best: top to bottom as on the plot
		l.Add(series[i].name, entries[i][0], entries[i][1])
	}
	return pl, l, nil
}

// durationTicks labels a logarithmic time axis in seconds at round
// durations (100ms, 200ms, 500ms, 1s, 2s, 5s, 10s, 30s, 1m, 2m, 5m, ...),
// with unlabelled ticks at each 1..9 times a power of ten between.
type durationTicks struct{}

// roundDurations are the labelled values of durationTicks.
var roundDurations = func() []time.Duration {
	var ds []time.Duration
	for _, unit := range []time.Duration{time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond} {
		ds = append(ds, unit, 2*unit, 5*unit)
	}
	for _, unit := range []time.Duration{time.Second, time.Minute} {
		ds = append(ds, unit, 2*unit, 5*unit, 10*unit, 30*unit)
	}
	return append(ds, time.Hour, 2*time.Hour, 5*time.Hour, 10*time.Hour, 24*time.Hour)
}()

// Ticks implements plot.Ticker.
func (durationTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) || lo <= 0 {
		return []plot.Tick{{Value: lo, Label: fmtDur(secondsDur(lo))}}
	}
	var ticks []plot.Tick
	for _, d := range roundDurations {
		if v := d.Seconds(); v >= lo && v <= hi {
			ticks = append(ticks, plot.Tick{Value: v, Label: fmtDur(d)})
		}
	}
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		for m := 1; m < 10; m++ {
			if v := float64(m) * math.Pow(10, e); v >= lo && v <= hi {
				ticks = append(ticks, plot.Tick{Value: v})
			}
		}
	}
	return ticks
}

// secondsDur converts seconds to a duration, rounded to the millisecond.
func secondsDur(s float64) time.Duration {
	return time.Duration(math.Round(s*1000)) * time.Millisecond
}
