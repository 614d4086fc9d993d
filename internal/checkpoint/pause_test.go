package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPauseStopsAtABatchBoundaryAndResumeGoesOn(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	run := e.create(t, "k", 60, 5, 3)
	if err := e.store.MarkRunning(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	// Partition 0 has a batch under way; 1 and 2 wait for their tasks.
	p0 := e.lease(t, run.ID, 0)
	if _, err := e.store.Commit(ctx, batchOf(run, p0, false), nil); err != nil {
		t.Fatal(err)
	}
	p0 = e.partition(t, run.ID, 0)

	paused, now, err := e.store.Pause(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if paused.Status != StatusPaused || len(now) != 2 || now[0].Index != 1 || now[1].Index != 2 {
		t.Fatalf("Pause = %s, paused at once %+v; want paused, partitions 1 and 2", paused.Status, now)
	}
	if p := e.partition(t, run.ID, 0); p.Status != PartitionRunning || !p.Leased {
		t.Fatalf("the partition with a batch under way = %s leased %v; want running and leased until its commit", p.Status, p.Leased)
	}
	// Pausing again changes nothing.
	if again, parts, err := e.store.Pause(ctx, run.ID); err != nil || again.Status != StatusPaused || len(parts) != 0 {
		t.Fatalf("Pause again = %s %v, %v", again.Status, parts, err)
	}
	// A paused run is not the sweeper's: no chain to enqueue.
	if active, err := e.store.ActivePartitions(ctx); err != nil || len(active) != 0 {
		t.Fatalf("ActivePartitions of a paused run = %v, %v; want none", active, err)
	}

	// The batch under way commits, and its partition pauses there.
	res, err := e.store.Commit(ctx, batchOf(run, p0, false), probeWrite(run.ID, p0.Seq))
	if err != nil {
		t.Fatal(err)
	}
	if !res.RunPaused || res.Partition.Status != PartitionPaused || res.Partition.Cursor != 10 || res.Partition.Leased {
		t.Fatalf("commit on a paused run = %+v; want it in, its partition paused at 10 without a lease", res)
	}
	if n := e.count(t, `SELECT count(*) FROM probe WHERE run_id = $1`, run.ID); n != 1 {
		t.Fatalf("the batch under way wrote %d rows; want its write committed", n)
	}
	// No further batch commits on it.
	if _, err := e.store.Commit(ctx, batchOf(run, res.Partition, false), nil); !errors.Is(err, ErrStale) {
		t.Fatalf("a commit past the pause = %v; want ErrStale", err)
	}
	if _, err := e.store.Acquire(ctx, res.Partition.Ref(), testOwner, time.Minute); !errors.Is(err, ErrLeased) {
		t.Fatalf("Acquire on a paused partition = %v; want ErrLeased", err)
	}
	got, _ := e.store.Get(ctx, run.ID)
	if got.Processed != 10 || got.FinishedAt != nil {
		t.Fatalf("paused run: processed %d finished %v; want 10, not finished", got.Processed, got.FinishedAt)
	}
	var attemptStatus string
	if err := e.pool.QueryRow(ctx, `SELECT status FROM run_attempts WHERE run_id = $1 AND attempt = 1`, run.ID).Scan(&attemptStatus); err != nil || attemptStatus != "paused" {
		t.Fatalf("attempt 1 recorded as %q, %v; want paused", attemptStatus, err)
	}

	// Only resume goes on from a pause.
	if _, _, err := e.store.Retry(ctx, run.ID); !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "resume it instead") {
		t.Fatalf("Retry of a paused run = %v; want ErrState saying to resume", err)
	}
	resumed, parts, err := e.store.Resume(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(parts, func(a, b Partition) int { return a.Index - b.Index })
	if resumed.Status != StatusRunning || resumed.Attempt != 2 || len(parts) != 3 {
		t.Fatalf("Resume = %s attempt %d, %d partitions; want running, attempt 2, 3 partitions", resumed.Status, resumed.Attempt, len(parts))
	}
	for _, p := range parts {
		if p.Status != PartitionRunning || p.Attempt != 2 || p.TaskSeq != p.Seq || p.Leased {
			t.Fatalf("resumed partition %+v; want running in attempt 2 from its checkpoint", p)
		}
	}
	if parts[0].Cursor != 10 || parts[1].Cursor != 20 || parts[2].Cursor != 40 {
		t.Fatalf("resumed cursors %d %d %d; want 10 20 40", parts[0].Cursor, parts[1].Cursor, parts[2].Cursor)
	}
	if _, _, err := e.store.Resume(ctx, run.ID); !errors.Is(err, ErrState) {
		t.Fatalf("Resume of a running run = %v; want ErrState", err)
	}
	e.complete(t, resumed)
	if done, _ := e.store.Get(ctx, run.ID); done.Status != StatusCompleted || done.Processed != 60 {
		t.Fatalf("resumed run ended %s with %d processed; want completed with 60", done.Status, done.Processed)
	}
	if _, _, err := e.store.Pause(ctx, run.ID); !errors.Is(err, ErrState) {
		t.Fatalf("Pause of a completed run = %v; want ErrState", err)
	}
}

func TestPausedRunWhoseWorkerDiedPausesOnTakeover(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	run := e.create(t, "k", 10, 5, 1)
	p := e.partition(t, run.ID, 0)
	if _, err := e.store.Acquire(ctx, p.Ref(), "dead#1", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	// Paused while its batch ran, within the lease...
	if _, err := e.pool.Exec(ctx, `UPDATE run_partitions SET lease_expires_at = clock_timestamp() + interval '1 minute' WHERE run_id = $1`, run.ID); err != nil {
		t.Fatal(err)
	}
	if _, now, err := e.store.Pause(ctx, run.ID); err != nil || len(now) != 0 {
		t.Fatalf("Pause = %v, %v; want the leased partition left to its batch", now, err)
	}
	// ...and then the worker died: the lease lapses.
	if _, err := e.pool.Exec(ctx, `UPDATE run_partitions SET lease_expires_at = clock_timestamp() WHERE run_id = $1`, run.ID); err != nil {
		t.Fatal(err)
	}
	parts, failed, err := e.store.TakeOver(ctx, 3)
	if err != nil || len(parts) != 0 || failed != 0 {
		t.Fatalf("TakeOver = %v, %d, %v; want no chain to enqueue", parts, failed, err)
	}
	if got := e.partition(t, run.ID, 0); got.Status != PartitionPaused || got.Leased || got.Epoch != p.Epoch {
		t.Fatalf("partition after the takeover pass = %+v; want paused at its checkpoint", got)
	}
}

func TestRestartable(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	run := e.create(t, "k", 4, 2, 1)
	if _, err := e.store.Restartable(ctx, run.ID); !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "cancel it before") {
		t.Fatalf("Restartable of a pending run = %v; want ErrState saying to cancel it first", err)
	}
	if _, _, err := e.store.Cancel(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := e.store.Restartable(ctx, run.ID); err != nil || got.ID != run.ID {
		t.Fatalf("Restartable of a cancelled run = %v, %v", got.ID, err)
	}
	next, created, err := e.store.CreateRun(ctx, NewRun{Job: "test", RunKey: "k", Generation: 2, BatchSize: 2, Partitions: 1, Keys: keys(4)})
	if err != nil || !created {
		t.Fatal(created, err)
	}
	if _, err := e.store.Restartable(ctx, run.ID); !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "followed by run") {
		t.Fatalf("Restartable of a run with a newer generation = %v; want ErrState", err)
	}
	if _, err := e.store.Restartable(ctx, next.ID+1000); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Restartable of an unknown run = %v; want ErrNotFound", err)
	}
}

// A restart from zero makes the next generation the job and run key's one
// run; a redrive of the older generation would run beside it, writing the
// same day's rows twice over.
func TestRedriveOfARunANewerGenerationFollowedIsRefused(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	old := e.create(t, "k", 6, 2, 1) // items 0 and 3 fail
	e.complete(t, old)
	next, created, err := e.store.CreateRun(ctx, NewRun{Job: "test", RunKey: "k", Generation: 2, BatchSize: 2, Partitions: 1, Keys: keys(6)})
	if err != nil || !created {
		t.Fatal(created, err)
	}
	if _, _, err := e.store.Redrive(ctx, old.ID); !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "followed by run") {
		t.Fatalf("Redrive of run %d after run %d (its next generation) = %v; want ErrState", old.ID, next.ID, err)
	}
	if got, _ := e.store.Get(ctx, old.ID); got.Status != StatusCompleted {
		t.Fatalf("the older generation is %s after the refused redrive; want completed", got.Status)
	}
}

