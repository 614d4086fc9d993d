package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/syncworker/syncworker/internal/audit"
	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/db"
	// Named so: this package's type fault is a fault it injects.
	faultclass "github.com/syncworker/syncworker/internal/fault"
	"github.com/syncworker/syncworker/internal/simulator"
	"github.com/syncworker/syncworker/internal/stocks"
	"github.com/syncworker/syncworker/internal/tasks"
	"github.com/syncworker/syncworker/internal/worker"
)

// Options describe a chaos scenario.
type Options struct {
	// DatabaseURL is a migrated database (or schema) of the scenario's own,
	// empty; RedisURL a Redis database of its own. Nothing else is touched.
	DatabaseURL, RedisURL string
	// WorkerBin and SimBin are the worker and simulator binaries.
	WorkerBin, SimBin string
	// LogDir receives the processes' logs.
	LogDir string
	// Logger reports the scenario's progress.
	Logger *slog.Logger

	// Workers is the number of worker processes kept running.
	Workers int
	// Symbols and Unknown size the universe: symbols the simulator knows
	// and symbols it answers 404 for.
	Symbols, Unknown int
	// BatchSize and Partitions shape the run.
	BatchSize, Partitions int
	// ETLPartitions is the number of page ranges of the ETL run, which
	// pulls the simulator's Sim.Records records alongside the daily sync
	// (see jobsFile).
	ETLPartitions int
	// Date is the trading date of the run (YYYY-MM-DD).
	Date string

	// Faults is how long faults are injected, from the run's start (the
	// fault window); the run may take longer.
	Faults time.Duration
	// KillEvery is the time between SIGKILLs of a random worker (each
	// replaced at once); 0 means none.
	KillEvery time.Duration
	// Flushes, BackendKills and SIGTERMs are how many Redis FLUSHDBs,
	// terminations of the workers' Postgres backends and SIGTERMs of a busy
	// worker (replaced at once) happen within the window.
	Flushes, BackendKills, SIGTERMs int
	// Timeout bounds the run: a run not ended by then fails the scenario.
	Timeout time.Duration
	// Seed seeds the simulator's fault dice and the choice of victims; 0
	// means a random seed.
	Seed int64

	// Sim is the simulator's fault configuration (Seed is taken from Seed);
	// Sim.Records is the size of the dataset the ETL run pulls.
	Sim simulator.Config
	// RateLimit is the workers' shared request budget per second; 0 means
	// enough to do the run's requests in about 1.3 times the fault window.
	RateLimit int
	// QuotesTimeout bounds one request; Sim.SlowDelay should exceed it.
	QuotesTimeout time.Duration
	// Concurrency is each worker's task concurrency.
	Concurrency int
	// TaskSlice, MaxRetry and SweeperInterval configure the workers.
	TaskSlice       time.Duration
	MaxRetry        int
	SweeperInterval time.Duration
	// Lease and TakeoverInterval, when set, are the workers' SYNC_LEASE and
	// SWEEPER_TAKEOVER_INTERVAL; 0 leaves the defaults.
	Lease, TakeoverInterval time.Duration
}

// rateLimit returns the workers' request budget per second.
func (o Options) rateLimit() int {
	if o.RateLimit > 0 {
		return o.RateLimit
	}
	window := max(o.Faults, 10*time.Second).Seconds()
	// About 10% of the requests are faults that are asked again.
	return max(1, int(math.Ceil(float64(o.Symbols+o.Unknown)*1.1/(1.3*window))))
}

// etlMaxPageSize is the ETL job's page size where the pull is large enough
// to last the fault window at a whole number of pages per second.
const etlMaxPageSize = 500

// etlPacing returns the ETL job's page size and its rate limit (page
// requests per second, shared by every worker), chosen so that the pull
// lasts about 1.3 times the fault window, as the daily sync does, and the
// faults hit it all along. The rate limit is a whole number of at least 1,
// so a pull too small for pages of etlMaxPageSize at 1 a second gets
// smaller pages instead.
func (o Options) etlPacing() (pageSize, rate int) {
	window := max(o.Faults, 10*time.Second).Seconds()
	// About 10% of the requests are faults that are asked again.
	pages := int(math.Ceil(1.3 * window / 1.1))
	records := max(o.Sim.Records, 1)
	if records >= pages*etlMaxPageSize {
		pageSize = etlMaxPageSize
		rate = int(math.Ceil(float64((records+pageSize-1)/pageSize) * 1.1 / (1.3 * window)))
		return pageSize, max(rate, 1)
	}
	return max(1, (records+pages-1)/pages), 1
}

