package checkpoint

import (
	"strings"
	"testing"
	"time"
)

// A page's rejected records are kept with its commit, under its position,
// and read back as the run's failed items in order; a stale commit keeps
// none, and a batch that names more of them than it failed, or names them
// on a run of items, is refused before anything is written.
func TestRejectedRecordsCommitWithThePage(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	run, _, err := e.store.CreateRun(ctx, NewRun{Job: "pull", RunKey: "k", Unit: UnitPages, Pages: 4, Total: 40, BatchSize: 10, Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.MarkRunning(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	p := e.lease(t, run.ID, 0)
	page := func(p Partition, failed int, rejected ...Rejected) Batch {
		return Batch{RunID: run.ID, Partition: 0, Attempt: p.Attempt, Seq: p.Seq, Epoch: p.Epoch, Owner: testOwner,
			LeaseTTL: time.Minute, From: p.Cursor, To: p.Cursor + 1, TaskID: "test", Worker: "test", StartedAt: time.Now(),
			Counts: &Counts{Processed: 10, Succeeded: 10 - failed, Failed: failed}, Rejected: rejected}
	}

	res, err := e.store.Commit(ctx, page(p, 2, Rejected{Item: 7, Error: "record 7 has no key"}, Rejected{Item: 2, Error: "record 2 is a number"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	stale := page(p, 1, Rejected{Item: 0, Error: "stale"})
	if _, err := e.store.Commit(ctx, stale, nil); err == nil {
		t.Fatal("a stale commit went through")
	}
	p = res.Partition
	for _, b := range []Batch{
		page(p, 1, Rejected{Item: 1, Error: "a"}, Rejected{Item: 2, Error: "b"}),
		page(p, 1, Rejected{Item: -1, Error: "a"}),
		{RunID: run.ID, Owner: testOwner, From: p.Cursor, To: p.Cursor + 1, Rejected: []Rejected{{Item: 1, Error: "a"}}},
	} {
		if _, err := e.store.Commit(ctx, b, nil); err == nil || !strings.Contains(err.Error(), "reject") {
			t.Errorf("commit of %+v = %v, want a refusal", b.Rejected, err)
		}
	}
	if _, err := e.store.Commit(ctx, page(p, 1, Rejected{Item: 0, Error: "record 0 is null"}), nil); err != nil {
		t.Fatal(err)
	}

	got, err := e.store.Failures(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"page 0, record 2: record 2 is a number", "page 0, record 7: record 7 has no key", "page 1, record 0: record 0 is null"}
	if len(got) != len(want) {
		t.Fatalf("failures %+v, want %q", got, want)
	}
	for i, it := range got {
		if s := it.Key + ": " + it.Error; s != want[i] || it.Status != ItemFailed || it.Attempts != 1 {
			t.Errorf("failure %d = %+v, want %q", i, it, want[i])
		}
	}
	if n := e.count(t, `SELECT count(*) FROM run_rejects WHERE error = 'stale'`); n != 0 {
		t.Errorf("%d rejects of the stale commit kept", n)
	}
}
