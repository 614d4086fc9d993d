package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
)

// runColumns selects a Run from runs r; scanRun reads it.
const runColumns = `r.id, r.job, r.run_key, r.params, r.status, r.unit, r.generation, r.batch_size,
	(SELECT count(*) FROM run_partitions x WHERE x.run_id = r.id),
	r.total, r.processed, r.succeeded, r.failed, r.records, r.attempt,
	r.max_failures, r.attempt_failed, r.redrives,
	(SELECT count(*) FROM batch_ledger l WHERE l.run_id = r.id),
	r.budget_ms, r.attempt_started_at,
	r.elapsed_ms + CASE WHEN r.status = 'running' AND r.attempt_started_at IS NOT NULL
		THEN greatest((extract(epoch FROM clock_timestamp() - r.attempt_started_at) * 1000)::bigint, 0) ELSE 0 END,
	r.source_total, r.warnings, r.key_prefix,
	coalesce(r.last_error, ''), r.created_at, r.started_at, r.finished_at, r.updated_at`

func scanRun(row pgx.Row) (Run, error) {
	var r Run
	err := row.Scan(runFields(&r)...)
	return r, err
}

// runFields returns the scan destinations of runColumns.
func runFields(r *Run) []any {
	return []any{&r.ID, &r.Job, &r.RunKey, &r.Params, &r.Status, &r.Unit, &r.Generation, &r.BatchSize,
		&r.Partitions, &r.Total, &r.Processed, &r.Succeeded, &r.Failed, &r.Records, &r.Attempt,
		&r.MaxFailures, &r.AttemptFailed, &r.Redrives, &r.Batches, &r.BudgetMS, &r.AttemptStartedAt,
		&r.DurationMS, &r.SourceTotal, &r.Warnings, &r.KeyPrefix,
		&r.LastError, &r.CreatedAt, &r.StartedAt, &r.FinishedAt, &r.UpdatedAt}
}

// partitionColumns selects a Partition from run_partitions p; scanPartition reads it.
const partitionColumns = `p.run_id, p.partition, p.status, p.attempt, p.start_pos, p.end_pos,
	p.cursor, p.seq, p.task_seq, p.redrive, p.lease_epoch, p.takeovers, coalesce(p.page_token, ''), coalesce(p.lease_owner, ''),
	coalesce(p.lease_expires_at > clock_timestamp(), false), p.lease_expires_at,
	coalesce(p.last_error, ''), p.last_progress_at`

func scanPartition(row pgx.Row) (Partition, error) {
	var p Partition
	err := row.Scan(partitionFields(&p)...)
	return p, err
}

// partitionFields returns the scan destinations of partitionColumns.
func partitionFields(p *Partition) []any {
	return []any{&p.RunID, &p.Index, &p.Status, &p.Attempt, &p.StartPos, &p.EndPos,
		&p.Cursor, &p.Seq, &p.TaskSeq, &p.Redrive, &p.Epoch, &p.Takeovers, &p.PageToken, &p.LeaseOwner, &p.Leased, &p.LeaseExpiresAt,
		&p.LastError, &p.LastProgressAt}
}

