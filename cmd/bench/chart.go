package main

import (
	"fmt"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// chart writes a PNG of two panels: rows/s of the baseline and the
// end-to-end runs, and the partitioned sync's speed-up against the ideal.
func (r *Results) chart(path string) error {
	bars := plot.New()
	bars.Title.Text = "rows/s (records or symbols for the system runs)"
	bars.Y.Label.Text = "rows/s"
	type bar struct {
		label string
		v     float64
	}
	list := []bar{{"COPY new", r.BaselineNew}, {"COPY upd", r.BaselineUpdate}, {"COPY+ckpt", r.Checkpointed},
		{"ETL 1w", r.ETL[0]}, {"ETL 2w", r.ETL[1]}, {"raw req", r.Requests}, {"sync 1w", r.Sync[0]}, {"sync 2w", r.Sync[1]}}
	vals := make(plotter.Values, len(list))
	names := make([]string, len(list))
	for i, b := range list {
		vals[i], names[i] = b.v, b.label
	}
	bc, err := plotter.NewBarChart(vals, vg.Points(22))
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	bc.Color = plotutil.Color(0)
	bars.Add(bc)
	bars.NominalX(names...)

	scale := plot.New()
	scale.Title.Text = "partitioned sync, 50 ms source: speed-up"
	scale.X.Label.Text = "worker processes"
	scale.Y.Label.Text = "speed-up vs 1 worker"
	measured := plotter.XYs{{X: 1, Y: 1}, {X: 2, Y: r.Scale[1] / r.Scale[0]}, {X: 4, Y: r.Scale[2] / r.Scale[0]}}
	ideal := plotter.XYs{{X: 1, Y: 1}, {X: 2, Y: 2}, {X: 4, Y: 4}}
	if err := plotutil.AddLinePoints(scale, "measured", measured, "ideal", ideal); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	scale.Legend.Top, scale.Legend.Left = true, true

	img := vgimg.New(vg.Points(900), vg.Points(360))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Points(10), PadY: vg.Points(10),
		PadTop: vg.Points(5), PadBottom: vg.Points(5), PadLeft: vg.Points(5), PadRight: vg.Points(5)}
	canvases := plot.Align([][]*plot.Plot{{bars, scale}}, tiles, dc)
	bars.Draw(canvases[0][0])
	scale.Draw(canvases[0][1])

	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("chart: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	return nil
}
