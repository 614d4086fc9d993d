package checkpoint

import (
	"context"
	"slices"
	"testing"
	"time"
)

// setProgress moves the last progress of every partition of run id to ago
// before now, and the start of its attempt to attemptAgo before now.
func (e *env) setProgress(t *testing.T, id int64, ago, attemptAgo time.Duration) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.pool.Exec(ctx, `UPDATE run_partitions SET last_progress_at = now() - make_interval(secs => $2)
		WHERE run_id = $1`, id, ago.Seconds()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(ctx, `UPDATE runs SET attempt_started_at = now() - make_interval(secs => $2)
		WHERE id = $1 AND attempt_started_at IS NOT NULL`, id, attemptAgo.Seconds()); err != nil {
		t.Fatal(err)
	}
}

func TestRunStatsCountRunsAndMeasureLag(t *testing.T) {
	e := setup(t)
	ctx := context.Background()

	empty, err := e.store.RunStats(ctx)
	if err != nil || len(empty.Runs) != 0 || len(empty.Lag) != 0 {
		t.Fatalf("RunStats of no runs = %+v, %v; want nothing", empty, err)
	}

	// Job a: one pending run created 300 s ago (never ran), one running run
	// whose partition last committed 60 s ago, one completed run (no lag).
	pending := e.createJob(t, "a", "pending")
	e.setProgress(t, pending.ID, 300*time.Second, 0)
	running := e.createJob(t, "a", "running")
	if err := e.store.MarkRunning(ctx, running.ID); err != nil {
		t.Fatal(err)
	}
	e.setProgress(t, running.ID, 60*time.Second, 3600*time.Second)
	e.complete(t, e.createJob(t, "a", "done"))
	// Job b: a run retried 20 s ago whose partition last committed an hour
	// ago: the lag counts from the retry. A cancelled run of b, stale for
	// a day, counts no lag.
	retried := e.createJob(t, "b", "retried")
	if err := e.store.MarkRunning(ctx, retried.ID); err != nil {
		t.Fatal(err)
	}
	e.setProgress(t, retried.ID, time.Hour, 20*time.Second)
	cancelled := e.createJob(t, "b", "cancelled")
	if _, _, err := e.store.Cancel(ctx, cancelled.ID); err != nil {
		t.Fatal(err)
	}
	e.setProgress(t, cancelled.ID, 24*time.Hour, 24*time.Hour)
	// Job c has only a completed run: counted, no lag.
	e.complete(t, e.createJob(t, "c", "done"))

	stats, err := e.store.RunStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []RunCount{
		{"a", StatusCompleted, 1}, {"a", StatusPending, 1}, {"a", StatusRunning, 1},
		{"b", StatusCancelled, 1}, {"b", StatusRunning, 1},
		{"c", StatusCompleted, 1},
	}
	if !slices.Equal(stats.Runs, want) {
		t.Errorf("runs by status = %+v, want %+v", stats.Runs, want)
	}
	tests := []struct {
		job      string
		min, max time.Duration
	}{
		{"a", 300 * time.Second, 310 * time.Second}, // the pending run, oldest
		{"b", 20 * time.Second, 30 * time.Second},   // from the retry, not the old commit
	}
	for _, tt := range tests {
		lag, ok := stats.Lag[tt.job]
		if !ok || lag < tt.min || lag > tt.max {
			t.Errorf("lag of job %s = %s (present %v), want %s to %s", tt.job, lag, ok, tt.min, tt.max)
		}
	}
	if lag, ok := stats.Lag["c"]; ok {
		t.Errorf("job c has no active run but a lag of %s", lag)
	}

	// A commit brings the running run's partition up to date; the pending
	// run is still the oldest of job a. Once it is cancelled, a's lag is the
	// fresh commit's.
	p := e.lease(t, running.ID, 0)
	if _, err := e.store.Commit(ctx, batchOf(running, p, false), nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.Cancel(ctx, pending.ID); err != nil {
		t.Fatal(err)
	}
	stats, err = e.store.RunStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if lag := stats.Lag["a"]; lag > 5*time.Second {
		t.Errorf("lag of job a after a commit = %s, want under 5s", lag)
	}
}

// The last failure of a job is when its latest failed attempt ended, and a
// retry of the run does not take it back; a job without one has none.
func TestRunStatsTellTheLastFailure(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	e.complete(t, e.createJob(t, "ok", "done"))
	run := e.createJob(t, "f", "k")
	if err := e.store.MarkRunning(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	p := e.lease(t, run.ID, 0)
	before := time.Now()
	if failed, err := e.store.FailPartition(ctx, p.Ref(), "boom"); err != nil || !failed {
		t.Fatalf("FailPartition = %v, %v", failed, err)
	}
	if _, _, err := e.store.Retry(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	stats, err := e.store.RunStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	at, ok := stats.LastFailure["f"]
	if !ok || at.Before(before.Add(-time.Minute)) || at.After(time.Now().Add(time.Minute)) {
		t.Errorf("last failure of job f = %s (present %v), want about now", at, ok)
	}
	if at, ok := stats.LastFailure["ok"]; ok {
		t.Errorf("job ok has a last failure at %s", at)
	}
}
