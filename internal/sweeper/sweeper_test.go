package sweeper_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/sweeper"
	"github.com/syncworker/syncworker/internal/tasks"
)

func setup(t *testing.T) (*harness.Harness, *sweeper.Sweeper) {
	t.Helper()
	h := harness.New(t, harness.Options{Symbols: 40})
	return h, sweeperOf(h, h.Config.Sweeper.Retention)
}

// sweeperOf returns a sweeper of h's runs that keeps ended runs for retention.
func sweeperOf(h *harness.Harness, retention time.Duration) *sweeper.Sweeper {
	return sweeper.New(sweeper.Options{Store: h.Store, Enqueuer: h.Enqueuer, Inspector: h.Inspector,
		Interval: h.Config.Sweeper.Interval, TakeoverInterval: h.Config.Sweeper.TakeoverInterval,
		MaxTakeovers: h.Config.Sync.MaxRetry, Retention: retention,
		Logger: slog.New(slog.DiscardHandler)})
}

func sweep(t *testing.T, sw *sweeper.Sweeper) sweeper.Result {
	t.Helper()
	res, err := sw.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestSweepRestoresLostChains(t *testing.T) {
	h, sw := setup(t)
	run := h.StartDailySync("2026-11-20", 5, 4)
	if res := sweep(t, sw); res.Checked != 4 || res.Enqueued != 0 {
		t.Fatalf("sweep with every task queued = %+v, want 4 checked, none enqueued", res)
	}
	if err := h.Redis.Client.FlushDB(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if res := sweep(t, sw); res.Enqueued != 4 {
		t.Fatalf("sweep after losing Redis = %+v, want 4 chains enqueued", res)
	}
	parts, err := h.Store.Partitions(context.Background(), run.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		id := tasks.ChainPayload(p).TaskID()
		if _, err := h.Inspector.GetTaskInfo(tasks.Queue, id); err != nil {
			t.Errorf("task %s of partition %d: %v", id, p.Index, err)
		}
	}
	if res := sweep(t, sw); res.Enqueued != 0 {
		t.Errorf("a second sweep enqueued %d", res.Enqueued)
	}
}

func TestSweepLeavesEndedRunsAlone(t *testing.T) {
	h, sw := setup(t)
	run := h.StartDailySync("2026-11-20", 5, 2)
	if _, err := h.Control.Cancel(context.Background(), run.ID); err != nil {
		t.Fatal(err)
	}
	if err := h.Redis.Client.FlushDB(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if res := sweep(t, sw); res.Checked != 0 || res.Enqueued != 0 {
		t.Errorf("sweep = %+v, want a cancelled run left alone", res)
	}
}

func TestOneSweeperAtATime(t *testing.T) {
	h, sw := setup(t)
	h.StartDailySync("2026-11-20", 5, 2)
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, h.DB.Pool, func(tx pgx.Tx) error {
		var locked bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(hashtext('syncworker.sweeper.' || current_schema()))`).Scan(&locked); err != nil || !locked {
			t.Fatalf("take the lock: %v %v", locked, err)
		}
		if res := sweep(t, sw); !res.Skipped || res.Checked != 0 {
			t.Errorf("sweep while another holds the lock = %+v, want skipped", res)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res := sweep(t, sw); res.Skipped {
		t.Error("sweep after the lock was released was skipped")
	}
}

func TestArchivedChainFailsItsRun(t *testing.T) {
	h, sw := setup(t)
	run := h.StartDailySync("2026-11-20", 5, 2)
	parts, err := h.Store.Partitions(context.Background(), run.ID)
	if err != nil {
		t.Fatal(err)
	}
	id := tasks.ChainPayload(parts[1]).TaskID()
	if err := h.Inspector.ArchiveTask(tasks.Queue, id); err != nil {
		t.Fatal(err)
	}
	if res := sweep(t, sw); res.Failed != 1 || res.Enqueued != 0 {
		t.Fatalf("sweep = %+v, want the archived chain's partition failed", res)
	}
	r, _ := h.Store.Get(context.Background(), run.ID)
	if r.Status != checkpoint.StatusFailed || !strings.Contains(r.LastError, "partition 1: retries exhausted") {
		t.Errorf("run = %+v", r)
	}
	// The retry's tasks carry the new attempt, which the archived task does not hold.
	retried, err := h.Control.Retry(context.Background(), run.ID)
	if err != nil || retried.Status != checkpoint.StatusRunning {
		t.Fatalf("Retry = %+v, %v", retried, err)
	}
	if res := sweep(t, sw); res.Enqueued != 0 || res.Failed != 0 || res.Checked != 2 {
		t.Errorf("sweep after retry = %+v, want both chains queued under attempt 2", res)
	}
}

func TestTakeOverHandsLapsedLeasesToNewTasks(t *testing.T) {
	h, sw := setup(t)
	ctx := context.Background()
	run := h.StartDailySync("2026-11-20", 5, 3)
	parts, err := h.Store.Partitions(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Partition 0's worker died holding its lease; partition 1's is alive;
	// partition 2 is on the queue, unleased.
	if _, err := h.Store.Acquire(ctx, parts[0].Ref(), "dead#1", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Store.Acquire(ctx, parts[1].Ref(), "alive#1", time.Minute); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var n int
	for n == 0 && time.Now().Before(deadline) {
		if n, err = sw.TakeOver(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n != 1 {
		t.Fatalf("TakeOver took over %d partitions, want 1", n)
	}
	p0, err := h.Store.Partitions(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p0[0].Epoch != 1 || p0[0].LeaseOwner != "" || p0[1].Epoch != 0 || p0[2].Epoch != 0 {
		t.Fatalf("partitions after takeover = %+v", p0)
	}
	// The new task has a new ID; the dead holder's task is still there.
	newID := tasks.ChainPayload(p0[0]).TaskID()
	if newID == tasks.ChainPayload(parts[0]).TaskID() || !strings.HasSuffix(newID, ":1:0") {
		t.Errorf("takeover task ID %s, want a new ID with epoch 1", newID)
	}
	for _, id := range []string{newID, tasks.ChainPayload(parts[0]).TaskID()} {
		if _, err := h.Inspector.GetTaskInfo(tasks.Queue, id); err != nil {
			t.Errorf("task %s: %v", id, err)
		}
	}

	// With every task lost, the sweep restores the unleased chains and
	// leaves the live lease's holder alone.
	if err := h.Redis.Client.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if res := sweep(t, sw); res.Enqueued != 2 {
		t.Errorf("sweep = %+v, want the 2 unleased chains enqueued", res)
	}
	if _, err := h.Inspector.GetTaskInfo(tasks.Queue, tasks.ChainPayload(parts[1]).TaskID()); err == nil {
		t.Errorf("the sweep enqueued the chain of a live lease")
	}
}
