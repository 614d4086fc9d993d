package tasks_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/simulator"
	"github.com/syncworker/syncworker/internal/tasks"
)

// waitPaused waits until every partition of run id that is not completed
// has paused (each at the end of its batch under way), and returns the run.
func waitPaused(t *testing.T, h *harness.Harness, id int64) checkpoint.Run {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		parts, err := h.Store.Partitions(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		settled := true
		for _, p := range parts {
			settled = settled && (p.Status == checkpoint.PartitionPaused || p.Status == checkpoint.PartitionCompleted)
		}
		if settled {
			run, err := h.Store.Get(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			return run
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %d: partitions not all paused after 30s: %+v", id, parts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stays checks for d that run id does not move from was.
func stays(t *testing.T, h *harness.Harness, was checkpoint.Run, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		run, err := h.Store.Get(context.Background(), was.ID)
		if err != nil {
			t.Fatal(err)
		}
		if run.Status != was.Status || run.Processed != was.Processed || run.Batches != was.Batches {
			t.Fatalf("paused run moved: %s %d processed %d batches, was %s %d %d",
				run.Status, run.Processed, run.Batches, was.Status, was.Processed, was.Batches)
		}
	}
}

// A live daily sync paused mid-run stops at batch boundaries and stays
// there; resumed, it completes with every symbol done exactly once. Started
// over from zero, it runs again as a new run, and the prices are updated,
// not duplicated.
func TestPauseResumeAndRestartADailySync(t *testing.T) {
	ctx := context.Background()
	h := harness.New(t, harness.Options{Symbols: 1_200, Unknown: 20, Sim: simulator.Config{Latency: 2 * time.Millisecond}})
	h.StartWorker("w1")
	h.StartWorker("w2")
	run := h.StartDailySync("2026-03-02", 25, 4)
	h.WaitFor(run.ID, time.Minute, "some progress", func(r checkpoint.Run) bool { return r.Processed >= 100 })

	if _, err := h.Control.Pause(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	paused := waitPaused(t, h, run.ID)
	if paused.Status != checkpoint.StatusPaused || paused.Processed == 0 || paused.Processed >= paused.Total ||
		paused.Processed%25 != 0 && paused.Processed != paused.Total {
		t.Fatalf("paused run = %s at %d/%d; want paused part-way", paused.Status, paused.Processed, paused.Total)
	}
	// A batch boundary: what the ledger holds is what the run counted.
	if n := h.Count(`SELECT coalesce(sum(items), 0) FROM batch_ledger WHERE run_id = $1`, run.ID); n != paused.Processed {
		t.Fatalf("ledger holds %d items, the paused run counted %d", n, paused.Processed)
	}
	stays(t, h, paused, time.Second)
	// Starting the day again finds the paused run and leaves it paused.
	if again := h.StartDailySync("2026-03-02", 25, 4); again.ID != run.ID || again.Status != checkpoint.StatusPaused {
		t.Fatalf("start of a paused day = run %d %s; want run %d paused", again.ID, again.Status, run.ID)
	}
	stays(t, h, paused, 300*time.Millisecond)

	resumed, err := h.Control.Resume(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if resumed.Status != checkpoint.StatusRunning || resumed.Attempt != 2 {
		t.Fatalf("resumed = %s attempt %d", resumed.Status, resumed.Attempt)
	}
	done := h.WaitEnded(run.ID, time.Minute)
	if done.Status != checkpoint.StatusCompleted || done.Processed != 1_220 || done.Failed != 20 {
		t.Fatalf("resumed run ended %s %d processed %d failed", done.Status, done.Processed, done.Failed)
	}
	h.VerifyExactlyOnce(run.ID)
	t.Logf("paused at %d/%d, resumed as attempt 2, completed in %d batches", paused.Processed, paused.Total, done.Batches)

	// Restart from zero is explicit and makes a new run of the same day.
	if _, err := h.Control.Pause(ctx, run.ID); !errors.Is(err, checkpoint.ErrState) {
		t.Fatalf("pause of a completed run = %v; want ErrState", err)
	}
	again, err := h.Control.Restart(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID == run.ID || again.Generation != 2 || again.RunKey != run.RunKey || again.Total != run.Total || again.BatchSize != 25 || again.Partitions != 4 {
		t.Fatalf("restart = run %d generation %d key %s total %d batch %d partitions %d",
			again.ID, again.Generation, again.RunKey, again.Total, again.BatchSize, again.Partitions)
	}
	if _, err := h.Control.Restart(ctx, run.ID); !errors.Is(err, checkpoint.ErrState) {
		t.Fatalf("second restart of the old run = %v; want ErrState (a newer generation exists)", err)
	}
	if _, err := h.Control.Restart(ctx, again.ID); !errors.Is(err, checkpoint.ErrState) {
		t.Fatalf("restart of a run under way = %v; want ErrState", err)
	}
	h.WaitEnded(again.ID, time.Minute)
	h.VerifyExactlyOnce(again.ID)
	if n := h.Count(`SELECT count(*) FROM stock_prices WHERE trade_date = '2026-03-02'`); n != 1_200 {
		t.Errorf("%d price rows for the day after a restart; want 1200, one per known symbol", n)
	}
	if latest := h.StartDailySync("2026-03-02", 25, 4); latest.ID != again.ID {
		t.Errorf("start of the day after a restart = run %d; want the newest generation, run %d", latest.ID, again.ID)
	}
}

// An ETL pull paused mid-run and resumed lands every record once; started
// over from zero it pulls every page again into the same rows.
func TestPauseResumeAndRestartAnETLPull(t *testing.T) {
	ctx := context.Background()
	h := harness.New(t, harness.Options{Jobs: harness.PatientsJob, Sim: simulator.Config{Records: 20_000, Latency: 10 * time.Millisecond}})
	h.StartWorker("w1")
	id := h.StartETL("patients", tasks.ETLOptions{}).Run.ID
	h.WaitFor(id, time.Minute, "some pages", func(r checkpoint.Run) bool { return r.Batches >= 3 })
	if _, err := h.Control.Pause(ctx, id); err != nil {
		t.Fatal(err)
	}
	paused := waitPaused(t, h, id)
	if paused.Status != checkpoint.StatusPaused || paused.Processed%500 != 0 || paused.Processed >= 20_000 {
		t.Fatalf("paused = %s at %d records", paused.Status, paused.Processed)
	}
	stays(t, h, paused, time.Second)
	if started := h.StartETL("patients", tasks.ETLOptions{}); started.Run.ID != id || started.How != tasks.Found || started.Run.Status != checkpoint.StatusPaused {
		t.Fatalf("start of a paused job = %+v; want the paused run found, not resumed", started)
	}
	if _, err := h.Control.Resume(ctx, id); err != nil {
		t.Fatal(err)
	}
	h.WaitEnded(id, time.Minute)
	h.VerifyLanded(id, harness.Records(20_000))

	again, err := h.Control.Restart(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if again.Generation != 2 || again.Total != 20_000 || again.Partitions != 4 || again.BudgetMS == nil || *again.BudgetMS != 3_600_000 {
		t.Fatalf("restart = %+v", again)
	}
	h.WaitEnded(again.ID, time.Minute)
	h.VerifyLanded(again.ID, harness.Records(20_000))
	t.Logf("paused at %d records, resumed; restarted from zero as run %d", paused.Processed, again.ID)
}

// A restart keeps its run's failure limit as it was frozen, a limit of 0
// (no failure allowed: 1 % of 20 symbols) included, which the restart used
// to take for "no limit".
func TestRestartKeepsTheFailureLimit(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 20, Configure: func(c *config.Config) { c.Sync.MaxFailedPercent = 1 }})
	ctx := t.Context()
	run := h.StartDailySync("2026-03-03", 5, 2)
	if run.MaxFailures == nil || *run.MaxFailures != 0 {
		t.Fatalf("run's failure limit = %v, want 0 (1 %% of 20)", run.MaxFailures)
	}
	if _, err := h.Control.Cancel(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	again, err := h.Control.Restart(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if again.MaxFailures == nil || *again.MaxFailures != 0 {
		t.Errorf("restarted run's failure limit = %v, want 0 as the run's", again.MaxFailures)
	}
}
