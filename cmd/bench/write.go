package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/syncworker/syncworker/internal/config"
)

// ckptCostPct is what checkpointing costs, in % of the baseline's
// throughput: 1 − (rows/s inside checkpoint.Commit ÷ rows/s of the bare
// upsert batches paired with them), the same rows and batch; the median of
// the rounds'.
func (r *Results) ckptCostPct() float64 {
	return medianOf(r.Rounds, Round.CkptCostPct)
}

// e2eVsCopy is the ETL run's rows/s on 1 worker ÷ the baseline's, the
// median of the rounds'.
func (r *Results) e2eVsCopy() float64 {
	return medianOf(r.Rounds, Round.E2E)
}

// gapShare is the share of a partition's time spent between batches in
// the overhead run: sum of gaps ÷ (sum of gaps + sum of batch durations).
func (r *Results) gapShare() float64 {
	var g, d float64
	for _, x := range r.GapsMS {
		g += x
	}
	for _, x := range r.BatchMS {
		d += x
	}
	return 100 * g / (g + d)
}

// KVs returns the figures of the last line.
func (r *Results) KVs() []KV {
	kvs := []KV{
		{"e2e_vs_copy", r.e2eVsCopy()},
		{"e2e_vs_copy_2w", r.ETL[1] / r.BaselineNew},
		{"e2e_vs_copy4", r.ETL[0] / r.BaselineParallel},
		{"sync_vs_copy", r.Sync[0] / r.BaselineNew},
		{"sync_vs_requests", r.Sync[0] / r.Requests},
		{"copy_rows_s", r.BaselineNew},
		{"e2e_rows_s", r.ETL[0]},
		{"batch_overhead_ms_p50", Percentile(r.GapsMS, 50)},
		{"batch_overhead_ms_p99", Percentile(r.GapsMS, 99)},
		{"ckpt_cost_pct", r.ckptCostPct()},
	}
	if r.Wide.Checkpointed > 0 {
		kvs = append(kvs, KV{"ckpt_cost_pct_2x_batch", r.Wide.CkptCostPct()})
	}
	return append(kvs, []KV{
		{"gap_share_pct", r.gapShare()},
		{"ratelimit_util", min(r.RateUtil[0], r.RateUtil[1])},
		{"ratelimit_util_1w", r.RateUtil[0]},
		{"ratelimit_util_3w", r.RateUtil[1]},
		{"ratelimit_429", float64(r.Rate429[0] + r.Rate429[1])},
		{"scale_2w", r.Scale[1] / r.Scale[0]},
		{"scale_4w", r.Scale[2] / r.Scale[0]},
		{"rss_mb", r.RSSMB},
	}...)
}

// Targets returns the targets with the figures measured against them.
func (r *Results) Targets() []Target {
	return []Target{
		{Name: "end to end ≥ 0.80 of the baseline (ETL, 1 worker)", Measured: r.e2eVsCopy(), Limit: 0.8, AtLeast: true},
		{Name: "per-batch overhead p50 ≤ 2 ms (1 worker, defaults)", Measured: Percentile(r.GapsMS, 50), Limit: 2, Unit: " ms"},
		{Name: "checkpointing ≤ 5 % of throughput at batch 500", Measured: r.ckptCostPct(), Limit: 5, Unit: " pts"},
		{Name: "rate-limit utilization ≥ 0.95 (1 and 3 workers)", Measured: min(r.RateUtil[0], r.RateUtil[1]), Limit: 0.95, AtLeast: true},
		{Name: "zero 429s under the limit", Measured: float64(r.Rate429[0] + r.Rate429[1]), Limit: 0},
		{Name: "latency-bound partitioned run: 2 workers ≥ 1.8× one", Measured: r.Scale[1] / r.Scale[0], Limit: 1.8, AtLeast: true, Unit: "×"},
		{Name: "worker RSS ≤ 64 MB at the default concurrency", Measured: r.RSSMB, Limit: 64, Unit: " MB"},
	}
}

