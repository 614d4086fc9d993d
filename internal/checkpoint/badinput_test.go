package checkpoint

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

// No entry point takes a job name or a run key from outside (the CLI's
// subcommand fixes the job; the run key is a parsed date), but the store
// does not rely on that: SQL-looking names, keys and items are data, stored
// and found exactly as given, and match nothing else.
func TestSQLLookingNamesAreData(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	job, runKey := `daily'; DROP TABLE runs;--`, `2026-11-20' OR '1'='1`
	items := []string{`x'); DELETE FROM run_items;--`, `"quoted"`, `back\slash`, `$1`}
	other := e.create(t, "2026-11-20", 1, 1, 1)
	run, created, err := e.store.CreateRun(ctx, NewRun{Job: job, RunKey: runKey,
		Params: map[string]string{"date": runKey}, BatchSize: 2, Partitions: 1, Keys: items})
	if err != nil || !created {
		t.Fatalf("CreateRun = created %v, %v", created, err)
	}
	if run.Job != job || run.RunKey != runKey {
		t.Errorf("run stored as job %q, run key %q", run.Job, run.RunKey)
	}
	got, err := e.store.GetByKey(ctx, job, runKey)
	if err != nil || got.ID != run.ID {
		t.Errorf("GetByKey of the stored names = %+v, %v; want run %d", got, err, run.ID)
	}
	if _, err := e.store.GetByKey(ctx, job, "2026-11-20"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetByKey of another key = %v, want ErrNotFound", err)
	}
	stored, err := e.store.Items(ctx, run.ID, 0, int64(len(items)))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, it := range stored {
		keys = append(keys, it.Key)
	}
	if !reflect.DeepEqual(keys, items) {
		t.Errorf("items stored as %q, want %q", keys, items)
	}
	if n := e.count(t, `SELECT count(*) FROM runs`); n != 2 {
		t.Errorf("%d runs, want 2", n)
	}
	if n := e.count(t, `SELECT count(*) FROM run_items WHERE run_id = $1`, other.ID); n != 1 {
		t.Errorf("the other run has %d items, want 1", n)
	}
}