// NewRun describes a run to create.
type NewRun struct {
	// Job names the kind of run, such as "daily-sync".
	Job string
	// RunKey tells runs of one job apart, such as the trading date; there is
	// at most one run per (Job, RunKey, Generation).
	RunKey string
	// Generation is the run's generation of (Job, RunKey); 0 means 1.
	Generation int
	// Supersedes is the run this one takes the place of (the previous
	// generation, restarted from zero or pulled again), 0 for none. It is
	// locked while the run is created and must have ended, so that a retry,
	// resume or redrive of it cannot go on beside the new run.
	Supersedes int64
	// Params are the job's parameters, stored as JSON.
	Params any
	// BatchSize is the number of items per batch (the page size of a run
	// of pages).
	BatchSize int
	// Partitions is the number of chains; it is lowered to the number of
	// positions when there are fewer.
	Partitions int
	// Keys are the run's items in order, frozen with the run (a run of
	// items).
	Keys []string
	// Unit is UnitItems (the default), whose positions are Keys, or
	// UnitPages, whose positions are Pages pages and which has no items.
	Unit Unit
	// Pages is the number of pages of a run of pages, frozen with it;
	// with Open it is unknown (a cursor-style source, or one that gives no
	// total), and the run has one partition that the batch of the last
	// page ends.
	Pages int64
	Open  bool
	// Total is the number of records of a run of pages, when known.
	Total int64
	// Budget is the time budget of one attempt; 0 means none.
	Budget time.Duration
	// MaxFailedItems and MaxFailedPercent (of the items) set how many items
	// one attempt of the run may fail before the run fails early, frozen
	// with the run; 0 means no limit, and with both the lower one applies.
	MaxFailedItems   int64
	MaxFailedPercent float64
	// FailureLimit, when set, is the limit itself, as an earlier run froze
	// it (a restart keeps its run's, 0 included: no failure allowed), in
	// place of MaxFailedItems and MaxFailedPercent.
	FailureLimit *int64
	// KeyPrefix goes before the key of each record the run lands (see
	// Run.KeyPrefix).
	KeyPrefix string
	// Alone refuses the run, with an *OverlapError, while a run of Job for
	// another run key is unfinished (pending, running or paused): a
	// schedule entry that allows no overlap. The runs of a job are created
	// one at a time, so that the check and the creation are one step: two
	// fires at once cannot both start.
	Alone bool
}

// OverlapError is the error of a run that was to run alone while another
// run of its job was unfinished; it wraps ErrOverlap.
type OverlapError struct {
	// Run is the unfinished run.
	Run Run
}

// Error names the unfinished run.
func (e *OverlapError) Error() string {
	return fmt.Sprintf("run %d of job %s for %s is %s: %v", e.Run.ID, e.Run.Job, e.Run.RunKey, e.Run.Status, ErrOverlap)
}

// Unwrap returns ErrOverlap.
func (e *OverlapError) Unwrap() error { return ErrOverlap }

// openEnd is the end position of an open partition: past any real page.
const openEnd = int64(1) << 62

// maxFailures returns the failure limit of a run of total items, or nil.
func (spec NewRun) maxFailures(total int64) *int64 {
	if spec.FailureLimit != nil {
		n := *spec.FailureLimit
		return &n
	}
	var limit *int64
	if spec.MaxFailedItems > 0 {
		limit = &spec.MaxFailedItems
	}
	if spec.MaxFailedPercent > 0 {
		// Failing more than floor(p% of total) is failing more than p%;
		// in basis points, so that 4.6% of 1500 is 69, not 68.99.
		bp := int64(math.Round(spec.MaxFailedPercent * 100))
		n := bp * total / 10_000
		if limit == nil || n < *limit {
			limit = &n
		}
	}
	return limit
}

// check returns what is wrong with spec, or nil; it fills in defaults.
func (spec *NewRun) check() error {
	if spec.Unit == "" {
		spec.Unit = UnitItems
	}
	if spec.Generation == 0 {
		spec.Generation = 1
	}
	switch {
	case spec.Job == "" || spec.RunKey == "":
		return errors.New("job and run key are required")
	case spec.Generation < 1:
		return fmt.Errorf("generation must be at least 1, got %d", spec.Generation)
	case spec.BatchSize < 1:
		return fmt.Errorf("batch size must be at least 1, got %d", spec.BatchSize)
	case spec.Partitions < 1:
		return fmt.Errorf("partitions must be at least 1, got %d", spec.Partitions)
	case spec.FailureLimit != nil && *spec.FailureLimit < 0:
		return fmt.Errorf("failure limit must be 0 or more items, got %d", *spec.FailureLimit)
	case spec.MaxFailedItems < 0 || spec.MaxFailedPercent < 0 || spec.MaxFailedPercent > 100:
		return fmt.Errorf("failure limits must be 0 or more items and 0 to 100 percent, got %d and %g",
			spec.MaxFailedItems, spec.MaxFailedPercent)
	case spec.Budget < 0:
		return fmt.Errorf("time budget must be 0 (none) or more, got %s", spec.Budget)
	}
	switch spec.Unit {
	case UnitItems:
		if len(spec.Keys) == 0 {
			return errors.New("a run needs at least one item")
		}
		if spec.Pages != 0 || spec.Open || spec.Total != 0 {
			return errors.New("pages, open and total apply to a run of pages only")
		}
	case UnitPages:
		switch {
		case len(spec.Keys) != 0:
			return errors.New("a run of pages has no items")
		case spec.Open && spec.Pages != 0:
			return errors.New("an open run of pages has no number of pages")
		case !spec.Open && (spec.Pages < 1 || spec.Pages >= openEnd):
			return fmt.Errorf("a run of pages needs 1 or more pages, got %d", spec.Pages)
		case spec.Total < 0:
			return fmt.Errorf("total must be 0 or more, got %d", spec.Total)
		}
	default:
		return fmt.Errorf("unit must be %s or %s, got %q", UnitItems, UnitPages, spec.Unit)
	}
	return nil
}

