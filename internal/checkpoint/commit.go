package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Batch is one batch of a partition, ready to commit: the checkpoint it starts
// from (the compare-and-set), the range it covered and what came of it.
type Batch struct {
	RunID     int64
	Partition int
	// Attempt and Seq are the checkpoint the batch was computed from; the
	// commit succeeds only if the partition is still there.
	Attempt int
	Seq     int64
	// Epoch and Owner are the lease the batch ran under (see Acquire); the
	// commit succeeds only if it is still held, and extends it to LeaseTTL
	// from now when less than half of LeaseTTL is left (0 leaves its
	// expiry as it is).
	Epoch    int64
	Owner    string
	LeaseTTL time.Duration
	// From and To are the positions the batch covered: [From, To).
	From, To int64
	// Redrive is the partition's redrive pass: in a pass (above 0) the
	// outcomes are those of the range's failed items only, and they replace
	// the old ones.
	Redrive int
	// Handover passes the chain to the task of Seq+1: the partition's
	// TaskSeq advances with its Seq, so that a sweeper looks for that task,
	// and the lease is given up for that task to take.
	Handover bool
	// Outcomes are the outcomes of the batch's items: one for each
	// position of [From, To), or in a redrive pass for each failed one.
	Outcomes []Outcome
	// Counts are the counters of a batch of a run of pages, which has no
	// item outcomes: the records it received, loaded and rejected.
	Counts *Counts
	// Rejected are the records of a batch of a run of pages that it left
	// out, and why: at most Counts.Failed of them, kept with the run (see
	// Store.FailuresOf) under the batch's position, From.
	Rejected []Rejected
	// Last says that the batch's range ends the partition, whatever its
	// end was: the last page of an open run of pages.
	Last bool
	// PageToken is the partition's pagination state after the batch: the
	// next cursor token of a cursor-style source.
	PageToken string
	// SourceTotal is the total the source reported with the batch, if any.
	SourceTotal *int64
	// Warnings are what the batch noticed, such as drift, recorded on the run.
	Warnings []string
	// Records is the number of data rows the batch wrote.
	Records int
	// TaskID and Worker say who committed the batch, for the ledger.
	TaskID, Worker string
	// QueueData, when set, queues the batch's data statements (after
	// those the WriteFunc ran, if any) into q: they go to the server in one
	// round trip with the checkpoint's statement, ahead of it, and their
	// results reach the callbacks they set (QueuedQuery.Exec and the
	// like), whose error fails the commit as a write's does. Like a
	// WriteFunc they run before the compare-and-set, for a batch that
	// turns out stale too.
	QueueData func(q *pgx.Batch)
	// StartedAt is when the batch began. The ledger's duration_ms runs
	// from it to the ledger row's committed_at, stamped by the checkpoint's
	// statement (the fetch, the data write and the checkpoint), on the
	// database's clock.
	StartedAt time.Time
}

// Outcome is what became of one item of a batch.
type Outcome struct {
	Pos int64
	// OK is true when the item succeeded.
	OK bool
	// Attempts is how many times the item was tried in this batch.
	Attempts int
	// Err is the reason the item failed.
	Err string
}

// Rejected is a record of a page left out: its place in the page and why.
type Rejected struct {
	Item  int
	Error string
}

// Counts are the counters of a batch without item outcomes.
type Counts struct {
	// Processed, Succeeded and Failed count records: received, loaded and
	// rejected.
	Processed, Succeeded, Failed int
}

// maxWarnings bounds the warnings kept on a run.
const maxWarnings = 20

// Committed is the state after a commit.
type Committed struct {
	// Partition is the partition after its advance.
	Partition Partition
	// RunCompleted is true when this commit completed the run.
	RunCompleted bool
	// RunFailed is true when this commit took the run's failures past its
	// limit, which failed the run; LastError says so.
	RunFailed bool
	// RunTimedOut is true when the attempt had used up the run's time
	// budget by this commit, which stopped the run timed_out, resumable
	// from the checkpoint it just advanced; LastError says so.
	RunTimedOut bool
	// RunPaused is true when the run was paused while the batch ran: the
	// batch committed, and its partition is paused at the boundary it just
	// reached instead of going on.
	RunPaused bool
	LastError string
}

