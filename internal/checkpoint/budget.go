package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// A run may have a time budget per attempt (an ETL job's timeout). The
// attempt's clock starts when the run becomes running, and a run whose
// attempt has used it up stops timed_out at a page boundary: the commit that
// goes past it stops the run (see Commit), a task checks it before it starts
// a batch (TimeOut), and the sweeper stops runs whose budget ran out while no
// task held any of their partitions (TimeOutIdle), such as a run whose
// batches wait out a retry backoff.

// OverBudget reports whether the run's current attempt has used up its time
// budget, by this process's clock (TimeOut decides by Postgres' clock).
func (r Run) OverBudget() bool {
	return r.BudgetMS != nil && r.AttemptStartedAt != nil &&
		time.Since(*r.AttemptStartedAt) >= time.Duration(*r.BudgetMS)*time.Millisecond
}

// TimeOut stops run id timed_out if it is active and its attempt has used up
// its time budget; stopped says whether it did.
func (s *Store) TimeOut(ctx context.Context, id int64) (stopped bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		stopped, err = timeOut(ctx, tx, id)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("time out run %d: %w", id, err)
	}
	return stopped, nil
}

// timeOut is TimeOut within tx.
func timeOut(ctx context.Context, tx pgx.Tx, id int64) (bool, error) {
	r, err := lockRun(ctx, tx, id)
	if err != nil {
		return false, err
	}
	var over bool
	if err := tx.QueryRow(ctx, `SELECT coalesce(clock_timestamp() - attempt_started_at >= budget_ms * interval '1 millisecond', false)
		FROM runs WHERE id = $1`, id).Scan(&over); err != nil {
		return false, err
	}
	if !r.Status.Active() || !over {
		return false, nil
	}
	return true, stopRun(ctx, tx, id, StatusTimedOut, budgetUsedUp(id, r.Attempt, *r.BudgetMS, r.Processed, r.Total))
}

// TimeOutIdle stops timed_out every active run whose attempt has used up its
// time budget and none of whose running partitions is leased by a task (a
// task that holds one stops the run itself at its next page boundary). It
// returns the ids of the runs it stopped.
func (s *Store) TimeOutIdle(ctx context.Context) ([]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT r.id FROM runs r
		WHERE r.status IN ('pending', 'running') AND r.budget_ms IS NOT NULL
			AND clock_timestamp() - r.attempt_started_at >= r.budget_ms * interval '1 millisecond'
			AND NOT EXISTS (SELECT 1 FROM run_partitions p WHERE p.run_id = r.id AND p.status = 'running'
				AND p.lease_expires_at > clock_timestamp())
		ORDER BY r.id`)
	if err != nil {
		return nil, fmt.Errorf("find runs over their time budget: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("find runs over their time budget: %w", err)
	}
	var stopped []int64
	var errs []error
	for _, id := range ids {
		ok, err := s.TimeOut(ctx, id)
		switch {
		case err != nil:
			errs = append(errs, err)
		case ok:
			stopped = append(stopped, id)
		}
	}
	return stopped, errors.Join(errs...)
}