// A batch under way when its run is paused fails (a 5xx): the handler
// releases the lease and asynq retries the task later, which finds the run
// paused and does nothing. The partition must end up paused too.
func TestPausedRunWhoseBatchFailsPausesItsPartition(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	run := e.create(t, "k", 10, 5, 1)
	p := e.lease(t, run.ID, 0)
	if _, _, err := e.store.Pause(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Release(ctx, p.Ref(), testOwner); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.TakeOver(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if got := e.partition(t, run.ID, 0); got.Status != PartitionPaused {
		t.Fatalf("partition of the paused run after its batch failed = %s leased %v; want paused", got.Status, got.Leased)
	} else if got.Cursor != p.Cursor || got.Seq != p.Seq {
		t.Fatalf("paused partition at cursor %d seq %d; want its checkpoint, %d %d", got.Cursor, got.Seq, p.Cursor, p.Seq)
	}
}

// A run that takes the place of an ended one (a restart from zero, a pull
// again) and a retry of the ended one race: exactly one of them wins, so one
// run per job and run key goes on at a time.
func TestNewGenerationAndRetryOfTheOldOneExcludeEachOther(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	for i := range 20 {
		key := fmt.Sprintf("k%d", i)
		old := e.create(t, key, 4, 2, 1)
		if _, _, err := e.store.Cancel(ctx, old.ID); err != nil {
			t.Fatal(err)
		}
		var retryErr, createErr error
		var created bool
		var wg sync.WaitGroup
		wg.Go(func() { _, _, retryErr = e.store.Retry(ctx, old.ID) })
		wg.Go(func() {
			_, created, createErr = e.store.CreateRun(ctx, NewRun{Job: "test", RunKey: key, Generation: 2, Supersedes: old.ID,
				BatchSize: 2, Partitions: 1, Keys: keys(4)})
		})
		wg.Wait()
		retried := retryErr == nil
		if retried == created || (!retried && !errors.Is(retryErr, ErrState)) || (!created && !errors.Is(createErr, ErrState)) {
			t.Fatalf("round %d: retry %v, new generation created %v (%v); want exactly one to win, the other refused with ErrState",
				i, retryErr, created, createErr)
		}
		active := e.count(t, `SELECT count(*) FROM runs WHERE job = 'test' AND run_key = $1 AND status IN ('pending', 'running')`, key)
		if active != 1 {
			t.Fatalf("round %d: %d active runs of the key; want 1", i, active)
		}
	}
}