// CreateRun creates the run that spec describes, with its items and
// partitions, in one transaction. When a run with the same job, run key and
// generation exists it returns that run instead, unchanged, with created
// false.
func (s *Store) CreateRun(ctx context.Context, spec NewRun) (run Run, created bool, err error) {
	if err := spec.check(); err != nil {
		return Run{}, false, fmt.Errorf("create run: %w", err)
	}
	params, err := json.Marshal(spec.Params)
	if err != nil {
		return Run{}, false, fmt.Errorf("create run: encode params: %w", err)
	}
	total, positions := int64(len(spec.Keys)), int64(len(spec.Keys))
	var limit *int64
	if spec.Unit == UnitPages {
		total, positions = spec.Total, spec.Pages
	} else {
		limit = spec.maxFailures(total)
	}
	var budget *int64
	if spec.Budget > 0 {
		ms := max(spec.Budget.Milliseconds(), 1)
		budget = &ms
	}

	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The job's runs are created one at a time (until this commits),
		// so that an Alone run's check sees every run created before it.
		if err := LockRunCreation(ctx, tx, spec.Job); err != nil {
			return err
		}
		if spec.Alone {
			// A run of the same generation that exists is found below,
			// whatever else is unfinished.
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM runs WHERE job = $1 AND run_key = $2 AND generation = $3)`,
				spec.Job, spec.RunKey, spec.Generation).Scan(&exists); err != nil {
				return fmt.Errorf("look for run %s of job %s: %w", spec.RunKey, spec.Job, err)
			}
			if !exists {
				if err := checkAlone(ctx, tx, spec.Job, spec.RunKey); err != nil {
					return err
				}
			}
		}
		if spec.Supersedes != 0 {
			old, err := lockRun(ctx, tx, spec.Supersedes)
			switch {
			case errors.Is(err, ErrNotFound):
				// Pruned since it was read: there is nothing left for the
				// new run to take the place of, nor anything to guard.
			case err != nil:
				return err
			case !old.Status.Ended():
				return fmt.Errorf("run %d is %s again; a new run cannot take its place: %w", old.ID, old.Status, ErrState)
			}
		}
		var id int64
		err := tx.QueryRow(ctx, `
			INSERT INTO runs (job, run_key, generation, params, unit, batch_size, total, max_failures, budget_ms, key_prefix)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			ON CONFLICT (job, run_key, generation) DO NOTHING
			RETURNING id`,
			spec.Job, spec.RunKey, spec.Generation, params, spec.Unit, spec.BatchSize, total, limit, budget, spec.KeyPrefix).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // exists; read it below, outside this transaction
		}
		if err != nil {
			return fmt.Errorf("insert run: %w", err)
		}
		created = true

		if spec.Unit == UnitItems {
			if _, err := tx.Exec(ctx, `
				INSERT INTO run_items (run_id, pos, key)
				SELECT $1, u.ord - 1, u.key FROM unnest($2::text[]) WITH ORDINALITY AS u(key, ord)`,
				id, spec.Keys); err != nil {
				return fmt.Errorf("insert items of run %d: %w", id, err)
			}
		}

		var starts, ends []int64
		if spec.Open {
			starts, ends = []int64{0}, []int64{openEnd}
		} else {
			starts, ends = split(positions, spec.Partitions)
		}
		idx := make([]int32, len(starts))
		for i := range idx {
			idx[i] = int32(i)
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO run_partitions (run_id, partition, start_pos, end_pos, cursor)
			SELECT $1, u.i, u.s, u.e, u.s FROM unnest($2::int[], $3::bigint[], $4::bigint[]) AS u(i, s, e)`,
			id, idx, starts, ends); err != nil {
			return fmt.Errorf("insert partitions of run %d: %w", id, err)
		}
		run, err = scanRun(tx.QueryRow(ctx, `SELECT `+runColumns+` FROM runs r WHERE r.id = $1`, id))
		if err != nil {
			return fmt.Errorf("read run %d: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return Run{}, false, err
	}
	if !created {
		run, err = s.getGeneration(ctx, spec.Job, spec.RunKey, spec.Generation)
		if err != nil {
			return Run{}, false, err
		}
	}
	return run, created, nil
}

