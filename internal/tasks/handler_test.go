package tasks_test

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/fault"
	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/simulator"
	"github.com/syncworker/syncworker/internal/tasks"
)

const date = "2026-11-20"

func deliver(h *tasks.Handler, p tasks.Payload) error {
	return h.ProcessTask(context.Background(), asynq.NewTask(tasks.TypeBatch, p.Encode()))
}

// state is everything a batch can change, down to the row versions (xmin):
// a row that is rewritten, even with the same values, shows up.
type state struct {
	Run    checkpoint.Run
	Parts  []checkpoint.Partition
	Prices map[string]string
	Items  map[int64]string
	Ledger []harness.LedgerRow
}

func snapshot(t *testing.T, h *harness.Harness, id int64) state {
	t.Helper()
	ctx := context.Background()
	run, err := h.Store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	run.UpdatedAt = time.Time{}
	run.DurationMS = 0 // the clock of a running attempt moves
	parts, err := h.Store.Partitions(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	collect := func(sql string) map[string]string {
		rows, err := h.DB.Pool.Query(ctx, sql, id)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for rows.Next() {
			var k, v string
			if err := rows.Scan(&k, &v); err != nil {
				t.Fatal(err)
			}
			m[k] = v
		}
		if rows.Err() != nil {
			t.Fatal(rows.Err())
		}
		return m
	}
	items := map[int64]string{}
	for k, v := range collect(`SELECT pos::text, status || '/' || attempts || '/' || xmin::text FROM run_items WHERE run_id = $1`) {
		var pos int64
		for _, c := range k {
			pos = pos*10 + int64(c-'0')
		}
		items[pos] = v
	}
	return state{
		Run:    run,
		Parts:  parts,
		Prices: collect(`SELECT symbol, xmin::text || '/' || close::text FROM stock_prices WHERE run_id = $1`),
		Items:  items,
		Ledger: h.Ledger(id),
	}
}

func TestDuplicateDeliveryChangesNothing(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 30, Sim: simulator.Config{Latency: 5 * time.Millisecond},
		Configure: func(c *config.Config) { c.Sync.TaskSlice = 0 }})
	run := h.StartDailySync(date, 10, 1)
	handler := h.Handler("w1", nil)
	p0 := tasks.Payload{Run: run.ID, Partition: 0, Attempt: 1, Seq: 0}

	if err := deliver(handler, p0); err != nil {
		t.Fatal(err)
	}
	first := snapshot(t, h, run.ID)
	if first.Run.Processed != 10 || len(first.Ledger) != 1 || len(first.Prices) != 10 {
		t.Fatalf("after one delivery: processed %d, %d ledger rows, %d prices", first.Run.Processed, len(first.Ledger), len(first.Prices))
	}

	// The same task again, in sequence.
	if err := deliver(handler, p0); err != nil {
		t.Fatal(err)
	}
	if again := snapshot(t, h, run.ID); !reflect.DeepEqual(again, first) {
		t.Fatalf("a second delivery changed the state:\nbefore %+v\nafter  %+v", first, again)
	}

	// The same task, six times at once.
	concurrently(t, 6, func() error { return deliver(handler, p0) })
	if again := snapshot(t, h, run.ID); !reflect.DeepEqual(again, first) {
		t.Fatalf("concurrent redeliveries changed the state:\nbefore %+v\nafter  %+v", first, again)
	}

	// The successor, six times at once: exactly one commits.
	p1 := p0.Next()
	concurrently(t, 6, func() error { return deliver(handler, p1) })
	second := snapshot(t, h, run.ID)
	if second.Run.Processed != 20 || len(second.Ledger) != 2 || len(second.Prices) != 20 {
		t.Fatalf("after six concurrent deliveries of seq 1: processed %d, %d ledger rows, %d prices; want 20, 2, 20",
			second.Run.Processed, len(second.Ledger), len(second.Prices))
	}
	for sym, v := range first.Prices {
		if second.Prices[sym] != v {
			t.Errorf("batch 1 rewrote %s, a row of batch 0", sym)
		}
	}
	// The losers were turned away by the lease, or, if one took it after
	// the winner's handover, by the compare-and-set.
	if logs := h.Log.String(); !strings.Contains(logs, "holds the partition's lease") && !strings.Contains(logs, "batch not committed") {
		t.Error("no concurrent delivery of seq 1 was turned away; the test did not test it")
	}
	if err := deliver(handler, p1); err != nil {
		t.Fatal(err)
	}
	if again := snapshot(t, h, run.ID); !reflect.DeepEqual(again, second) {
		t.Fatalf("a stale delivery of seq 1 changed the state")
	}

	// The chain's next task is on the queue under its deterministic ID.
	info, err := h.Inspector.GetTaskInfo(tasks.Queue, p1.Next().TaskID())
	if err != nil {
		t.Fatalf("successor %s: %v", p1.Next().TaskID(), err)
	}
	if got, err := tasks.DecodePayload(info.Payload); err != nil || got != p1.Next() {
		t.Errorf("successor payload = %+v, %v; want %+v", got, err, p1.Next())
	}
}

