// Package harness runs syncworker for tests: its own Postgres schema and
// Redis database (package testenv), a quotes simulator, a stock universe,
// in-process workers wired exactly as cmd/worker wires them, and the checks
// that a run ended with every item done exactly once.
package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/syncworker/syncworker/internal/audit"
	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/simulator"
	"github.com/syncworker/syncworker/internal/stocks"
	"github.com/syncworker/syncworker/internal/tasks"
	"github.com/syncworker/syncworker/internal/testenv"
	"github.com/syncworker/syncworker/internal/worker"
)

// Options configure a Harness.
type Options struct {
	// Symbols is the number of symbols the simulator knows (default 100);
	// Unknown is the number it does not know, all in the universe.
	Symbols, Unknown int
	// Sim configures the simulator's faults.
	Sim simulator.Config
	// Configure adjusts the configuration after the harness's test defaults.
	Configure func(*config.Config)
	// Wrap, when set, wraps the simulator's handler, to watch or alter what
	// the workers see.
	Wrap func(http.Handler) http.Handler
	// Jobs, when set, is the content of the ETL jobs file; SIM_URL in it
	// stands for the simulator's address.
	Jobs string
}

// Harness is a syncworker installation for one test.
type Harness struct {
	t testing.TB
	// Config is the configuration workers and the control use: the test's
	// database schema, Redis database and simulator.
	Config    config.Config
	DB        *testenv.DB
	Redis     *testenv.Redis
	Sim       *simulator.Server
	SimURL    string
	Store     *checkpoint.Store
	Inspector *asynq.Inspector
	Enqueuer  *tasks.Enqueuer
	Control   *tasks.Control
	// Symbols is the universe, Known those the simulator knows.
	Symbols []string
	Known   map[string]bool
	// Log collects what the in-process workers logged.
	Log *SafeBuffer
}

