package main

import (
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(100 - i) // 100..1, unsorted
	}
	tests := []struct {
		name string
		xs   []float64
		p    float64
		want float64
	}{
		{"one value", []float64{7}, 50, 7},
		{"median of odd", []float64{3, 1, 2}, 50, 2},
		{"median of even is the lower", []float64{4, 1, 3, 2}, 50, 2},
		{"p99 of 1..100", hundred, 99, 99},
		{"p100 is the max", hundred, 100, 100},
		{"p0 is the min", hundred, 0, 1},
		{"p1 of 1..100", hundred, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := slices.Clone(tt.xs)
			if got := Percentile(tt.xs, tt.p); got != tt.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tt.xs, tt.p, got, tt.want)
			}
			if !slices.Equal(before, tt.xs) {
				t.Errorf("Percentile reordered its input: %v", tt.xs)
			}
		})
	}
	if got := Percentile(nil, 50); !math.IsNaN(got) {
		t.Errorf("Percentile(nil) = %v, want NaN", got)
	}
}

func TestGaps(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	batches := []LedgerBatch{
		// partition 1, out of order: gaps 2 ms and 0 (negative clamps)
		{Partition: 1, Seq: 2, StartedAt: at(30), CommittedAt: at(40)},
		{Partition: 1, Seq: 0, StartedAt: at(0), CommittedAt: at(10)},
		{Partition: 1, Seq: 1, StartedAt: at(12), CommittedAt: at(31)},
		// partition 0: one gap of 5 ms
		{Partition: 0, Seq: 0, StartedAt: at(0), CommittedAt: at(20)},
		{Partition: 0, Seq: 1, StartedAt: at(25), CommittedAt: at(50)},
		// partition 2: a single batch, no gap
		{Partition: 2, Seq: 0, StartedAt: at(0), CommittedAt: at(1)},
	}
	got := Millis(Gaps(batches))
	want := []float64{5, 2, 0}
	if !slices.Equal(got, want) {
		t.Errorf("Gaps = %v ms, want %v", got, want)
	}
	if got := Gaps(nil); len(got) != 0 {
		t.Errorf("Gaps(nil) = %v, want none", got)
	}
}

