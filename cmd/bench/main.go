// Command bench measures syncworker against the physical limits of the
// machine it runs on (issue 6) and writes the figures: a table on stdout,
// BENCHMARKS.md with the machine described and each target met or missed,
// a PNG chart, and last one line of key=value figures.
//
// In one run it measures: the baseline, a bulk upsert of price rows through
// COPY into a staging table and INSERT ... ON CONFLICT in transactions of
// the batch size (new rows, then updates, and on 4 connections), and the
// same inside the checkpoint's commit, also at twice the batch; an ETL page job end to end on 1 and
// 2 worker processes against the simulator at zero latency (the baseline,
// the checkpointed upsert and the ETL run on 1 worker in rounds, side by
// side, whose medians count); raw quote requests to the simulator, the
// daily sync's own limit, and the daily sync on 1 and 2 workers; CPU
// profiles of the worker process during the ETL run and the sync, through
// its admin HTTP (/debug/pprof); the per-batch overhead (queue hop and
// COMMIT) from the ledger of a run of small pages on one worker at the
// default configuration; a daily sync under a 500 req/s limit enforced by
// the simulator with 1 and 3 workers; a partitioned daily sync against a
// 50 ms source on 1, 2 and 4 workers; the workers' peak RSS.
//
// A quick run (--quick) prints its figures and writes no files unless --out
// or --chart name them, so that it leaves the committed full-size report as
// it is.
//
// It uses a database of its own (--database, default syncworker_bench,
// dropped and created again with `worker migrate --create-database`) and a
// Redis database of its own (--redis-db, claimed in the tests' allocation,
// flushed). Timing is never asserted: the figures are for reading.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd(os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// Options size a benchmark run.
type Options struct {
	// Records is N: the baseline's rows and the ETL run's records.
	Records int
	// Symbols is the daily sync's universe at zero latency.
	Symbols int
	// OverheadRecords is the records of the per-batch overhead run, in
	// pages of 100.
	OverheadRecords int
	// RateSymbols is the universe of the rate-limited sync; RateLimit its
	// limit (req/s), on the workers and the simulator.
	RateSymbols, RateLimit int
	// ScaleSymbols is the universe of the latency-bound partitioned sync.
	ScaleSymbols int
	// Batch is the batch (page) size.
	Batch int
	// Rounds is how many times the baseline, the checkpointed upsert and
	// the ETL run on 1 worker are measured, side by side; their ratios
	// are the medians of the rounds'.
	Rounds int
	// Timeout bounds each run.
	Timeout time.Duration
}

