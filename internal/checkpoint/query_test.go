package checkpoint

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// createJob creates a run of job with key: 3 items, batches of 1, one
// partition.
func (e *env) createJob(t *testing.T, job, key string) Run {
	t.Helper()
	run, created, err := e.store.CreateRun(context.Background(), NewRun{
		Job: job, RunKey: key, BatchSize: 1, Partitions: 1, Keys: keys(3)})
	if err != nil || !created {
		t.Fatalf("CreateRun(%s, %s) = created %v, %v", job, key, created, err)
	}
	return run
}

func ids(runs []Run) []int64 {
	out := make([]int64, len(runs))
	for i, r := range runs {
		out[i] = r.ID
	}
	return out
}

func TestListRunsFiltersNewestFirst(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	// Oldest first: a1 pending, b1 cancelled, a2 completed, b2 failed, a3 cancelled.
	a1 := e.createJob(t, "a", "1")
	b1 := e.createJob(t, "b", "1")
	if _, _, err := e.store.Cancel(ctx, b1.ID); err != nil {
		t.Fatal(err)
	}
	a2 := e.createJob(t, "a", "2")
	e.complete(t, a2)
	b2 := e.createJob(t, "b", "2")
	if _, err := e.store.FailPartition(ctx, e.partition(t, b2.ID, 0).Ref(), "down"); err != nil {
		t.Fatal(err)
	}
	a3 := e.createJob(t, "a", "3")
	if _, _, err := e.store.Cancel(ctx, a3.ID); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		filter RunFilter
		want   []int64
	}{
		{"all", RunFilter{}, []int64{a3.ID, b2.ID, a2.ID, b1.ID, a1.ID}},
		{"job", RunFilter{Job: "a"}, []int64{a3.ID, a2.ID, a1.ID}},
		{"status", RunFilter{Status: StatusCancelled}, []int64{a3.ID, b1.ID}},
		{"job and status", RunFilter{Job: "b", Status: StatusFailed}, []int64{b2.ID}},
		{"pending", RunFilter{Status: StatusPending}, []int64{a1.ID}},
		{"completed", RunFilter{Status: StatusCompleted}, []int64{a2.ID}},
		{"none timed out", RunFilter{Status: StatusTimedOut}, []int64{}},
		{"unknown job", RunFilter{Job: "nope"}, []int64{}},
		{"limit", RunFilter{Limit: 2}, []int64{a3.ID, b2.ID}},
		{"limit with filter", RunFilter{Job: "a", Limit: 2}, []int64{a3.ID, a2.ID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runs, err := e.store.ListRuns(ctx, tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(runs); !slices.Equal(got, tt.want) {
				t.Errorf("ListRuns(%+v) = %v, want %v", tt.filter, got, tt.want)
			}
		})
	}

	// The runs are whole: the same as Get returns them.
	runs, err := e.store.ListRuns(ctx, RunFilter{Status: StatusCompleted})
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.store.Get(ctx, a2.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r := runs[0]; r.Status != StatusCompleted || r.Processed != 3 || r.Batches != 3 || r.UpdatedAt != got.UpdatedAt {
		t.Errorf("listed run = %+v, want %+v", r, got)
	}
}

func TestListRunsLimit(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	for i := range DefaultListLimit + 1 {
		e.createJob(t, "a", string(rune('A'+i%26))+string(rune('a'+i/26)))
	}
	runs, err := e.store.ListRuns(ctx, RunFilter{})
	if err != nil || len(runs) != DefaultListLimit {
		t.Errorf("ListRuns without a limit = %d runs, %v; want %d", len(runs), err, DefaultListLimit)
	}
	for _, limit := range []int{-1, MaxListLimit + 1} {
		if _, err := e.store.ListRuns(ctx, RunFilter{Limit: limit}); err == nil {
			t.Errorf("ListRuns with limit %d: no error", limit)
		}
	}
}

func TestLedgerSummary(t *testing.T) {
	e := setup(t)
	ctx := context.Background()

	// 7 items in batches of 2 over 2 partitions, [0, 4) and [4, 7); items at
	// positions divisible by 3 fail (batchOf). Attempt 1 commits one batch
	// of each partition and fails; attempt 2 commits the remaining two.
	run := e.create(t, "k", 7, 2, 2)
	start := time.Now()
	commit := func(r Run, idx int, took time.Duration) Partition {
		t.Helper()
		b := batchOf(r, e.lease(t, r.ID, idx), true)
		b.StartedAt = time.Now().Add(-took)
		res, err := e.store.Commit(ctx, b, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res.Partition
	}
	p0 := commit(run, 0, 100*time.Millisecond)
	commit(run, 1, 300*time.Millisecond)
	if _, err := e.store.FailPartition(ctx, p0.Ref(), "down"); err != nil {
		t.Fatal(err)
	}
	retried, _, err := e.store.Retry(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	commit(retried, 0, 100*time.Millisecond)
	commit(retried, 1, 100*time.Millisecond)
	end := time.Now()
	if r, _ := e.store.Get(ctx, run.ID); r.Status != StatusCompleted {
		t.Fatalf("run = %+v, want it completed", r)
	}

	sum, err := e.store.LedgerSummary(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Batches != 4 || sum.Records != 7 || sum.Items != 7 || sum.Succeeded != 4 || sum.Failed != 3 {
		t.Errorf("summary counts = %+v, want 4 batches, 7 records and items, 4 succeeded, 3 failed", sum)
	}
	want := []AttemptBatches{{Attempt: 1, Batches: 2, Records: 4, Items: 4}, {Attempt: 2, Batches: 2, Records: 3, Items: 3}}
	if !slices.Equal(sum.Attempts, want) {
		t.Errorf("attempts = %+v, want %+v", sum.Attempts, want)
	}
	if sum.FirstCommitAt == nil || sum.LastCommitAt == nil || sum.FirstCommitAt.Before(start.Add(-time.Second)) ||
		sum.LastCommitAt.Before(*sum.FirstCommitAt) || sum.LastCommitAt.After(end.Add(time.Second)) {
		t.Errorf("commits from %v to %v, want within [%v, %v]", sum.FirstCommitAt, sum.LastCommitAt, start, end)
	}
	// Batches of 100, 300, 100 and 100 ms (and what their commits took).
	if sum.MaxBatchMS < 300 || sum.MaxBatchMS > 1300 || sum.MeanBatchMS < 150 || sum.MeanBatchMS > 1150 {
		t.Errorf("batch durations mean %.1f ms, max %d ms; want about 150 and 300", sum.MeanBatchMS, sum.MaxBatchMS)
	}
}

func TestLedgerSummaryOfARunWithoutBatches(t *testing.T) {
	e := setup(t)
	run := e.create(t, "k", 3, 1, 1)
	sum, err := e.store.LedgerSummary(context.Background(), run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Batches != 0 || sum.FirstCommitAt != nil || sum.LastCommitAt != nil || sum.MaxBatchMS != 0 ||
		sum.Attempts == nil || len(sum.Attempts) != 0 {
		t.Errorf("summary of a run without batches = %+v, want zeros and no attempts", sum)
	}
	if _, err := e.store.LedgerSummary(context.Background(), run.ID+1); !errors.Is(err, ErrNotFound) {
		t.Errorf("LedgerSummary of an unknown run = %v, want ErrNotFound", err)
	}
}