func TestSummaryLine(t *testing.T) {
	tests := []struct {
		name string
		kvs  []KV
		want string
	}{
		{"none", nil, "bench:"},
		{"rounded, zeros trimmed", []KV{{"e2e_vs_copy", 0.8312}, {"ratelimit_429", 0}, {"rss_mb", 31.5}, {"scale_2w", 1.9999}},
			"bench: e2e_vs_copy=0.831 ratelimit_429=0 rss_mb=31.5 scale_2w=2"},
		{"negative", []KV{{"ckpt_cost_pct", -0.37}}, "bench: ckpt_cost_pct=-0.37"},
		{"not measured", []KV{{"a", math.NaN()}, {"b", math.Inf(1)}}, "bench: a=na b=na"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SummaryLine(tt.kvs); got != tt.want {
				t.Errorf("SummaryLine = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWriteTable(t *testing.T) {
	rows := []Row{
		{Scenario: "baseline", Units: 1000, Wall: 2 * time.Second, Rate: 500, VsBaseline: 1},
		{Scenario: "end to end", Workers: 2, Units: 1000, Wall: 4 * time.Second, Rate: 250, VsBaseline: math.NaN(), Note: "x"},
	}
	var b strings.Builder
	if err := WriteTable(&b, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("table has %d lines, want 3:\n%s", len(lines), b.String())
	}
	// Columns align: every line has its separators at the same offsets.
	seps := func(s string) []int {
		var out []int
		for i, r := range s {
			if r == '|' {
				out = append(out, i)
			}
		}
		return out
	}
	for _, l := range lines[1:] {
		if !slices.Equal(seps(l)[:6], seps(lines[0])[:6]) {
			t.Errorf("misaligned columns:\n%s", b.String())
		}
	}
	for _, want := range []string{"baseline", "|        -|", "2.00", "500", "1.00", "end to end", "            -|x"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}

	var md strings.Builder
	WriteMarkdownTable(&md, rows)
	if want := "| end to end | 2 | 1000 | 4.00 | 250 | - | x |"; !strings.Contains(md.String(), want) {
		t.Errorf("markdown table lacks %q:\n%s", want, md.String())
	}
}

func TestTargetVerdict(t *testing.T) {
	tests := []struct {
		name   string
		target Target
		met    bool
		want   string
	}{
		{"at least, met", Target{Measured: 0.83, Limit: 0.8, AtLeast: true}, true, "met"},
		{"at least, missed", Target{Measured: 0.6, Limit: 0.8, AtLeast: true}, false, "missed by 0.2 (25%)"},
		{"at most, met on the bound", Target{Measured: 2, Limit: 2, Unit: " ms"}, true, "met"},
		{"at most, missed", Target{Measured: 3, Limit: 2, Unit: " ms"}, false, "missed by 1 ms (50%)"},
		{"bound zero", Target{Measured: 7, Limit: 0}, false, "missed by 7"},
		{"not measured", Target{Measured: math.NaN(), Limit: 1}, false, "not measured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.target.Met(); got != tt.met {
				t.Errorf("Met = %v, want %v", got, tt.met)
			}
			if got := tt.target.Verdict(); got != tt.want {
				t.Errorf("Verdict = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRate(t *testing.T) {
	if got := Rate(500, 2*time.Second); got != 250 {
		t.Errorf("Rate = %v, want 250", got)
	}
	if got := Rate(500, 0); !math.IsNaN(got) {
		t.Errorf("Rate over no time = %v, want NaN", got)
	}
}

func TestRounds(t *testing.T) {
	rs := []Round{
		{BaselineNew: 40000, Checkpointed: 38000, PairedBare: 40000, ETL: 44000},
		{BaselineNew: 50000, Checkpointed: 45000, PairedBare: 50000, ETL: 40000},
		{BaselineNew: 45000, Checkpointed: 44100, PairedBare: 45000, ETL: 45000},
	}
	if got := medianOf(rs, Round.E2E); math.Abs(got-1) > 1e-9 {
		t.Errorf("median e2e = %v, want 1 (of 1.1, 0.8, 1)", got)
	}
	if got := medianOf(rs, Round.CkptCostPct); math.Abs(got-5) > 1e-9 {
		t.Errorf("median checkpoint cost = %v, want 5 (of 5, 10, 2)", got)
	}
	if got := roundsNote(rs, Round.CkptCostPct, 1); got != "5.0, 10.0, 2.0" {
		t.Errorf("roundsNote = %q", got)
	}
}

func TestPairCostPct(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		out := make([]time.Duration, len(xs))
		for i, x := range xs {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	// Pairs 10/10.5, 10/11, 10/100 (a stall), 10/10.4, 10/10.6: the
	// median pair is 10/10.6, whatever the stall.
	ckpt := []time.Duration{10500 * time.Microsecond, 11 * time.Millisecond, 100 * time.Millisecond, 10400 * time.Microsecond, 10600 * time.Microsecond}
	bare := ms(10, 10, 10, 10, 10)
	want := 100 * (1 - 10/10.6)
	if got := pairCostPct(ckpt, bare); math.Abs(got-want) > 1e-9 {
		t.Errorf("pairCostPct = %v, want %v", got, want)
	}
	if got := sum(bare); got != 50*time.Millisecond {
		t.Errorf("sum = %v", got)
	}
}

func TestAtTheLine(t *testing.T) {
	cost := func(xs ...float64) []Round {
		out := make([]Round, len(xs))
		for i, x := range xs {
			out[i] = Round{Checkpointed: 100 - x, PairedBare: 100}
		}
		return out
	}
	target := Target{Limit: 5}
	tests := []struct {
		name   string
		rounds []Round
		want   bool
	}{
		{"all under", cost(3, 4, 4.5), false},
		{"all over", cost(5.5, 6, 8), false},
		{"both sides", cost(3.9, 5, 7.9), true},
		{"one round", cost(5), false},
	}
	for _, tt := range tests {
		if got := atTheLine(tt.rounds, Round.CkptCostPct, target) != ""; got != tt.want {
			t.Errorf("%s: at the line = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestBatchCostMS(t *testing.T) {
	// 500 rows at 40,000 rows/s is 12.5 ms a batch, at 50,000 10 ms.
	r := Round{Checkpointed: 40000, PairedBare: 50000}
	if got := r.batchCostMS(500); math.Abs(got-2.5) > 1e-9 {
		t.Errorf("batchCostMS = %v, want 2.5", got)
	}
}

func TestWideBatchKey(t *testing.T) {
	keys := func(r *Results) []string {
		var out []string
		for _, kv := range r.KVs() {
			out = append(out, kv.Key)
		}
		return out
	}
	r := &Results{Rounds: []Round{{BaselineNew: 1, Checkpointed: 95, PairedBare: 100, ETL: 1}}}
	if got := keys(r); slices.Contains(got, "ckpt_cost_pct_2x_batch") {
		t.Errorf("keys without a wide batch measured = %v", got)
	}
	r.Wide = Round{Checkpointed: 97, PairedBare: 100}
	got := keys(r)
	i := slices.Index(got, "ckpt_cost_pct")
	if i < 0 || i+1 >= len(got) || got[i+1] != "ckpt_cost_pct_2x_batch" {
		t.Errorf("keys = %v, want ckpt_cost_pct_2x_batch right after ckpt_cost_pct", got)
	}
	if line := SummaryLine(r.KVs()); !strings.Contains(line, "ckpt_cost_pct_2x_batch=3") {
		t.Errorf("last line %q, want ckpt_cost_pct_2x_batch=3", line)
	}
	if s := r.closeCheckpoint(Target{Measured: 5.2, Limit: 5}); !strings.Contains(s, "at batch 0 it measured 3.0%") {
		t.Errorf("closeCheckpoint = %q, want the wide batch's figure", s)
	}
	if s := r.closeCheckpoint(Target{Measured: 4.8, Limit: 5}); s != "" {
		t.Errorf("closeCheckpoint of a met target = %q, want nothing", s)
	}
}

func TestQuickWritesNoFiles(t *testing.T) {
	tests := []struct {
		args            []string
		wantMD, wantPNG string
	}{
		{nil, "BENCHMARKS.md", "docs/bench.png"},
		{[]string{"--quick"}, "", ""},
		{[]string{"--quick", "--out", "q.md"}, "q.md", ""},
		{[]string{"--quick", "--chart", "q.png"}, "", "q.png"},
		{[]string{"--out", ""}, "", "docs/bench.png"},
	}
	for _, tt := range tests {
		cmd := newRootCmd(io.Discard, io.Discard)
		if err := cmd.ParseFlags(tt.args); err != nil {
			t.Fatal(err)
		}
		quick, _ := cmd.Flags().GetBool("quick")
		md, _ := cmd.Flags().GetString("out")
		png, _ := cmd.Flags().GetString("chart")
		if gotMD, gotPNG := outputs(cmd, quick, md, png); gotMD != tt.wantMD || gotPNG != tt.wantPNG {
			t.Errorf("%v: outputs = %q, %q, want %q, %q", tt.args, gotMD, gotPNG, tt.wantMD, tt.wantPNG)
		}
	}
}
