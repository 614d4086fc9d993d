package dashboard

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/syncworker/syncworker/internal/checkpoint"
)

// The throughput chart is an inline SVG drawn on the server: one bar per
// bucket of the ledger, its height the bucket's rate per second. Its
// geometry is in the units of a fixed viewBox that the page scales.
const (
	chartW, chartH = 800.0, 220.0
	// The margins leave room for the axes' labels.
	chartLeft, chartRight, chartTop, chartBottom = 56.0, 12.0, 12.0, 28.0
	// chartBuckets is the most buckets a chart has.
	chartBuckets = 60
	// minSlots is the fewest bars the plot is divided for: a short run's
	// few buckets stay bars, not blocks, and a live run's grow rightwards.
	minSlots = 12
	// maxXTicks is the most labels under the time axis.
	maxXTicks = 6
)

// chart is what the template draws.
type chart struct {
	W, H float64
	// Plot is the area of the bars; Right and Base are its right and
	// bottom edges, YLabelX and XLabelY where the axes' labels go.
	PlotX, PlotY, PlotW, PlotH    float64
	Right, Base, YLabelX, XLabelY float64
	Bars                          []bar
	YTicks, XTicks                []tick
	// Unit names what the bars count per second, such as "items/s".
	Unit string
	// Caption says what a bar is, such as "5s buckets".
	Caption string
	// Empty is true when the run has committed nothing yet.
	Empty bool
}

// bar is one bucket's bar.
type bar struct {
	X, Y, W, H float64
	// Title is the bar's tooltip.
	Title string
}

// tick is a labelled position on an axis: Pos is y on the value axis and x
// on the time axis. End is true for a label that ends at Pos rather than
// centres on it: one at the plot's right edge, which would stick out.
type tick struct {
	Pos   float64
	Label string
	End   bool
}

// chartOf lays out the chart of th, whose items are of unit.
func chartOf(th checkpoint.Throughput, unit string) chart {
	c := chart{W: chartW, H: chartH, PlotX: chartLeft, PlotY: chartTop,
		PlotW: chartW - chartLeft - chartRight, PlotH: chartH - chartTop - chartBottom, Unit: unit + "/s",
		Right: chartW - chartRight, Base: chartH - chartBottom, YLabelX: chartLeft - 8, XLabelY: chartH - chartBottom + 18}
	n := len(th.Buckets)
	if n == 0 || th.Width <= 0 {
		c.Empty = true
		return c
	}
	c.Caption = durText(th.Width) + " buckets"
	secs := th.Width.Seconds()
	top := 0.0
	for _, b := range th.Buckets {
		top = max(top, float64(b.Items)/secs)
	}
	step, yMax := axisScale(top)
	for v := 0.0; v <= yMax+step/2; v += step {
		c.YTicks = append(c.YTicks, tick{Pos: c.PlotY + c.PlotH - v/yMax*c.PlotH, Label: short(v)})
	}

	slot := c.PlotW / float64(max(n, minSlots))
	gap := min(slot*0.2, 4)
	for i, b := range th.Buckets {
		v := float64(b.Items) / secs
		h := v / yMax * c.PlotH
		from := time.Duration(i) * th.Width
		c.Bars = append(c.Bars, bar{
			X: c.PlotX + float64(i)*slot + gap/2, Y: c.PlotY + c.PlotH - h, W: max(slot-gap, 1), H: h,
			Title: fmt.Sprintf("+%s to +%s: %s %s (%s/s) in %s batches", durText(from), durText(from+th.Width),
				num(b.Items), unit, short(v), num(b.Batches)),
		})
	}
	every := (n + maxXTicks - 1) / maxXTicks
	for i := 0; i <= n; i += every {
		x := c.PlotX + float64(i)*slot
		c.XTicks = append(c.XTicks, tick{Pos: x, Label: "+" + durText(time.Duration(i)*th.Width), End: x > c.Right-20})
	}
	return c
}

// axisScale returns the step of a value axis over [0, top] in at most
// four steps of 1, 2 or 5 times a power of ten, and the axis's top, a whole
// number of steps at or above top. An axis over nothing goes to 1.
func axisScale(top float64) (step, yMax float64) {
	if top <= 0 {
		return 0.25, 1
	}
	raw := top / 4
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	step = 10 * pow
	for _, m := range []float64{1, 2, 5} {
		if m*pow >= raw*(1-1e-9) {
			step = m * pow
			break
		}
	}
	return step, step * math.Ceil(top/step-1e-9)
}

// short writes an axis value briefly: 0.5, 12, 1.5k, 2M.
func short(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(math.Round(v/1e5)/10, 'f', -1, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(math.Round(v/1e2)/10, 'f', -1, 64) + "k"
	case v >= 10 || v == math.Trunc(v):
		return strconv.FormatFloat(math.Round(v), 'f', -1, 64)
	default:
		return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
	}
}
