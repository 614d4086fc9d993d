package checkpoint

import (
	"context"
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
	// A run that exists is found, even beside another unfinished one (a
	// second delivery of the kick-off that created it).
	b := e.create(t, "B", 4, 2, 1)
	if run, created, err := alone("A"); err != nil || created || run.ID != a.ID {
		t.Errorf("alone run of an existing key beside run %d = %d created %v, %v; want run %d found", b.ID, run.ID, created, err, a.ID)
	}
	e.age(t, a.ID, StatusFailed, 0)
	e.age(t, b.ID, StatusCancelled, 0)
	if _, created, err := alone("C"); err != nil || !created {
		t.Errorf("alone run beside ended ones = created %v, %v; want created", created, err)
	}
	// Resuming one's own run checks the same.
	if _, _, err := e.store.RetryAlone(ctx, a.ID); !errors.As(err, &oe) || oe.Run.RunKey != "C" {
		t.Errorf("RetryAlone of run %d beside unfinished C = %v; want an OverlapError naming C", a.ID, err)
	}
	if _, _, err := e.store.RetryAlone(ctx, a.ID+100); !errors.Is(err, ErrNotFound) {
		t.Errorf("RetryAlone of no run = %v; want ErrNotFound", err)
	}
}

// Two starts at once cannot both pass the check: while another creation of
// the job is under way (here, a transaction that took the job's creation
// lock and wrote an unfinished run), an alone run waits for it, and then
// sees its run; so does the retry of an alone start.
func TestAloneStartsWaitForTheJobsOtherCreations(t *testing.T) {
	e := setup(t)
	failed := e.create(t, "F", 4, 2, 1)
	e.age(t, failed.ID, StatusFailed, 0)
	for name, start := range map[string]func() error{
		"create": func() error {
			_, _, err := e.store.CreateRun(t.Context(), NewRun{Job: "test", RunKey: "B", BatchSize: 2, Partitions: 1, Keys: keys(4), Alone: true})
			return err
		},
		"retry": func() error {
			_, _, err := e.store.RetryAlone(t.Context(), failed.ID)
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			var other int64
			err := testenv.WhileLockHeld(t, e.pool, "syncworker.create.test", func(ctx context.Context, tx pgx.Tx) error {
				if err := LockRunCreation(ctx, tx, "test"); err != nil {
					return err
				}
				return tx.QueryRow(ctx, `INSERT INTO runs (job, run_key, params, unit, batch_size)
					VALUES ('test', $1, '{}', 'items', 2) RETURNING id`, "other-"+name).Scan(&other)
			}, start)
			var oe *OverlapError
			if !errors.As(err, &oe) || oe.Run.ID != other {
				t.Fatalf("alone %s beside another creation = %v; want an OverlapError naming run %d", name, err, other)
			}
			e.age(t, other, StatusCancelled, 0)
		})
	}
}