// etlJob is the name of the scenario's ETL job.
const etlJob = "chaos-records"

// jobsFile returns the workers' jobs file: an offset-style ETL job that
// pulls the simulator's records at simURL in ETLPartitions page ranges,
// paced by etlPacing, with a page timeout below the simulator's slow
// answers so that those time out as the quotes do.
func (o Options) jobsFile(simURL string) string {
	size, rate := o.etlPacing()
	return fmt.Sprintf(`jobs:
  - name: %s
    url: %s/v1/records
    pagination: {style: offset, skip_param: skip, take_param: take, page_size: %d}
    items_path: items
    total_path: total
    key: id
    partitions: %d
    rate_limit: %d
    page_timeout: %s
    timeout: 1h
`, etlJob, simURL, size, o.ETLPartitions, rate, o.QuotesTimeout)
}

// workerConfig returns the configuration of the worker processes, whose
// ETL jobs are in the file at jobsFile.
func (o Options) workerConfig(dbURL, simURL, jobsFile string) (config.Config, error) {
	cfg := config.Default()
	cfg.DatabaseURL = dbURL
	cfg.RedisURL = o.RedisURL
	cfg.Quotes.BaseURL = simURL
	cfg.Quotes.RateLimit = o.rateLimit()
	cfg.Quotes.Timeout = o.QuotesTimeout
	cfg.Worker.Concurrency = o.Concurrency
	cfg.Worker.TaskCheckInterval = 50 * time.Millisecond
	cfg.Worker.DelayedTaskCheckInterval = 200 * time.Millisecond
	cfg.Sweeper.Interval = o.SweeperInterval
	cfg.Sync.TaskSlice = o.TaskSlice
	cfg.Sync.MaxRetry = o.MaxRetry
	cfg.Sync.RetryBackoffMax = 2 * time.Second
	cfg.Sync.BatchSize = o.BatchSize
	cfg.Sync.Partitions = o.Partitions
	cfg.Log.Format = "json"
	cfg.Log.Level = "info"
	cfg.ETL.JobsFile = jobsFile
	// No admin HTTP: several workers on one host would contend for its address.
	cfg.HTTP.Addr = ""
	if o.Lease > 0 {
		cfg.Sync.Lease = o.Lease
	}
	if o.TakeoverInterval > 0 {
		cfg.Sweeper.TakeoverInterval = o.TakeoverInterval
	}
	if err := cfg.Validate(); err != nil {
		return config.Config{}, fmt.Errorf("worker configuration: %w", err)
	}
	return cfg, nil
}

// scenario is one chaos run under way.
type scenario struct {
	opts  Options
	log   *slog.Logger
	rng   *mrand.Rand
	pool  *pgxpool.Pool
	rdb   *redis.Client
	insp  *asynq.Inspector
	store *checkpoint.Store
	// appName is the application_name of the workers' Postgres connections.
	appName   string
	workerEnv []string
	// cfg is the workers' configuration.
	cfg    config.Config
	sim    *process
	simURL string
	// runID is the daily sync's run, etlRunID the ETL run's.
	runID, etlRunID int64
	start           time.Time

	mu      sync.Mutex
	workers []*process // every worker started, in order
	seq     int        // workers started so far

	figures Figures
}

// Run runs the scenario: it imports the universe, starts the simulator and
// the workers, starts the run, injects the faults while it runs, stops
// everything once it ends (or Timeout passes, or ctx ends), audits the run
// and returns the verdict. The error is for a scenario that could not be
// set up; what went wrong with the run is in the Result.
func Run(ctx context.Context, opts Options) (Result, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	seed := opts.Seed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	opts.Sim.Seed = seed
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	s := &scenario{
		opts:    opts,
		log:     opts.Logger,
		rng:     mrand.New(mrand.NewPCG(uint64(seed), 0xc4a05)),
		appName: "syncworker-chaos-" + hex.EncodeToString(suffix[:]),
	}
	s.figures.Seed = seed
	s.figures.LogDir = opts.LogDir
	s.figures.RateLimit = opts.rateLimit()
	defer s.close()
	if err := s.setUp(ctx); err != nil {
		return Result{}, err
	}
	return s.run(ctx)
}

