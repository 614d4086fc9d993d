package tasks_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/simulator"
	"github.com/syncworker/syncworker/internal/tasks"
	"github.com/syncworker/syncworker/internal/testenv"
)

// A fire of an entry that allows no overlap skips, even when the run it
// must not overlap is created between the fire's own check and its start
// (another entry's fire at the same moment): the start checks again as it
// creates its run, after any creation of the job under way.
func TestFiresAtOnceDoNotOverlap(t *testing.T) {
	fire := time.Date(2026, 11, 20, 22, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		kickoff  tasks.Kickoff
		otherKey string
		ownKey   string
	}{
		{"daily sync", tasks.Kickoff{Entry: "close", Job: tasks.JobDailySync, Fire: fire, Date: "2026-11-20", Overlap: "skip"},
			"2026-11-19", "2026-11-20"},
		{"etl", tasks.Kickoff{Entry: "eu", Job: "regional", Fire: fire, Params: map[string]string{"region": "eu"}, Overlap: "skip"},
			"region=us", "region=eu"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := harness.New(t, harness.Options{Symbols: 5, Sim: simulator.Config{Records: 100},
				Jobs: jobsOf("regional", "/v1/records", "{style: offset, page_size: 50}",
					"    total_path: total\n    params: [region]\n    query: {region: \"{region}\"}\n")})
			ctx := t.Context()
			handler := tasks.NewKickoffHandler(h.Control, tasks.DailyOptions(h.Config.Sync), h.Logger("kickoff"))
			payload, err := json.Marshal(tt.kickoff)
			if err != nil {
				t.Fatal(err)
			}
			job := tt.kickoff.Job
			done := make(chan error, 1)
			var other int64
			// The other fire's creation, under way: its run is not
			// committed yet when this fire checks for unfinished runs.
			err = pgx.BeginFunc(ctx, h.DB.Pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('syncworker.create.' || $1 || '.' || current_schema()))`, job); err != nil {
					return err
				}
				if err := tx.QueryRow(ctx, `INSERT INTO runs (job, run_key, params, unit, batch_size)
					VALUES ($1, $2, '{}', 'items', 5) RETURNING id`, job, tt.otherKey).Scan(&other); err != nil {
					return err
				}
				go func() { done <- handler.ProcessTask(ctx, asynq.NewTask(tasks.TypeKickoff, payload)) }()
				testenv.WaitForLockWaiter(t, h.DB.Pool, "syncworker.create."+job)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			rec, err := h.Store.KickoffOf(ctx, tt.kickoff.TaskID())
			if err != nil || rec.How != string(tasks.Skipped) || rec.RunID != other {
				t.Errorf("kick-off record = %+v, %v; want skipped for run %d", rec, err, other)
			}
			if n := h.Count(`SELECT count(*) FROM runs WHERE run_key = $1`, tt.ownKey); n != 0 {
				t.Errorf("the fire started a run beside run %d", other)
			}
		})
	}
}