// WriteFunc writes a batch's data within the commit's transaction. It runs
// before the checkpoint's compare-and-set, so it also runs for a batch that
// turns out stale, whose transaction then rolls back: it must do nothing
// outside tx.
type WriteFunc func(ctx context.Context, tx pgx.Tx) error

// writeError is the error of a WriteFunc.
type writeError struct{ err error }

func (e writeError) Error() string { return "write batch data: " + e.err.Error() }
func (e writeError) Unwrap() error { return e.err }

// Commit applies a batch in one transaction: the job's data through write,
// then the run's counters, the compare-and-set advance of the partition from
// (Attempt, Seq, From) under the lease (Epoch, Owner) to (Seq+1, To) and the
// ledger row in one statement, with the item outcomes in the same round trip; when the partition is done and every
// other partition too, the run completes. If the compare-and-set matches no
// row (another delivery committed the batch, the run stopped, a newer attempt
// or epoch took over) the whole transaction rolls back and the error wraps
// ErrStale. Any other error also rolls everything back.
func (s *Store) Commit(ctx context.Context, b Batch, write WriteFunc) (Committed, error) {
	if b.Owner == "" {
		return Committed{}, fmt.Errorf("commit run %d partition %d seq %d: a batch commits under a lease; owner is required",
			b.RunID, b.Partition, b.Seq)
	}
	if b.To < b.From {
		return Committed{}, fmt.Errorf("commit run %d partition %d seq %d: range [%d, %d) is reversed",
			b.RunID, b.Partition, b.Seq, b.From, b.To)
	}
	if b.Counts != nil {
		if len(b.Outcomes) > 0 || b.Counts.Processed < 0 || b.Counts.Succeeded < 0 || b.Counts.Failed < 0 {
			return Committed{}, fmt.Errorf("commit run %d partition %d seq %d: counts %+v with %d outcomes: a batch has counts or outcomes",
				b.RunID, b.Partition, b.Seq, *b.Counts, len(b.Outcomes))
		}
		if len(b.Rejected) > b.Counts.Failed {
			return Committed{}, fmt.Errorf("commit run %d partition %d seq %d: %d rejected records of %d failed",
				b.RunID, b.Partition, b.Seq, len(b.Rejected), b.Counts.Failed)
		}
		for _, r := range b.Rejected {
			if r.Item < 0 {
				return Committed{}, fmt.Errorf("commit run %d partition %d seq %d: rejected record %d: a place in a page is 0 or more",
					b.RunID, b.Partition, b.Seq, r.Item)
			}
		}
	} else if len(b.Rejected) > 0 {
		return Committed{}, fmt.Errorf("commit run %d partition %d seq %d: rejected records without counts: a run of items has outcomes",
			b.RunID, b.Partition, b.Seq)
	} else if n := int64(len(b.Outcomes)); n > b.To-b.From || (b.Redrive == 0 && n != b.To-b.From) {
		return Committed{}, fmt.Errorf("commit run %d partition %d seq %d: %d outcomes for the %d items of [%d, %d)",
			b.RunID, b.Partition, b.Seq, len(b.Outcomes), b.To-b.From, b.From, b.To)
	}
	seen := make(map[int64]bool, len(b.Outcomes))
	var ok, failed int
	pos := make([]int64, len(b.Outcomes))
	status := make([]string, len(b.Outcomes))
	attempts := make([]int32, len(b.Outcomes))
	errs := make([]*string, len(b.Outcomes))
	for i, o := range b.Outcomes {
		if o.Pos < b.From || o.Pos >= b.To {
			return Committed{}, fmt.Errorf("commit run %d partition %d seq %d: item %d is outside [%d, %d)",
				b.RunID, b.Partition, b.Seq, o.Pos, b.From, b.To)
		}
		if seen[o.Pos] {
			return Committed{}, fmt.Errorf("commit run %d partition %d seq %d: item %d has two outcomes",
				b.RunID, b.Partition, b.Seq, o.Pos)
		}
		seen[o.Pos] = true
		pos[i], attempts[i] = o.Pos, int32(o.Attempts)
		if o.OK {
			ok++
			status[i] = string(ItemSucceeded)
		} else {
			failed++
			status[i] = string(ItemFailed)
			e := o.Err
			errs[i] = &e
		}
	}

	if b.Warnings == nil {
		b.Warnings = []string{}
	}
	var res Committed
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The data first (write's statements, then the queued ones ahead
		// of the checkpoint's), before any checkpoint row is locked: the
		// run's row is locked by every commit of the run, and were it
		// locked before the data were written, the partitions of a run
		// would write their data one after another instead of at once. A
		// stale batch writes in vain and rolls back below.
		if write != nil {
			if err := write(ctx, tx); err != nil {
				return writeError{err}
			}
		}

		// A redrive's items were processed and counted failed before: an
		// item that succeeds now moves from failed to succeeded, and one
		// that fails again is no new failure (the threshold is there to
		// catch a broken source, not the quarantine it already holds).
		processed, succeeded, failedDelta, attemptFailed := len(b.Outcomes), ok, failed, failed
		if b.Redrive > 0 {
			processed, failedDelta, attemptFailed = 0, -ok, 0
		}
		// The ledger row says what the batch did, in a redrive pass too.
		items, itemsOK, itemsFailed := len(b.Outcomes), ok, failed
		if c := b.Counts; c != nil {
			processed, succeeded, failedDelta, attemptFailed = c.Processed, c.Succeeded, c.Failed, c.Failed
			items, itemsOK, itemsFailed = c.Processed, c.Succeeded, c.Failed
		}

		// The checkpoint is one statement, and the queued data statements
		// and the item outcomes go with it in one round trip (a pipeline):
		// what checkpointing costs a batch is then mostly the execution of
		// its writes, not waits for the server or the overhead of a
		// statement each. Within the statement,
		// p reads r, so the run's row is locked before the partition's (the
		// order of every transaction that touches both). The run's
		// counters: a run that is no longer active matches nothing.
		// The partition's compare-and-set: the lease ends with a commit
		// that hands the chain over or ends the partition, and any other
		// commit extends it once less than half of it is left (the task's
		// renewal keeps more than that, and a row whose indexed lease
		// expiry stays the same is updated in place, without new index
		// entries); a run paused while the batch ran (see Pause)
		// pauses the partition at the boundary it reached; the last batch
		// ends the partition where it ends. The ledger row, only for an
		// advance. No row back means one of the two did not match.
		var q pgx.Batch
		if b.QueueData != nil {
			b.QueueData(&q)
			for _, qq := range q.QueuedQueries {
				qq.Fn = dataResult(qq.Fn)
			}
		}
		var (
			p   Partition
			run runAfter
		)
		q.Queue(`WITH r AS (
				UPDATE runs SET
					processed = processed + $2, succeeded = succeeded + $3, failed = failed + $4,
					records = records + $5::int, attempt_failed = attempt_failed + $6,
					source_total = coalesce($7, source_total),
					warnings = CASE WHEN cardinality(warnings) >= $9 THEN warnings
						ELSE (warnings || $8::text[] || CASE
							WHEN $7::bigint IS NOT NULL AND total > 0 AND $7 <> coalesce(source_total, total)
							THEN ARRAY[format('the source''s total changed from %s to %s before page %s: offset or page numbers shift, so records may be skipped or repeated',
								coalesce(source_total, total), $7, $10::bigint)]
							ELSE '{}'::text[] END)[1:$9::int] END,
					status = CASE WHEN status = 'pending' THEN 'running' ELSE status END,
					started_at = coalesce(started_at, now()), updated_at = now()
				WHERE id = $1 AND status IN ('pending', 'running', 'paused')
				RETURNING attempt_failed, max_failures, processed, total, budget_ms,
					coalesce(clock_timestamp() - attempt_started_at >= budget_ms * interval '1 millisecond', false) AS over_budget, status),
			p AS (
				UPDATE run_partitions p SET
					cursor = $14, seq = p.seq + 1, page_token = nullif($21, ''),
					end_pos = CASE WHEN $20 THEN $14 ELSE p.end_pos END,
					task_seq = CASE WHEN $15 THEN p.seq + 1 ELSE p.task_seq END, takeovers = 0,
					status = CASE WHEN $14 = p.end_pos OR $20 THEN 'completed' WHEN r.status = 'paused' THEN 'paused' ELSE p.status END,
					lease_owner = CASE WHEN $15 OR $14 = p.end_pos OR $20 OR r.status = 'paused' THEN NULL ELSE p.lease_owner END,
					lease_expires_at = CASE WHEN $15 OR $14 = p.end_pos OR $20 OR r.status = 'paused' THEN NULL
						WHEN $18 <= 0 OR p.lease_expires_at > clock_timestamp() + $18 * interval '0.5 millisecond'
							THEN p.lease_expires_at
						ELSE clock_timestamp() + $18 * interval '1 millisecond' END,
					last_progress_at = now(), updated_at = now()
				FROM r
				WHERE p.run_id = $1 AND p.partition = $11 AND p.attempt = $12 AND p.seq = $13
					AND p.cursor = $10 AND p.status = 'running' AND $14 <= p.end_pos
					AND p.lease_epoch = $16 AND p.lease_owner = $17 AND p.redrive = $19
				RETURNING p.*),
			l AS (
				INSERT INTO batch_ledger (run_id, partition, seq, attempt, redrive,
					cursor_from, cursor_to, items, succeeded, failed, records, task_id, worker,
					started_at, duration_ms)
				SELECT $1, $11, $13, $12, $19, $10, $14, $22, $23, $24, $5, $25, $26, $27,
					greatest(0, round(extract(epoch FROM clock_timestamp() - $27::timestamptz) * 1000)) FROM p)
			SELECT `+partitionColumns+`, r.attempt_failed, r.max_failures, r.processed, r.total, r.budget_ms, r.over_budget, r.status
			FROM p, r`,
			b.RunID, processed, succeeded, failedDelta, b.Records, attemptFailed, b.SourceTotal, b.Warnings, maxWarnings,
			b.From, b.Partition, b.Attempt, b.Seq, b.To, b.Handover, b.Epoch, b.Owner, b.LeaseTTL.Milliseconds(), b.Redrive,
			b.Last, b.PageToken, items, itemsOK, itemsFailed, b.TaskID, b.Worker, b.StartedAt,
		).QueryRow(func(row pgx.Row) error {
			err := row.Scan(append(partitionFields(&p), &run.attemptFailed, &run.maxFailures, &run.processed,
				&run.total, &run.budgetMS, &run.overBudget, &run.status)...)
			if errors.Is(err, pgx.ErrNoRows) {
				return errNotAdvanced
			}
			if err != nil {
				return fmt.Errorf("advance checkpoint: %w", err)
			}
			return nil
		})
		if len(b.Outcomes) > 0 {
			q.Queue(`UPDATE run_items i SET status = u.status, attempts = i.attempts + u.attempts,
					error = u.error, updated_at = now()
				FROM unnest($2::bigint[], $3::text[], $4::int[], $5::text[]) AS u(pos, status, attempts, error)
				WHERE i.run_id = $1 AND i.pos = u.pos AND (i.status = 'failed' OR NOT $6)`,
				b.RunID, pos, status, attempts, errs, b.Redrive > 0,
			).Exec(func(tag pgconn.CommandTag) error {
				if n := tag.RowsAffected(); n != int64(len(b.Outcomes)) {
					what := "exist"
					if b.Redrive > 0 {
						what = "exist and had failed"
					}
					return fmt.Errorf("record item outcomes: %d of %d items %s", n, len(b.Outcomes), what)
				}
				return nil
			})
		}
		if len(b.Rejected) > 0 {
			items, errs := make([]int32, len(b.Rejected)), make([]string, len(b.Rejected))
			for i, r := range b.Rejected {
				items[i], errs[i] = int32(r.Item), r.Error
			}
			q.Queue(`INSERT INTO run_rejects (run_id, pos, item, error)
				SELECT $1, $2, u.item, u.error FROM unnest($3::int[], $4::text[]) AS u(item, error)
				ON CONFLICT DO NOTHING`, b.RunID, b.From, items, errs)
		}
		if err := tx.SendBatch(ctx, &q).Close(); err != nil {
			if errors.Is(err, errNotAdvanced) || errors.As(err, new(writeError)) {
				return err
			}
			return fmt.Errorf("checkpoint statements: %w", err)
		}
		res.Partition = p

		if p.Status == PartitionCompleted {
			tag, err := tx.Exec(ctx, `UPDATE runs SET status = 'completed', finished_at = now(), updated_at = now()
				WHERE id = $1 AND status IN ('pending', 'running', 'paused')
					AND NOT EXISTS (SELECT 1 FROM run_partitions WHERE run_id = $1 AND status <> 'completed')`,
				b.RunID)
			if err != nil {
				return fmt.Errorf("complete run: %w", err)
			}
			res.RunCompleted = tag.RowsAffected() == 1
			if res.RunCompleted && b.Counts != nil {
				if err := checkTotals(ctx, tx, b.RunID); err != nil {
					return err
				}
			}
		}
		if !res.RunCompleted && run.maxFailures != nil && run.attemptFailed > *run.maxFailures {
			// The source is broken rather than a few items bad: stop the
			// run instead of quarantining everything. The batch itself
			// commits, so its outcomes show what went wrong. A commit that
			// completed the run has nothing left to stop.
			res.RunFailed = true
			res.LastError = fmt.Sprintf("failure threshold exceeded: %d items failed in attempt %d, more than the %d allowed; last error: %s",
				run.attemptFailed, b.Attempt, *run.maxFailures, lastError(b.Outcomes))
			if err := stopRun(ctx, tx, b.RunID, StatusFailed, res.LastError); err != nil {
				return err
			}
			if res.Partition.Status == PartitionRunning || res.Partition.Status == PartitionPaused {
				res.Partition.Status = PartitionFailed
			}
		}
		paused := run.status == StatusPaused
		if !res.RunCompleted && !res.RunFailed && !paused && run.overBudget {
			// The checkpoint just advanced to a page boundary: stop here.
			res.RunTimedOut = true
			res.LastError = budgetUsedUp(b.RunID, b.Attempt, *run.budgetMS, run.processed, run.total)
			if err := stopRun(ctx, tx, b.RunID, StatusTimedOut, res.LastError); err != nil {
				return err
			}
			if res.Partition.Status == PartitionRunning {
				res.Partition.Status = PartitionTimedOut
			}
		}
		res.RunPaused = paused && res.Partition.Status == PartitionPaused
		return nil
	})
	switch {
	case errors.Is(err, errNotAdvanced):
		// Which of the checkpoint's conditions did not match, read after
		// the rollback; a checkpoint that did not advance is stale anyway.
		if stale := s.staleness(ctx, b); stale != nil {
			err = stale
		} else {
			err = fmt.Errorf("%w: %w", err, ErrStale)
		}
	case errors.As(err, new(writeError)):
		// The write failed before the compare-and-set could tell that the
		// batch is stale; if it is, that is what the caller must hear.
		if stale := s.staleness(ctx, b); stale != nil {
			err = fmt.Errorf("%w; the batch is stale: %w", err, stale)
		}
	}
	if err != nil {
		return Committed{}, fmt.Errorf("commit run %d partition %d seq %d: %w", b.RunID, b.Partition, b.Seq, err)
	}
	return res, nil
}