// setUp connects to Postgres and Redis, imports the universe, and starts
// the simulator and the workers.
func (s *scenario) setUp(ctx context.Context) error {
	o := s.opts
	controlURL, err := db.WithParam(o.DatabaseURL, "application_name", "syncworker-chaos-control")
	if err != nil {
		return err
	}
	if s.pool, err = db.Open(ctx, controlURL, 8); err != nil {
		return err
	}
	ropt, err := redis.ParseURL(o.RedisURL)
	if err != nil {
		return fmt.Errorf("redis url: %w", err)
	}
	s.rdb = redis.NewClient(ropt)
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("connect to redis: %w", err)
	}
	s.insp = asynq.NewInspectorFromRedisClient(s.rdb)
	s.store = checkpoint.New(s.pool)

	symbols := simulator.Universe(o.Symbols, o.Unknown)
	list := make([]stocks.Stock, len(symbols))
	for i, sym := range symbols {
		list[i] = stocks.Stock{Symbol: sym, Active: true}
	}
	if _, err := stocks.Upsert(ctx, s.pool, list); err != nil {
		return fmt.Errorf("import the universe: %w", err)
	}

	simArgs := []string{"--addr", "127.0.0.1:0",
		"--latency", o.Sim.Latency.String(), "--jitter", o.Sim.Jitter.String(),
		"--error-rate", ftoa(o.Sim.ErrorRate), "--rate-limited-rate", ftoa(o.Sim.RateLimitedRate),
		"--retry-after", o.Sim.RetryAfter.String(), "--slow-rate", ftoa(o.Sim.SlowRate),
		"--slow-delay", o.Sim.SlowDelay.String(), "--garbage-rate", ftoa(o.Sim.GarbageRate),
		"--records", strconv.Itoa(o.Sim.Records), "--seed", strconv.FormatInt(o.Sim.Seed, 10)}
	if s.sim, err = startProcess("sourcesim", o.SimBin, simArgs, os.Environ(), o.LogDir); err != nil {
		return err
	}
	if s.simURL, err = simAddress(ctx, s.sim, 30*time.Second); err != nil {
		return err
	}

	workerURL, err := db.WithParam(o.DatabaseURL, "application_name", s.appName)
	if err != nil {
		return err
	}
	jobsFile := filepath.Join(o.LogDir, "jobs.yaml")
	if err := os.WriteFile(jobsFile, []byte(o.jobsFile(s.simURL)), 0o600); err != nil {
		return fmt.Errorf("write the jobs file: %w", err)
	}
	cfg, err := o.workerConfig(workerURL, s.simURL, jobsFile)
	if err != nil {
		return err
	}
	s.cfg = cfg
	s.workerEnv = append(os.Environ(), config.FileEnv+"="+os.DevNull)
	s.workerEnv = append(s.workerEnv, cfg.Environ()...)
	s.figures.Lease, s.figures.TakeoverInterval = cfg.Sync.Lease, cfg.Sweeper.TakeoverInterval
	s.log.Info("simulator started", "url", s.simURL, "pid", s.sim.pid(), "seed", o.Sim.Seed)
	for range o.Workers {
		if _, err := s.startWorker(); err != nil {
			return err
		}
	}
	return s.waitServers(ctx, o.Workers, 30*time.Second)
}

// startWorker starts a worker process.
func (s *scenario) startWorker() (*process, error) {
	s.mu.Lock()
	s.seq++
	name := fmt.Sprintf("worker-%02d", s.seq)
	s.mu.Unlock()
	p, err := startProcess(name, s.opts.WorkerBin, nil, s.workerEnv, s.opts.LogDir)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.workers = append(s.workers, p)
	s.mu.Unlock()
	s.log.Info("worker started", "name", name, "pid", p.pid())
	return p, nil
}

// alive returns the workers that have not exited and were not signalled.
func (s *scenario) alive() []*process {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*process
	for _, p := range s.workers {
		if _, _, _, expected := p.exit(); p.alive() && !expected {
			out = append(out, p)
		}
	}
	return out
}

