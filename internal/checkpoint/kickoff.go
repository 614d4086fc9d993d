package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Kickoff is the record of a handled kick-off task: what one fire of a
// schedule entry did. Redis holds the kick-off task and can lose it with
// its data; the scheduler then enqueues the fire's kick-off again, and the
// record tells its handler that the fire was handled already.
type Kickoff struct {
	// TaskID is the kick-off task's ID: the entry and the fire.
	TaskID string
	Entry  string
	Job    string
	Fire   time.Time
	// How is what the kick-off did: created, found, resumed or skipped.
	How string
	// RunID is the run it started or found, or for a skip the unfinished
	// run it waited for; 0 when that run has been deleted since.
	RunID int64
	// HandledAt is when it was recorded.
	HandledAt time.Time
}

// ClaimKickoff notes that the kick-off k is being handled, before it starts
// anything, and returns when it was first noted: a retry of a kick-off whose
// start went through but whose record did not (Postgres failing for a
// moment, the worker killed between the two) tells by it which runs its
// first attempt may have started (see tasks.KickoffHandler). A claim is no
// record: KickoffOf does not return it, and RecordKickoff completes it.
func (s *Store) ClaimKickoff(ctx context.Context, k Kickoff) (time.Time, error) {
	var at time.Time
	if err := s.pool.QueryRow(ctx, `INSERT INTO kickoffs (task_id, entry, job, fire, how)
		VALUES ($1, $2, $3, $4, '')
		ON CONFLICT (task_id) DO UPDATE SET task_id = excluded.task_id
		RETURNING handled_at`, k.TaskID, k.Entry, k.Job, k.Fire).Scan(&at); err != nil {
		return time.Time{}, fmt.Errorf("claim kickoff %s: %w", k.TaskID, err)
	}
	return at, nil
}

// UnclaimKickoff removes the claim of kick-off taskID, if it is only a
// claim and no run of its job was created since it was taken: a kick-off
// refused for good leaves nothing behind, but a claim that an earlier
// attempt took before it started a run (and failed to record it) stays,
// since it is what stops a run of the task again by hand from starting the
// job's next generation.
func (s *Store) UnclaimKickoff(ctx context.Context, taskID string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM kickoffs k WHERE k.task_id = $1 AND k.how = ''
		AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.job = k.job AND r.created_at >= k.handled_at)`, taskID); err != nil {
		return fmt.Errorf("unclaim kickoff %s: %w", taskID, err)
	}
	return nil
}

// RecordKickoff records a handled kick-off, completing its claim if any. A
// record for the same task ID stays as it is: the first handling is the one
// that counts.
func (s *Store) RecordKickoff(ctx context.Context, k Kickoff) error {
	if _, err := s.pool.Exec(ctx, `INSERT INTO kickoffs (task_id, entry, job, fire, how, run_id)
		VALUES ($1, $2, $3, $4, $5, nullif($6, 0))
		ON CONFLICT (task_id) DO UPDATE SET how = excluded.how, run_id = excluded.run_id, handled_at = now()
		WHERE kickoffs.how = ''`,
		k.TaskID, k.Entry, k.Job, k.Fire, k.How, k.RunID); err != nil {
		return fmt.Errorf("record kickoff %s: %w", k.TaskID, err)
	}
	return nil
}

// KickoffOf returns the record of the kick-off task taskID; the error wraps
// ErrNotFound when it was not handled yet (a claim is not a record).
func (s *Store) KickoffOf(ctx context.Context, taskID string) (Kickoff, error) {
	k := Kickoff{TaskID: taskID}
	err := s.pool.QueryRow(ctx, `SELECT entry, job, fire, how, coalesce(run_id, 0), handled_at
		FROM kickoffs WHERE task_id = $1 AND how <> ''`, taskID).Scan(&k.Entry, &k.Job, &k.Fire, &k.How, &k.RunID, &k.HandledAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Kickoff{}, fmt.Errorf("kickoff %s: %w", taskID, ErrNotFound)
	}
	if err != nil {
		return Kickoff{}, fmt.Errorf("kickoff %s: %w", taskID, err)
	}
	return k, nil
}