// staleness returns why b is stale, wrapping ErrStale: its run is no
// longer active, or its partition moved on from the checkpoint and lease b
// was computed under (what Commit's compare-and-set checks). It returns nil
// while b is current, or when that cannot be told (the query fails, say on
// a cancelled ctx).
func (s *Store) staleness(ctx context.Context, b Batch) error {
	var active, current bool
	err := s.pool.QueryRow(ctx, `SELECT r.status IN ('pending', 'running', 'paused'),
			EXISTS (SELECT 1 FROM run_partitions p WHERE p.run_id = r.id
				AND p.partition = $2 AND p.attempt = $3 AND p.seq = $4 AND p.cursor = $5 AND p.status = 'running'
				AND p.lease_epoch = $6 AND p.lease_owner = $7 AND p.redrive = $8)
		FROM runs r WHERE r.id = $1`,
		b.RunID, b.Partition, b.Attempt, b.Seq, b.From, b.Epoch, b.Owner, b.Redrive).Scan(&active, &current)
	switch {
	case errors.Is(err, pgx.ErrNoRows) || (err == nil && !active):
		return fmt.Errorf("run %d is not active: %w", b.RunID, ErrStale)
	case err == nil && !current:
		return fmt.Errorf("partition %d at attempt %d epoch %d seq %d cursor %d owned by %s: %w",
			b.Partition, b.Attempt, b.Epoch, b.Seq, b.From, b.Owner, ErrStale)
	}
	return nil
}

