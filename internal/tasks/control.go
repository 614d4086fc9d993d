package tasks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/quotes"
	"github.com/syncworker/syncworker/internal/stocks"
)

// ErrNotEnqueued means that a run's state in Postgres is right but some of
// its tasks could not be put on the queue; the sweeper of any running worker
// enqueues them once Redis answers, so nothing is lost.
var ErrNotEnqueued = errors.New("tasks not enqueued")

// ErrInput marks an error in what the caller asked for, such as a date in
// the future or an empty stock universe.
var ErrInput = errors.New("invalid input")

// ErrHoliday is the error of a daily sync of a market holiday (see
// DailySyncOptions.Holidays); it wraps ErrInput.
var ErrHoliday = fmt.Errorf("a market holiday, which has no trading (sync.market_holidays): %w", ErrInput)

// EarliestDate is the earliest trading date (YYYY-MM-DD) a daily sync takes:
// an earlier one is a typo, such as 0026 for 2026.
const EarliestDate = "1900-01-01"

// Control starts, retries and cancels runs: the operations behind the
// operator CLI.
type Control struct {
	pool      *pgxpool.Pool
	store     *checkpoint.Store
	enqueuer  *Enqueuer
	inspector *asynq.Inspector
	etl       *ETLJobs
}

// NewControl returns a Control.
func NewControl(pool *pgxpool.Pool, store *checkpoint.Store, enqueuer *Enqueuer, inspector *asynq.Inspector) *Control {
	return &Control{pool: pool, store: store, enqueuer: enqueuer, inspector: inspector}
}

// DailySyncOptions describe a daily sync to start.
type DailySyncOptions struct {
	// Date is the trading date (its calendar day is used).
	Date time.Time
	// Today is the current day in the market's time zone; Date may not be after it.
	Today time.Time
	// BatchSize and Partitions apply to a new run; an existing run keeps its own.
	BatchSize, Partitions int
	// MaxFailedItems and MaxFailedPercent limit the items one attempt of a
	// new run may fail before it fails early (see checkpoint.NewRun).
	MaxFailedItems   int64
	MaxFailedPercent float64
	// Holidays are the market's holidays (YYYY-MM-DD, sync.market_holidays):
	// a new daily sync of one of them is refused with ErrHoliday.
	Holidays []string
	// failureLimit, when set, is the limit itself, in place of the two
	// above: a restart keeps its run's, 0 (no failure allowed) included.
	failureLimit *int64
	// alone refuses a new run while a run of another date is unfinished
	// (see checkpoint.NewRun.Alone): a scheduled fire that allows no
	// overlap.
	alone bool
}

// DailyOptions returns the options of a new daily sync that the sync
// section of the configuration sets: its sizes, failure limits and the
// market's holidays; the dates are the caller's to set.
func DailyOptions(s config.Sync) DailySyncOptions {
	return DailySyncOptions{BatchSize: s.BatchSize, Partitions: s.Partitions,
		MaxFailedItems: s.MaxFailedItems, MaxFailedPercent: s.MaxFailedPercent, Holidays: s.MarketHolidays}
}

// StartDailySync starts the daily sync of opts.Date over the active symbols,
// or finds the run that exists for that date. A new run's first task of each
// partition is enqueued; for an existing active run the tasks of its chains
// are enqueued again, which changes nothing where they exist. A completed run
// is returned as it is. A date of opts.Holidays without a run is refused
// with ErrHoliday.
func (c *Control) StartDailySync(ctx context.Context, opts DailySyncOptions) (run checkpoint.Run, created bool, err error) {
	day := opts.Date.Format(quotes.DateLayout)
	switch {
	case day > opts.Today.Format(quotes.DateLayout):
		return checkpoint.Run{}, false, fmt.Errorf("date %s is after today (%s) in the market's time zone: %w",
			day, opts.Today.Format(quotes.DateLayout), ErrInput)
	case day < EarliestDate:
		return checkpoint.Run{}, false, fmt.Errorf("date %s is before %s: %w", day, EarliestDate, ErrInput)
	}
	run, err = c.store.GetByKey(ctx, JobDailySync, day)
	switch {
	case err == nil:
		if run.Status.Active() {
			err = c.enqueueRunning(ctx, run.ID)
		}
		return run, false, err
	case !errors.Is(err, checkpoint.ErrNotFound):
		return checkpoint.Run{}, false, err
	}
	if opts.holiday(day) {
		return checkpoint.Run{}, false, fmt.Errorf("date %s is %w", day, ErrHoliday)
	}
	return c.createDailySync(ctx, day, 1, 0, opts)
}

// holiday reports whether day (YYYY-MM-DD) is one of the market's holidays.
func (opts DailySyncOptions) holiday(day string) bool {
	return slices.Contains(opts.Holidays, day)
}

