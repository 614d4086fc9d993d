package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/google/pprof/profile"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/simulator"
	"github.com/syncworker/syncworker/internal/stocks"
	"github.com/syncworker/syncworker/internal/tasks"
	"github.com/syncworker/syncworker/internal/worker"
)

// Names of the benchmark's ETL jobs (see jobsFile).
const (
	etlJob      = "bench-records"
	overheadJob = "bench-overhead"
)

// syncDate is the trading date of the benchmark's daily syncs.
var syncDate = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

// spec is one run of the system: its source, its workers and its run.
type spec struct {
	name    string
	workers int
	// latency and rateLimit configure the simulator (0: none).
	latency   time.Duration
	rateLimit int
	// records is the size of the simulator's dataset for an ETL run; job
	// the ETL job to run, or "" for a daily sync of symbols symbols in
	// partitions partitions.
	records, symbols, partitions int
	job                          string
	// tune changes the workers' configuration from the defaults.
	tune func(*config.Config)
	// profile, when set, is the length of a CPU profile of the first
	// worker taken from the run's start through its admin HTTP.
	profile time.Duration
}

// outcome is what a run of the system measured.
type outcome struct {
	run  checkpoint.Run
	wall time.Duration
	// units is the records (ETL) or symbols (sync) of the run.
	units int64
	sim   simulator.Stats
	// rss is the peak resident set of each worker, in bytes.
	rss    []int64
	ledger []LedgerBatch
	// busy is the machine's CPU busy share during the run (0..1, all
	// cores, other sessions included); workerCPU and simCPU the CPU time
	// the workers and the simulator used in all.
	busy              float64
	workerCPU, simCPU time.Duration
	// firstBatch is the time from the run's start to its first batch's start.
	firstBatch time.Duration
	// profile is the first worker's CPU profile (spec.profile).
	profile *profile.Profile
}

// system runs specs against real worker and simulator processes.
type system struct {
	pool              *pgxpool.Pool
	rdb               *redis.Client
	store             *checkpoint.Store
	dbURL, redisURL   string
	workerBin, simBin string
	logDir            string
	batch             int
	timeout           time.Duration
	log               *slog.Logger
}

// reset empties the runs, the universe, the prices, the records and Redis.
func (s *system) reset(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, `TRUNCATE runs, stocks, stock_prices CASCADE`); err != nil {
		return fmt.Errorf("reset the database: %w", err)
	}
	if _, err := s.pool.Exec(ctx, `DO $$ BEGIN
		IF to_regclass('etl_records') IS NOT NULL THEN TRUNCATE etl_records; END IF; END $$`); err != nil {
		return fmt.Errorf("reset the records: %w", err)
	}
	if err := s.rdb.FlushDB(ctx).Err(); err != nil {
		return fmt.Errorf("reset redis: %w", err)
	}
	return nil
}

// jobsFile returns the workers' jobs file: the records at simURL in pages
// of the batch size in 4 partitions, and in pages of 100 in one partition
// for the per-batch overhead.
func (s *system) jobsFile(simURL string) string {
	job := func(name string, page, partitions int) string {
		return fmt.Sprintf(`  - name: %s
    url: %s/v1/records
    pagination: {style: offset, skip_param: skip, take_param: take, page_size: %d}
    items_path: items
    total_path: total
    key: id
    partitions: %d
    timeout: 1h
`, name, simURL, page, partitions)
	}
	return "jobs:\n" + job(etlJob, s.batch, 4) + job(overheadJob, 100, 1)
}

// startSim starts the simulator with its log in dir and returns it with its
// base URL once it answers.
func (s *system) startSim(ctx context.Context, dir string, latency time.Duration, rateLimit, records int) (*proc, string, error) {
	sim, err := spawn("sourcesim", s.simBin, []string{"--addr", "127.0.0.1:0", "--latency", latency.String(),
		"--rate-limit", strconv.Itoa(rateLimit), "--records", strconv.Itoa(max(records, 1)), "--seed", "1"}, os.Environ(), dir)
	if err != nil {
		return nil, "", err
	}
	base, err := simURL(ctx, sim)
	if err != nil {
		sim.stop(10 * time.Second)
		return nil, "", err
	}
	return sim, base, nil
}

