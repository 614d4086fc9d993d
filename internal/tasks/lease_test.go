package tasks_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/sweeper"
	"github.com/syncworker/syncworker/internal/tasks"
)

// gate holds the first quote request until it is opened.
type gate struct {
	once    sync.Once
	arrived chan struct{}
	open    chan struct{}
	opened  sync.Once
}

// newGate returns a closed gate; the caller must defer release until after
// the simulator's server is set up, so that the server's Close (a cleanup
// registered earlier, run later) does not wait on a held request.
func newGate() *gate {
	return &gate{arrived: make(chan struct{}), open: make(chan struct{})}
}

func (g *gate) release() { g.opened.Do(func() { close(g.open) }) }

func (g *gate) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first := false
		g.once.Do(func() { first = true })
		if first {
			close(g.arrived)
			<-g.open
		}
		next.ServeHTTP(w, r)
	})
}

func (g *gate) waitArrived(t *testing.T) {
	t.Helper()
	select {
	case <-g.arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("no quote request arrived")
	}
}

// lapse makes the lease of run id's partition 0 lapse now, as if its holder
// had stopped renewing it, and takes the partition over.
func lapse(t *testing.T, h *harness.Harness, id int64) tasks.Payload {
	t.Helper()
	ctx := context.Background()
	if _, err := h.DB.Pool.Exec(ctx, `UPDATE run_partitions SET lease_expires_at = clock_timestamp()
		WHERE run_id = $1 AND partition = 0 AND lease_owner IS NOT NULL`, id); err != nil {
		t.Fatal(err)
	}
	taken, _, err := h.Store.TakeOver(ctx, 10)
	if err != nil || len(taken) != 1 || taken[0].Epoch != 1 {
		t.Fatalf("TakeOver = %+v, %v; want partition 0 at epoch 1", taken, err)
	}
	return tasks.ChainPayload(taken[0])
}

// holdAndTakeOver delivers the first task of a one-partition run under a
// lease of the given length, holds the delivery in its first quote request,
// takes the partition over from under it, and returns the harness, the
// run, the held delivery's result and the takeover task. Opening g lets the
// held delivery go on.
func holdAndTakeOver(t *testing.T, lease time.Duration) (h *harness.Harness, g *gate, runID int64, held <-chan error, next tasks.Payload) {
	t.Helper()
	g = newGate()
	h = harness.New(t, harness.Options{Symbols: 20, Wrap: g.wrap,
		Configure: func(c *config.Config) {
			c.Sync.TaskSlice = 10 * time.Minute
			c.Quotes.Timeout = time.Minute
			c.Sync.Lease = lease
		}})
	t.Cleanup(g.release)
	run := h.StartDailySync(date, 10, 1)
	result := make(chan error, 1)
	go func() { result <- deliver(h.Handler("holder", nil), tasks.Payload{Run: run.ID, Attempt: 1}) }()
	g.waitArrived(t)
	return h, g, run.ID, result, lapse(t, h, run.ID)
}

// finish checks that the held delivery returned nil and committed nothing,
// then runs the takeover task to the end of the run and verifies it.
func finish(t *testing.T, h *harness.Harness, runID int64, held <-chan error, next tasks.Payload) {
	t.Helper()
	select {
	case err := <-held:
		if err != nil {
			t.Errorf("delivery that lost its lease = %v, want nil (not a failure: the chain moved on)", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the delivery that lost its lease did not return")
	}
	if n := h.Count(`SELECT count(*) FROM batch_ledger`); n != 0 {
		t.Fatalf("the delivery that lost its lease committed %d batches", n)
	}
	if err := deliver(h.Handler("successor", nil), next); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(h.Log.String(), "resuming a partition taken over from a lost worker") {
		t.Error("the takeover task did not say it resumed a taken-over partition")
	}
	h.WaitEnded(runID, 10*time.Second)
	for _, l := range h.VerifyExactlyOnce(runID) {
		if l.Worker == "holder" {
			t.Errorf("the delivery that lost its lease committed batch %d", l.Seq)
		}
	}
}

// A worker that hangs past its lease (a long GC pause, SIGSTOP, a frozen
// VM) and wakes up after the chain was taken over cannot commit, even
// before the takeover task has committed anything: its batch still starts
// at the checkpoint, and only the lease (epoch and owner) fences it off.
func TestZombieCannotCommitAfterTakeover(t *testing.T) {
	// Renewals too rare to notice the takeover: the zombie only finds out
	// at its commit.
	h, g, runID, held, next := holdAndTakeOver(t, time.Hour)
	g.release()
	finish(t, h, runID, held, next)
	if !strings.Contains(h.Log.String(), "batch not committed") {
		t.Error("the zombie did not reach its commit; the test did not test the fence")
	}
}

// A live worker whose lease is taken from it notices at its next renewal
// and stops its batch at once, without a failure.
func TestLostLeaseStopsTheBatch(t *testing.T) {
	h, _, runID, held, next := holdAndTakeOver(t, 600*time.Millisecond)
	finish(t, h, runID, held, next)
	if !strings.Contains(h.Log.String(), "lease was lost") {
		t.Errorf("the holder did not report the lost lease:\n%s", h.Log.String())
	}
}

// hanger's Fetch hangs, deaf to its context, as a batch that hangs or
// kills every worker that runs it does.
type hanger struct {
	calls atomic.Int32
	stop  chan struct{}
}

func (j *hanger) Fetch(context.Context, tasks.Batch) (tasks.Fetched, error) {
	j.calls.Add(1)
	<-j.stop
	return tasks.Fetched{}, context.Canceled
}

// Each takeover starts a batch afresh under a new task with a new retry
// budget, so a batch that hangs or kills its worker would be taken over for
// ever; past the retry budget of takeovers without a commit, the partition
// and its run fail instead, with the reason.
func TestBatchThatLosesEveryWorkerFailsTheRun(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 20, Configure: func(c *config.Config) {
		c.Sync.MaxRetry = 1
		c.Sync.TaskTimeout = time.Second
		c.Sync.Lease = 300 * time.Millisecond
	}})
	job := &hanger{stop: make(chan struct{})}
	startServer(t, h, job, 0)
	t.Cleanup(func() { close(job.stop) }) // before the server's shutdown
	sw := sweeper.New(sweeper.Options{Store: h.Store, Enqueuer: h.Enqueuer, Inspector: h.Inspector,
		Interval: h.Config.Sweeper.Interval, TakeoverInterval: h.Config.Sweeper.TakeoverInterval,
		MaxTakeovers: h.Config.Sync.MaxRetry, Logger: h.Logger("sweeper")})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sw.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	run := h.StartDailySync(date, 10, 1)
	r := h.WaitEnded(run.ID, 30*time.Second)
	if r.Status != checkpoint.StatusFailed || !strings.Contains(r.LastError, "lost its worker 2 times in a row without committing") {
		t.Fatalf("run = %+v, want failed after 2 takeovers without progress", r)
	}
	if n := job.calls.Load(); n != 2 {
		t.Errorf("the batch ran %d times, want 2 (the first try and one takeover)", n)
	}
	parts, err := h.Store.Partitions(context.Background(), run.ID)
	if err != nil || parts[0].Status != checkpoint.PartitionFailed || parts[0].Takeovers != 2 || parts[0].Cursor != 0 {
		t.Errorf("partition = %+v, %v", parts, err)
	}
}