// split cuts n positions into at most parts contiguous, non-empty ranges
// [starts[i], ends[i]) whose sizes differ by at most one.
func split(n int64, parts int) (starts, ends []int64) {
	p := min(int64(parts), n)
	for i := int64(0); i < p; i++ {
		starts = append(starts, i*n/p)
		ends = append(ends, (i+1)*n/p)
	}
	return starts, ends
}

// Get returns the run with id, or an error wrapping ErrNotFound.
func (s *Store) Get(ctx context.Context, id int64) (Run, error) {
	r, err := scanRun(s.pool.QueryRow(ctx, `SELECT `+runColumns+` FROM runs r WHERE r.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Run{}, notFound(id)
	}
	if err != nil {
		return Run{}, fmt.Errorf("read run %d: %w", id, err)
	}
	return r, nil
}

// GetByKey returns the newest generation of the run of job with runKey, or
// an error wrapping ErrNotFound.
func (s *Store) GetByKey(ctx context.Context, job, runKey string) (Run, error) {
	return s.getGeneration(ctx, job, runKey, 0)
}

// getGeneration returns the run of job and runKey of generation gen, or the
// newest one for gen 0.
func (s *Store) getGeneration(ctx context.Context, job, runKey string, gen int) (Run, error) {
	r, err := scanRun(s.pool.QueryRow(ctx, `SELECT `+runColumns+` FROM runs r
		WHERE r.job = $1 AND r.run_key = $2 AND ($3 = 0 OR r.generation = $3)
		ORDER BY r.generation DESC LIMIT 1`, job, runKey, gen))
	if errors.Is(err, pgx.ErrNoRows) {
		return Run{}, fmt.Errorf("run of %s for %s: %w", job, runKey, ErrNotFound)
	}
	if err != nil {
		return Run{}, fmt.Errorf("read run of %s for %s: %w", job, runKey, err)
	}
	return r, nil
}

// List returns the most recent runs, newest first, as many as limit.
func (s *Store) List(ctx context.Context, limit int) ([]Run, error) {
	return s.listRuns(ctx, RunFilter{Limit: limit})
}

// Partitions returns the partitions of run id in order.
func (s *Store) Partitions(ctx context.Context, id int64) ([]Partition, error) {
	return queryPartitions(ctx, s.pool, `SELECT `+partitionColumns+` FROM run_partitions p
		WHERE p.run_id = $1 ORDER BY p.partition`, id)
}

// ActivePartitions returns every running partition of every active run: the
// chains that must have a task on the queue.
func (s *Store) ActivePartitions(ctx context.Context) ([]Partition, error) {
	return queryPartitions(ctx, s.pool, `SELECT `+partitionColumns+` FROM run_partitions p
		JOIN runs r ON r.id = p.run_id
		WHERE r.status IN ('pending', 'running') AND p.status = 'running'
		ORDER BY p.run_id, p.partition`)
}

// querier is what a read goes through: a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func queryPartitions(ctx context.Context, q querier, sql string, args ...any) ([]Partition, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("read partitions: %w", err)
	}
	parts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Partition, error) { return scanPartition(row) })
	if err != nil {
		return nil, fmt.Errorf("read partitions: %w", err)
	}
	return parts, nil
}

// Load returns a run and one of its partitions, as a batch task needs them.
func (s *Store) Load(ctx context.Context, id int64, partition int) (Run, Partition, error) {
	row := s.pool.QueryRow(ctx, `SELECT `+runColumns+`, `+partitionColumns+`
		FROM runs r JOIN run_partitions p ON p.run_id = r.id
		WHERE r.id = $1 AND p.partition = $2`, id, partition)
	var r Run
	var p Partition
	err := row.Scan(append(runFields(&r), partitionFields(&p)...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return Run{}, Partition{}, fmt.Errorf("run %d partition %d: %w", id, partition, ErrNotFound)
	}
	if err != nil {
		return Run{}, Partition{}, fmt.Errorf("load run %d partition %d: %w", id, partition, err)
	}
	return r, p, nil
}

// MarkRunning moves a pending run to running; a run in any other state is left alone.
func (s *Store) MarkRunning(ctx context.Context, id int64) error {
	if _, err := s.pool.Exec(ctx, `UPDATE runs SET status = 'running',
		started_at = coalesce(started_at, now()), updated_at = now()
		WHERE id = $1 AND status = 'pending'`, id); err != nil {
		return fmt.Errorf("mark run %d running: %w", id, err)
	}
	return nil
}

// Items returns the items of run id at positions [from, to), in order.
func (s *Store) Items(ctx context.Context, id, from, to int64) ([]Item, error) {
	return s.queryItems(ctx, `SELECT pos, key, status, attempts, coalesce(error, '')
		FROM run_items WHERE run_id = $1 AND pos >= $2 AND pos < $3 ORDER BY pos`, id, from, to)
}

// FailedItems returns up to limit failed items of run id at positions
// [from, to), in order: the work of a redrive batch.
func (s *Store) FailedItems(ctx context.Context, id, from, to int64, limit int) ([]Item, error) {
	return s.queryItems(ctx, `SELECT pos, key, status, attempts, coalesce(error, '')
		FROM run_items WHERE run_id = $1 AND pos >= $2 AND pos < $3 AND status = 'failed'
		ORDER BY pos LIMIT $4`, id, from, to, limit)
}

// Failures returns the failed items of run id, in order (see FailuresOf).
func (s *Store) Failures(ctx context.Context, id int64) ([]Item, error) {
	run, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return s.FailuresOf(ctx, run, math.MaxInt32)
}

// FailuresOf returns up to limit failed items of run, in order: of a run of
// items, its failed items; of a run of pages, its rejected records (see
// Batch.Rejected), each keyed "page P, record I" and failed once.
func (s *Store) FailuresOf(ctx context.Context, run Run, limit int) ([]Item, error) {
	if run.Unit != UnitPages {
		return s.FailedItems(ctx, run.ID, 0, math.MaxInt64, limit)
	}
	return s.queryItems(ctx, `SELECT pos, format('page %s, record %s', pos, item), 'failed', 1, error
		FROM run_rejects WHERE run_id = $1 ORDER BY pos, item LIMIT $2`, run.ID, limit)
}

func (s *Store) queryItems(ctx context.Context, sql string, args ...any) ([]Item, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("read items: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Item, error) {
		var it Item
		err := row.Scan(&it.Pos, &it.Key, &it.Status, &it.Attempts, &it.Error)
		return it, err
	})
	if err != nil {
		return nil, fmt.Errorf("read items: %w", err)
	}
	return items, nil
}

// lockRun locks the row of run id for the rest of tx and returns its state.
// Every transaction that changes a run and its partitions locks the run
// first (after the job's creation lock, where it takes that one: see
// LockRunCreation), so that they never deadlock against each other.
func lockRun(ctx context.Context, tx pgx.Tx, id int64) (Run, error) {
	r, err := scanRun(tx.QueryRow(ctx, `SELECT `+runColumns+` FROM runs r WHERE r.id = $1 FOR UPDATE OF r`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Run{}, notFound(id)
	}
	if err != nil {
		return Run{}, fmt.Errorf("lock run %d: %w", id, err)
	}
	return r, nil
}

// lockKey is the key of the advisory lock named $1 in this schema.
const lockKey = `hashtext('syncworker.' || $1 || '.' || current_schema())`

// LockRunCreation takes the run creation lock of job until tx ends: the
// runs of a job are created (and started again by a start that allows no
// overlap) one at a time, so that a check for the job's unfinished runs and
// the start it allows are one step (see NewRun.Alone). It is taken before
// any run's row lock.
func LockRunCreation(ctx context.Context, tx pgx.Tx, job string) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(`+lockKey+`)`, "create."+job); err != nil {
		return fmt.Errorf("take the run creation lock of job %s: %w", job, err)
	}
	return nil
}

// CheckAlone returns an *OverlapError when a run of job for another run key
// than runKey is unfinished (pending, running or paused): a start that
// allows no overlap would start nothing. A failed, cancelled or timed-out
// run has stopped until someone retries it, and does not count. Checked
// outside the job's creation lock, the answer may be out of date by the
// time a run is created; a NewRun with Alone checks again.
func (s *Store) CheckAlone(ctx context.Context, job, runKey string) error {
	return checkAlone(ctx, s.pool, job, runKey)
}

// checkAlone is CheckAlone through q: inside the job's creation lock, the
// check and the creation are one step.
func checkAlone(ctx context.Context, q querier, job, runKey string) error {
	other, err := scanRun(q.QueryRow(ctx, `SELECT `+runColumns+` FROM runs r
		WHERE r.job = $1 AND r.run_key <> $2 AND r.status IN ('pending', 'running', 'paused')
		ORDER BY r.id LIMIT 1`, job, runKey))
	switch {
	case err == nil:
		return &OverlapError{Run: other}
	case !errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("look for unfinished runs of job %s: %w", job, err)
	}
	return nil
}

// RetryAlone is Retry for a start that allows no overlap (see NewRun.Alone):
// under the job's creation lock, it refuses with an *OverlapError while a
// run of the job for another run key is unfinished.
func (s *Store) RetryAlone(ctx context.Context, id int64) (Run, []Partition, error) {
	return s.retry(ctx, id, true)
}

// Retry makes a failed or cancelled run running again as its next attempt:
// every partition that is not completed resumes from its checkpoint. It
// returns the run and the partitions whose tasks the caller must enqueue.
func (s *Store) Retry(ctx context.Context, id int64) (Run, []Partition, error) {
	return s.retry(ctx, id, false)
}

func (s *Store) retry(ctx context.Context, id int64, alone bool) (Run, []Partition, error) {
	return s.restart(ctx, id, false, alone, func(tx pgx.Tx, r Run) error {
		if r.Status == StatusPaused {
			return fmt.Errorf("run %d is paused; resume it instead: %w", id, ErrState)
		}
		if !r.Status.Resumable() {
			return fmt.Errorf("run %d is %s; only a failed, cancelled or timed-out run can be retried: %w", id, r.Status, ErrState)
		}
		return latestGeneration(ctx, tx, r)
	}, resumePartitions)
}

// resumePartitions (for restart) makes every partition of run $1 that is
// not completed run again from its checkpoint in attempt $2.
const resumePartitions = `UPDATE run_partitions p SET status = 'running', attempt = $2, redrive = $3,
		task_seq = seq, takeovers = 0, lease_owner = NULL, lease_expires_at = NULL,
		last_error = NULL, updated_at = now()
	WHERE p.run_id = $1 AND p.status <> 'completed'
	RETURNING ` + partitionColumns

// latestGeneration fails with ErrState when a newer generation of r's job
// and run key exists: one run per job and run key goes on at a time, and
// the newer one took r's place.
// It reads through q, the caller's transaction where it has one: a second
// connection taken while the run's row is locked can wait forever on a pool
// that the run's other waiters hold.
func latestGeneration(ctx context.Context, q querier, r Run) error {
	var newer int64
	if err := q.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM runs
		WHERE job = $1 AND run_key = $2 AND generation > $3`, r.Job, r.RunKey, r.Generation).Scan(&newer); err != nil {
		return fmt.Errorf("run %d: find newer generations: %w", r.ID, err)
	}
	if newer != 0 {
		return fmt.Errorf("run %d of %s (%s) was followed by run %d of the same job and parameters; use that one or start the job again: %w",
			r.ID, r.Job, r.RunKey, newer, ErrState)
	}
	return nil
}

// Redrive runs the failed items of a completed run again, as its next
// attempt and its next redrive pass: each partition with failed items in its
// range starts over from its start in that pass, running only those items,
// and their new outcomes replace the old. It returns the run and the
// partitions whose tasks the caller must enqueue. A run that is not
// completed, has no failed item, or was followed by a newer generation (a
// restart from zero) fails with ErrState.
func (s *Store) Redrive(ctx context.Context, id int64) (Run, []Partition, error) {
	return s.restart(ctx, id, true, false, func(tx pgx.Tx, r Run) error {
		if r.Unit != UnitItems {
			return fmt.Errorf("run %d pulls pages and has no items to redrive; start its job again to pull it anew: %w", id, ErrState)
		}
		if r.Status != StatusCompleted {
			return fmt.Errorf("run %d is %s; only a completed run's failed items can be redriven (a failed or cancelled run is resumed with retry): %w",
				id, r.Status, ErrState)
		}
		if r.Failed == 0 {
			return fmt.Errorf("run %d has no failed item to redrive: %w", id, ErrState)
		}
		return latestGeneration(ctx, tx, r)
	}, `UPDATE run_partitions p SET status = 'running', attempt = $2, redrive = $3,
			cursor = p.start_pos, task_seq = p.seq, takeovers = 0, lease_owner = NULL, lease_expires_at = NULL,
			last_error = NULL, updated_at = now()
		WHERE p.run_id = $1 AND EXISTS (SELECT 1 FROM run_items i
			WHERE i.run_id = p.run_id AND i.status = 'failed' AND i.pos >= p.start_pos AND i.pos < p.end_pos)
		RETURNING `+partitionColumns)
}

// restart makes an ended run running again as its next attempt, in one
// transaction with the run locked: allowed says whether the run's state
// permits it, and partsSQL (with $1 the run, $2 the new attempt, $3 the
// redrive pass) moves the partitions that are to run and returns them. A
// redrive starts the next pass. With alone, the job's creation lock is taken
// first and the run goes on only while no run of the job for another run
// key is unfinished (see RetryAlone). With no partition to run, the run is
// completed at once.
func (s *Store) restart(ctx context.Context, id int64, redrive, alone bool, allowed func(pgx.Tx, Run) error, partsSQL string) (Run, []Partition, error) {
	var parts []Partition
	var run Run
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if alone {
			// The creation lock before the run's row, as CreateRun takes them.
			var job, key string
			if err := tx.QueryRow(ctx, `SELECT job, run_key FROM runs WHERE id = $1`, id).Scan(&job, &key); err != nil {
				if errors.Is(err, pgx.ErrNoRows) {
					return notFound(id)
				}
				return fmt.Errorf("read run %d: %w", id, err)
			}
			if err := LockRunCreation(ctx, tx, job); err != nil {
				return err
			}
			if err := checkAlone(ctx, tx, job, key); err != nil {
				return err
			}
		}
		r, err := lockRun(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := allowed(tx, r); err != nil {
			return err
		}
		attempt, pass := r.Attempt+1, r.Redrives
		if redrive {
			pass++
		}
		parts, err = queryPartitions(ctx, tx, partsSQL, id, attempt, pass)
		if err != nil {
			return fmt.Errorf("restart partitions of run %d: %w", id, err)
		}
		status := StatusRunning
		if len(parts) == 0 {
			status = StatusCompleted
		}
		run, err = scanRun(tx.QueryRow(ctx, `UPDATE runs r SET status = $2, attempt = $3, redrives = $4,
				attempt_failed = 0, last_error = NULL,
				finished_at = CASE WHEN $2 = 'completed' THEN now() END, updated_at = now()
			WHERE r.id = $1 RETURNING `+runColumns, id, status, attempt, pass))
		if err != nil {
			return fmt.Errorf("restart run %d: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return Run{}, nil, err
	}
	return run, parts, nil
}

// Cancel stops a run that has not completed: its partitions that are not
// completed are cancelled, and tasks still on the queue find nothing to do.
// Cancelling a cancelled run changes nothing. It returns the partitions that
// were running, whose queued tasks the caller may delete.
func (s *Store) Cancel(ctx context.Context, id int64) (Run, []Partition, error) {
	var parts []Partition
	var run Run
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		r, err := lockRun(ctx, tx, id)
		if err != nil {
			return err
		}
		switch r.Status {
		case StatusCancelled:
			run = r
			return nil
		case StatusCompleted:
			return fmt.Errorf("run %d is completed; there is nothing to cancel: %w", id, ErrState)
		}
		rows, err := tx.Query(ctx, `WITH old AS (
				SELECT run_id, partition, status FROM run_partitions
				WHERE run_id = $1 AND status <> 'completed' FOR UPDATE)
			UPDATE run_partitions p SET status = 'cancelled',
				lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
			FROM old WHERE p.run_id = old.run_id AND p.partition = old.partition
			RETURNING `+partitionColumns+`, old.status`, id)
		if err != nil {
			return fmt.Errorf("cancel partitions of run %d: %w", id, err)
		}
		all, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Partition, error) {
			var p Partition
			var was PartitionStatus
			err := row.Scan(append(partitionFields(&p), &was)...)
			p.Status = was
			return p, err
		})
		if err != nil {
			return fmt.Errorf("cancel partitions of run %d: %w", id, err)
		}
		for _, p := range all {
			if p.Status == PartitionRunning {
				parts = append(parts, p)
			}
		}
		run, err = scanRun(tx.QueryRow(ctx, `UPDATE runs r SET status = 'cancelled',
				finished_at = now(), updated_at = now()
			WHERE r.id = $1 RETURNING `+runColumns, id))
		if err != nil {
			return fmt.Errorf("cancel run %d: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return Run{}, nil, err
	}
	return run, parts, nil
}

// FailPartition records that a partition's chain cannot go on: the partition
// fails with reason, its run fails with it, and the run's other running
// partitions stop where they are (a retry resumes them all). The change is
// fenced by ref, the identity of the task that gives up, so that a stale task
// cannot fail a chain that has moved on; failed is false when the fence did
// not match and nothing changed.
func (s *Store) FailPartition(ctx context.Context, ref TaskRef, reason string) (failed bool, err error) {
	id, partition := ref.RunID, ref.Partition
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := lockRun(ctx, tx, id); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE run_partitions SET status = 'failed', last_error = $6,
				lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
			WHERE run_id = $1 AND partition = $2 AND attempt = $3 AND lease_epoch = $4 AND task_seq = $5
				AND status = 'running'`,
			id, partition, ref.Attempt, ref.Epoch, ref.TaskSeq, reason)
		if err != nil {
			return fmt.Errorf("fail partition %d of run %d: %w", partition, id, err)
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		failed = true
		return stopRun(ctx, tx, id, StatusFailed, fmt.Sprintf("partition %d: %s", partition, reason))
	})
	return failed, err
}