// rawRequests is the daily sync's limit: n quote requests (one per symbol
// of the universe, as the sync makes them) to the simulator at zero latency
// from conc goroutines on one kept-alive HTTP client, the body read as the
// quotes client reads it: no queue, no database, no parsing. It returns the wall time, the
// simulator's CPU time and this process's (the client's).
func (s *system) rawRequests(ctx context.Context, n, conc int) (wall, simCPU, clientCPU time.Duration, err error) {
	dir := filepath.Join(s.logDir, "requests")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, 0, 0, fmt.Errorf("log dir: %w", err)
	}
	sim, base, err := s.startSim(ctx, dir, 0, 0, 1)
	if err != nil {
		return 0, 0, 0, err
	}
	defer sim.stop(10 * time.Second)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = conc
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	day := syncDate.Format(time.DateOnly)
	symbols := simulator.Universe(n, 0)
	sim0, self0, err := cpuNow(sim)
	if err != nil {
		return 0, 0, 0, err
	}
	g, gctx := errgroup.WithContext(ctx)
	next := make(chan string)
	start := time.Now()
	g.Go(func() error {
		defer close(next)
		for _, sym := range symbols {
			select {
			case next <- sym:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for range conc {
		g.Go(func() error {
			for sym := range next {
				if _, err := fetch(gctx, client, base+"/v1/quotes/"+sym+"?date="+day); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, 0, 0, fmt.Errorf("raw quote requests: %w", err)
	}
	wall = time.Since(start)
	sim1, self1, err := cpuNow(sim)
	if err != nil {
		return 0, 0, 0, err
	}
	return wall, sim1 - sim0, self1 - self0, nil
}

// cpuNow returns the CPU time p and this process have used.
func cpuNow(p *proc) (pCPU, self time.Duration, err error) {
	if pCPU, err = p.cpuTime(); err != nil {
		return 0, 0, err
	}
	self, err = selfCPU()
	return pCPU, self, err
}

// execute runs sp: it resets the data, starts the simulator and the
// workers, starts the run, waits for it to end, and stops everything.
func (s *system) execute(ctx context.Context, sp spec) (outcome, error) {
	var out outcome
	if err := s.reset(ctx); err != nil {
		return out, err
	}
	dir := filepath.Join(s.logDir, sp.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return out, fmt.Errorf("log dir: %w", err)
	}
	if sp.job == "" {
		list := make([]stocks.Stock, 0, sp.symbols)
		for _, sym := range simulator.Universe(sp.symbols, 0) {
			list = append(list, stocks.Stock{Symbol: sym, Active: true})
		}
		if _, err := stocks.Upsert(ctx, s.pool, list); err != nil {
			return out, fmt.Errorf("%s: import the universe: %w", sp.name, err)
		}
	}
	sim, base, err := s.startSim(ctx, dir, sp.latency, sp.rateLimit, sp.records)
	if err != nil {
		return out, err
	}
	defer sim.stop(10 * time.Second)
	jobsPath := filepath.Join(dir, "jobs.yaml")
	if err := os.WriteFile(jobsPath, []byte(s.jobsFile(base)), 0o600); err != nil {
		return out, fmt.Errorf("write the jobs file: %w", err)
	}
	cfg := config.Default()
	cfg.DatabaseURL, cfg.RedisURL, cfg.Quotes.BaseURL, cfg.ETL.JobsFile = s.dbURL, s.redisURL, base, jobsPath
	cfg.Quotes.RateLimit = 0
	// No admin HTTP: several workers on one host would contend for its address.
	cfg.HTTP.Addr = ""
	cfg.Log.Format, cfg.Log.Level = "json", "warn"
	if sp.tune != nil {
		sp.tune(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		return out, fmt.Errorf("%s: worker configuration: %w", sp.name, err)
	}
	env := append(os.Environ(), config.FileEnv+"="+os.DevNull)
	env = append(env, cfg.Environ()...)
	var workers []*proc
	defer func() {
		for _, w := range workers {
			w.stop(cfg.Worker.ShutdownTimeout + 10*time.Second)
		}
	}()
	// The first worker serves its admin HTTP when it is to be profiled.
	var adminAddr string
	if sp.profile > 0 {
		if adminAddr, err = freeAddr(); err != nil {
			return out, err
		}
	}
	for i := range sp.workers {
		wenv := env
		if i == 0 && adminAddr != "" {
			wenv = append(slices.Clone(env), "HTTP_ADDR="+adminAddr) // the last value of a variable counts
		}
		w, err := spawn(fmt.Sprintf("worker-%d", i+1), s.workerBin, nil, wenv, dir)
		if err != nil {
			return out, err
		}
		workers = append(workers, w)
	}
	if err := s.waitServers(ctx, workers); err != nil {
		return out, err
	}
	if adminAddr != "" {
		if err := waitHealthy(ctx, "http://"+adminAddr, workers[0]); err != nil {
			return out, err
		}
	}

	etlJobs, err := worker.ETLJobs(cfg, s.rdb)
	if err != nil {
		return out, err
	}
	control := tasks.NewControl(s.pool, s.store, tasks.NewEnqueuer(s.rdb, cfg.Sync.MaxRetry, cfg.Sync.TaskTimeout),
		asynq.NewInspectorFromRedisClient(s.rdb)).WithETL(etlJobs)
	cpu0, err := sampleCPU()
	if err != nil {
		return out, err
	}
	workerCPU0, err := cpuTimes(workers)
	if err != nil {
		return out, err
	}
	simCPU0, err := sim.cpuTime()
	if err != nil {
		return out, err
	}
	start := time.Now()
	var run checkpoint.Run
	if sp.job != "" {
		started, err := control.StartETL(ctx, sp.job, tasks.ETLOptions{})
		if err != nil {
			return out, fmt.Errorf("%s: start the etl run: %w", sp.name, err)
		}
		run = started.Run
		out.units = int64(sp.records)
	} else {
		run, _, err = control.StartDailySync(ctx, tasks.DailySyncOptions{Date: syncDate, Today: syncDate,
			BatchSize: s.batch, Partitions: sp.partitions})
		if err != nil {
			return out, fmt.Errorf("%s: start the daily sync: %w", sp.name, err)
		}
		out.units = int64(sp.symbols)
	}
	s.log.Info("run started", "scenario", sp.name, "run", run.ID, "workers", sp.workers, "total", run.Total)
	type profiled struct {
		p   *profile.Profile
		err error
	}
	var prof chan profiled
	if adminAddr != "" {
		prof = make(chan profiled, 1)
		go func() {
			p, err := fetchProfile(ctx, adminAddr, sp.profile)
			prof <- profiled{p, err}
		}()
	}
	if out.run, err = s.waitEnded(ctx, run.ID, workers); err != nil {
		return out, fmt.Errorf("%s: %w (logs in %s)", sp.name, err, dir)
	}
	cpu1, err := sampleCPU()
	if err != nil {
		return out, err
	}
	out.busy = busyShare(cpu0, cpu1)
	if out.workerCPU, err = cpuTimes(workers); err != nil {
		return out, err
	}
	out.workerCPU -= workerCPU0
	if out.simCPU, err = sim.cpuTime(); err != nil {
		return out, err
	}
	out.simCPU -= simCPU0
	out.wall = time.Since(start)
	if f := out.run.FinishedAt; f != nil && f.After(start) {
		out.wall = f.Sub(start)
	}
	if out.run.Status != checkpoint.StatusCompleted {
		return out, fmt.Errorf("%s: run %d ended %s: %s (logs in %s)", sp.name, run.ID, out.run.Status, out.run.LastError, dir)
	}
	if prof != nil {
		// The profile may go on after the run's end, on an idle worker.
		r := <-prof
		if r.err != nil {
			return out, fmt.Errorf("%s: %w", sp.name, r.err)
		}
		out.profile = r.p
	}
	for _, w := range workers {
		rss, err := w.peakRSS()
		if err != nil {
			return out, err
		}
		out.rss = append(out.rss, rss)
	}
	if out.sim, err = simulator.FetchStats(ctx, base); err != nil {
		return out, err
	}
	if out.ledger, err = s.ledger(ctx, run.ID); err != nil {
		return out, err
	}
	if len(out.ledger) > 0 {
		first := slices.MinFunc(out.ledger, func(a, b LedgerBatch) int { return a.StartedAt.Compare(b.StartedAt) })
		out.firstBatch = first.StartedAt.Sub(start)
	}
	s.log.Info("run ended", "scenario", sp.name, "run", run.ID, "wall", out.wall.Round(time.Millisecond),
		"per_s", int(Rate(out.units, out.wall)), "requests", out.sim.Requests, "throttled", out.sim.Throttled)
	return out, nil
}

// cpuTimes returns the CPU time the processes used in all.
func cpuTimes(ps []*proc) (time.Duration, error) {
	var sum time.Duration
	for _, p := range ps {
		d, err := p.cpuTime()
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

// cpuNote describes the CPU use of a run for the table.
func (o outcome) cpuNote() string {
	return fmt.Sprintf("CPU busy %.0f%%, workers %.1f s, sim %.1f s", 100*o.busy, o.workerCPU.Seconds(), o.simCPU.Seconds())
}

// waitServers waits until every worker registered its asynq server.
func (s *system) waitServers(ctx context.Context, workers []*proc) error {
	insp := asynq.NewInspectorFromRedisClient(s.rdb)
	deadline := time.Now().Add(30 * time.Second)
	for {
		servers, err := insp.Servers()
		if err == nil && len(servers) >= len(workers) {
			return nil
		}
		for _, w := range workers {
			if !w.alive() {
				return fmt.Errorf("%s exited at start; its log: %s", w.name, w.logPath)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d worker servers registered after 30s (%v)", len(servers), len(workers), err)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// waitEnded polls run id until it ends, the timeout passes or a worker dies.
func (s *system) waitEnded(ctx context.Context, id int64, workers []*proc) (checkpoint.Run, error) {
	deadline := time.Now().Add(s.timeout)
	for {
		run, err := s.store.Get(ctx, id)
		if err == nil && run.Status.Ended() {
			return run, nil
		}
		for _, w := range workers {
			if !w.alive() {
				return run, fmt.Errorf("%s exited during the run; its log: %s", w.name, w.logPath)
			}
		}
		if time.Now().After(deadline) {
			return run, fmt.Errorf("run %d did not end within %s: %s, %d of %d", id, s.timeout, run.Status, run.Processed, run.Total)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return run, err
		}
	}
}

// ledger returns the batches of run id.
func (s *system) ledger(ctx context.Context, id int64) ([]LedgerBatch, error) {
	rows, err := s.pool.Query(ctx, `SELECT partition, seq, started_at, committed_at, duration_ms
		FROM batch_ledger WHERE run_id = $1 ORDER BY partition, seq`, id)
	if err != nil {
		return nil, fmt.Errorf("read the ledger of run %d: %w", id, err)
	}
	defer rows.Close()
	var out []LedgerBatch
	for rows.Next() {
		var (
			b  LedgerBatch
			ms int64
		)
		if err := rows.Scan(&b.Partition, &b.Seq, &b.StartedAt, &b.CommittedAt, &ms); err != nil {
			return nil, fmt.Errorf("read the ledger of run %d: %w", id, err)
		}
		b.Duration = time.Duration(ms) * time.Millisecond
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the ledger of run %d: %w", id, err)
	}
	return out, nil
}
