package harness

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/syncworker/syncworker/internal/checkpoint"
)

// Attempt is one attempt of a run in a history that a test makes: how it
// ends and how long it ran.
type Attempt struct {
	// End is completed, failed, cancelled or timed_out; running (only
	// last) leaves the attempt going.
	End checkpoint.Status
	// Took is the attempt's running time as run_attempts records it.
	Took time.Duration
}

// MakeHistory creates a run of spec in store and takes it through attempts
// with the store's own transitions, so that the trigger records each ended
// attempt in run_attempts as it would in production: the first attempt
// starts with MarkRunning, each later one with Retry; an attempt completes by
// committing every batch, fails through FailPartition, is cancelled with
// Cancel and times out with TimeOut. Only the clock is made up: a time-out
// needs its attempt to have started a budget ago, and each attempt's recorded
// running time (and the run's sum of them) is set to its Took, so that a
// test can assert exact durations. It returns the run as it ends.
func MakeHistory(t testing.TB, store *checkpoint.Store, pool *pgxpool.Pool, spec checkpoint.NewRun, attempts ...Attempt) checkpoint.Run {
	t.Helper()
	ctx := context.Background()
	run, created, err := store.CreateRun(ctx, spec)
	if err != nil || !created {
		t.Fatalf("create run %s %s: created %v, %v", spec.Job, spec.RunKey, created, err)
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	for i, a := range attempts {
		if i == 0 {
			err = store.MarkRunning(ctx, run.ID)
		} else {
			_, _, err = store.Retry(ctx, run.ID)
		}
		if err != nil {
			t.Fatalf("start attempt %d of run %d: %v", i+1, run.ID, err)
		}
		switch a.End {
		case checkpoint.StatusCompleted:
			commitAll(t, store, run.ID)
		case checkpoint.StatusFailed:
			parts, err := store.Partitions(ctx, run.ID)
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := store.FailPartition(ctx, parts[0].Ref(), "made-up failure"); err != nil || !ok {
				t.Fatalf("fail run %d: %v, %v", run.ID, ok, err)
			}
		case checkpoint.StatusCancelled:
			if _, _, err := store.Cancel(ctx, run.ID); err != nil {
				t.Fatal(err)
			}
		case checkpoint.StatusTimedOut:
			exec(`UPDATE runs SET attempt_started_at = clock_timestamp() - (budget_ms + 1000) * interval '1 millisecond'
				WHERE id = $1`, run.ID)
			if ok, err := store.TimeOut(ctx, run.ID); err != nil || !ok {
				t.Fatalf("time out run %d (it needs a budget): %v, %v", run.ID, ok, err)
			}
		case checkpoint.StatusRunning:
			if i != len(attempts)-1 {
				t.Fatalf("run %d: only the last attempt can be left running", run.ID)
			}
			continue
		default:
			t.Fatalf("run %d: an attempt cannot end %s", run.ID, a.End)
		}
		exec(`UPDATE run_attempts SET elapsed_ms = $2
			WHERE run_id = $1 AND attempt = (SELECT max(attempt) FROM run_attempts WHERE run_id = $1)`,
			run.ID, a.Took.Milliseconds())
	}
	exec(`UPDATE runs SET elapsed_ms = (SELECT coalesce(sum(elapsed_ms), 0) FROM run_attempts WHERE run_id = $1)
		WHERE id = $1`, run.ID)
	run, err = store.Get(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// commitAll commits every remaining batch of every running partition of run
// id, every item succeeding (a run of pages: every record loaded).
func commitAll(t testing.TB, store *checkpoint.Store, id int64) {
	t.Helper()
	ctx := context.Background()
	run, err := store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := store.Partitions(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	const owner = "history#1"
	for _, p := range parts {
		if p.Status != checkpoint.PartitionRunning {
			continue
		}
		p, err := store.Acquire(ctx, p.Ref(), owner, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		for p.Status == checkpoint.PartitionRunning {
			b := checkpoint.Batch{RunID: id, Partition: p.Index, Attempt: p.Attempt, Seq: p.Seq, Epoch: p.Epoch,
				Owner: owner, LeaseTTL: time.Minute, From: p.Cursor, TaskID: "history", Worker: owner, StartedAt: time.Now()}
			if run.Unit == checkpoint.UnitPages {
				b.To = p.Cursor + 1
				b.Counts = &checkpoint.Counts{Processed: run.BatchSize, Succeeded: run.BatchSize}
			} else {
				b.To = min(p.Cursor+int64(run.BatchSize), p.EndPos)
				for pos := b.From; pos < b.To; pos++ {
					b.Outcomes = append(b.Outcomes, checkpoint.Outcome{Pos: pos, OK: true, Attempts: 1})
				}
			}
			res, err := store.Commit(ctx, b, nil)
			if err != nil {
				t.Fatal(err)
			}
			p = res.Partition
		}
	}
}
