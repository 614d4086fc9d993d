package checkpoint

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// RunStats are the figures of all runs that monitoring exports: how many
// runs each job has in each state, and how far behind its active runs are.
type RunStats struct {
	// Runs counts the runs by job and state; a state a job has no run in is
	// not listed.
	Runs []RunCount
	// Lag is, for each job with an active (pending or running) run, its
	// checkpoint lag: the longest time any running partition of those runs
	// has gone without a committed batch, counted from the partition's last
	// commit, or from the start of the run's current attempt (its creation,
	// before it ever ran) when that is later. A healthy chain commits every
	// batch's time or so; a lag that keeps growing is a stuck chain.
	Lag map[string]time.Duration
	// LastFailure is, for each job with a failed attempt among its runs,
	// when the latest one ended: later than it was at the last look means a
	// run failed since, whatever retries or the retention changed besides.
	LastFailure map[string]time.Time
}

// RunCount is the number of runs of a job in one state.
type RunCount struct {
	Job    string
	Status Status
	Runs   int64
}

// RunStats returns the figures of all runs, read from one snapshot.
func (s *Store) RunStats(ctx context.Context) (RunStats, error) {
	stats := RunStats{Lag: map[string]time.Duration{}, LastFailure: map[string]time.Time{}}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `SELECT job, status, count(*) FROM runs GROUP BY job, status ORDER BY job, status`)
			if err != nil {
				return fmt.Errorf("count runs by status: %w", err)
			}
			stats.Runs, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (RunCount, error) {
				var c RunCount
				err := row.Scan(&c.Job, &c.Status, &c.Runs)
				return c, err
			})
			if err != nil {
				return fmt.Errorf("count runs by status: %w", err)
			}
			// greatest() skips the NULL attempt_started_at of a run that
			// never ran: its lag counts from the partition's creation.
			rows, err = tx.Query(ctx, `SELECT r.job,
					extract(epoch FROM clock_timestamp() - min(greatest(p.last_progress_at, r.attempt_started_at)))::float8
				FROM runs r JOIN run_partitions p ON p.run_id = r.id
				WHERE r.status IN ('pending', 'running') AND p.status = 'running'
				GROUP BY r.job`)
			if err != nil {
				return fmt.Errorf("measure checkpoint lag: %w", err)
			}
			var job string
			var seconds float64
			_, err = pgx.ForEachRow(rows, []any{&job, &seconds}, func() error {
				stats.Lag[job] = time.Duration(max(seconds, 0) * float64(time.Second))
				return nil
			})
			if err != nil {
				return fmt.Errorf("measure checkpoint lag: %w", err)
			}
			rows, err = tx.Query(ctx, `SELECT r.job, max(a.finished_at) FROM run_attempts a JOIN runs r ON r.id = a.run_id
				WHERE a.status = 'failed' GROUP BY r.job`)
			if err != nil {
				return fmt.Errorf("find the last failures: %w", err)
			}
			var at time.Time
			_, err = pgx.ForEachRow(rows, []any{&job, &at}, func() error {
				stats.LastFailure[job] = at
				return nil
			})
			if err != nil {
				return fmt.Errorf("find the last failures: %w", err)
			}
			return nil
		})
	if err != nil {
		return RunStats{}, err
	}
	return stats, nil
}
