package tasks_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/simulator"
	"github.com/syncworker/syncworker/internal/tasks"
	"github.com/syncworker/syncworker/internal/testenv"
)

// A fire of an entry that allows no overlap skips, even when the run it
// must not overlap is created between the fire's own check and its start
// (another entry's fire at the same moment): the start, or the resume of
// the fire's own failed run, checks again after any creation of the job
// under way.
func TestFiresAtOnceDoNotOverlap(t *testing.T) {
	fire := time.Date(2026, 11, 20, 22, 0, 0, 0, time.UTC)
	eu := tasks.Kickoff{Entry: "eu", Job: "regional", Fire: fire, Params: map[string]string{"region": "eu"}, Overlap: "skip"}
	tests := []struct {
		name     string
		kickoff  tasks.Kickoff
		otherKey string
		ownKey   string
		// ownFailed: the fire's own run key has a failed run, which a
		// start resumes.
		ownFailed bool
	}{
		{"daily sync", tasks.Kickoff{Entry: "close", Job: tasks.JobDailySync, Fire: fire, Date: "2026-11-20", Overlap: "skip"},
			"2026-11-19", "2026-11-20", false},
		{"etl", eu, "region=us", "region=eu", false},
		{"etl resuming its failed run", eu, "region=us", "region=eu", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := harness.New(t, harness.Options{Symbols: 5, Sim: simulator.Config{Records: 100},
				Jobs: jobsOf("regional", "/v1/records", "{style: offset, page_size: 50}",
					"    total_path: total\n    params: [region]\n    query: {region: \"{region}\"}\n")})
			ctx := t.Context()
			var own checkpoint.Run
			if tt.ownFailed {
				own = h.StartETL("regional", tasks.ETLOptions{Params: tt.kickoff.Params}).Run
				if _, err := h.DB.Pool.Exec(ctx, `UPDATE runs SET status = 'failed' WHERE id = $1`, own.ID); err != nil {
					t.Fatal(err)
				}
			}
			job := tt.kickoff.Job
			var other int64
			// The other fire's creation, under way: its run is not
			// committed yet when this fire checks for unfinished runs.
			err := testenv.WhileLockHeld(t, h.DB.Pool, "syncworker.create."+job, func(ctx context.Context, tx pgx.Tx) error {
				if err := checkpoint.LockRunCreation(ctx, tx, job); err != nil {
					return err
				}
				return tx.QueryRow(ctx, `INSERT INTO runs (job, run_key, params, unit, batch_size)
					VALUES ($1, $2, '{}', 'items', 5) RETURNING id`, job, tt.otherKey).Scan(&other)
			}, func() error { return h.KickoffHandler().ProcessTask(ctx, h.KickoffTask(tt.kickoff)) })
			if err != nil {
				t.Fatal(err)
			}
			rec, err := h.Store.KickoffOf(ctx, tt.kickoff.TaskID())
			if err != nil || rec.How != string(tasks.Skipped) || rec.RunID != other {
				t.Errorf("kick-off record = %+v, %v; want skipped for run %d", rec, err, other)
			}
			if tt.ownFailed {
				if run, err := h.Store.Get(ctx, own.ID); err != nil || run.Status != checkpoint.StatusFailed {
					t.Errorf("the fire's own run %d is %s (%v): resumed beside run %d", own.ID, run.Status, err, other)
				}
			} else if n := h.Count(`SELECT count(*) FROM runs WHERE run_key = $1`, tt.ownKey); n != 0 {
				t.Errorf("the fire started a run beside run %d", other)
			}
		})
	}
}
