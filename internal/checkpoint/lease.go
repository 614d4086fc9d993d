package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// A partition's lease says which task runs its batches now. A task takes it
// before its first batch and renews it while it works; every commit is a
// compare-and-set on the lease (its epoch and owner), and the commit that
// hands the chain over or ends the partition gives it up. When the holder
// dies, the lease lapses and TakeOver hands the chain to a new task of the
// next epoch, which fences the old holder off for good: if it wakes up, its
// renewals and its commit match no row.
//
// Expiry is computed by Postgres (clock_timestamp), so the workers' clocks
// do not matter.

// Acquire takes the lease of the partition that ref names, for owner, until
// ttl from now. It fails with ErrLeased when ref no longer owns the chain or
// another owner holds a lease that has not lapsed; a lapsed lease of the same
// epoch is taken over (its holder's commit then fails on the owner).
func (s *Store) Acquire(ctx context.Context, ref TaskRef, owner string, ttl time.Duration) (Partition, error) {
	if owner == "" {
		return Partition{}, errors.New("acquire lease: owner is required")
	}
	p, err := scanPartition(s.pool.QueryRow(ctx, `UPDATE run_partitions p SET
			lease_owner = $6, lease_expires_at = clock_timestamp() + $7 * interval '1 millisecond',
			updated_at = now()
		WHERE p.run_id = $1 AND p.partition = $2 AND p.attempt = $3 AND p.lease_epoch = $4
			AND p.task_seq = $5 AND p.status = 'running'
			AND (p.lease_owner IS NULL OR p.lease_expires_at <= clock_timestamp())
		RETURNING `+partitionColumns,
		ref.RunID, ref.Partition, ref.Attempt, ref.Epoch, ref.TaskSeq, owner, ttl.Milliseconds()))
	if errors.Is(err, pgx.ErrNoRows) {
		return Partition{}, fmt.Errorf("run %d partition %d: %w", ref.RunID, ref.Partition, ErrLeased)
	}
	if err != nil {
		return Partition{}, fmt.Errorf("acquire lease of run %d partition %d: %w", ref.RunID, ref.Partition, err)
	}
	return p, nil
}