// write prints the table and the last line to stdout, and writes the
// Markdown report and the chart when their paths are set.
func (r *Results) write(stdout io.Writer, mdPath, pngPath string) error {
	fmt.Fprintf(stdout, "machine: %s, %d cores, %s RAM; %s, Postgres %s, Redis %s; load average %s at start, %s at end\n\n",
		r.Machine.CPU, r.Machine.Cores, r.Machine.RAM, r.Machine.Go, r.Machine.Postgres, r.Machine.Redis,
		r.Machine.LoadStart, r.Machine.LoadEnd)
	if err := WriteTable(stdout, r.Rows); err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	for _, t := range r.Targets() {
		fmt.Fprintf(stdout, "target: %-55s %s (measured %s%s)\n", t.Name, t.Verdict(), formatFigure(t.Measured), t.Unit)
	}
	if pngPath != "" {
		if err := os.MkdirAll(filepath.Dir(pngPath), 0o755); err != nil {
			return fmt.Errorf("chart: %w", err)
		}
		if err := r.chart(pngPath); err != nil {
			return err
		}
	}
	if mdPath != "" {
		var b bytes.Buffer
		r.markdown(&b, pngPath, mdPath)
		if err := os.WriteFile(mdPath, b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", mdPath, err)
		}
	}
	fmt.Fprintln(stdout, SummaryLine(r.KVs()))
	return nil
}

// markdown writes BENCHMARKS.md.
func (r *Results) markdown(w io.Writer, pngPath, mdPath string) {
	size := "at full size (`make bench`)"
	if r.Quick {
		size = "at quick size (`make bench-quick`)"
	}
	m := r.Machine
	fmt.Fprintf(w, "# Benchmarks\n\nWritten by `cmd/bench` %s on %s, in %s. Regenerate with `make bench`; "+
		"figures are for reading, never asserted in tests.\n\n", size, time.Now().UTC().Format("2006-01-02 15:04 MST"), r.Wall.Round(time.Second))
	fmt.Fprintf(w, "## Machine\n\n| | |\n|---|---|\n| CPU | %s |\n| cores | %d |\n| RAM | %s |\n| Go | %s |\n| Postgres | %s |\n| Redis | %s |\n"+
		"| load average (1, 5, 15 min) at start | %s |\n| load average at end | %s |\n\n",
		m.CPU, m.Cores, m.RAM, m.Go, m.Postgres, m.Redis, m.LoadStart, m.LoadEnd)
	fmt.Fprintln(w, "The machine is shared with other sessions: a load average above the core count at start or end means the figures are depressed by other work.")
	fmt.Fprintln(w)
	o := r.Options
	defaults := config.Default()
	fmt.Fprintf(w, "## Figures\n\nN = %d rows, batch %d. \"units\" are rows, records or symbols (one quote request each); "+
		"wall is from the run's start (the enqueue) to its `finished_at` in Postgres; workers are real `bin/worker` processes "+
		"at the default configuration (worker concurrency %d, task_check_interval %s, task slice %s) except where noted; "+
		"the source is `bin/sourcesim`.\n\n", o.Records, o.Batch, defaults.Worker.Concurrency, defaults.Worker.TaskCheckInterval, defaults.Sync.TaskSlice)
	WriteMarkdownTable(w, r.Rows)
	if pngPath != "" {
		rel, err := filepath.Rel(filepath.Dir(mdPath), pngPath)
		if err != nil {
			rel = pngPath
		}
		fmt.Fprintf(w, "\n![throughput per scenario and scaling](%s)\n", filepath.ToSlash(rel))
	}
	fmt.Fprintf(w, "\n### Definitions\n\n"+
		"- **baseline**: COPY of each batch into a temporary staging table, then one `INSERT ... ON CONFLICT DO UPDATE` into `stock_prices`, one transaction per batch on one connection; new rows, then the same keys again (updates); and new rows on 4 connections at once (**e2e_vs_copy4** compares with that).\n"+
		"- **CPU busy**: the machine's busy share of all cores from /proc/stat over the run (other sessions included); workers and sim: the CPU seconds those processes used during the run (/proc/<pid>/stat); the rest is Postgres, Redis, this program and other sessions.\n"+
		"- **rounds**: the baseline's new rows, the checkpointed upsert and the ETL run on 1 worker are measured in %s, one after another in each round, so that a round's ratios see one load of the machine; their figures are the medians of the rounds (each round's is in the table's notes).\n"+
		"- **e2e_vs_copy**: rows/s of the ETL page job on 1 worker ÷ the baseline's new rows/s, the median of the rounds. The ETL job writes `etl_records` (jsonb), not `stock_prices`, so the ratio also carries the difference of the target tables.\n"+
		"- **sync_vs_requests**: symbols/s of the daily sync on 1 worker ÷ requests/s of raw quote requests to the simulator (one per symbol, as the sync makes them, 32 at once from one kept-alive client, the body read and dropped: no queue, no database, no parsing), the sync's own limit.\n"+
		"- **batch overhead**: from the ledger of the overhead run (pages of 100, one partition, one worker, defaults): for each batch after the first of its partition, its `started_at` minus the previous batch's `committed_at` (stamped by the ledger insert just before the COMMIT), i.e. the COMMIT plus the queue hop or the loop back to the next page. p50 %.2f ms, p99 %.2f ms over %d gaps; the batches themselves took p50 %.1f ms; the gaps are %.1f%% of the partition's time (**gap_share_pct**).\n"+
		"- **ckpt_cost_pct**: 1 − (rows/s of the baseline's upsert run inside `checkpoint.Store.Commit`, one page per batch, one partition, under a lease ÷ rows/s of bare upsert batches of the same size, each timed right before or right after its checkpointed twin, in turn, so that both see the same load), in %%, the median of the rounds: what the checkpoint's own SQL (counters, compare-and-set of the partition, ledger row) costs at batch %d. Measured %.1f%%.\n"+
		"- **ratelimit_util**: requests the simulator received ÷ wall ÷ the limit, the lower of 1 and 3 workers; **ratelimit_429**: the simulator's 429s (its token bucket, `throttled`, plus injected ones, none here), both runs.\n"+
		"- **scale_Nw**: symbols/s on N workers ÷ on 1, a daily sync in 4 partitions against a 50 ms source, with worker concurrency 1 so that a worker runs one partition at a time (at the default concurrency of 10 one worker already runs all 4 partitions at once, and more workers have nothing to take).\n"+
		"- **rss_mb**: the largest VmHWM (/proc/<pid>/status) of any worker in the runs at the default concurrency (ETL, sync, overhead, rate-limited).\n",
		rounds(len(r.Rounds)), Percentile(r.GapsMS, 50), Percentile(r.GapsMS, 99), len(r.GapsMS), Percentile(r.BatchMS, 50), r.gapShare(), o.Batch, r.ckptCostPct())
	fmt.Fprintf(w, "\n## Targets\n\n| target | measured | verdict |\n|---|---:|---|\n")
	for _, t := range r.Targets() {
		fmt.Fprintf(w, "| %s | %s%s | %s |\n", t.Name, formatFigure(t.Measured), t.Unit, t.Verdict())
	}
	r.analysis(w)
	r.profiles(w)
	fmt.Fprintf(w, "\n## Last line\n\n```\n%s\n```\n", SummaryLine(r.KVs()))
}