// With a time slice a delivery runs the whole chain; six concurrent
// deliveries of one task race through every batch, and each batch still
// commits exactly once.
func TestConcurrentDeliveriesWithATimeSliceCommitEachBatchOnce(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 60, Unknown: 2, Sim: simulator.Config{Latency: 2 * time.Millisecond},
		Configure: func(c *config.Config) { c.Sync.TaskSlice = 10 * time.Minute }})
	run := h.StartDailySync(date, 7, 1)
	handler := h.Handler("w", nil)
	concurrently(t, 6, func() error { return deliver(handler, tasks.Payload{Run: run.ID, Attempt: 1}) })
	h.VerifyExactlyOnce(run.ID)
}

func concurrently(t *testing.T, n int, f func() error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = f() })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Errorf("delivery: %v", err)
		}
	}
}

func TestEnqueueIsIdempotent(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 1})
	p := tasks.Payload{Run: 42, Partition: 1, Attempt: 1, Seq: 7}
	created, err := h.Enqueuer.Enqueue(context.Background(), p)
	if err != nil || !created {
		t.Fatalf("first enqueue = %v, %v", created, err)
	}
	for range 3 {
		created, err = h.Enqueuer.Enqueue(context.Background(), p)
		if err != nil || created {
			t.Fatalf("repeat enqueue = created %v, %v; want an ID conflict reported as success", created, err)
		}
	}
	pending, err := h.Inspector.ListPendingTasks(tasks.Queue)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 1 || pending[0].ID != "batch:42:1:1:0:7" {
		t.Errorf("pending tasks = %v, want the one task batch:42:1:1:0:7", pending)
	}
}

func TestRunSpreadsOverWorkersAndCompletes(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 400, Unknown: 8,
		Sim: simulator.Config{Latency: 3 * time.Millisecond, Jitter: 2 * time.Millisecond},
		// Two slots each for four chains: one worker alone cannot hold
		// them all, however fast it polls.
		Configure: func(c *config.Config) { c.Worker.Concurrency = 2 }})
	h.StartWorker("w1")
	h.StartWorker("w2")
	h.WaitWorkers(2, 30*time.Second)
	run := h.StartDailySync(date, 20, 4)
	h.WaitEnded(run.ID, 90*time.Second)
	ledger := h.VerifyExactlyOnce(run.ID)

	workers := map[string]bool{}
	overlap := false
	for i, a := range ledger {
		workers[a.Worker] = true
		for _, b := range ledger[i+1:] {
			if a.Partition != b.Partition && a.Worker != b.Worker && a.Started.Before(b.Committed) && b.Started.Before(a.Committed) {
				overlap = true
			}
		}
	}
	if len(workers) < 2 || !overlap {
		t.Errorf("batches ran on workers %v, overlapping across partitions and workers: %v; want both workers in parallel", workers, overlap)
	}

	failures, err := h.Store.Failures(context.Background(), run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(failures) != 8 {
		t.Fatalf("%d failures, want the 8 unknown symbols", len(failures))
	}
	for _, f := range failures {
		if !strings.HasPrefix(f.Key, simulator.UnknownPrefix) || !strings.Contains(f.Error, "404") || f.Attempts != 1 {
			t.Errorf("failure %+v, want an XX symbol failed after one request with the provider's 404", f)
		}
	}

	// Starting the same date again returns the completed run and enqueues nothing.
	again := h.StartDailySync(date, 7, 3)
	if again.ID != run.ID || again.Status != checkpoint.StatusCompleted || again.BatchSize != 20 {
		t.Errorf("second start = %+v, want the completed run %d unchanged", again, run.ID)
	}
	if n := h.Count(`SELECT count(*) FROM runs`); n != 1 {
		t.Errorf("%d runs, want 1", n)
	}
}

// inflight counts the requests the simulator is answering at once.
type inflight struct {
	now, max, total atomic.Int64
}