// waitServers waits until n worker servers are registered in Redis.
func (s *scenario) waitServers(ctx context.Context, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		servers, err := s.insp.Servers()
		if err == nil && len(servers) >= n {
			return nil
		}
		s.mu.Lock()
		procs := slices.Clone(s.workers)
		s.mu.Unlock()
		for _, p := range procs {
			if !p.alive() {
				return fmt.Errorf("%s exited at start; its log: %s", p.name, p.logPath)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d worker servers registered after %s, want %d (%v); logs in %s", len(servers), timeout, n, err, s.opts.LogDir)
		}
		if err := pause(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// run starts the run, injects the faults until it ends, then stops
// everything and audits it.
func (s *scenario) run(ctx context.Context) (Result, error) {
	o := s.opts
	day, err := time.Parse(simulator.DateLayout, o.Date)
	if err != nil {
		return Result{}, fmt.Errorf("date %q: %w", o.Date, err)
	}
	// The control reads the workers' jobs file, so that it starts the
	// ETL job they run.
	etlJobs, err := worker.ETLJobs(s.cfg, s.rdb)
	if err != nil {
		return Result{}, err
	}
	control := tasks.NewControl(s.pool, s.store, tasks.NewEnqueuer(s.rdb, o.MaxRetry, config.Default().Sync.TaskTimeout), s.insp).
		WithETL(etlJobs)
	s.start = time.Now()
	run, _, err := control.StartDailySync(ctx, tasks.DailySyncOptions{Date: day, Today: day, BatchSize: o.BatchSize, Partitions: o.Partitions})
	if err != nil {
		return Result{}, fmt.Errorf("start the run: %w", err)
	}
	s.runID = run.ID
	s.log.Info("run started", "run", run.ID, "total", run.Total, "batch", o.BatchSize, "partitions", o.Partitions,
		"workers", o.Workers, "rate_limit", o.rateLimit())
	etlRun, err := s.startETL(ctx, control)
	if err != nil {
		return Result{}, err
	}
	s.etlRunID = etlRun.ID
	size, rate := o.etlPacing()
	s.figures.ETL.Records, s.figures.ETL.PageSize, s.figures.ETL.RateLimit = o.Sim.Records, size, rate
	s.log.Info("etl run started", "run", etlRun.ID, "job", etlJob, "records", etlRun.Total,
		"pages", (etlRun.Total+int64(size)-1)/int64(size),
		"page_size", size, "partitions", etlRun.Partitions, "rate_limit", rate,
		"after", time.Since(s.start).Round(time.Millisecond))

	ended := make(chan struct{})
	faultCtx, stopFaults := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.inject(faultCtx, ended, schedule(o)) })

	waitErr := s.waitEnded(ctx, o.Timeout)
	close(ended)
	stopFaults()
	wg.Wait()

	// Stopping and auditing go on after a cancelled ctx: they clean up.
	cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	s.stopWorkers()
	s.figures.Sim, err = simulator.FetchStats(cleanup, s.simURL)
	if err != nil {
		s.problem("simulator stats: %v", err)
	}
	s.sim.stop(10 * time.Second)

	if waitErr != nil {
		s.problem("%v", waitErr)
	}
	rep, err := audit.Run(cleanup, s.pool, s.runID, func(sym string) bool { return simulator.Known(sym, o.Sim.UnknownRate) })
	if err != nil {
		return Result{}, err
	}
	want := make([]simulator.Record, o.Sim.Records)
	for i := range want {
		want[i] = simulator.RecordAt(i)
	}
	etlRep, err := audit.ETL(cleanup, s.pool, s.etlRunID, want)
	if err != nil {
		return Result{}, err
	}
	s.figures.Run, s.figures.ETL.Run = rep.Run, etlRep.Run
	s.analyse(rep, etlRep)
	return Result{Report: rep, ETL: etlRep, Figures: s.figures}, nil
}

// etlStartAttempts bounds the starts of the ETL run.
const etlStartAttempts = 10

// startETL starts the ETL run. StartETL fetches the first page to check
// the job, under the simulator's faults like every page, so a start that
// fails on a transient or rate-limited error is tried again, as an operator
// would, a few times.
func (s *scenario) startETL(ctx context.Context, control *tasks.Control) (checkpoint.Run, error) {
	for attempt := 1; ; attempt++ {
		started, err := control.StartETL(ctx, etlJob, tasks.ETLOptions{})
		if err == nil {
			return started.Run, nil
		}
		class := faultclass.ClassOf(err)
		if attempt == etlStartAttempts || (class != faultclass.Transient && class != faultclass.RateLimited) {
			return checkpoint.Run{}, fmt.Errorf("start the etl run (attempt %d): %w", attempt, err)
		}
		wait := 200 * time.Millisecond
		if d, ok := faultclass.RetryAfter(err); ok {
			wait = max(d, wait)
		}
		s.log.Info("etl start failed; trying again", "attempt", attempt, "class", class, "in", wait, "error", err)
		if err := pause(ctx, wait); err != nil {
			return checkpoint.Run{}, fmt.Errorf("start the etl run: %w", err)
		}
	}
}

// waitEnded polls the daily sync and the ETL run until both end, timeout
// passes or ctx ends, and notes when each ended (the time so far for one
// that did not).
func (s *scenario) waitEnded(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	type watch struct {
		what  string
		id    int64
		wall  *time.Duration
		last  checkpoint.Run
		ended bool
	}
	watches := []*watch{{what: "the daily sync", id: s.runID, wall: &s.figures.Wall},
		{what: "the etl run", id: s.etlRunID, wall: &s.figures.ETL.Wall}}
	defer func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, w := range watches {
			if !w.ended {
				*w.wall = time.Since(s.start)
			}
		}
	}()
	for {
		var errs []error
		for _, w := range watches {
			if w.ended {
				continue
			}
			run, err := s.store.Get(ctx, w.id)
			if err == nil {
				w.last = run
				if run.Status.Ended() {
					w.ended = true
					s.mu.Lock()
					*w.wall = time.Since(s.start)
					s.mu.Unlock()
					s.log.Info("run ended", "run", run.ID, "job", run.Job, "status", run.Status, "processed", run.Processed,
						"total", run.Total, "after", time.Since(s.start).Round(100*time.Millisecond))
					continue
				}
			}
			errs = append(errs, fmt.Errorf("%s (run %d) did not end within %s: %s, %d of %d processed",
				w.what, w.id, timeout, w.last.Status, w.last.Processed, w.last.Total))
		}
		if len(errs) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.Join(errs...)
		}
		if err := pause(ctx, 250*time.Millisecond); err != nil {
			return fmt.Errorf("interrupted after %s: %w", time.Since(s.start).Round(time.Second), err)
		}
	}
}

