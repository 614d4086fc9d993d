package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/simulator"
)

const date = "2026-11-20"

// Losing all of Redis loses no progress: in the middle of a run, and again
// while every worker is down, Redis is flushed; the sweeper rebuilds every
// chain from its checkpoint and the run completes with every symbol written
// exactly once.
func TestRedisLossLosesNothing(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 400, Unknown: 4,
		Sim: simulator.Config{Latency: 4 * time.Millisecond, Jitter: 2 * time.Millisecond}})
	run := h.StartDailySync(date, 10, 4)
	ctx := context.Background()

	w1 := h.StartWorker("w1")
	w2 := h.StartWorker("w2")
	h.WaitFor(run.ID, 60*time.Second, "a quarter done", func(r checkpoint.Run) bool { return r.Processed >= 100 })
	if err := h.Redis.Client.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	h.WaitFor(run.ID, 60*time.Second, "half done", func(r checkpoint.Run) bool { return r.Processed >= 200 })

	// Every worker down, Redis lost again: nothing on any queue, nothing
	// running. Only the checkpoints remain.
	if err := w1.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := w2.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := h.Redis.Client.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	stopped, _ := h.Store.Get(ctx, run.ID)
	if stopped.Status.Ended() {
		t.Fatalf("run ended before the second loss: %+v", stopped)
	}
	restoredBefore := strings.Count(h.Log.String(), "chain task was missing")

	h.StartWorker("w3")
	h.WaitEnded(run.ID, 60*time.Second)
	h.VerifyExactlyOnce(run.ID)

	if n := strings.Count(h.Log.String(), "chain task was missing") - restoredBefore; n < 1 {
		t.Errorf("the sweeper restored %d chains after the second loss; the run cannot have completed without it", n)
	}
}

// A worker that is told to stop (SIGTERM: its context ends) stops its
// running batch at once: the batch's transaction rolls back, the task goes
// back to the queue without using up a retry, and another worker finishes
// the run.
func TestShutdownMidBatchLosesNothingAndCountsNoFailure(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 30,
		Sim:       simulator.Config{Latency: 200 * time.Millisecond},
		Configure: func(c *config.Config) { c.Quotes.Concurrency = 1 }})
	run := h.StartDailySync(date, 5, 1)

	a := h.StartWorker("a")
	// Two requests into the second batch: the first batch is committed
	// (5 requests) and the second is under way.
	h.WaitServed(7, 30*time.Second)
	stoppedAt := time.Now()
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}

	ledger := h.Ledger(run.ID)
	for _, l := range ledger {
		if l.Committed.After(stoppedAt) {
			t.Errorf("batch %d committed at %s, after the shutdown at %s", l.Seq, l.Committed, stoppedAt)
		}
	}
	h.VerifyStoppedCleanly(run.ID, 5)

	h.StartWorker("b")
	h.WaitEnded(run.ID, 60*time.Second)
	h.VerifyExactlyOnce(run.ID)
}