func (f *inflight) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := f.now.Add(1)
		f.total.Add(1)
		for m := f.max.Load(); n > m && !f.max.CompareAndSwap(m, n); m = f.max.Load() {
		}
		defer f.now.Add(-1)
		next.ServeHTTP(w, r)
	})
}

// counter counts the statements a pool runs.
type counter struct{ n atomic.Int64 }

func (c *counter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *counter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func TestFetchesAreConcurrentRateLimitedAndWritesBulk(t *testing.T) {
	var watch inflight
	const perSecond = 100
	h := harness.New(t, harness.Options{Symbols: 300,
		// The simulator enforces the provider's limit: a client that
		// exceeds it gets 429s, counted as throttled.
		Sim:  simulator.Config{Latency: 10 * time.Millisecond, RateLimit: perSecond + 20},
		Wrap: watch.wrap,
		Configure: func(c *config.Config) {
			c.Quotes.Concurrency = 5
			c.Quotes.RateLimit = perSecond
		},
	})

	// A store whose pool counts statements.
	pcfg, err := pgxpool.ParseConfig(h.DB.URL)
	if err != nil {
		t.Fatal(err)
	}
	var stmts counter
	pcfg.ConnConfig.Tracer = &stmts
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store := checkpoint.New(pool)
	handler := tasks.NewHandler(tasks.HandlerOptions{Store: store, Enqueuer: h.Enqueuer, Jobs: h.Jobs(), Worker: "w", MaxRetry: 1})

	small := h.StartDailySync("2026-11-19", 10, 1)
	big := h.StartDailySync(date, 100, 1)
	statements := func(p tasks.Payload) int64 {
		before := stmts.n.Load()
		if err := deliver(handler, p); err != nil {
			t.Fatal(err)
		}
		return stmts.n.Load() - before
	}
	// Compare middle batches, which run the same steps: not the run's first
	// (it marks the run running) nor its last (it completes the run).
	statements(tasks.Payload{Run: small.ID, Attempt: 1})
	nSmall := statements(tasks.Payload{Run: small.ID, Attempt: 1, Seq: 1})
	start := time.Now()
	var nBig int64
	for seq := range int64(3) {
		if n := statements(tasks.Payload{Run: big.ID, Attempt: 1, Seq: seq}); seq == 1 {
			nBig = n
		}
	}
	elapsed := time.Since(start)

	if nBig != nSmall {
		t.Errorf("a batch of 100 ran %d statements, a batch of 10 ran %d: writes are not bulk", nBig, nSmall)
	}
	if m := watch.max.Load(); m > 5 || m < 3 {
		t.Errorf("at most %d requests were in flight, want between 3 and QUOTES_CONCURRENCY=5", m)
	}
	if st := h.Sim.Stats(); st.Throttled != 0 {
		t.Errorf("the provider throttled %d requests: the client exceeded its rate limit", st.Throttled)
	}
	// 300 requests at 100/s with a burst of 100 need at least 2 s.
	if min := 2 * time.Second; elapsed < min-100*time.Millisecond {
		t.Errorf("300 requests at %d/s took %s, want at least %s", perSecond, elapsed, min)
	}
	if r, _ := h.Store.Get(context.Background(), big.ID); r.Status != checkpoint.StatusCompleted || r.Succeeded != 300 {
		t.Errorf("run = %+v", r)
	}
}

func TestBadCredentialsFailTheRunAtOnce(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 40, Sim: simulator.Config{APIKey: "secret"},
		Configure: func(c *config.Config) { c.Quotes.Concurrency = 2 }})
	run := h.StartDailySync(date, 20, 1)
	err := deliver(h.Handler("w", nil), tasks.Payload{Run: run.ID, Attempt: 1})
	if !errors.Is(err, asynq.SkipRetry) || fault.ClassOf(err) != fault.RunFatal {
		t.Fatalf("delivery = %v, want a run-fatal error with SkipRetry", err)
	}
	r, _ := h.Store.Get(context.Background(), run.ID)
	if r.Status != checkpoint.StatusFailed || !strings.Contains(r.LastError, "credentials") || r.Processed != 0 {
		t.Errorf("run = %+v, want failed on the credentials with nothing processed", r)
	}
	if st := h.Sim.Stats(); st.Unauthorized > 4 {
		t.Errorf("%d requests after the first 401, want the batch to stop at once", st.Unauthorized)
	}
}

