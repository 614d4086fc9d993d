// Command chaos runs a real syncworker scenario on this machine under faults
// and says whether every item was still done exactly once.
//
// It builds the worker and the quotes simulator (or takes --worker-bin and
// --sim-bin), recreates a database of its own (--database, default
// syncworker_chaos) and takes a Redis database of its own (--redis-db), so
// that it never touches a developer's data. It imports a universe, starts
// the simulator with faults (5xx, 429 with Retry-After, answers slower than
// the fetch timeout, 200s with unreadable bodies), starts --workers worker
// processes, a daily-sync run and an offset-style ETL run that pulls the
// simulator's --records records, and while the runs go on it SIGKILLs a
// worker every --kill-every (starting another), flushes Redis, terminates
// the workers' Postgres backends and SIGTERMs a busy worker (starting
// another). Once both runs end it stops everything, audits them (package
// audit) and prints a verdict, PASS or FAIL, with the figures: faults,
// retries by class, simulator counts, wall time, throughput, the longest
// time any partition went without progress, and how soon the partitions of
// each killed worker made progress again.
//
// Exit code 0 on PASS, 1 on FAIL or when the scenario could not run. On FAIL
// the logs are kept and their directory printed.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/syncworker/syncworker/internal/etl"
	"github.com/syncworker/syncworker/internal/simulator"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd(os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	if err != nil {
		if !errors.Is(err, errFail) {
			fmt.Fprintln(os.Stderr, "chaos:", err)
		}
		os.Exit(1)
	}
}

// errFail is the error of a scenario whose verdict is FAIL.
var errFail = errors.New("FAIL")

// Defaults of the large scenario; the CI test runs a smaller one.
const (
	defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/syncworker?sslmode=disable"
	defaultRedisURL    = "redis://127.0.0.1:6379/0"
)

// defaultOptions returns the options of the large scenario.
func defaultOptions() Options {
	return Options{
		Workers: 3, Symbols: 10_000, Unknown: 10, BatchSize: 100, Partitions: 8, ETLPartitions: 4, Date: "2026-11-20",
		Faults: 2 * time.Minute, KillEvery: 10 * time.Second, Flushes: 1, BackendKills: 3, SIGTERMs: 1,
		Timeout: 10 * time.Minute,
		Sim: simulator.Config{Latency: 20 * time.Millisecond, Jitter: 30 * time.Millisecond,
			ErrorRate: 0.03, RateLimitedRate: 0.01, RetryAfter: time.Second,
			SlowRate: 0.01, SlowDelay: 3 * time.Second, GarbageRate: 0.01, Records: 20_000},
		QuotesTimeout: time.Second, Concurrency: 4, TaskSlice: 2 * time.Second, MaxRetry: 20,
		SweeperInterval: 2 * time.Second,
	}
}