// Renew extends owner's lease of a partition to ttl from now. It fails with
// ErrLeaseLost when owner no longer holds it or the partition stopped
// running (its run was cancelled or failed): the batch could not commit.
func (s *Store) Renew(ctx context.Context, ref TaskRef, owner string, ttl time.Duration) error {
	tag, err := s.pool.Exec(ctx, `UPDATE run_partitions SET
			lease_expires_at = clock_timestamp() + $5 * interval '1 millisecond'
		WHERE run_id = $1 AND partition = $2 AND lease_epoch = $3 AND lease_owner = $4 AND status = 'running'`,
		ref.RunID, ref.Partition, ref.Epoch, owner, ttl.Milliseconds())
	if err != nil {
		return fmt.Errorf("renew lease of run %d partition %d: %w", ref.RunID, ref.Partition, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("run %d partition %d epoch %d: %w", ref.RunID, ref.Partition, ref.Epoch, ErrLeaseLost)
	}
	return nil
}

// Release gives up owner's lease of a partition, so that the next delivery of
// the chain's task need not wait for it to lapse. Releasing a lease owner no
// longer holds changes nothing. When the run was paused while the lease was
// held, the batch under way did not commit (it failed): the partition
// pauses here, where its checkpoint is, as no commit will pause it.
func (s *Store) Release(ctx context.Context, ref TaskRef, owner string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The run is locked first, as every change of a run and its
		// partitions does, so that a Pause sees this release or is seen by it.
		run, err := lockRun(ctx, tx, ref.RunID)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE run_partitions SET lease_owner = NULL, lease_expires_at = NULL
			WHERE run_id = $1 AND partition = $2 AND lease_epoch = $3 AND lease_owner = $4`,
			ref.RunID, ref.Partition, ref.Epoch, owner); err != nil {
			return err
		}
		if run.Status == StatusPaused {
			_, err = pauseIdle(ctx, tx, ref.RunID, &ref.Partition)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("release lease of run %d partition %d: %w", ref.RunID, ref.Partition, err)
	}
	return nil
}

// TakeOver ends every lapsed lease of a running partition of an active run
// (and pauses such a partition of a paused run):
// the chain moves to the next epoch, whose task the caller must enqueue (its
// ID is new, so the dead holder's task, still active in asynq until its own
// lease runs out, does not stand in the way). It returns those partitions.
//
// A takeover also starts the batch afresh with a new retry budget, so one
// that kills or hangs every worker that runs it would be taken over for
// ever: a partition taken over more than maxTakeovers times since its last
// commit fails instead, and its run with it (a retry resumes it). failed
// counts those.
func (s *Store) TakeOver(ctx context.Context, maxTakeovers int) (parts []Partition, failed int, err error) {
	rows, err := s.pool.Query(ctx, `SELECT p.run_id, p.partition FROM run_partitions p
		JOIN runs r ON r.id = p.run_id
		WHERE r.status IN ('pending', 'running', 'paused') AND p.status = 'running'
			AND p.lease_expires_at <= clock_timestamp()
		ORDER BY p.run_id, p.partition`)
	if err != nil {
		return nil, 0, fmt.Errorf("take over lapsed leases: %w", err)
	}
	type lapsed struct {
		Run       int64
		Partition int
	}
	found, err := pgx.CollectRows(rows, pgx.RowToStructByPos[lapsed])
	if err != nil {
		return nil, 0, fmt.Errorf("take over lapsed leases: %w", err)
	}
	var errs []error
	for _, l := range found {
		p, ok, err := s.takeOver(ctx, l.Run, l.Partition, maxTakeovers)
		switch {
		case err != nil:
			errs = append(errs, err)
		case ok:
			parts = append(parts, p)
		case p.Status == PartitionFailed:
			failed++
		}
	}
	return parts, failed, errors.Join(errs...)
}

// takeOver takes over one partition, if its lease is still lapsed, in a
// transaction that locks the run first (as every change of a run and its
// partitions does, so that they cannot deadlock). ok is true when the chain
// moved to the next epoch; the partition is failed when it was taken over
// too often without progress.
func (s *Store) takeOver(ctx context.Context, id int64, partition, maxTakeovers int) (p Partition, ok bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		run, err := lockRun(ctx, tx, id)
		if err != nil {
			return err
		}
		if run.Status == StatusPaused {
			// Its holder died before the batch that would have paused it
			// committed: pause it where its checkpoint is.
			_, err := pauseIdle(ctx, tx, id, &partition)
			return err
		}
		if !run.Status.Active() {
			return nil
		}
		p, err = scanPartition(tx.QueryRow(ctx, `UPDATE run_partitions p SET
				lease_epoch = p.lease_epoch + 1, takeovers = p.takeovers + 1,
				lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
			WHERE p.run_id = $1 AND p.partition = $2 AND p.status = 'running'
				AND p.lease_expires_at <= clock_timestamp()
			RETURNING `+partitionColumns, id, partition))
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // renewed, released or taken over meanwhile
		}
		if err != nil {
			return err
		}
		if p.Takeovers <= maxTakeovers {
			ok = true
			return nil
		}
		reason := fmt.Sprintf("its batch at position %d lost its worker %d times in a row without committing "+
			"(a batch that kills or hangs the worker that runs it?)", p.Cursor, p.Takeovers)
		if _, err := tx.Exec(ctx, `UPDATE run_partitions SET status = 'failed', last_error = $3
			WHERE run_id = $1 AND partition = $2`, id, partition, reason); err != nil {
			return err
		}
		p.Status = PartitionFailed
		return stopRun(ctx, tx, id, StatusFailed, fmt.Sprintf("partition %d: %s", partition, reason))
	})
	if err != nil {
		return Partition{}, false, fmt.Errorf("take over run %d partition %d: %w", id, partition, err)
	}
	return p, ok, nil
}