// createDailySync creates generation gen of the daily sync of day over the
// active symbols, in the place of run supersedes (0: none), and enqueues its
// tasks.
func (c *Control) createDailySync(ctx context.Context, day string, gen int, supersedes int64, opts DailySyncOptions) (run checkpoint.Run, created bool, err error) {
	symbols, err := stocks.ActiveSymbols(ctx, c.pool)
	if err != nil {
		return checkpoint.Run{}, false, err
	}
	if len(symbols) == 0 {
		return checkpoint.Run{}, false, fmt.Errorf("the stocks table has no active symbol; import some with `enqueue stocks import FILE`: %w", ErrInput)
	}
	run, created, err = c.store.CreateRun(ctx, checkpoint.NewRun{
		Job: JobDailySync, RunKey: day, Generation: gen, Supersedes: supersedes, Params: DailyParams{Date: day},
		BatchSize: opts.BatchSize, Partitions: opts.Partitions, Keys: symbols,
		MaxFailedItems: opts.MaxFailedItems, MaxFailedPercent: opts.MaxFailedPercent, FailureLimit: opts.failureLimit,
		Alone: opts.alone,
	})
	if err != nil {
		return checkpoint.Run{}, false, err
	}
	if run.Status.Active() {
		err = c.enqueueRunning(ctx, run.ID)
	}
	return run, created, err
}

// enqueueRunning enqueues the task of every running partition of run id.
func (c *Control) enqueueRunning(ctx context.Context, id int64) error {
	parts, err := c.store.Partitions(ctx, id)
	if err != nil {
		return err
	}
	var running []checkpoint.Partition
	for _, p := range parts {
		if p.Status == checkpoint.PartitionRunning {
			running = append(running, p)
		}
	}
	return c.enqueue(ctx, id, running)
}

func (c *Control) enqueue(ctx context.Context, id int64, parts []checkpoint.Partition) error {
	var errs []error
	for _, p := range parts {
		if _, err := c.enqueuer.Enqueue(ctx, ChainPayload(p)); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("run %d: %d of %d %w (a worker's sweeper will enqueue them): %w",
			id, len(errs), len(parts), ErrNotEnqueued, errors.Join(errs...))
	}
	return nil
}

// Retry resumes a failed or cancelled run from its checkpoints as its next
// attempt, and enqueues the tasks of its partitions.
func (c *Control) Retry(ctx context.Context, id int64) (checkpoint.Run, error) {
	return c.retry(ctx, id, false)
}

// retry is Retry; with alone (a start that allows no overlap) it fails with
// a *checkpoint.OverlapError while a run of the job for another key is
// unfinished.
func (c *Control) retry(ctx context.Context, id int64, alone bool) (checkpoint.Run, error) {
	retry := c.store.Retry
	if alone {
		retry = c.store.RetryAlone
	}
	run, parts, err := retry(ctx, id)
	if err != nil {
		return checkpoint.Run{}, err
	}
	return run, c.enqueue(ctx, id, parts)
}

// Redrive runs the failed items of a completed run again, as its next
// attempt, and enqueues the tasks of the partitions that have some.
func (c *Control) Redrive(ctx context.Context, id int64) (checkpoint.Run, error) {
	run, parts, err := c.store.Redrive(ctx, id)
	if err != nil {
		return checkpoint.Run{}, err
	}
	return run, c.enqueue(ctx, id, parts)
}

// Cancel cancels a run and deletes the tasks of its chains that wait on the
// queue; a task that is running finds the run cancelled at its commit and
// writes nothing.
func (c *Control) Cancel(ctx context.Context, id int64) (checkpoint.Run, error) {
	run, parts, err := c.store.Cancel(ctx, id)
	if err != nil {
		return checkpoint.Run{}, err
	}
	c.deleteTasks(parts)
	return run, nil
}

// deleteTasks deletes the queued tasks of parts' chains, which would find
// nothing to do. Best effort: a task that is gone or active is fine as it is.
func (c *Control) deleteTasks(parts []checkpoint.Partition) {
	for _, p := range parts {
		_ = c.inspector.DeleteTask(Queue, ChainPayload(p).TaskID())
	}
}

// Pause pauses a pending or running run at a batch boundary and deletes the
// queued tasks of the partitions that paused at once; a batch under way
// commits, and its partition pauses then.
func (c *Control) Pause(ctx context.Context, id int64) (checkpoint.Run, error) {
	run, parts, err := c.store.Pause(ctx, id)
	if err != nil {
		return checkpoint.Run{}, err
	}
	c.deleteTasks(parts)
	return run, nil
}

// Resume makes a paused run running again from its checkpoints, as its next
// attempt, and enqueues the tasks of its partitions.
func (c *Control) Resume(ctx context.Context, id int64) (checkpoint.Run, error) {
	run, parts, err := c.store.Resume(ctx, id)
	if err != nil {
		return checkpoint.Run{}, err
	}
	return run, c.enqueue(ctx, id, parts)
}

// Restart starts an ended run over from zero, as a new run: the next
// generation of its job and run key, with its work frozen anew (today's
// active symbols, or the source's pages now) and the old run's batch size,
// partitions, failure limit and time budget. The old run stays as it was,
// for the record. It returns the new run. A run that has not ended (cancel
// it first) or that a newer generation followed fails with ErrState.
func (c *Control) Restart(ctx context.Context, id int64) (checkpoint.Run, error) {
	old, err := c.store.Restartable(ctx, id)
	if err != nil {
		return checkpoint.Run{}, err
	}
	if old.Unit == checkpoint.UnitPages {
		return c.restartETL(ctx, old)
	}
	if old.Job != JobDailySync {
		return checkpoint.Run{}, fmt.Errorf("run %d has job %q, which cannot be restarted: %w", id, old.Job, ErrUnknownJob)
	}
	opts := DailySyncOptions{BatchSize: old.BatchSize, Partitions: old.Partitions, failureLimit: old.MaxFailures}
	run, _, err := c.createDailySync(ctx, old.RunKey, old.Generation+1, old.ID, opts)
	return run, err
}