// fullOptions and quickOptions are the sizes of `make bench` and `make bench-quick`.
var (
	fullOptions = Options{Records: 200_000, Symbols: 200_000, OverheadRecords: 20_000, RateSymbols: 5_000,
		RateLimit: 500, ScaleSymbols: 4_000, Batch: 500, Rounds: 3, Timeout: 5 * time.Minute}
	quickOptions = Options{Records: 20_000, Symbols: 10_000, OverheadRecords: 5_000, RateSymbols: 2_000,
		RateLimit: 500, ScaleSymbols: 800, Batch: 500, Rounds: 1, Timeout: 2 * time.Minute}
)

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		quick                               bool
		o                                   Options
		workerBin, simBin, mdPath, pngPath  string
		dbURL, dbName, redisURL, keepLogDir string
		redisDB                             int
	)
	cmd := &cobra.Command{
		Use:           "bench",
		Short:         "Measure syncworker against the machine's limits and write BENCHMARKS.md and a chart",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			size := fullOptions
			if quick {
				size = quickOptions
			}
			fill(&o, size, cmd)
			mdPath, pngPath = outputs(cmd, quick, mdPath, pngPath)
			if o.Records < o.Batch || o.Batch < 1 || o.Symbols < 1 || o.OverheadRecords < 200 ||
				o.RateSymbols < 1 || o.RateLimit < 1 || o.ScaleSymbols < 4 || o.Rounds < 1 {
				return errors.New("sizes and --rounds must be positive, --records at least --batch, --overhead-records at least 200, --scale-symbols at least 4")
			}
			log := slog.New(slog.NewTextHandler(stderr, nil))
			dir, err := os.MkdirTemp(keepLogDir, "syncworker-bench-")
			if err != nil {
				return fmt.Errorf("log directory: %w", err)
			}
			b := &bencher{o: o, log: log, workerBin: workerBin, simBin: simBin, logDir: dir, quick: quick}
			res, err := b.run(cmd.Context(), dbURL, dbName, redisURL, redisDB)
			if err != nil {
				return fmt.Errorf("%w (logs in %s)", err, dir)
			}
			os.RemoveAll(dir)
			return res.write(stdout, mdPath, pngPath)
		},
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	f := cmd.Flags()
	f.BoolVar(&quick, "quick", false, "small sizes (make bench-quick): about a tenth of the full run")
	f.IntVar(&o.Records, "records", 0, "N: baseline rows and ETL records (default 200000; quick 20000)")
	f.IntVar(&o.Symbols, "symbols", 0, "symbols of the zero-latency daily sync and the raw requests (default 200000; quick 10000)")
	f.IntVar(&o.OverheadRecords, "overhead-records", 0, "records of the per-batch overhead run, pages of 100 (default 20000; quick 5000)")
	f.IntVar(&o.RateSymbols, "rate-symbols", 0, "symbols of the rate-limited sync (default 5000; quick 2000)")
	f.IntVar(&o.RateLimit, "rate-limit", 0, "requests/s of the rate-limited sync, on the workers and the simulator (default 500)")
	f.IntVar(&o.ScaleSymbols, "scale-symbols", 0, "symbols of the 50 ms partitioned sync (default 4000; quick 800)")
	f.IntVar(&o.Batch, "batch", 0, "batch and page size (default 500)")
	f.IntVar(&o.Rounds, "rounds", 0, "rounds of the baseline, checkpointed upsert and ETL run on 1 worker, whose medians count (default 3; quick 1)")
	f.DurationVar(&o.Timeout, "timeout", 0, "bound on each run (default 5m; quick 2m)")
	f.StringVar(&workerBin, "worker-bin", "bin/worker", "worker binary")
	f.StringVar(&simBin, "sim-bin", "bin/sourcesim", "sourcesim binary")
	f.StringVar(&mdPath, "out", "BENCHMARKS.md", "Markdown report to write; empty = none (quick: none unless given)")
	f.StringVar(&pngPath, "chart", "docs/bench.png", "PNG chart to write; empty = none (quick: none unless given)")
	f.StringVar(&keepLogDir, "log-dir", "", "where the logs' temporary directory goes (kept on failure)")
	f.StringVar(&dbURL, "database-url", envOr("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/syncworker?sslmode=disable"),
		"Postgres server to use (its database is replaced by --database)")
	f.StringVar(&dbName, "database", "syncworker_bench", "database of the benchmark's own, dropped and created again; its name must contain 'bench'")
	f.StringVar(&redisURL, "redis-url", envOr("REDIS_URL", "redis://127.0.0.1:6379/0"), "Redis server to use (its database is replaced by --redis-db)")
	f.IntVar(&redisDB, "redis-db", 14, "Redis database of the benchmark's own (1 or more), flushed")
	return cmd
}

// outputs returns the report's and the chart's paths: as given, but none
// for a quick run unless --out or --chart name them, since a quick run's
// figures are for a look, not for the committed full-size report.
func outputs(cmd *cobra.Command, quick bool, mdPath, pngPath string) (string, string) {
	if !quick {
		return mdPath, pngPath
	}
	if !cmd.Flags().Changed("out") {
		mdPath = ""
	}
	if !cmd.Flags().Changed("chart") {
		pngPath = ""
	}
	return mdPath, pngPath
}

// fill sets every size o leaves at 0 (not given) from size.
func fill(o *Options, size Options, cmd *cobra.Command) {
	set := func(flag string, v *int, def int) {
		if !cmd.Flags().Changed(flag) {
			*v = def
		}
	}
	set("records", &o.Records, size.Records)
	set("symbols", &o.Symbols, size.Symbols)
	set("overhead-records", &o.OverheadRecords, size.OverheadRecords)
	set("rate-symbols", &o.RateSymbols, size.RateSymbols)
	set("rate-limit", &o.RateLimit, size.RateLimit)
	set("scale-symbols", &o.ScaleSymbols, size.ScaleSymbols)
	set("batch", &o.Batch, size.Batch)
	set("rounds", &o.Rounds, size.Rounds)
	if !cmd.Flags().Changed("timeout") {
		o.Timeout = size.Timeout
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