// newRootCmd returns the chaos command, printing the verdict to stdout and
// the progress to stderr.
func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	o := defaultOptions()
	var (
		dbURL, dbName, redisURL string
		redisDB                 int
		race, keepLogs          bool
	)
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Run syncworker under faults (kills, Redis loss, Postgres disconnects, a bad provider) and audit the run",
		Long: `chaos runs a daily sync and an offset-style ETL pull of --records records on
real worker processes against the simulator while it kills workers (SIGKILL
every --kill-every, SIGTERM mid-batch), flushes Redis, terminates the
workers' Postgres backends and the simulator answers 5xx, 429, too slowly
and with garbage. Then it audits both runs: completed; every symbol's price
once with the simulator's values; exactly the source's records landed with
their content; the ledgers gapless and once per batch; the counters equal to
the rows. It prints PASS or FAIL with the figures and exits 0 on PASS, 1
otherwise.

It uses a database of its own (--database, dropped and created again) on the
server of --database-url, and Redis database --redis-db on the server of
--redis-url, which it flushes; it claims that database in the tests'
allocation so that a concurrent ` + "`make test`" + ` does not use it.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			env := environment{dbURL: dbURL, dbName: dbName, redisURL: redisURL, redisDB: redisDB}
			if err := o.check(); err != nil {
				return err
			}
			dir, err := os.MkdirTemp("", "syncworker-chaos-")
			if err != nil {
				return fmt.Errorf("log directory: %w", err)
			}
			o.LogDir = dir
			o.Logger = slog.New(slog.NewTextHandler(stderr, nil))
			if o.WorkerBin == "" || o.SimBin == "" {
				o.Logger.Info("building the worker and the simulator", "dir", filepath.Join(dir, "bin"), "race", race)
				w, s, err := build(ctx, filepath.Join(dir, "bin"), race)
				if err != nil {
					return err
				}
				o.WorkerBin, o.SimBin = cmp.Or(o.WorkerBin, w), cmp.Or(o.SimBin, s)
			}
			release, err := env.prepare(ctx, &o)
			if err != nil {
				return err
			}
			defer release()
			o.Logger.Info("scenario", "database", env.dbName, "redis_db", env.redisDB, "workers", o.Workers,
				"symbols", o.Symbols, "unknown", o.Unknown, "batch", o.BatchSize, "partitions", o.Partitions,
				"faults", o.Faults, "kill_every", o.KillEvery, "logs", dir)
			res, err := Run(ctx, o)
			if err != nil {
				return fmt.Errorf("%w (logs in %s)", err, dir)
			}
			res.Print(stdout)
			if !res.Pass() {
				return errFail
			}
			if !keepLogs {
				os.RemoveAll(dir)
			}
			return nil
		},
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)

	f := cmd.Flags()
	f.IntVar(&o.Workers, "workers", o.Workers, "worker processes kept running")
	f.IntVar(&o.Symbols, "symbols", o.Symbols, "symbols the simulator knows")
	f.IntVar(&o.Unknown, "unknown", o.Unknown, "symbols the simulator does not know (404)")
	f.IntVar(&o.BatchSize, "batch", o.BatchSize, "symbols per batch")
	f.IntVar(&o.Partitions, "partitions", o.Partitions, "partitions of the run")
	f.IntVar(&o.Sim.Records, "records", o.Sim.Records, fmt.Sprintf("records the ETL run pulls from the simulator (at most %d), paced to last about 1.3 × --faults", simulator.MaxRecords))
	f.IntVar(&o.ETLPartitions, "etl-partitions", o.ETLPartitions, fmt.Sprintf("page ranges of the ETL run (at most %d)", etl.MaxPartitions))
	f.StringVar(&o.Date, "date", o.Date, "trading date of the run (YYYY-MM-DD)")
	f.DurationVar(&o.Faults, "faults", o.Faults, "fault window from the run's start: faults happen within it")
	f.DurationVar(&o.KillEvery, "kill-every", o.KillEvery, "SIGKILL a worker (a random one of those holding a partition, if any) this often, starting another; 0 = never")
	f.IntVar(&o.Flushes, "flushes", o.Flushes, "Redis FLUSHDBs within the window")
	f.IntVar(&o.BackendKills, "backend-kills", o.BackendKills, "terminations of the workers' Postgres backends within the window")
	f.IntVar(&o.SIGTERMs, "sigterms", o.SIGTERMs, "SIGTERMs of a worker holding a partition (replaced) within the window")
	f.DurationVar(&o.Timeout, "timeout", o.Timeout, "the run must end within this")
	f.Int64Var(&o.Seed, "seed", 0, "seed of the fault dice and the choice of victims; 0 = random")
	f.IntVar(&o.RateLimit, "rate-limit", 0, "the workers' shared quote requests per second; 0 = paced to last about 1.3 × --faults")
	f.Float64Var(&o.Sim.ErrorRate, "error-rate", o.Sim.ErrorRate, "simulator: fraction of requests answered 5xx")
	f.Float64Var(&o.Sim.RateLimitedRate, "rate-limited-rate", o.Sim.RateLimitedRate, "simulator: fraction answered 429 with Retry-After")
	f.DurationVar(&o.Sim.RetryAfter, "retry-after", o.Sim.RetryAfter, "simulator: Retry-After of its 429s")
	f.Float64Var(&o.Sim.SlowRate, "slow-rate", o.Sim.SlowRate, "simulator: fraction answered after --slow-delay")
	f.DurationVar(&o.Sim.SlowDelay, "slow-delay", o.Sim.SlowDelay, "simulator: delay of slow answers (past --quotes-timeout)")
	f.Float64Var(&o.Sim.GarbageRate, "garbage-rate", o.Sim.GarbageRate, "simulator: fraction answered 200 with an unreadable body")
	f.DurationVar(&o.Sim.Latency, "latency", o.Sim.Latency, "simulator: latency of every request")
	f.DurationVar(&o.Sim.Jitter, "jitter", o.Sim.Jitter, "simulator: random extra latency up to this")
	f.DurationVar(&o.QuotesTimeout, "quotes-timeout", o.QuotesTimeout, "workers: bound on one quote request")
	f.IntVar(&o.Concurrency, "concurrency", o.Concurrency, "workers: tasks each runs at once")
	f.DurationVar(&o.TaskSlice, "task-slice", o.TaskSlice, "workers: how long a task runs batches before it hands over")
	f.IntVar(&o.MaxRetry, "max-retry", o.MaxRetry, "workers: retries of a failing batch")
	f.DurationVar(&o.SweeperInterval, "sweeper-interval", o.SweeperInterval, "workers: time between sweeps")
	f.DurationVar(&o.Lease, "lease", 0, "workers: SYNC_LEASE, the partition lease; 0 = the workers' default")
	f.DurationVar(&o.TakeoverInterval, "takeover-interval", 0, "workers: SWEEPER_TAKEOVER_INTERVAL; 0 = the workers' default")
	f.StringVar(&o.WorkerBin, "worker-bin", "", "worker binary (default: go build it)")
	f.StringVar(&o.SimBin, "sim-bin", "", "sourcesim binary (default: go build it)")
	f.BoolVar(&race, "race", false, "build the worker and the simulator with the race detector")
	f.BoolVar(&keepLogs, "keep-logs", false, "keep the logs after a PASS too")
	f.StringVar(&dbURL, "database-url", envOr("DATABASE_URL", defaultDatabaseURL), "Postgres server to use (its database is replaced by --database)")
	f.StringVar(&dbName, "database", "syncworker_chaos", "database of the scenario's own, dropped and created again; its name must contain 'chaos'")
	f.StringVar(&redisURL, "redis-url", envOr("REDIS_URL", defaultRedisURL), "Redis server to use (its database is replaced by --redis-db)")
	f.IntVar(&redisDB, "redis-db", 15, "Redis database of the scenario's own (1 or more), flushed")
	return cmd
}

// check validates the options a user can get wrong.
func (o Options) check() error {
	var errs []error
	positive := func(name string, v int) {
		if v < 1 {
			errs = append(errs, fmt.Errorf("--%s must be 1 or more, got %d", name, v))
		}
	}
	positive("workers", o.Workers)
	positive("symbols", o.Symbols)
	positive("batch", o.BatchSize)
	positive("partitions", o.Partitions)
	positive("concurrency", o.Concurrency)
	positive("records", o.Sim.Records)
	if o.ETLPartitions < 1 || o.ETLPartitions > etl.MaxPartitions {
		errs = append(errs, fmt.Errorf("--etl-partitions must be 1 to %d, got %d", etl.MaxPartitions, o.ETLPartitions))
	}
	if o.Unknown < 0 || o.Flushes < 0 || o.BackendKills < 0 || o.SIGTERMs < 0 || o.RateLimit < 0 || o.MaxRetry < 0 {
		errs = append(errs, errors.New("--unknown, --flushes, --backend-kills, --sigterms, --rate-limit and --max-retry must not be negative"))
	}
	if o.Faults <= 0 || o.Timeout <= 0 || o.KillEvery < 0 {
		errs = append(errs, errors.New("--faults and --timeout must be positive, --kill-every not negative"))
	}
	if _, err := time.Parse(simulator.DateLayout, o.Date); err != nil {
		errs = append(errs, fmt.Errorf("--date %q: want YYYY-MM-DD", o.Date))
	}
	if err := o.Sim.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
