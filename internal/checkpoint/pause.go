package checkpoint

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// An operator may pause a run and resume it later. Pause stops the run at a
// batch boundary: a partition that no task holds pauses at once, and one
// whose batch is under way pauses when that batch commits (Commit sees the
// run paused), so no work is thrown away and nothing half-done commits. A
// paused run's tasks find nothing to do, and the sweeper leaves it alone.
// Resume makes it running again as its next attempt, from its checkpoints,
// with new task IDs (the attempt is part of them), so that no task of the
// paused attempt, queued, completed or archived, stands in the way.

// Pause pauses run id, which must be pending or running; pausing a paused
// run changes nothing. It returns the run and the partitions that paused at
// once, whose queued tasks the caller may delete; the others pause at the
// end of their batch under way.
func (s *Store) Pause(ctx context.Context, id int64) (Run, []Partition, error) {
	var run Run
	var parts []Partition
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		r, err := lockRun(ctx, tx, id)
		if err != nil {
			return err
		}
		switch {
		case r.Status == StatusPaused:
			run = r
			return nil
		case !r.Status.Active():
			return fmt.Errorf("run %d is %s; only a pending or running run can be paused: %w", id, r.Status, ErrState)
		}
		if parts, err = pauseIdle(ctx, tx, id, nil); err != nil {
			return err
		}
		run, err = scanRun(tx.QueryRow(ctx, `UPDATE runs r SET status = 'paused', updated_at = now()
			WHERE r.id = $1 RETURNING `+runColumns, id))
		if err != nil {
			return fmt.Errorf("pause run %d: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return Run{}, nil, err
	}
	return run, parts, nil
}

// Resume makes a paused run running again as its next attempt: every
// partition that is not completed goes on from its checkpoint. It returns
// the run and the partitions whose tasks the caller must enqueue. A run that
// is not paused fails with ErrState.
func (s *Store) Resume(ctx context.Context, id int64) (Run, []Partition, error) {
	return s.restart(ctx, id, false, false, func(tx pgx.Tx, r Run) error {
		if r.Status != StatusPaused {
			return fmt.Errorf("run %d is %s; only a paused run can be resumed: %w", id, r.Status, ErrState)
		}
		return latestGeneration(ctx, tx, r)
	}, resumePartitions)
}

// pauseIdle pauses, within tx (which holds the run's lock), the running
// partitions of run id that no task holds (their lease, if any, lapsed);
// with partition not nil, only that one. It returns those it paused.
func pauseIdle(ctx context.Context, tx pgx.Tx, id int64, partition *int) ([]Partition, error) {
	parts, err := queryPartitions(ctx, tx, `UPDATE run_partitions p SET status = 'paused',
			lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
		WHERE p.run_id = $1 AND p.status = 'running' AND ($2::int IS NULL OR p.partition = $2)
			AND (p.lease_expires_at IS NULL OR p.lease_expires_at <= clock_timestamp())
		RETURNING `+partitionColumns, id, partition)
	if err != nil {
		return nil, fmt.Errorf("pause partitions of run %d: %w", id, err)
	}
	return parts, nil
}

// Restartable returns run id if it may be started over from zero as the
// next generation of its job and run key: it has ended, and no newer
// generation exists. An active or paused run must be cancelled first, so
// that one run per job and run key goes on at a time.
func (s *Store) Restartable(ctx context.Context, id int64) (Run, error) {
	r, err := s.Get(ctx, id)
	if err != nil {
		return Run{}, err
	}
	if !r.Status.Ended() {
		return Run{}, fmt.Errorf("run %d is %s; cancel it before restarting it from zero: %w", id, r.Status, ErrState)
	}
	if err := latestGeneration(ctx, s.pool, r); err != nil {
		return Run{}, err
	}
	return r, nil
}
