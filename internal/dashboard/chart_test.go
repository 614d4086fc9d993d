package dashboard

import (
	"math"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/checkpoint"
)

func TestAxisScale(t *testing.T) {
	tests := []struct{ top, step, max float64 }{
		{0, 0.25, 1},
		{40, 10, 40},
		{41, 20, 60},
		{26.4, 10, 30},
		{3, 1, 3},
		{0.7, 0.2, 0.8},
		{1234, 500, 1500},
		{8000, 2000, 8000},
	}
	for _, tt := range tests {
		step, top := axisScale(tt.top)
		if math.Abs(step-tt.step) > 1e-9 || math.Abs(top-tt.max) > 1e-9 {
			t.Errorf("axisScale(%v) = step %v, top %v; want %v, %v", tt.top, step, top, tt.step, tt.max)
		}
		if top < tt.top || top/step > 4+1e-9 {
			t.Errorf("axisScale(%v) = step %v, top %v: the axis must cover the top in at most 4 steps", tt.top, step, top)
		}
	}
}

func TestChartOf(t *testing.T) {
	if c := chartOf(checkpoint.Throughput{}, "items"); !c.Empty || len(c.Bars) != 0 {
		t.Errorf("chart of no ledger = %+v, want empty", c)
	}

	// 5s buckets: 200 items (40/s, the top), none, 50 (10/s).
	th := checkpoint.Throughput{Start: time.Now(), Width: 5 * time.Second,
		Buckets: []checkpoint.Bucket{{Batches: 4, Items: 200}, {}, {Batches: 1, Items: 50}}}
	c := chartOf(th, "items")
	if c.Empty || len(c.Bars) != 3 || c.Unit != "items/s" || c.Caption != "5s buckets" {
		t.Fatalf("chart = %+v, want 3 bars of items/s in 5s buckets", c)
	}
	base := c.PlotY + c.PlotH
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-6 }
	// The axis goes to 40 in steps of 10: the first bar reaches the top.
	if !near(c.Bars[0].Y, c.PlotY) || !near(c.Bars[0].H, c.PlotH) {
		t.Errorf("tallest bar %+v, want it from the plot's top (%v) to its base (%v)", c.Bars[0], c.PlotY, base)
	}
	if c.Bars[1].H != 0 || !near(c.Bars[1].Y, base) {
		t.Errorf("empty bucket's bar %+v, want no height at the base", c.Bars[1])
	}
	if !near(c.Bars[2].H, c.PlotH/4) || !near(c.Bars[2].Y+c.Bars[2].H, base) {
		t.Errorf("10/s bar %+v, want a quarter of the plot standing on the base", c.Bars[2])
	}
	for i, b := range c.Bars {
		if b.X < c.PlotX || b.X+b.W > c.PlotX+c.PlotW+1e-9 || b.W <= 0 || b.Y < c.PlotY-1e-9 {
			t.Errorf("bar %d %+v is outside the plot %v,%v %vx%v", i, b, c.PlotX, c.PlotY, c.PlotW, c.PlotH)
		}
		if i > 0 && b.X <= c.Bars[i-1].X+c.Bars[i-1].W-1e-9 {
			t.Errorf("bar %d overlaps bar %d", i, i-1)
		}
	}
	// Three buckets take 3 of minSlots slots: the run grows rightwards.
	if slot := c.PlotW / minSlots; !near(c.Bars[2].X+c.Bars[2].W, c.PlotX+3*slot-min(slot*0.2, 4)/2) {
		t.Errorf("last bar ends at %v, want at the end of the third of %d slots", c.Bars[2].X+c.Bars[2].W, minSlots)
	}
	if c.Bars[0].Title != "+0s to +5s: 200 items (40/s) in 4 batches" {
		t.Errorf("first bar's title %q", c.Bars[0].Title)
	}
	var labels []string
	for _, tk := range c.YTicks {
		labels = append(labels, tk.Label)
	}
	if got := len(labels); got != 5 || labels[0] != "0" || labels[4] != "40" || !near(c.YTicks[4].Pos, c.PlotY) || !near(c.YTicks[0].Pos, base) {
		t.Errorf("value axis %+v, want 0 to 40 from the base to the top", c.YTicks)
	}
	if len(c.XTicks) == 0 || c.XTicks[0].Label != "+0s" || !near(c.XTicks[0].Pos, c.PlotX) {
		t.Errorf("time axis %+v, want it to start at +0s on the plot's left", c.XTicks)
	}

	// Many buckets: at most maxXTicks+1 labels, the bars fill the plot.
	many := checkpoint.Throughput{Width: time.Minute, Buckets: make([]checkpoint.Bucket, 60)}
	many.Buckets[59].Items = 6000
	c = chartOf(many, "records")
	if len(c.XTicks) > maxXTicks+1 || c.Unit != "records/s" || !near(c.Bars[59].Y, c.PlotY) {
		t.Errorf("chart of 60 buckets: %d time labels, unit %s, last bar %+v", len(c.XTicks), c.Unit, c.Bars[59])
	}
	if first, last := c.XTicks[0], c.XTicks[len(c.XTicks)-1]; first.End || !last.End || !near(last.Pos, c.Right) || last.Label != "+1h" {
		t.Errorf("time axis from %+v to %+v, want the last label at the right edge, ending there", first, last)
	}
	if last := c.Bars[59]; last.X+last.W > c.PlotX+c.PlotW+1e-9 || last.X+last.W < c.PlotX+c.PlotW-5 {
		t.Errorf("last of 60 bars ends at %v, want at the plot's right edge %v", last.X+last.W, c.PlotX+c.PlotW)
	}
}

func TestShort(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 0.25: "0.25", 2.5: "2.5", 12.4: "12", 1500: "1.5k", 1234: "1.2k", 2e6: "2M"} {
		if got := short(v); got != want {
			t.Errorf("short(%v) = %q, want %q", v, got, want)
		}
	}
}
