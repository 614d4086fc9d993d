package checkpoint

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// age makes run id look as if it had ended (status) ago: ended long ago
// for an ended status, or created long ago and still going otherwise.
func (e *env) age(t *testing.T, id int64, status Status, ago time.Duration) {
	t.Helper()
	if _, err := e.pool.Exec(context.Background(), `UPDATE runs SET status = $2,
			created_at = now() - $3 * interval '1 second' - interval '1 hour',
			updated_at = now() - $3 * interval '1 second',
			finished_at = CASE WHEN $2 IN ('completed', 'failed', 'cancelled', 'timed_out') THEN now() - $3 * interval '1 second' END
		WHERE id = $1`, id, status, ago.Seconds()); err != nil {
		t.Fatal(err)
	}
}

func TestPruneRuns(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	const day = 24 * time.Hour
	var old []int64
	for _, s := range []Status{StatusCompleted, StatusFailed, StatusCancelled, StatusTimedOut} {
		run := e.create(t, "old-"+string(s), 6, 2, 2)
		e.complete(t, run) // partitions, items, ledger
		e.age(t, run.ID, s, 100*day)
		old = append(old, run.ID)
	}
	kept := map[string]int64{}
	for name, aged := range map[string]struct {
		status Status
		ago    time.Duration
	}{
		"recent":  {StatusCompleted, 80 * day},
		"running": {StatusRunning, 200 * day},
		"paused":  {StatusPaused, 200 * day},
		"pending": {StatusPending, 200 * day},
	} {
		run := e.create(t, name, 6, 2, 2)
		e.age(t, run.ID, aged.status, aged.ago)
		kept[name] = run.ID
	}
	if _, err := e.pool.Exec(ctx, `INSERT INTO run_rejects (run_id, pos, item, error) VALUES ($1, 0, 1, 'bad')`, old[0]); err != nil {
		t.Fatal(err)
	}
	k := Kickoff{TaskID: "kickoff:e:1", Entry: "e", Job: "test", Fire: time.Now(), How: "created", RunID: old[0]}
	if err := e.store.RecordKickoff(ctx, k); err != nil {
		t.Fatal(err)
	}

	before := time.Now().Add(-90 * day)
	ids, err := e.store.PruneRuns(ctx, before, 3)
	if err != nil || !slices.Equal(ids, old[:3]) {
		t.Fatalf("PruneRuns(limit 3) = %v, %v; want the 3 oldest ended runs %v", ids, err, old[:3])
	}
	// A run locked at the moment (a retry taking it up) is passed over.
	err = pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT 1 FROM runs WHERE id = $1 FOR UPDATE`, old[3]); err != nil {
			return err
		}
		ids, err := e.store.PruneRuns(ctx, before, 10)
		if err != nil || len(ids) != 0 {
			t.Errorf("PruneRuns with the last old run locked = %v, %v; want none", ids, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ids, err := e.store.PruneRuns(ctx, before, 10); err != nil || !slices.Equal(ids, old[3:]) {
		t.Fatalf("PruneRuns = %v, %v; want %v", ids, err, old[3:])
	}
	if ids, err := e.store.PruneRuns(ctx, before, 10); err != nil || len(ids) != 0 {
		t.Fatalf("PruneRuns again = %v, %v; want none", ids, err)
	}

	for _, table := range []string{"runs", "run_partitions", "run_items", "batch_ledger", "run_attempts", "run_rejects"} {
		col := "run_id"
		if table == "runs" {
			col = "id"
		}
		if n := e.count(t, `SELECT count(*) FROM `+table+` WHERE `+col+` = ANY($1)`, old); n != 0 {
			t.Errorf("%d rows of pruned runs left in %s", n, table)
		}
	}
	for name, id := range kept {
		if n := e.count(t, `SELECT count(*) FROM run_items WHERE run_id = $1`, id); n != 6 {
			t.Errorf("run %s (%d): %d items, want its 6 kept", name, id, n)
		}
	}
	got, err := e.store.KickoffOf(ctx, k.TaskID)
	if err != nil || got.RunID != 0 || got.How != "created" {
		t.Errorf("KickoffOf a pruned run's kick-off = %+v, %v; want the record without its run", got, err)
	}

	// Kick-off records go by their own age.
	if _, err := e.pool.Exec(ctx, `INSERT INTO kickoffs (task_id, entry, job, fire, how, handled_at)
		VALUES ('kickoff:e:0', 'e', 'test', now(), 'skipped', now() - interval '100 days'),
		       ('kickoff:e:c', 'e', 'test', now(), '', now() - interval '100 days')`); err != nil {
		t.Fatal(err)
	}
	if n, err := e.store.PruneKickoffs(ctx, before); err != nil || n != 2 {
		t.Errorf("PruneKickoffs = %d, %v; want the 2 old ones (a record and a claim)", n, err)
	}
	if _, err := e.store.KickoffOf(ctx, k.TaskID); err != nil {
		t.Errorf("a recent kick-off record was pruned: %v", err)
	}
}