// A provider that answers nothing but errors through every retry fails the
// partition and the run, keeping the checkpoint; the symbols stay pending.
func TestProviderDownFailsTheRunAfterItsRetries(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 12, Sim: simulator.Config{ErrorRate: 1},
		Configure: func(c *config.Config) { c.Sync.MaxRetry = 2 }})
	run := h.StartDailySync(date, 6, 1)
	h.StartWorker("w")
	r := h.WaitEnded(run.ID, 30*time.Second)
	if r.Status != checkpoint.StatusFailed || r.Processed != 0 ||
		!strings.Contains(r.LastError, "retries exhausted") || !strings.Contains(r.LastError, "6 of 6 quotes of the batch failed") {
		t.Fatalf("run = %+v, want failed with the provider's errors and nothing processed", r)
	}
	if n := h.Count(`SELECT count(*) FROM run_items WHERE run_id = $1 AND status <> 'pending'`, run.ID); n != 0 {
		t.Errorf("%d symbols got an outcome from a provider that never answered", n)
	}
	// The first batch ran three times (two retries), each symbol asked three
	// times each time.
	if st := h.Sim.Stats(); st.ServerErrors != 6*3*3 {
		t.Errorf("provider answered %d errors, want %d", st.ServerErrors, 6*3*3)
	}
}

// A provider that fails for a moment fails no symbol: a batch with any
// transient failure is retried whole, even when other symbols of it
// succeeded or failed for good.
func TestProviderBlipFailsNoSymbol(t *testing.T) {
	var requests atomic.Int64
	h := harness.New(t, harness.Options{Symbols: 10, Unknown: 1,
		Wrap: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if requests.Add(1) <= 4 {
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				next.ServeHTTP(w, r)
			})
		},
		Configure: func(c *config.Config) { c.Quotes.MaxAttempts = 1; c.Quotes.Concurrency = 1 }})
	run := h.StartDailySync(date, 11, 1)
	h.StartWorker("w")
	h.WaitEnded(run.ID, 30*time.Second)
	h.VerifyExactlyOnce(run.ID)
}

// A task's retry budget counts the failures of one batch: a task that
// needed a retry for one batch hands over after committing it, so the next
// batch starts with the whole budget, also within a long time slice.
func TestRetryBudgetIsPerBatch(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 30, Configure: func(c *config.Config) { c.Sync.MaxRetry = 1 }})
	job := &onceFailing{Job: h.Jobs()[tasks.JobDailySync], seen: map[int64]bool{}}
	startServer(t, h, job, time.Hour)
	run := h.StartDailySync(date, 10, 1)
	h.WaitEnded(run.ID, 30*time.Second)
	h.VerifyExactlyOnce(run.ID)
}

// onceFailing fails the first try of every batch.
type onceFailing struct {
	tasks.Job
	mu   sync.Mutex
	seen map[int64]bool
}

func (f *onceFailing) Fetch(ctx context.Context, b tasks.Batch) (tasks.Fetched, error) {
	f.mu.Lock()
	first := !f.seen[b.Items[0].Pos]
	f.seen[b.Items[0].Pos] = true
	f.mu.Unlock()
	if first {
		return tasks.Fetched{}, errors.New("first try fails")
	}
	return f.Job.Fetch(ctx, b)
}

// startServer serves h's queue in-process with job as the daily sync.
func startServer(t *testing.T, h *harness.Harness, job tasks.Job, slice time.Duration) {
	t.Helper()
	stopping := make(chan struct{})
	handler := tasks.NewHandler(tasks.HandlerOptions{Store: h.Store, Enqueuer: h.Enqueuer,
		Jobs: map[string]tasks.Job{tasks.JobDailySync: job}, Slice: slice, Lease: h.Config.Sync.Lease, MaxRetry: h.Config.Sync.MaxRetry,
		Worker: "w", Logger: h.Logger("w"), Stopping: stopping})
	srv := asynq.NewServer(h.Redis.Opt, tasks.ServerConfig(h.Config.Worker, h.Config.Sync, nil, nil))
	if err := srv.Start(handler); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop(); close(stopping); srv.Shutdown() })
}