// analysis writes, for each target, the figures that bear on it and what
// they say of the cause. It states only what this run measured, the
// workers' profiles included.
func (r *Results) analysis(w io.Writer) {
	defaults := config.Default()
	cores := float64(r.Machine.Cores)
	perBatchBaseline := float64(r.Options.Batch) / r.BaselineNew * 1000
	fmt.Fprintf(w, "\n## Why, and what would close it\n\n")
	fmt.Fprintf(w, "- **The shared machine**: the load average was %s at the start and %s at the end on %d cores. During the "+
		"latency-bound sync on 1 worker, whose workers and simulator used %.1f s of CPU in %.1f s (%.0f%% of one core), the "+
		"machine's CPU was %.0f%% busy: that is Postgres, Redis and the other sessions. Every figure here was measured under that "+
		"load. The figures that are ratios of two measurements (the baseline and the checkpointed upsert, the ETL run and the "+
		"baseline) were measured side by side in %s and are the rounds' medians; how far the rounds lie apart shows the noise.\n",
		r.Machine.LoadStart, r.Machine.LoadEnd, r.Machine.Cores, r.IdleOwnCPU.Seconds(), r.IdleWall.Seconds(),
		100*r.IdleOwnCPU.Seconds()/r.IdleWall.Seconds(), 100*r.IdleBusy, rounds(len(r.Rounds)))
	etlRest := r.ETLBusy[0]*cores*r.ETLWall.Seconds() - r.ETLWorkerCPU.Seconds() - r.ETLSimCPU.Seconds()
	fmt.Fprintf(w, "- **End to end vs the baseline** (%s): the ETL run on 1 worker reached %.0f rows/s, %.2f of the baseline's %.0f "+
		"(by round: %s). The baseline writes a batch of %d rows in %.1f ms on one connection; the ETL run's 4 partitions write at "+
		"once, which a commit allows because it locks the run's row (which every commit of the run updates) only after its data "+
		"are written: against the same baseline on 4 connections (%.0f rows/s) the ETL run is %.2f. A batch took p50 %.1f ms "+
		"(p99 %.1f ms) from its start to its ledger row (the page's fetch, its parsing, the write of `etl_records` and the "+
		"checkpoint), with p50 %.2f ms (p99 %.2f ms) between batches of a partition, and the first batch started %d ms after the "+
		"run was started. Where the time went, in the first round: the machine's CPU was %.0f%% busy; the worker used %.1f s and "+
		"the simulator %.1f s of CPU in %.1f s, which leaves about %.1f s of the %d cores' busy time to Postgres (and Redis): "+
		"the run is bound by Postgres's writes, not by the worker. %s 2 workers reached %.2f of the baseline.\n",
		Target{Measured: r.e2eVsCopy(), Limit: 0.8, AtLeast: true}.Verdict(), r.ETL[0], r.e2eVsCopy(), r.BaselineNew,
		roundsNote(r.Rounds, Round.E2E, 3), r.Options.Batch, perBatchBaseline, r.BaselineParallel, r.ETL[0]/r.BaselineParallel,
		Percentile(r.ETLBatchMS, 50), Percentile(r.ETLBatchMS, 99), Percentile(r.ETLGapMS, 50), Percentile(r.ETLGapMS, 99),
		r.ETLFirst.Milliseconds(), 100*r.ETLBusy[0], r.ETLWorkerCPU.Seconds(), r.ETLSimCPU.Seconds(), r.ETLWall.Seconds(),
		max(etlRest, 0), r.Machine.Cores, r.ETLProfile.sentence(), r.ETL[1]/r.BaselineNew)
	fmt.Fprintf(w, "- **The daily sync** (no target of its own): %.0f symbols/s on 1 worker, %.2f of the baseline and %.2f of the "+
		"%.0f requests/s of raw quote requests, its own limit: one HTTP request per symbol, which costs more than writing the "+
		"symbol's row. The raw requests cost the client %.0f µs and the simulator %.0f µs of CPU each; the sync's worker used "+
		"%.0f µs per symbol. %s The worker, the simulator and Postgres share %d cores, and the sync is bound by their CPU: "+
		"2 workers reached %.0f symbols/s. What would take it further is fewer requests (a provider endpoint that answers many "+
		"symbols at once), not more workers.\n",
		r.Sync[0], r.Sync[0]/r.BaselineNew, r.Sync[0]/r.Requests, r.Requests,
		micros(r.RequestsClientCPU, r.Options.Symbols), micros(r.RequestsSimCPU, r.Options.Symbols), micros(r.SyncCPU, r.Options.Symbols),
		r.SyncProfile.sentence(), r.Machine.Cores, r.Sync[1])
	fmt.Fprintf(w, "- **Per-batch overhead** (%s): p50 %.2f ms, p99 %.2f ms between batches of one partition on one worker "+
		"at worker.task_check_interval %s; an idle poll leaking into the pace would show as gaps near it, and the largest gap was %.1f ms.\n",
		Target{Measured: Percentile(r.GapsMS, 50), Limit: 2}.Verdict(), Percentile(r.GapsMS, 50), Percentile(r.GapsMS, 99),
		defaults.Worker.TaskCheckInterval, Percentile(r.GapsMS, 100))
	ckpt := Target{Measured: r.ckptCostPct(), Limit: 5}
	fmt.Fprintf(w, "- **Checkpointing** (%s): %.1f%%, the median of the rounds (%s; from the median pair of batches instead of "+
		"the sums: %s). The same COPY upsert inside `checkpoint.Store.Commit` ran at %.0f rows/s against %.0f for the bare "+
		"batches paired with it (medians), %.2f ms a batch more, of about %.1f ms.%s A commit sends the data and the checkpoint's "+
		"one statement (the run's counters, the partition's compare-and-set, the ledger row) to Postgres in one round trip, so "+
		"what remains is Postgres's execution of that second statement in the batch's transaction. Taken apart on 2026-12-07 "+
		"(docs/benchmarks-micro.md): a read-only statement of the same shape in its place cost about half of it, the "+
		"partition's update about a quarter, the run's row and the ledger row the rest, and the same machinery with "+
		"`SELECT 1` in its place cost nothing.%s\n",
		ckpt.Verdict(), r.ckptCostPct(), roundsNote(r.Rounds, Round.CkptCostPct, 1), roundsNote(r.Rounds, func(x Round) float64 { return x.PairCostPct }, 1),
		r.Checkpointed, r.PairedBare, Round{Checkpointed: r.Checkpointed, PairedBare: r.PairedBare}.batchCostMS(r.Options.Batch), perBatchBaseline, r.wideSentence(),
		atTheLine(r.Rounds, Round.CkptCostPct, ckpt)+r.closeCheckpoint(ckpt))
	fmt.Fprintf(w, "- **Rate limit** (utilization %s; 429s %s): %.3f on 1 worker and %.3f on 3, with %d and %d 429s from the simulator's "+
		"token bucket (burst = its limit). Utilization counts the simulator's requests over the wall time from the run's start, "+
		"so the run's start-up counts against it, and the simulator's initial burst of up to one second's requests can push it above 1 "+
		"on a short run. The workers' shared limiter (GCRA in Redis) allows a burst of a tenth of a second's requests: with a "+
		"full second's burst it drew 6-7 429s a run at the start.\n",
		Target{Measured: min(r.RateUtil[0], r.RateUtil[1]), Limit: 0.95, AtLeast: true}.Verdict(),
		Target{Measured: float64(r.Rate429[0] + r.Rate429[1]), Limit: 0}.Verdict(), r.RateUtil[0], r.RateUtil[1], r.Rate429[0], r.Rate429[1])
	fmt.Fprintf(w, "- **Scaling** (%s): speed-up %.2f on 2 workers and %.2f on 4 (ideal 2 and 4). The first batch started %d, %d and %d ms "+
		"after the run was started on 1, 2 and 4 workers: start-up that does not shrink with workers and weighs more the shorter the "+
		"run (%.1f%% of the run on 4 workers). The source's 50 ms a request, not CPU, sets the pace: the machine was %.0f%% busy on 1 worker. "+
		"A larger universe (`--scale-symbols`) measures closer to the steady state.\n",
		Target{Measured: r.Scale[1] / r.Scale[0], Limit: 1.8, AtLeast: true}.Verdict(), r.Scale[1]/r.Scale[0], r.Scale[2]/r.Scale[0],
		r.ScaleFirst[0].Milliseconds(), r.ScaleFirst[1].Milliseconds(), r.ScaleFirst[2].Milliseconds(),
		100*r.ScaleFirst[2].Seconds()/(float64(r.Options.ScaleSymbols)/r.Scale[2]), 100*r.IdleBusy)
	fmt.Fprintf(w, "- **Worker RSS** (%s): the largest VmHWM of a worker at the default concurrency was %.1f MB.\n",
		Target{Measured: r.RSSMB, Limit: 64}.Verdict(), r.RSSMB)
}

