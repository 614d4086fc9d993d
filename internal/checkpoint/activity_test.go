package checkpoint

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestBucketWidth(t *testing.T) {
	tests := []struct {
		span time.Duration
		n    int
		want time.Duration
	}{
		{0, 60, time.Second},
		{59 * time.Second, 60, time.Second},
		{60 * time.Second, 60, 2 * time.Second}, // 60 buckets of 1s would need a 61st for the edge
		{20 * time.Second, 10, 5 * time.Second},
		{90 * time.Second, 60, 2 * time.Second},
		{10 * time.Minute, 60, 15 * time.Second},
		{3 * time.Hour, 40, 5 * time.Minute},
		{47 * time.Hour, 2, 24 * time.Hour},
		{10 * 24 * time.Hour, 3, 4 * 24 * time.Hour},
		{5 * time.Second, 0, 10 * time.Second}, // n below 1 counts as 1
	}
	for _, tt := range tests {
		got := BucketWidth(tt.span, tt.n)
		if got != tt.want {
			t.Errorf("BucketWidth(%s, %d) = %s, want %s", tt.span, tt.n, got, tt.want)
		}
		if n := max(tt.n, 1); int(tt.span/got)+1 > n {
			t.Errorf("BucketWidth(%s, %d) = %s makes %d buckets", tt.span, tt.n, got, int(tt.span/got)+1)
		}
	}
}

// setCommitted moves the commits of run id's ledger (one partition) to
// base plus offsets[seq].
func (e *env) setCommitted(t *testing.T, id int64, base time.Time, offsets []time.Duration) {
	t.Helper()
	for seq, off := range offsets {
		if _, err := e.pool.Exec(context.Background(), `UPDATE batch_ledger SET committed_at = $3
			WHERE run_id = $1 AND seq = $2`, id, seq, base.Add(off)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestThroughputBucketsTheLedger(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	run := e.create(t, "k", 7, 1, 1)
	if th, err := e.store.Throughput(ctx, run.ID, 10); err != nil || !th.Start.IsZero() || len(th.Buckets) != 0 {
		t.Errorf("throughput of a run without batches = %+v, %v; want no buckets", th, err)
	}
	e.complete(t, run)
	base := time.Date(2026, 3, 2, 15, 0, 0, 0, time.UTC)
	e.setCommitted(t, run.ID, base, []time.Duration{0, time.Second, 2500 * time.Millisecond, 3 * time.Second,
		10 * time.Second, 10200 * time.Millisecond, 20 * time.Second})

	th, err := e.store.Throughput(ctx, run.ID, 10)
	if err != nil {
		t.Fatal(err)
	}
	// 20s in at most 10 buckets: 5s wide, and a fifth for the last commit.
	want := []Bucket{{4, 4, 4}, {}, {2, 2, 2}, {}, {1, 1, 1}}
	if !th.Start.Equal(base) || th.Width != 5*time.Second || !slices.Equal(th.Buckets, want) {
		t.Errorf("throughput = %+v, want from %s by 5s: %v", th, base, want)
	}

	if _, err := e.store.Throughput(ctx, run.ID+1, 10); !errors.Is(err, ErrNotFound) {
		t.Errorf("throughput of an unknown run = %v, want ErrNotFound", err)
	}
	if _, err := e.store.Throughput(ctx, run.ID, 0); err == nil {
		t.Error("throughput in 0 buckets: no error")
	}
}

// An active run's chart reaches to now, so that a stall shows as empty
// buckets at its end.
func TestThroughputOfAnActiveRunReachesNow(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	run := e.create(t, "k", 5, 1, 1)
	p := e.lease(t, run.ID, 0)
	if _, err := e.store.Commit(ctx, batchOf(run, p, false), nil); err != nil {
		t.Fatal(err)
	}
	e.setCommitted(t, run.ID, time.Now().Add(-time.Minute), []time.Duration{0})
	th, err := e.store.Throughput(ctx, run.ID, 60)
	if err != nil {
		t.Fatal(err)
	}
	// 60s (and a little) in 60 buckets: 2s wide, 31 of them, the first with the batch.
	if th.Width != 2*time.Second || len(th.Buckets) != 31 || th.Buckets[0].Batches != 1 || th.Buckets[30].Batches != 0 {
		t.Errorf("throughput of a stalled run = %+v, want 31 buckets of 2s, the batch in the first", th)
	}
}

func TestPaces(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	run := e.create(t, "k", 6, 2, 1) // 3 batches of 2 items
	idle := e.create(t, "idle", 1, 1, 1)
	if err := e.store.MarkRunning(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	e.complete(t, run)
	// The first batch long ago, the other two within the last minute; the
	// attempt started an hour ago.
	now := time.Now()
	e.setCommitted(t, run.ID, now, []time.Duration{-10 * time.Minute, -20 * time.Second, -5 * time.Second})
	if _, err := e.pool.Exec(ctx, `UPDATE runs SET attempt_started_at = $2 WHERE id = $1`, run.ID, now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}

	paces, err := e.store.Paces(ctx, []int64{run.ID, idle.ID, idle.ID + 100}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(paces) != 2 {
		t.Errorf("paces of two runs and an unknown one = %+v, want two", paces)
	}
	p := paces[run.ID]
	if p.Batches != 2 || p.Items != 4 || p.Records != 4 || p.Window < 59*time.Second || p.Window > 61*time.Second {
		t.Errorf("pace = %+v, want 2 batches, 4 items and records in a window of 1m", p)
	}
	// A run created a moment ago has a window of that moment.
	if p := paces[idle.ID]; p.Batches != 0 || p.Items != 0 || p.Window > 10*time.Second {
		t.Errorf("pace of a new run = %+v, want nothing in a short window", p)
	}
	if _, err := e.store.Paces(ctx, []int64{run.ID}, 0); err == nil {
		t.Error("paces over a window of 0: no error")
	}
}

func TestAttemptsAndJobs(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	run := e.create(t, "k", 4, 1, 1)
	e.createJob(t, "another", "1")
	if err := e.store.MarkRunning(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.FailPartition(ctx, e.partition(t, run.ID, 0).Ref(), "down"); err != nil {
		t.Fatal(err)
	}
	retried, _, err := e.store.Retry(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	e.complete(t, retried)

	attempts, err := e.store.Attempts(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(attempts) != 2 || attempts[0].Attempt != 1 || attempts[0].Status != StatusFailed || attempts[0].Processed != 0 ||
		attempts[1].Attempt != 2 || attempts[1].Status != StatusCompleted || attempts[1].Processed != 4 ||
		attempts[1].FinishedAt.Before(attempts[1].StartedAt) {
		t.Errorf("attempts = %+v, want 1 failed with nothing processed, 2 completed with 4", attempts)
	}

	jobs, err := e.store.Jobs(ctx)
	if err != nil || !slices.Equal(jobs, []string{"another", "test"}) {
		t.Errorf("Jobs = %v, %v; want another, test", jobs, err)
	}
}