// runAfter is a run's row as a batch's commit left it.
type runAfter struct {
	attemptFailed, processed, total int64
	maxFailures, budgetMS           *int64
	overBudget                      bool
	status                          Status
}

// errNotAdvanced is the checkpoint statement's answer of no row: the run
// is not active or the partition moved on (see staleness).
var errNotAdvanced = errors.New("the checkpoint did not advance")

// dataResult wraps fn, the result handler of a queued data statement (nil:
// none), so that its error or the statement's is a writeError.
func dataResult(fn func(br pgx.BatchResults) error) func(br pgx.BatchResults) error {
	return func(br pgx.BatchResults) error {
		var err error
		if fn != nil {
			err = fn(br)
		} else {
			_, err = br.Exec()
		}
		if err != nil {
			return writeError{err}
		}
		return nil
	}
}

// lastError returns the error of the last failed outcome.
func lastError(outcomes []Outcome) string {
	for i := len(outcomes) - 1; i >= 0; i-- {
		if !outcomes[i].OK {
			return outcomes[i].Err
		}
	}
	return "(none in this batch)"
}

// budgetUsedUp is the last error of a run whose attempt used up its budget.
func budgetUsedUp(id int64, attempt int, budgetMS, processed, total int64) string {
	of := ""
	if total > 0 {
		of = fmt.Sprintf(" of %d", total)
	}
	return fmt.Sprintf("time budget of %s used up in attempt %d with %d%s records so far; the checkpoint is kept: "+
		"resume with `enqueue retry %d` (or POST /api/runs/%d/retry)",
		time.Duration(budgetMS)*time.Millisecond, attempt, processed, of, id, id)
}

// checkTotals records on a run of pages that has just completed whether
// what it received matches the total it was started with: a source that
// changed under an offset or page walk makes records repeat or go missing.
func checkTotals(ctx context.Context, tx pgx.Tx, id int64) error {
	_, err := tx.Exec(ctx, `UPDATE runs SET warnings = (warnings || array_remove(ARRAY[
			CASE WHEN total > 0 AND processed <> total THEN format(
				'received %s records, but the source had %s when the run started: it changed during the run (records may be missing or repeated)',
				processed, total) END,
			CASE WHEN total > 0 AND source_total IS NOT NULL AND source_total <> total THEN format(
				'the source reports %s records at the end, %s when the run started: records added or removed during the run were not all pulled; start the job again to pull them',
				source_total, total) END], NULL))[1:$2]
		WHERE id = $1 AND unit = 'pages'`, id, maxWarnings+2)
	if err != nil {
		return fmt.Errorf("check totals of run %d: %w", id, err)
	}
	return nil
}