// atTheLine says so when the rounds' figures lie on both sides of t's
// bound: the median's verdict is then not a clear one.
func atTheLine(rs []Round, f func(Round) float64, t Target) string {
	if len(rs) < 2 {
		return ""
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range rs {
		lo, hi = min(lo, f(r)), max(hi, f(r))
	}
	if lo > t.Limit || hi < t.Limit {
		return ""
	}
	return fmt.Sprintf(" The rounds lie on both sides of the target (%.1f to %.1f): on this machine the figure is at the target, not clearly on one side of it.", lo, hi)
}

// closeCheckpoint says what would close the checkpoint's target when t,
// its target, is missed.
func (r *Results) closeCheckpoint(t Target) string {
	if t.Met() {
		return ""
	}
	s := " What would close it on this machine is a larger batch: the cost does not grow with a batch's rows"
	if r.Wide.Checkpointed > 0 {
		s += fmt.Sprintf(", and at batch %d it measured %.1f%%", 2*r.Options.Batch, r.Wide.CkptCostPct())
	}
	return s + ". Lighter statements did not measurably help (docs/benchmarks-micro.md): with the run's counters kept on " +
		"the partition rows, so that a commit writes no run row, and the ledger without its foreign keys the checkpoint cost " +
		"the same, and folded into the data's upsert as one statement it cost more."
}

// wideSentence says what the checkpoint cost at twice the batch, if
// that was measured.
func (r *Results) wideSentence() string {
	if r.Wide.Checkpointed <= 0 {
		return ""
	}
	return fmt.Sprintf(" At batch %d (first round) it cost %.1f%%, %.2f ms a batch: the cost does not grow with a batch's rows, so a larger batch makes it a smaller share.",
		2*r.Options.Batch, r.Wide.CkptCostPct(), r.Wide.batchCostMS(2*r.Options.Batch))
}

// rounds says "1 round" or "n rounds".
func rounds(n int) string {
	if n == 1 {
		return "1 round"
	}
	return fmt.Sprintf("%d rounds", n)
}

// micros returns d per n in microseconds.
func micros(d time.Duration, n int) float64 {
	return float64(d.Microseconds()) / float64(n)
}

// sentence says in one sentence what the profile found: the worker's CPU
// and its largest steps.
func (p ProfileSummary) sentence() string {
	if p.CPU <= 0 {
		return "No profile of the worker was taken."
	}
	steps := p.Steps
	if len(steps) > 4 {
		steps = steps[:4]
	}
	parts := make([]string, len(steps))
	for i, s := range steps {
		parts[i] = fmt.Sprintf("%s %.0f%%", s.Name, 100*s.CPU.Seconds()/p.CPU.Seconds())
	}
	return fmt.Sprintf("The worker's profile (below) found %.1f s of CPU in its %.0f s window (%.0f%% of a core), the most in: %s.",
		p.CPU.Seconds(), p.Window.Seconds(), 100*p.CPU.Seconds()/p.Window.Seconds(), strings.Join(parts, "; "))
}

// profiles writes what the workers' CPU profiles show.
func (r *Results) profiles(w io.Writer) {
	if r.ETLProfile.CPU <= 0 && r.SyncProfile.CPU <= 0 {
		return
	}
	fmt.Fprintf(w, "\n## Where a worker's CPU goes\n\n"+
		"CPU profiles of the worker process in the runs on 1 worker, taken through its admin HTTP "+
		"(`/debug/pprof/profile`, `http.pprof`) from the run's start; \"CPU\" is the CPU time sampled in the window, "+
		"and shares are of it. Take one of any running worker with "+
		"`go tool pprof -top 'http://127.0.0.1:8080/debug/pprof/profile?seconds=30'`.\n")
	for _, p := range []ProfileSummary{r.ETLProfile, r.SyncProfile} {
		if p.CPU <= 0 {
			continue
		}
		fmt.Fprintf(w, "\n### %s: %.1f s of CPU in a %.0f s window (%.0f%% of one core)\n\n",
			p.Scenario, p.CPU.Seconds(), p.Window.Seconds(), 100*p.CPU.Seconds()/p.Window.Seconds())
		writeShares(w, "what the worker was doing (the innermost step on the stack)", p.Steps, p.CPU)
		writeShares(w, "by package of the function running (flat)", p.Groups, p.CPU)
		writeShares(w, "top functions (flat)", p.Top, p.CPU)
	}
}

// writeShares writes shares of total as a Markdown table headed by what.
func writeShares(w io.Writer, what string, shares []Share, total time.Duration) {
	fmt.Fprintf(w, "| %s | CPU s | share |\n|---|---:|---:|\n", what)
	for _, s := range shares {
		fmt.Fprintf(w, "| `%s` | %.2f | %.1f%% |\n", s.Name, s.CPU.Seconds(), 100*s.CPU.Seconds()/total.Seconds())
	}
	fmt.Fprintln(w)
}
