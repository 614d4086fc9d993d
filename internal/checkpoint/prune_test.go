package checkpoint

import (
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestPruneRuns(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	const day = 24 * time.Hour
	before := time.Now().Add(-90 * day)

	// Ended long ago, and taken up by nothing: they go, oldest first.
	var gone []int64
	for i, s := range []Status{StatusCompleted, StatusCancelled} {
		run := e.create(t, "old-"+string(s), 6, 2, 2)
		e.complete(t, run) // partitions, items, ledger
		e.age(t, run.ID, s, time.Duration(200-i)*day)
		gone = append(gone, run.ID)
	}
	// A failed run replaced by a newer generation goes; that generation,
	// failed too but its key's newest, is what a start resumes: it stays.
	replaced := e.create(t, "replaced", 6, 2, 1)
	e.age(t, replaced.ID, StatusFailed, 150*day)
	gone = append(gone, replaced.ID)
	newest := e.generation(t, "replaced", 2, replaced.ID)
	e.age(t, newest.ID, StatusFailed, 140*day)
	if _, err := e.pool.Exec(ctx, `INSERT INTO run_rejects (run_id, pos, item, error) VALUES ($1, 0, 1, 'bad')`, gone[0]); err != nil {
		t.Fatal(err)
	}

	kept := map[string]int64{"newest failed": newest.ID}
	for name, aged := range map[string]struct {
		status Status
		ago    time.Duration
	}{
		"recent":    {StatusCompleted, 80 * day},
		"timed out": {StatusTimedOut, 200 * day},
		"running":   {StatusRunning, 200 * day},
		"paused":    {StatusPaused, 200 * day},
		"pending":   {StatusPending, 200 * day},
	} {
		run := e.create(t, name, 6, 2, 2)
		e.age(t, run.ID, aged.status, aged.ago)
		kept[name] = run.ID
	}
	// A newer generation goes only after the older ones: the cancelled
	// first generation ended later than the completed second (cancelled
	// after the restart), and the second waits for it.
	first := e.create(t, "gens", 4, 2, 1)
	e.age(t, first.ID, StatusFailed, 130*day)
	second := e.generation(t, "gens", 2, first.ID)
	e.age(t, second.ID, StatusCompleted, 120*day)
	e.age(t, first.ID, StatusCancelled, 10*day)
	kept["second generation"] = second.ID

	k := Kickoff{TaskID: "kickoff:e:1", Entry: "e", Job: "test", Fire: time.Now(), How: "created", RunID: gone[0]}
	if err := e.store.RecordKickoff(ctx, k); err != nil {
		t.Fatal(err)
	}
	for table, n := range map[string]int64{"run_partitions": 4, "run_items": 12, "batch_ledger": 8, "run_attempts": 2, "run_rejects": 1} {
		if got := e.count(t, `SELECT count(*) FROM `+table+` WHERE run_id = ANY($1)`, gone[:2]); got != n {
			t.Fatalf("%d rows in %s before the prune, want %d", got, table, n)
		}
	}

	ids, err := e.store.PruneRuns(ctx, before, 2)
	if err != nil || !slices.Equal(ids, gone[:2]) {
		t.Fatalf("PruneRuns(limit 2) = %v, %v; want the 2 oldest prunable runs %v", ids, err, gone[:2])
	}
	// A run locked at the moment (a retry taking it up) is passed over.
	err = pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT 1 FROM runs WHERE id = $1 FOR UPDATE`, replaced.ID); err != nil {
			return err
		}
		ids, err := e.store.PruneRuns(ctx, before, 10)
		if err != nil || len(ids) != 0 {
			t.Errorf("PruneRuns with the last prunable run locked = %v, %v; want none", ids, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ids, err := e.store.PruneRuns(ctx, before, 10); err != nil || !slices.Equal(ids, gone[2:]) {
		t.Fatalf("PruneRuns = %v, %v; want %v", ids, err, gone[2:])
	}
	if ids, err := e.store.PruneRuns(ctx, before, 10); err != nil || len(ids) != 0 {
		t.Fatalf("PruneRuns again = %v, %v; want none", ids, err)
	}

	for _, table := range []string{"runs", "run_partitions", "run_items", "batch_ledger", "run_attempts", "run_rejects"} {
		col := "run_id"
		if table == "runs" {
			col = "id"
		}
		if n := e.count(t, `SELECT count(*) FROM `+table+` WHERE `+col+` = ANY($1)`, gone); n != 0 {
			t.Errorf("%d rows of pruned runs left in %s", n, table)
		}
	}
	for name, id := range kept {
		if n := e.count(t, `SELECT count(*) FROM runs WHERE id = $1`, id); n != 1 {
			t.Errorf("run %s (%d) was pruned", name, id)
		}
	}
	got, err := e.store.KickoffOf(ctx, k.TaskID)
	if err != nil || got.RunID != 0 || got.How != "created" {
		t.Errorf("KickoffOf a pruned run's kick-off = %+v, %v; want the record without its run", got, err)
	}

	// Kick-off records go by their own age; a claim stays longer than
	// asynq keeps an archived task, which may run again.
	if _, err := e.pool.Exec(ctx, `INSERT INTO kickoffs (task_id, entry, job, fire, how, handled_at)
		VALUES ('kickoff:e:0', 'e', 'test', now(), 'skipped', now() - interval '100 days'),
		       ('kickoff:e:c1', 'e', 'test', now(), '', now() - interval '100 days'),
		       ('kickoff:e:c2', 'e', 'test', now(), '', now() - interval '3 days')`); err != nil {
		t.Fatal(err)
	}
	if n, err := e.store.PruneKickoffs(ctx, time.Now().Add(-2*day)); err != nil || n != 2 {
		t.Errorf("PruneKickoffs = %d, %v; want 2: the old record and the claim older than 91 days", n, err)
	}
	if n := e.count(t, `SELECT count(*) FROM kickoffs WHERE task_id IN ('kickoff:e:1', 'kickoff:e:c2')`); n != 2 {
		t.Errorf("%d of the recent record and the 3-day-old claim kept, want 2", n)
	}
}

// A restart whose run to take the place of was pruned meanwhile creates its
// new generation.
func TestCreateRunInPlaceOfAPrunedRun(t *testing.T) {
	e := setup(t)
	first := e.create(t, "k", 4, 2, 1)
	e.age(t, first.ID, StatusCompleted, 100*24*time.Hour)
	if ids, err := e.store.PruneRuns(t.Context(), time.Now(), 10); err != nil || len(ids) != 1 {
		t.Fatalf("PruneRuns = %v, %v", ids, err)
	}
	e.generation(t, "k", 2, first.ID)
}
