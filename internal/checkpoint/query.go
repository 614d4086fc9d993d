package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The bounds of RunFilter.Limit.
const (
	// DefaultListLimit is the number of runs ListRuns returns when the
	// filter sets no limit.
	DefaultListLimit = 50
	// MaxListLimit is the most runs one ListRuns returns.
	MaxListLimit = 1000
)

// Statuses returns every state a run can be in, in the order of its life.
func Statuses() []Status {
	return []Status{StatusPending, StatusRunning, StatusPaused, StatusCompleted,
		StatusFailed, StatusCancelled, StatusTimedOut}
}

// RunFilter selects the runs ListRuns returns.
type RunFilter struct {
	// Job keeps the runs of that job only; empty keeps every job.
	Job string
	// Status keeps the runs in that state only; empty keeps every state.
	Status Status
	// Limit is the most runs to return, 1 to MaxListLimit; 0 means
	// DefaultListLimit.
	Limit int
}

// ListRuns returns the runs that f selects, newest first.
func (s *Store) ListRuns(ctx context.Context, f RunFilter) ([]Run, error) {
	if f.Limit == 0 {
		f.Limit = DefaultListLimit
	}
	if f.Limit < 1 || f.Limit > MaxListLimit {
		return nil, fmt.Errorf("list runs: limit must be between 1 and %d, got %d", MaxListLimit, f.Limit)
	}
	return s.listRuns(ctx, f)
}

// listRuns is ListRuns without the bounds of its limit.
func (s *Store) listRuns(ctx context.Context, f RunFilter) ([]Run, error) {
	return s.queryRuns(ctx, "list runs", `WHERE ($1 = '' OR r.job = $1) AND ($2 = '' OR r.status = $2)
		ORDER BY r.created_at DESC, r.id DESC LIMIT $3`, f.Job, string(f.Status), f.Limit)
}

// queryRuns returns the runs r that the rest of the query (its WHERE and
// ORDER BY clauses) selects; what names the query in errors.
func (s *Store) queryRuns(ctx context.Context, what, rest string, args ...any) ([]Run, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+runColumns+` FROM runs r `+rest, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	runs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Run, error) { return scanRun(row) })
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return runs, nil
}

// LedgerSummary sums up the batch ledger of a run: what its committed
// batches did, when, and how long they took.
type LedgerSummary struct {
	// Batches is the number of committed batches, over every attempt.
	Batches int64 `json:"batches"`
	// Records is the number of data rows the batches wrote.
	Records int64 `json:"records"`
	// Items, Succeeded and Failed sum the batches' items (the records
	// received, loaded and rejected, for a run of pages). A redrive pass
	// counts its items again, so they may exceed the run's total.
	Items     int64 `json:"items"`
	Succeeded int64 `json:"succeeded"`
	Failed    int64 `json:"failed"`
	// FirstCommitAt and LastCommitAt are when the first and the last batch
	// committed; nil when none has.
	FirstCommitAt *time.Time `json:"first_commit_at"`
	LastCommitAt  *time.Time `json:"last_commit_at"`
	// MeanBatchMS and MaxBatchMS are the mean and the longest time a batch
	// took, from its start to its commit.
	MeanBatchMS float64 `json:"mean_batch_ms"`
	MaxBatchMS  int64   `json:"max_batch_ms"`
	// Attempts breaks the batches down by the attempt that committed them,
	// in order; an attempt that committed none is not listed.
	Attempts []AttemptBatches `json:"attempts"`
}

// AttemptBatches is what the batches of one attempt of a run did.
type AttemptBatches struct {
	Attempt int   `json:"attempt"`
	Batches int64 `json:"batches"`
	Records int64 `json:"records"`
	Items   int64 `json:"items"`
}

// LedgerSummary returns the summary of run id's batch ledger, or an error
// wrapping ErrNotFound. Its totals and its attempts are read from one
// snapshot, so they agree while batches go on committing.
func (s *Store) LedgerSummary(ctx context.Context, id int64) (LedgerSummary, error) {
	var sum LedgerSummary
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) error {
			// The join to runs tells an unknown run (no row) from a run
			// without batches (a row of zeros).
			err := tx.QueryRow(ctx, `SELECT count(l.run_id), coalesce(sum(l.records), 0),
					coalesce(sum(l.items), 0), coalesce(sum(l.succeeded), 0), coalesce(sum(l.failed), 0),
					min(l.committed_at), max(l.committed_at),
					coalesce(avg(l.duration_ms), 0)::float8, coalesce(max(l.duration_ms), 0)
				FROM runs r LEFT JOIN batch_ledger l ON l.run_id = r.id
				WHERE r.id = $1 GROUP BY r.id`, id).Scan(&sum.Batches, &sum.Records,
				&sum.Items, &sum.Succeeded, &sum.Failed, &sum.FirstCommitAt, &sum.LastCommitAt,
				&sum.MeanBatchMS, &sum.MaxBatchMS)
			if errors.Is(err, pgx.ErrNoRows) {
				return notFound(id)
			}
			if err != nil {
				return fmt.Errorf("sum up the ledger of run %d: %w", id, err)
			}
			rows, err := tx.Query(ctx, `SELECT attempt, count(*), sum(records), sum(items)
				FROM batch_ledger WHERE run_id = $1 GROUP BY attempt ORDER BY attempt`, id)
			if err != nil {
				return fmt.Errorf("sum up the ledger of run %d by attempt: %w", id, err)
			}
			sum.Attempts, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (AttemptBatches, error) {
				var a AttemptBatches
				err := row.Scan(&a.Attempt, &a.Batches, &a.Records, &a.Items)
				return a, err
			})
			if err != nil {
				return fmt.Errorf("sum up the ledger of run %d by attempt: %w", id, err)
			}
			return nil
		})
	if err != nil {
		return LedgerSummary{}, err
	}
	if sum.Attempts == nil {
		sum.Attempts = []AttemptBatches{} // [] rather than null in JSON
	}
	return sum, nil
}
