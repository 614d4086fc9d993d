package checkpoint

import (
	"errors"
	"testing"
	"time"
)

// A kick-off's record is found by its task ID; a second record of the same
// task leaves the first as it is, and a run deleted since leaves RunID 0.
func TestRecordKickoff(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	run := e.create(t, "k", 10, 5, 1)
	if _, err := e.store.KickoffOf(ctx, "kickoff:e:1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("KickoffOf before any record = %v, want ErrNotFound", err)
	}
	fire := time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)
	first := Kickoff{TaskID: "kickoff:e:1", Entry: "e", Job: "test", Fire: fire, How: "created", RunID: run.ID}
	if err := e.store.RecordKickoff(ctx, first); err != nil {
		t.Fatal(err)
	}
	second := first
	second.How, second.RunID = "skipped", 0
	if err := e.store.RecordKickoff(ctx, second); err != nil {
		t.Fatal(err)
	}
	got, err := e.store.KickoffOf(ctx, first.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	if got.How != "created" || got.RunID != run.ID || got.Entry != "e" || got.Job != "test" || !got.Fire.Equal(fire) || got.HandledAt.IsZero() {
		t.Errorf("KickoffOf = %+v, want the first record", got)
	}
	if _, err := e.pool.Exec(ctx, `DELETE FROM runs WHERE id = $1`, run.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := e.store.KickoffOf(ctx, first.TaskID); err != nil || got.RunID != 0 || got.How != "created" {
		t.Errorf("KickoffOf after the run was deleted = %+v, %v; want RunID 0", got, err)
	}
}
