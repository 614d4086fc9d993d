package checkpoint

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A run of pages over its time budget stops timed_out, keeping its
// checkpoint: at a commit past it, by TimeOut, and by TimeOutIdle only while
// no task holds a lease of it. Retry resumes it with a fresh budget, and the
// attempts' time adds up.
func TestTimeBudget(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	newRun := func(key string) Run {
		run, _, err := e.store.CreateRun(ctx, NewRun{Job: "pull", RunKey: key, Unit: UnitPages, Pages: 10, Total: 1000,
			BatchSize: 100, Partitions: 2, Budget: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.store.MarkRunning(ctx, run.ID); err != nil {
			t.Fatal(err)
		}
		return run
	}
	overBudget := func(id int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			run, err := e.store.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if run.OverBudget() {
				time.Sleep(20 * time.Millisecond) // Postgres' clock may lag this one a little
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("run %d not over its budget after 5s: %+v", id, run)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// A commit past the budget commits its page, then stops the run.
	a := newRun("commit")
	p := e.lease(t, a.ID, 0)
	overBudget(a.ID)
	res, err := e.store.Commit(ctx, Batch{RunID: a.ID, Partition: 0, Attempt: 1, Seq: 0, Epoch: p.Epoch, Owner: testOwner,
		From: 0, To: 1, Counts: &Counts{Processed: 100, Succeeded: 100}, Records: 100, TaskID: "t", Worker: "w", StartedAt: time.Now()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	run, _ := e.store.Get(ctx, a.ID)
	parts, _ := e.store.Partitions(ctx, a.ID)
	if !res.RunTimedOut || run.Status != StatusTimedOut || run.Processed != 100 || parts[0].Cursor != 1 ||
		parts[0].Status != PartitionTimedOut || parts[1].Status != PartitionTimedOut || parts[0].Leased ||
		!strings.Contains(run.LastError, "time budget of 300ms used up in attempt 1 with 100 of 1000 records so far") {
		t.Fatalf("after a commit past the budget: %+v, run %+v, partitions %+v", res, run, parts)
	}

	// The idle pass leaves a run whose partition is leased to its holder...
	b := newRun("idle")
	e.lease(t, b.ID, 1)
	overBudget(b.ID)
	if stopped, err := e.store.TimeOutIdle(ctx); err != nil || len(stopped) != 0 {
		t.Fatalf("TimeOutIdle with a live lease = %v, %v; want none stopped", stopped, err)
	}
	// ...and stops it once none is.
	if err := e.store.Release(ctx, e.partition(t, b.ID, 1).Ref(), testOwner); err != nil {
		t.Fatal(err)
	}
	if stopped, err := e.store.TimeOutIdle(ctx); err != nil || len(stopped) != 1 || stopped[0] != b.ID {
		t.Fatalf("TimeOutIdle = %v, %v; want run %d stopped", stopped, err, b.ID)
	}

	// Retry resumes with a fresh budget; the attempts' time adds up.
	resumed, parts, err := e.store.Retry(ctx, a.ID)
	if err != nil || resumed.Status != StatusRunning || resumed.Attempt != 2 || len(parts) != 2 || resumed.OverBudget() {
		t.Fatalf("retry = %+v, %d partitions, %v", resumed, len(parts), err)
	}
	if stopped, err := e.store.TimeOut(ctx, a.ID); err != nil || stopped {
		t.Errorf("TimeOut right after a retry = %t, %v; want a fresh budget", stopped, err)
	}
	overBudget(a.ID)
	if stopped, err := e.store.TimeOut(ctx, a.ID); err != nil || !stopped {
		t.Fatalf("TimeOut of attempt 2 = %t, %v", stopped, err)
	}
	var attempts, sum int64
	if err := e.pool.QueryRow(ctx, `SELECT count(*), sum(elapsed_ms) FROM run_attempts WHERE run_id = $1 AND status = 'timed_out'`,
		a.ID).Scan(&attempts, &sum); err != nil {
		t.Fatal(err)
	}
	run, _ = e.store.Get(ctx, a.ID)
	if attempts != 2 || run.DurationMS != sum || sum < 100 {
		t.Errorf("%d timed-out attempts of %d ms in all, the run says %d ms", attempts, sum, run.DurationMS)
	}
}