func TestRateLimitedBatchesDoNotUseUpRetries(t *testing.T) {
	var limited atomic.Int64
	h := harness.New(t, harness.Options{Symbols: 5,
		Wrap: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if limited.Add(1) <= 3 {
					w.Header().Set("Retry-After", "1")
					w.WriteHeader(http.StatusTooManyRequests)
					return
				}
				next.ServeHTTP(w, r)
			})
		},
		Configure: func(c *config.Config) {
			c.Sync.MaxRetry = 1
			c.Quotes.MaxRetryAfter = 0
			c.Quotes.Concurrency = 1
		},
	})
	run := h.StartDailySync(date, 5, 1)
	h.StartWorker("w")
	r := h.WaitEnded(run.ID, 30*time.Second)
	if r.Status != checkpoint.StatusCompleted || r.Succeeded != 5 {
		t.Fatalf("run = %+v: three rate-limited attempts used up a retry budget of one", r)
	}
	if n := limited.Load(); n < 4 {
		t.Fatalf("only %d requests; the test did not exercise the limit", n)
	}
	if log := h.Log.String(); strings.Contains(log, "dropped on its last attempt") || strings.Contains(log, "chain task was missing") {
		t.Errorf("the rate-limited task was dropped and restored, not retried:\n%s", log)
	}
}

// A task stopped by a rate limit on its last attempt is not archived (that
// would fail the run): it is dropped, and the sweeper puts its chain back.
func TestRateLimitOnTheLastAttemptIsNotAFailure(t *testing.T) {
	var limited atomic.Int64
	h := harness.New(t, harness.Options{Symbols: 5,
		Wrap: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if limited.Add(1) == 1 {
					w.Header().Set("Retry-After", "1")
					w.WriteHeader(http.StatusTooManyRequests)
					return
				}
				next.ServeHTTP(w, r)
			})
		},
		Configure: func(c *config.Config) {
			c.Sync.MaxRetry = 0 // every attempt is the last
			c.Quotes.MaxRetryAfter = 0
			c.Quotes.Concurrency = 1
		},
	})
	run := h.StartDailySync(date, 5, 1)
	h.StartWorker("w")
	h.WaitEnded(run.ID, 30*time.Second)
	h.VerifyExactlyOnce(run.ID)
	log := h.Log.String()
	if !strings.Contains(log, "dropped on its last attempt") || !strings.Contains(log, "chain task was missing") {
		t.Errorf("want the task dropped and its chain restored by the sweeper; log:\n%s", log)
	}
}

// The successor's enqueue fails after a handover commit (Redis went away):
// the batch stays committed, and the chain is not lost: a redelivery of the
// task, or the sweeper, enqueues the successor.
func TestSuccessorEnqueueFailureLosesNoChain(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 20, Configure: func(c *config.Config) { c.Sync.TaskSlice = 0 }})
	run := h.StartDailySync(date, 10, 1)
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { dead.Close() })
	broken := tasks.NewHandler(tasks.HandlerOptions{Store: h.Store, Enqueuer: tasks.NewEnqueuer(dead, 1, time.Minute),
		Jobs: h.Jobs(), Worker: "w"})
	p0 := tasks.Payload{Run: run.ID, Attempt: 1}
	err := deliver(broken, p0)
	if err == nil || errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("delivery with Redis gone = %v, want a retryable error", err)
	}
	if r, _ := h.Store.Get(context.Background(), run.ID); r.Processed != 10 {
		t.Fatalf("the batch did not stay committed: %+v", r)
	}
	if _, err := h.Inspector.GetTaskInfo(tasks.Queue, p0.Next().TaskID()); err == nil {
		t.Fatal("the successor exists although its enqueue failed")
	}
	// The retried delivery is stale now, and puts the successor on the queue.
	if err := deliver(h.Handler("w", nil), p0); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Inspector.GetTaskInfo(tasks.Queue, p0.Next().TaskID()); err != nil {
		t.Fatalf("the successor is still missing after the redelivery: %v", err)
	}
}

// flaky wraps a job and fails its batches from position failFrom on while
// broken is set.
type flaky struct {
	tasks.Job
	broken   atomic.Bool
	failFrom int64
}

func (f *flaky) Fetch(ctx context.Context, b tasks.Batch) (tasks.Fetched, error) {
	if f.broken.Load() && b.Items[0].Pos >= f.failFrom {
		return tasks.Fetched{}, errors.New("database of the source is down")
	}
	return f.Job.Fetch(ctx, b)
}

