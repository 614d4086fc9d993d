package checkpoint

import (
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/syncworker/syncworker/internal/testenv"
)

func TestAloneRunIsRefusedBesideAnUnfinishedOne(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	a := e.create(t, "A", 4, 2, 1)
	alone := func(key string) (Run, bool, error) {
		return e.store.CreateRun(ctx, NewRun{Job: "test", RunKey: key, BatchSize: 2, Partitions: 1, Keys: keys(4), Alone: true})
	}
	var oe *OverlapError
	if _, _, err := alone("B"); !errors.As(err, &oe) || !errors.Is(err, ErrOverlap) || oe.Run.ID != a.ID {
		t.Fatalf("alone run beside pending run %d = %v; want an OverlapError naming it", a.ID, err)
	}
	if n := e.count(t, `SELECT count(*) FROM runs`); n != 1 {
		t.Errorf("%d runs after the refusal, want 1", n)
	}
	if run, created, err := alone("A"); err != nil || created || run.ID != a.ID {
		t.Errorf("alone run of the same key = %d created %v, %v; want run %d found", run.ID, created, err, a.ID)
	}
	e.age(t, a.ID, StatusFailed, 0)
	if _, created, err := alone("B"); err != nil || !created {
		t.Errorf("alone run beside a failed one = created %v, %v; want created", created, err)
	}
}

// Two creations at once cannot both pass the check: while another creation
// of the job is under way (here, a transaction that took the job's creation
// lock and wrote an unfinished run), an alone run waits for it, and then
// sees its run.
func TestAloneRunWaitsForTheJobsOtherCreations(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	done := make(chan error, 1)
	var other int64
	err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('syncworker.create.test.' || current_schema()))`); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `INSERT INTO runs (job, run_key, params, unit, batch_size)
			VALUES ('test', 'A', '{}', 'items', 2) RETURNING id`).Scan(&other); err != nil {
			return err
		}
		go func() {
			_, _, err := e.store.CreateRun(ctx, NewRun{Job: "test", RunKey: "B", BatchSize: 2, Partitions: 1, Keys: keys(4), Alone: true})
			done <- err
		}()
		testenv.WaitForLockWaiter(t, e.pool, "syncworker.create.test")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var oe *OverlapError
	if err := <-done; !errors.As(err, &oe) || oe.Run.ID != other {
		t.Fatalf("alone run created beside another creation = %v; want an OverlapError naming run %d", err, other)
	}
}