// New sets up a Harness for t; everything is torn down when t ends.
func New(t testing.TB, opts Options) *Harness {
	t.Helper()
	if opts.Symbols == 0 {
		opts.Symbols = 100
	}
	db := testenv.Postgres(t)
	rdb := testenv.NewRedis(t)
	sim := simulator.New(opts.Sim)
	var handler http.Handler = sim
	if opts.Wrap != nil {
		handler = opts.Wrap(sim)
	}
	ts := httptest.NewServer(handler)
	t.Cleanup(ts.Close)

	cfg := config.Default()
	cfg.DatabaseURL = db.URL
	cfg.RedisURL = rdb.URL
	cfg.Quotes.BaseURL = ts.URL
	cfg.Quotes.RateLimit = 0
	cfg.Quotes.Timeout = 2 * time.Second
	cfg.Worker.Concurrency = 4
	cfg.Worker.TaskCheckInterval = 10 * time.Millisecond
	cfg.Worker.DelayedTaskCheckInterval = 50 * time.Millisecond
	cfg.Worker.ShutdownTimeout = 5 * time.Second
	cfg.Sweeper.Interval = 200 * time.Millisecond
	cfg.Sweeper.TakeoverInterval = 100 * time.Millisecond
	cfg.Sync.Lease = 2 * time.Second
	// Tests with many unknown symbols must not trip the failure threshold;
	// the tests of the threshold set it.
	cfg.Sync.MaxFailedPercent = 0
	cfg.Sync.RetryBackoffMax = 100 * time.Millisecond
	// Short enough that tasks hand over often, long enough that a task runs
	// several batches: both paths are exercised.
	cfg.Sync.TaskSlice = 100 * time.Millisecond
	cfg.Log.Level = "warn"
	if opts.Jobs != "" {
		cfg.ETL.JobsFile = filepath.Join(t.TempDir(), "jobs.yaml")
		if err := os.WriteFile(cfg.ETL.JobsFile, []byte(strings.ReplaceAll(opts.Jobs, "SIM_URL", ts.URL)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Every test worker serves the runs API on a port of its own: the
	// default 127.0.0.1:8080 would make the tests' workers (and any real one
	// on this host) take it from each other. Not "", which a worker process
	// started with Config.Environ reads as unset, that is the default.
	cfg.HTTP.Addr = "127.0.0.1:0"
	if opts.Configure != nil {
		opts.Configure(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("harness config: %v", err)
	}

	h := &Harness{t: t, Config: cfg, DB: db, Redis: rdb, Sim: sim, SimURL: ts.URL,
		Store: checkpoint.New(db.Pool), Known: map[string]bool{}, Log: &SafeBuffer{}}
	h.Inspector = asynq.NewInspectorFromRedisClient(rdb.Client)
	h.Enqueuer = tasks.NewEnqueuer(rdb.Client, cfg.Sync.MaxRetry, cfg.Sync.TaskTimeout)
	etlJobs, err := worker.ETLJobs(cfg, rdb.Client)
	if err != nil {
		t.Fatalf("harness jobs file: %v", err)
	}
	h.Control = tasks.NewControl(db.Pool, h.Store, h.Enqueuer, h.Inspector).WithETL(etlJobs)

	h.Symbols = simulator.Universe(opts.Symbols, opts.Unknown)
	list := make([]stocks.Stock, len(h.Symbols))
	for i, s := range h.Symbols {
		list[i] = stocks.Stock{Symbol: s, Active: true}
		if simulator.Known(s, opts.Sim.UnknownRate) {
			h.Known[s] = true
		}
	}
	if _, err := stocks.Upsert(context.Background(), db.Pool, list); err != nil {
		t.Fatalf("import universe: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker logs:\n%s", h.Log.String())
		}
	})
	return h
}

// Jobs returns the jobs as a worker of h builds them.
func (h *Harness) Jobs() map[string]tasks.Job {
	h.t.Helper()
	jobs, err := worker.Jobs(h.Config, h.Redis.Client)
	if err != nil {
		h.t.Fatal(err)
	}
	return jobs
}

// Handler returns a batch handler wired like a worker's, for delivering
// tasks by hand; closing stopping acts as the worker's shutdown.
func (h *Harness) Handler(name string, stopping <-chan struct{}) *tasks.Handler {
	return tasks.NewHandler(tasks.HandlerOptions{
		Store: h.Store, Enqueuer: h.Enqueuer, Jobs: h.Jobs(), Slice: h.Config.Sync.TaskSlice, Lease: h.Config.Sync.Lease,
		MaxRetry: h.Config.Sync.MaxRetry, Worker: name, Logger: h.Logger(name), Stopping: stopping,
	})
}

// Logger returns a logger that writes to h.Log, tagged with name.
func (h *Harness) Logger(name string) *slog.Logger {
	return slog.New(slog.NewTextHandler(h.Log, &slog.HandlerOptions{Level: slog.LevelInfo})).With("worker", name)
}

// Worker is an in-process worker.
type Worker struct {
	Name   string
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// StartWorker starts an in-process worker (worker.Run, as cmd/worker runs
// it) named name; it stops when t ends, if not before.
func (h *Harness) StartWorker(name string) *Worker {
	ctx, cancel := context.WithCancel(context.Background())
	w := &Worker{Name: name, cancel: cancel, done: make(chan error, 1)}
	go func() { w.done <- worker.Run(ctx, h.Config, worker.Options{Name: name, Logger: h.Logger(name)}) }()
	h.t.Cleanup(func() {
		if err := w.Stop(); err != nil {
			h.t.Errorf("worker %s: %v", name, err)
		}
	})
	return w
}

// Stop shuts the worker down as SIGTERM does and waits for it.
func (w *Worker) Stop() error {
	w.once.Do(func() {
		w.cancel()
		select {
		case w.err = <-w.done:
		case <-time.After(30 * time.Second):
			w.err = fmt.Errorf("worker %s did not stop within 30s", w.Name)
		}
	})
	return w.err
}

// StartDailySync starts the daily sync of date (YYYY-MM-DD).
func (h *Harness) StartDailySync(date string, batchSize, partitions int) checkpoint.Run {
	h.t.Helper()
	day, err := time.Parse(simulator.DateLayout, date)
	if err != nil {
		h.t.Fatal(err)
	}
	opts := tasks.DailyOptions(h.Config.Sync)
	opts.Date, opts.Today, opts.BatchSize, opts.Partitions = day, day, batchSize, partitions
	run, _, err := h.Control.StartDailySync(context.Background(), opts)
	if err != nil {
		h.t.Fatalf("start daily sync: %v", err)
	}
	return run
}

// StartETL starts (or finds) a run of ETL job name with opts.
func (h *Harness) StartETL(name string, opts tasks.ETLOptions) tasks.Started {
	h.t.Helper()
	started, err := h.Control.StartETL(context.Background(), name, opts)
	if err != nil {
		h.t.Fatalf("start etl job %s: %v", name, err)
	}
	return started
}

// KickoffHandler returns the handler of kick-off tasks that h's workers run.
func (h *Harness) KickoffHandler() *tasks.KickoffHandler {
	return tasks.NewKickoffHandler(h.Control, tasks.DailyOptions(h.Config.Sync), h.Logger("kickoff"))
}

// KickoffTask returns the kick-off task of k, as the scheduler enqueues it.
func (h *Harness) KickoffTask(k tasks.Kickoff) *asynq.Task {
	h.t.Helper()
	payload, err := json.Marshal(k)
	if err != nil {
		h.t.Fatal(err)
	}
	return asynq.NewTask(tasks.TypeKickoff, payload)
}

// UnrecordedKickoff plays the first attempt of kick-off k of an ETL job: it
// claimed the fire, started the job's run (which a worker then completed)
// and failed to record it. It returns the run.
func (h *Harness) UnrecordedKickoff(k tasks.Kickoff) checkpoint.Run {
	h.t.Helper()
	claim := checkpoint.Kickoff{TaskID: k.TaskID(), Entry: k.Entry, Job: k.Job, Fire: k.Fire}
	if _, err := h.Store.ClaimKickoff(context.Background(), claim); err != nil {
		h.t.Fatal(err)
	}
	w := h.StartWorker("unrecorded-kickoff")
	started := h.StartETL(k.Job, tasks.ETLOptions{Params: k.Params})
	run := h.WaitEnded(started.Run.ID, 30*time.Second)
	if err := w.Stop(); err != nil {
		h.t.Fatal(err)
	}
	return run
}

// PatientsJob is a jobs file (Options.Jobs) of one job, patients: the
// offset-style job of configs/jobs.yaml against the test's simulator, split
// into four page ranges.
const PatientsJob = `
jobs:
  - name: patients
    url: SIM_URL/v1/records
    pagination: {style: offset, skip_param: skip, take_param: take, page_size: 500}
    items_path: items
    total_path: total
    key: id
    timeout: 1h
    partitions: 4
`

// Records returns the first n records of the simulator's dataset.
func Records(n int) []simulator.Record {
	recs := make([]simulator.Record, n)
	for i := range recs {
		recs[i] = simulator.RecordAt(i)
	}
	return recs
}

// VerifyLanded checks that ETL run id completed with exactly want landed
// (package audit): its rows equal the source's records, none missing or
// besides, and its ledger a gapless cover of its pages whose sums are its
// counters. Each problem is a test error. It returns the audit's report.
func (h *Harness) VerifyLanded(id int64, want []simulator.Record) audit.Report {
	h.t.Helper()
	rep, err := audit.ETL(context.Background(), h.DB.Pool, id, want)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, p := range rep.Problems {
		h.t.Errorf("run %d: %s", id, p)
	}
	return rep
}

// WaitFor polls run id until cond holds, failing the test after timeout.
func (h *Harness) WaitFor(id int64, timeout time.Duration, what string, cond func(checkpoint.Run) bool) checkpoint.Run {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		run, err := h.Store.Get(context.Background(), id)
		if err != nil {
			h.t.Fatal(err)
		}
		if cond(run) {
			return run
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("run %d: not %s after %s: %+v", id, what, timeout, run)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitServed waits until the simulator has answered ok quotes with 200.
func (h *Harness) WaitServed(ok int64, timeout time.Duration) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for h.Sim.Stats().OK < ok {
		if time.Now().After(deadline) {
			h.t.Fatalf("the simulator served %d quotes in %s, want %d", h.Sim.Stats().OK, timeout, ok)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitWorkers waits until n worker servers are registered in Redis, so that
// a test that needs several workers does not start before they are there.
func (h *Harness) WaitWorkers(n int, timeout time.Duration) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		servers, err := h.Inspector.Servers()
		if err == nil && len(servers) >= n {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%d worker servers registered after %s, want %d (%v)", len(servers), timeout, n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// servingLine matches the log line of a worker that serves its admin HTTP,
// with the worker's name and the address it bound.
var servingLine = regexp.MustCompile(`msg="admin HTTP serving the runs API" worker=(\S+) component=http addr=(\S+)`)

// AdminAddr waits until worker name logs the address it serves its admin
// HTTP on (the harness's workers take a free port), and returns it.
func (h *Harness) AdminAddr(name string) string {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, m := range servingLine.FindAllStringSubmatch(h.Log.String(), -1) {
			if m[1] == name {
				return m[2]
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("worker %s logged no admin HTTP address in 30s", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitEnded waits until run id has ended and returns it.
func (h *Harness) WaitEnded(id int64, timeout time.Duration) checkpoint.Run {
	h.t.Helper()
	return h.WaitFor(id, timeout, "ended", func(r checkpoint.Run) bool { return r.Status.Ended() })
}

// Count runs a count query.
func (h *Harness) Count(sql string, args ...any) int64 {
	h.t.Helper()
	var n int64
	if err := h.DB.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		h.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// VerifyStoppedCleanly checks partition 0 of run id after its worker was
// stopped in the middle of a batch of batchSize items: the batch was really
// under way (the simulator answered more quotes than the committed batches
// hold), nothing of it committed (every item past the checkpoint is
// pending), and the chain's task is back on the queue without a retry used.
func (h *Harness) VerifyStoppedCleanly(id int64, batchSize int) {
	h.t.Helper()
	ctx := context.Background()
	_, part, err := h.Store.Load(ctx, id, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	if ok := h.Sim.Stats().OK; ok <= int64(batchSize)*part.Seq {
		h.t.Fatalf("the stop did not interrupt a batch: %d quotes served, %d batches committed", ok, part.Seq)
	}
	if n := h.Count(`SELECT count(*) FROM run_items WHERE run_id = $1 AND pos >= $2 AND status <> 'pending'`, id, part.Cursor); n != 0 {
		h.t.Errorf("%d items past the checkpoint have outcomes: the interrupted batch half-committed", n)
	}
	info, err := h.Inspector.GetTaskInfo(tasks.Queue, tasks.ChainPayload(part).TaskID())
	if err != nil {
		h.t.Fatalf("the interrupted chain's task is not on the queue: %v", err)
	}
	if info.Retried != 0 || info.State == asynq.TaskStateArchived {
		h.t.Errorf("interrupted task: state %s, retried %d; want it back on the queue with no retry used", info.State, info.Retried)
	}
	if r, _ := h.Store.Get(ctx, id); r.Status != checkpoint.StatusRunning || r.LastError != "" {
		h.t.Errorf("after the stop the run is %+v, want running with no error", r)
	}
}

// Fingerprint returns, for every table of h's schema, all its rows with
// their row versions (xmin): any write, even one that rewrites a row with
// the same values, changes it.
func (h *Harness) Fingerprint() map[string]string {
	h.t.Helper()
	ctx := context.Background()
	rows, err := h.DB.Pool.Query(ctx, `SELECT table_name::text FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`)
	if err != nil {
		h.t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]string{}
	for _, name := range names {
		table := pgx.Identifier{name}.Sanitize()
		var all string
		if err := h.DB.Pool.QueryRow(ctx, `SELECT coalesce(string_agg(x::text || '@' || x.xmin::text, E'\n' ORDER BY x::text), '')
			FROM `+table+` x`).Scan(&all); err != nil {
			h.t.Fatalf("read %s: %v", table, err)
		}
		out[name] = all
	}
	return out
}

// VerifyUnchanged checks that nothing was written since before, a
// Fingerprint, naming each table that changed.
func (h *Harness) VerifyUnchanged(before map[string]string, what string) {
	h.t.Helper()
	after := h.Fingerprint()
	for table := range before {
		if after[table] != before[table] {
			h.t.Errorf("%s changed table %s:\nbefore %s\nafter  %s", what, table, before[table], after[table])
		}
	}
}

// LedgerRow is one row of the batch ledger.
type LedgerRow = audit.Batch

// Ledger returns the ledger of run id by partition and seq.
func (h *Harness) Ledger(id int64) []LedgerRow {
	h.t.Helper()
	ledger, err := audit.Ledger(context.Background(), h.DB.Pool, id)
	if err != nil {
		h.t.Fatal(err)
	}
	return ledger
}

// VerifyExactlyOnce checks that run id completed with every item done
// exactly once (package audit): every known symbol's price row present with
// exactly the simulator's values, every unknown symbol failed with the
// provider's error, the counters equal to the rows, and the ledger a
// gapless, non-overlapping cover of every partition. Each problem is a test
// error; a run that did not complete stops the test. It returns the ledger.
func (h *Harness) VerifyExactlyOnce(id int64) []LedgerRow {
	h.t.Helper()
	rep, err := audit.Run(context.Background(), h.DB.Pool, id, func(s string) bool { return h.Known[s] })
	if err != nil {
		h.t.Fatal(err)
	}
	for _, p := range rep.Problems {
		h.t.Errorf("run %d: %s", id, p)
	}
	if rep.Has(audit.CheckStatus) {
		h.t.FailNow()
	}
	return rep.Ledger
}

// SafeBuffer is a bytes.Buffer safe for concurrent writers.
type SafeBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *SafeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written.
func (b *SafeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