func TestExhaustedRetriesFailTheRunAndRetryResumesIt(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 30, Configure: func(c *config.Config) { c.Sync.MaxRetry = 2 }})
	job := &flaky{Job: h.Jobs()[tasks.JobDailySync], failFrom: 10}
	job.broken.Store(true)
	startServer(t, h, job, time.Hour)

	run := h.StartDailySync(date, 10, 1)
	r := h.WaitEnded(run.ID, 30*time.Second)
	if r.Status != checkpoint.StatusFailed || r.Processed != 10 ||
		!strings.Contains(r.LastError, "retries exhausted") || !strings.Contains(r.LastError, "source is down") {
		t.Fatalf("run = %+v, want failed after the first batch with the exhausted retries' error", r)
	}
	_, part, err := h.Store.Load(context.Background(), run.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	archived := tasks.ChainPayload(part)
	if info, err := h.Inspector.GetTaskInfo(tasks.Queue, archived.TaskID()); err != nil || info.State != asynq.TaskStateArchived {
		t.Fatalf("task %s = %+v, %v; want archived", archived.TaskID(), info, err)
	}

	// The source is back: retry resumes from the checkpoint as attempt 2,
	// whose task IDs the archived task of attempt 1 does not hold.
	job.broken.Store(false)
	retried, err := h.Control.Retry(context.Background(), run.ID)
	if err != nil || retried.Attempt != 2 {
		t.Fatalf("Retry = %+v, %v", retried, err)
	}
	h.WaitEnded(run.ID, 30*time.Second)
	ledger := h.VerifyExactlyOnce(run.ID)
	for _, l := range ledger {
		if want := map[bool]int{true: 1, false: 2}[l.Seq == 0]; l.Attempt != want {
			t.Errorf("batch %d committed by attempt %d, want %d: the retry did not resume from the checkpoint", l.Seq, l.Attempt, want)
		}
	}
}

func TestCancelStopsTheRun(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 200, Sim: simulator.Config{Latency: 20 * time.Millisecond},
		Configure: func(c *config.Config) { c.Quotes.Concurrency = 2 }})
	run := h.StartDailySync(date, 10, 2)
	w := h.StartWorker("w")
	h.WaitFor(run.ID, 30*time.Second, "under way", func(r checkpoint.Run) bool { return r.Processed >= 20 })
	cancelled, err := h.Control.Cancel(context.Background(), run.ID)
	if err != nil || cancelled.Status != checkpoint.StatusCancelled {
		t.Fatalf("Cancel = %+v, %v", cancelled, err)
	}
	// Every batch that committed before the cancel is in the ledger by now;
	// none may commit after it.
	committed := len(h.Ledger(run.ID))
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	if n := len(h.Ledger(run.ID)); n != committed {
		t.Errorf("%d batches committed after the cancel", n-committed)
	}
	r, _ := h.Store.Get(context.Background(), run.ID)
	if r.Status != checkpoint.StatusCancelled || r.Processed >= r.Total {
		t.Errorf("run = %+v", r)
	}
	if _, err := h.Control.Cancel(context.Background(), 9999); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Errorf("Cancel of an unknown run = %v, want ErrNotFound", err)
	}
}

func TestStartDailySyncRejectsBadInput(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 3})
	ctx := context.Background()
	today := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	_, _, err := h.Control.StartDailySync(ctx, tasks.DailySyncOptions{Date: today.AddDate(0, 0, 1), Today: today, BatchSize: 1, Partitions: 1})
	if !errors.Is(err, tasks.ErrInput) || !strings.Contains(err.Error(), "after today") {
		t.Errorf("a future date = %v, want ErrInput", err)
	}
	if _, err := h.DB.Pool.Exec(ctx, `UPDATE stocks SET active = false`); err != nil {
		t.Fatal(err)
	}
	_, _, err = h.Control.StartDailySync(ctx, tasks.DailySyncOptions{Date: today, Today: today, BatchSize: 1, Partitions: 1})
	if !errors.Is(err, tasks.ErrInput) || !strings.Contains(err.Error(), "no active symbol") {
		t.Errorf("an empty universe = %v, want ErrInput", err)
	}
	if n := h.Count(`SELECT count(*) FROM runs`); n != 0 {
		t.Errorf("bad input left %d runs", n)
	}
}

func TestMalformedTasksAreArchivedWithTheirReason(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 1})
	handler := h.Handler("w", nil)
	for _, payload := range []string{`{"run":"x"}`, `{}`, `not json`, `{"run":12345,"partition":0,"attempt":1,"seq":0}`} {
		err := handler.ProcessTask(context.Background(), asynq.NewTask(tasks.TypeBatch, []byte(payload)))
		if !errors.Is(err, asynq.SkipRetry) {
			t.Errorf("payload %s: %v, want SkipRetry (archived, not retried)", payload, err)
		}
	}
}