// stopRun stops run id with status (failed or timed_out) and reason within
// tx, which holds the run's lock: its running (or paused) partitions stop where they are
// (in the same status, their leases given up), so that a retry resumes them
// all.
func stopRun(ctx context.Context, tx pgx.Tx, id int64, status Status, reason string) error {
	if _, err := tx.Exec(ctx, `UPDATE run_partitions SET status = $2,
			lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
		WHERE run_id = $1 AND status IN ('running', 'paused')`, id, status); err != nil {
		return fmt.Errorf("stop partitions of run %d: %w", id, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE runs SET status = $2, last_error = $3,
			finished_at = now(), updated_at = now()
		WHERE id = $1 AND status IN ('pending', 'running', 'paused')`, id, status, reason); err != nil {
		return fmt.Errorf("stop run %d: %w", id, err)
	}
	return nil
}

// WithSweepLock runs fn while holding the sweep lock, a Postgres advisory
// lock (one per schema) that makes the sweep one-at-a-time across every
// worker. When another process holds it, fn does not run and locked is false.
func (s *Store) WithSweepLock(ctx context.Context, fn func(ctx context.Context) error) (locked bool, err error) {
	return s.withLock(ctx, "sweeper", fn)
}

// WithPruneLock runs fn while holding the prune lock, as WithSweepLock does
// with the sweep lock: a prune, which can take long, keeps no sweep waiting.
func (s *Store) WithPruneLock(ctx context.Context, fn func(ctx context.Context) error) (locked bool, err error) {
	return s.withLock(ctx, "prune", fn)
}

// withLock runs fn while holding the advisory lock of name in this schema,
// if no other process holds it.
func (s *Store) withLock(ctx context.Context, name string, fn func(ctx context.Context) error) (locked bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx,
			`SELECT pg_try_advisory_xact_lock(`+lockKey+`)`, name).Scan(&locked); err != nil {
			return fmt.Errorf("take %s lock: %w", name, err)
		}
		if !locked {
			return nil
		}
		return fn(ctx)
	})
	return locked, err
}