// stopWorkers stops every worker still running with SIGTERM, as an operator
// would, and notes any that did not stop cleanly.
func (s *scenario) stopWorkers() {
	grace := config.Default().Worker.ShutdownTimeout + 10*time.Second
	var wg sync.WaitGroup
	for _, p := range s.alive() {
		wg.Go(func() {
			if !p.stop(grace) {
				s.problem("%s (pid %d) did not stop within %s of SIGTERM; it was killed", p.name, p.pid(), grace)
				return
			}
			if code, sig, _, _ := p.exit(); code != 0 {
				s.problem("%s (pid %d) exited with code %d (signal %v) on the final SIGTERM; its log: %s", p.name, p.pid(), code, sig, p.logPath)
			}
		})
	}
	wg.Wait()
}

// close stops whatever is left and closes the connections.
func (s *scenario) close() {
	s.mu.Lock()
	procs := append([]*process(nil), s.workers...)
	s.mu.Unlock()
	if s.sim != nil {
		procs = append(procs, s.sim)
	}
	for _, p := range procs {
		if p.alive() {
			_ = p.send(syscall.SIGKILL)
			p.wait(10 * time.Second)
		}
	}
	if s.pool != nil {
		s.pool.Close()
	}
	if s.rdb != nil {
		s.rdb.Close()
	}
}

// problem notes a problem of the scenario (not of the run's data).
func (s *scenario) problem(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.figures.Problems = append(s.figures.Problems, fmt.Sprintf(format, args...))
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// logPaths returns the log files of every worker started.
func (s *scenario) logPaths() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.workers))
	for _, p := range s.workers {
		out = append(out, p.logPath)
	}
	return out
}
