package tasks_test

import (
	"errors"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/simulator"
	"github.com/syncworker/syncworker/internal/tasks"
)

// A kick-off refused for good whose claim cannot be taken back (Postgres
// failing at that moment) is retried, not archived with its claim left
// behind: the retry is refused again and takes the claim back, and only
// then is the task archived, leaving nothing.
func TestRefusedKickoffWhoseUnclaimFailsIsRetried(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 5})
	ctx := t.Context()
	handler := h.KickoffHandler()
	task := asynq.NewTask(tasks.TypeKickoff, []byte(`{"entry":"e","job":"nope","fire":"2026-11-20T23:30:00Z","overlap":"skip"}`))

	// Postgres refuses the unclaim's delete.
	if _, err := h.DB.Pool.Exec(ctx, `CREATE FUNCTION no_delete() RETURNS trigger LANGUAGE plpgsql AS
		$$BEGIN RAISE EXCEPTION 'deletes are failing'; END$$;
		CREATE TRIGGER kickoffs_no_delete BEFORE DELETE ON kickoffs FOR EACH ROW EXECUTE FUNCTION no_delete()`); err != nil {
		t.Fatal(err)
	}
	err := handler.ProcessTask(ctx, task)
	if err == nil || errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("kick-off whose unclaim failed = %v; want an error that is retried", err)
	}
	if n := h.Count(`SELECT count(*) FROM kickoffs`); n != 1 {
		t.Fatalf("%d kickoffs rows while the delete fails, want the claim", n)
	}

	if _, err := h.DB.Pool.Exec(ctx, `DROP TRIGGER kickoffs_no_delete ON kickoffs`); err != nil {
		t.Fatal(err)
	}
	if err := handler.ProcessTask(ctx, task); !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("retried kick-off = %v; want it refused for good", err)
	}
	if n := h.Count(`SELECT count(*) FROM kickoffs`); n != 0 {
		t.Errorf("%d kickoffs rows after the refused kick-off, want none", n)
	}
}

// An earlier attempt of a kick-off claimed, started its run and failed to
// record it; the retry is refused (its job was taken out of the jobs file
// meanwhile). The claim stays, so that when the job is back, a run of the
// task again (from asynq's archive) finds the fire's run rather than start
// the job's next generation.
func TestRefusedRetryKeepsTheClaimOfAStartedRun(t *testing.T) {
	h := harness.New(t, harness.Options{Jobs: harness.PatientsJob, Sim: simulator.Config{Records: 10}})
	ctx := t.Context()
	k := tasks.Kickoff{Entry: "e", Job: "patients", Fire: time.Now().UTC().Truncate(time.Second), Overlap: "allow"}
	task := h.KickoffTask(k)
	first := h.UnrecordedKickoff(k)

	noJobs := tasks.NewControl(h.DB.Pool, h.Store, h.Enqueuer, h.Inspector)
	refusing := tasks.NewKickoffHandler(noJobs, tasks.DailyOptions(h.Config.Sync), h.Logger("kickoff"))
	if err := refusing.ProcessTask(ctx, task); !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("retry with the job gone = %v; want it refused for good", err)
	}
	if err := h.KickoffHandler().ProcessTask(ctx, task); err != nil {
		t.Fatal(err)
	}
	if n := h.Count(`SELECT count(*) FROM runs WHERE job = 'patients'`); n != 1 {
		t.Errorf("the fire has %d runs, want its first one found", n)
	}
	rec, err := h.Store.KickoffOf(ctx, k.TaskID())
	if err != nil || rec.RunID != first.ID || rec.How != string(tasks.Found) {
		t.Errorf("kick-off record = %+v, %v; want run %d found", rec, err, first.ID)
	}
}
