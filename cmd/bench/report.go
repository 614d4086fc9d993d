package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Percentile returns the p-th percentile (0..100) of xs by the nearest-rank
// method: the smallest value with at least p% of the values at or below it.
// It returns NaN for no values.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// LedgerBatch is one row of batch_ledger as the benchmark reads it.
type LedgerBatch struct {
	Partition   int
	Seq         int64
	StartedAt   time.Time
	CommittedAt time.Time
	Duration    time.Duration
}

// Gaps returns, for each batch that follows another of the same partition,
// the time from the end of the previous batch (its ledger row's
// committed_at, written just before its transaction commits) to its start:
// the queue hop plus the COMMIT itself. Batches are taken in (partition,
// seq) order; a negative gap (clock skew) counts as zero.
func Gaps(batches []LedgerBatch) []time.Duration {
	s := slices.Clone(batches)
	slices.SortFunc(s, func(a, b LedgerBatch) int {
		if a.Partition != b.Partition {
			return a.Partition - b.Partition
		}
		return int(a.Seq - b.Seq)
	})
	var out []time.Duration
	for i := 1; i < len(s); i++ {
		if s[i].Partition != s[i-1].Partition {
			continue
		}
		out = append(out, max(s[i].StartedAt.Sub(s[i-1].CommittedAt), 0))
	}
	return out
}

// durationsMS returns the batches' own durations in milliseconds.
func durationsMS(batches []LedgerBatch) []float64 {
	out := make([]float64, len(batches))
	for i, b := range batches {
		out[i] = float64(b.Duration) / float64(time.Millisecond)
	}
	return out
}

// Millis converts durations to milliseconds.
func Millis(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(time.Millisecond)
	}
	return out
}

// KV is one key=value figure of the last line.
type KV struct {
	Key   string
	Value float64
}

// SummaryLine returns the last line of the output: "bench:" and the
// figures as key=value, in order, with up to 3 significant decimals; a
// figure not measured (NaN) is written "na".
func SummaryLine(kvs []KV) string {
	var b strings.Builder
	b.WriteString("bench:")
	for _, kv := range kvs {
		b.WriteString(" ")
		b.WriteString(kv.Key)
		b.WriteString("=")
		b.WriteString(formatFigure(kv.Value))
	}
	return b.String()
}

// formatFigure writes v with at most 3 decimals and no trailing zeros.
func formatFigure(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "na"
	}
	s := strconv.FormatFloat(v, 'f', 3, 64)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// Row is one line of the results table.
type Row struct {
	// Scenario names what was measured; Workers the worker processes (0
	// for none).
	Scenario string
	Workers  int
	// Units is how many rows (or requests) it did, in Wall.
	Units int64
	Wall  time.Duration
	// Rate is Units per second; VsBaseline its ratio to the baseline's
	// rows/s (NaN when not comparable).
	Rate, VsBaseline float64
	// Note is any other figure of the line.
	Note string
}

// WriteTable writes rows as an aligned text table.
func WriteTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
	fmt.Fprintln(tw, "scenario\tworkers\tunits\twall s\tunits/s\tvs baseline\tnotes")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f\t%.0f\t%s\t%s\n", r.Scenario, workersCell(r.Workers), r.Units,
			r.Wall.Seconds(), r.Rate, ratioCell(r.VsBaseline), r.Note)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// WriteMarkdownTable writes rows as a Markdown table.
func WriteMarkdownTable(w io.Writer, rows []Row) {
	fmt.Fprintln(w, "| scenario | workers | units | wall s | units/s | vs baseline | notes |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %d | %.2f | %.0f | %s | %s |\n", r.Scenario, workersCell(r.Workers), r.Units,
			r.Wall.Seconds(), r.Rate, ratioCell(r.VsBaseline), r.Note)
	}
}

func workersCell(n int) string {
	if n == 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

func ratioCell(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// Rate returns n per second over d, or NaN for no time.
func Rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return math.NaN()
	}
	return float64(n) / d.Seconds()
}

// Target is one target of the issue with what was measured against it.
type Target struct {
	Name string
	// Measured is the figure, Limit the bound, AtLeast whether the figure
	// must be at least (else at most) the bound.
	Measured, Limit float64
	AtLeast         bool
	Unit            string
}

// Met reports whether the measured figure is within the bound; a figure
// not measured (NaN) is not.
func (t Target) Met() bool {
	if math.IsNaN(t.Measured) {
		return false
	}
	if t.AtLeast {
		return t.Measured >= t.Limit
	}
	return t.Measured <= t.Limit
}

// Verdict says "met" or "missed by X" (how far from the bound, in the
// target's unit and as a share of the bound).
func (t Target) Verdict() string {
	if math.IsNaN(t.Measured) {
		return "not measured"
	}
	if t.Met() {
		return "met"
	}
	gap := math.Abs(t.Measured - t.Limit)
	if t.Limit == 0 {
		return fmt.Sprintf("missed by %s%s", formatFigure(gap), t.Unit)
	}
	pct := 100 * gap / math.Abs(t.Limit)
	return fmt.Sprintf("missed by %s%s (%s%%)", formatFigure(gap), t.Unit, formatFigure(math.Round(pct*10)/10))
}
