package tasks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/fault"
)

// Job does the work of one kind of run, one batch at a time.
type Job interface {
	// Fetch does a batch's work up to, not including, its write: it gets the
	// data of the batch's items from the source and says what became of each
	// item. An error is the batch's (it is classified with package fault);
	// the failure of a single item is an Outcome.
	Fetch(ctx context.Context, b Batch) (Fetched, error)
}

// Batch is what a Job gets to work on: the items of a run of items, or for
// a run of pages the partition's checkpoint, whose Cursor is the page to
// fetch and PageToken its cursor token.
type Batch struct {
	Run       checkpoint.Run
	Partition checkpoint.Partition
	Items     []checkpoint.Item
	// Final is true on the task's last attempt: the job should then record
	// what it could not do as failed items rather than fail the batch again,
	// where that is right.
	Final bool
	// Log is the batch's logger: every line carries the batch's run_id,
	// job, partition, seq and task_id.
	Log *slog.Logger
}

// Fetched is the result of a Job's Fetch, ready to commit: item outcomes for
// a run of items, counts and the pagination state for a run of pages.
type Fetched struct {
	Outcomes []checkpoint.Outcome
	// Counts, Rejected, Last, PageToken, SourceTotal and Warnings are those
	// of checkpoint.Batch, for a run of pages.
	Counts      *checkpoint.Counts
	Rejected    []checkpoint.Rejected
	Last        bool
	PageToken   string
	SourceTotal *int64
	Warnings    []string
	// Records is the number of data rows Queue writes.
	Records int
	// Queue queues the batch's data statements, which the commit sends
	// with its checkpoint in one round trip (checkpoint.Batch.QueueData).
	Queue func(q *pgx.Batch)
}

// errShutdown is the cause with which a handler's work is cancelled when the
// worker stops.
var errShutdown = fmt.Errorf("worker is shutting down: %w", context.Canceled)

// errLeaseLost is the cause with which a handler's work is cancelled when it
// can no longer show that it holds its partition's lease.
var errLeaseLost = fmt.Errorf("partition %w", checkpoint.ErrLeaseLost)

// DefaultLease is the partition lease of a Handler whose options give none.
const DefaultLease = 10 * time.Second

// Metrics receive what the handler's batches did, for monitoring. A
// committed batch reports BatchDone, then ItemsDone and RecordsLanded.
type Metrics interface {
	// BatchDone counts a batch of job that ended with outcome: committed,
	// stale, rate_limited, stopped or failed (see package metrics); d is
	// the time from the start of its fetch to its end.
	BatchDone(job, outcome string, d time.Duration)
	// ItemsDone counts the items of a committed batch of job.
	ItemsDone(job string, succeeded, failed int)
	// RecordsLanded counts the data rows a committed batch of job wrote.
	RecordsLanded(job string, n int)
}

// noMetrics are the Metrics of a handler whose options give none.
type noMetrics struct{}

func (noMetrics) BatchDone(string, string, time.Duration) {}
func (noMetrics) ItemsDone(string, int, int)              {}
func (noMetrics) RecordsLanded(string, int)               {}

// The outcomes of a batch reported to Metrics.
const (
	outcomeCommitted   = "committed"
	outcomeStale       = "stale"
	outcomeRateLimited = "rate_limited"
	outcomeStopped     = "stopped"
	outcomeFailed      = "failed"
)

// failedOutcome returns the outcome of a batch that failed with err.
func failedOutcome(err error) string {
	switch {
	case fault.IsShutdown(err):
		return outcomeStopped
	case fault.ClassOf(err) == fault.RateLimited:
		return outcomeRateLimited
	default:
		return outcomeFailed
	}
}

// Handler runs batch tasks: each task runs the batches of its partition from
// the checkpoint, committing each one, until its time slice is used up, and
// then hands the chain over to its successor task.
type Handler struct {
	store    *checkpoint.Store
	enqueuer *Enqueuer
	jobs     map[string]Job
	slice    time.Duration
	lease    time.Duration
	maxRetry int
	worker   string
	log      *slog.Logger
	metrics  Metrics
	stopping <-chan struct{}
}

// HandlerOptions configure a Handler.
type HandlerOptions struct {
	Store    *checkpoint.Store
	Enqueuer *Enqueuer
	// Jobs maps a run's job name to the Job that does its work.
	Jobs map[string]Job
	// Slice is how long a task goes on with further batches of its
	// partition before it hands over; 0 means one batch per task.
	Slice time.Duration
	// Lease is how long a task's hold on its partition lasts unless renewed
	// (it is renewed every third of it); a partition whose worker died is
	// taken over once it lapses. 0 means DefaultLease.
	Lease time.Duration
	// MaxRetry is the task's retry budget when the task's context does not
	// say (a handler called outside asynq).
	MaxRetry int
	// Worker names this process in the ledger.
	Worker string
	// Logger receives the handler's logs; each line of a task carries its
	// run_id, job, partition, seq and task_id.
	Logger *slog.Logger
	// Metrics, when set, receive what the batches did.
	Metrics Metrics
	// Stopping is closed when the worker shuts down: running batches stop at
	// once, their transactions roll back, and they run again elsewhere.
	Stopping <-chan struct{}
}

// NewHandler returns a Handler.
func NewHandler(opts HandlerOptions) *Handler {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lease := opts.Lease
	if lease <= 0 {
		lease = DefaultLease
	}
	var metrics Metrics = noMetrics{}
	if opts.Metrics != nil {
		metrics = opts.Metrics
	}
	return &Handler{
		store:    opts.Store,
		enqueuer: opts.Enqueuer,
		jobs:     opts.Jobs,
		slice:    opts.Slice,
		lease:    lease,
		maxRetry: opts.MaxRetry,
		worker:   opts.Worker,
		log:      log,
		metrics:  metrics,
		stopping: opts.Stopping,
	}
}

// delivery is one delivery of a batch task.
type delivery struct {
	Payload
	taskID string
	// retried is the number of times the task was retried; final is true on
	// its last attempt.
	retried int
	final   bool
	// log is the task's logger, with its run_id, partition and task_id, and
	// once the run is loaded its job.
	log *slog.Logger
	// job is the run's job, once the run is loaded.
	job string
	// seq is the seq of the batch under way, or before the first the one
	// the task was made for.
	seq int64
}

// ProcessTask runs a batch task. It implements asynq.Handler.
func (h *Handler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	p, err := DecodePayload(t.Payload())
	if err != nil {
		return fmt.Errorf("malformed task payload: %w: %w", err, asynq.SkipRetry)
	}
	d := delivery{Payload: p, seq: p.Seq}
	var ok bool
	if d.taskID, ok = asynq.GetTaskID(ctx); !ok {
		d.taskID = p.TaskID()
	}
	d.retried, _ = asynq.GetRetryCount(ctx)
	maxRetry, ok := asynq.GetMaxRetry(ctx)
	if !ok {
		maxRetry = h.maxRetry
	}
	d.final = d.retried >= maxRetry
	d.log = h.log.With("run_id", p.Run, "partition", p.Partition, "task_id", d.taskID)

	work, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-h.stopping:
			cancel(errShutdown)
		case <-work.Done():
		}
	}()

	err = h.run(ctx, work, &d)
	stopped := err != nil && errors.Is(context.Cause(work), errShutdown)
	if err = h.settle(ctx, d, err, stopped); err != nil && d.job != "" {
		err = &jobError{job: d.job, seq: d.seq, err: err}
	}
	return err
}

// jobError is the error of a task whose run's job is known, so that the
// server's error handler can log it with the job (see LogFields).
type jobError struct {
	job string
	seq int64 // of the batch that failed
	err error
}

func (e *jobError) Error() string { return e.err.Error() }
func (e *jobError) Unwrap() error { return e.err }

// LogFields returns the fields that name batch task t in a log line: its
// run_id, job, partition, seq and task_id. err is the task's error: when it
// comes from a task that loaded its run, it gives the job and the seq of
// the batch that failed; otherwise the seq is the one the task was made for
// and the job is left out. A task whose payload cannot be read has its
// task_id only.
func LogFields(ctx context.Context, t *asynq.Task, err error) []any {
	id, ok := asynq.GetTaskID(ctx)
	p, perr := DecodePayload(t.Payload())
	if !ok && perr == nil {
		id = p.TaskID()
	}
	if perr != nil {
		return []any{"task_id", id}
	}
	fields := []any{"run_id", p.Run}
	seq := p.Seq
	if je, ok := errors.AsType[*jobError](err); ok {
		fields = append(fields, "job", je.job)
		seq = je.seq
	}
	return append(fields, "partition", p.Partition, "seq", seq, "task_id", id)
}

// run runs batches of d's partition until the chain is handed over or done.
// work is ctx plus the worker's shutdown: batches use it, while what must
// happen after a commit (the successor's enqueue) uses ctx.
func (h *Handler) run(ctx, work context.Context, d *delivery) error {
	run, part, err := h.store.Load(work, d.Run, d.Partition)
	if errors.Is(err, checkpoint.ErrNotFound) {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	if err != nil {
		return err
	}
	d.job = run.Job
	d.log = d.log.With("job", run.Job)
	// Until a batch starts, a line's seq is the one the task was made for.
	log := d.log.With("seq", d.Seq)
	if !run.Status.Active() || part.Status != checkpoint.PartitionRunning {
		log.Debug("nothing to do", "run_status", run.Status, "partition_status", part.Status)
		return nil
	}
	if part.Ref() != d.Ref() {
		// A stale task: the chain has moved on. Make sure the task that
		// owns it now exists, in case this one was all that was left.
		log.Debug("stale task", "attempt", part.Attempt, "epoch", part.Epoch, "task_seq", part.TaskSeq)
		if !d.Ref().Before(part.Ref()) {
			// Every task is enqueued after the state that names it has
			// committed, so no task can be ahead of its chain: this one
			// was not made by syncworker. It is dropped, not archived: an
			// archived task would hold its ID, and swallow the chain's own
			// task once the chain gets there.
			return fmt.Errorf("task is ahead of its chain (attempt %d, epoch %d, task seq %d): %w",
				part.Attempt, part.Epoch, part.TaskSeq, asynq.RevokeTask)
		}
		if _, err := h.enqueuer.Enqueue(ctx, ChainPayload(part)); err != nil {
			return err
		}
		return nil
	}
	if run.Status == checkpoint.StatusPending {
		if err := h.store.MarkRunning(work, run.ID); err != nil {
			return err
		}
	}
	job, ok := h.jobs[run.Job]
	if !ok {
		// Retryable: in a rolling deploy a newer worker may know it.
		return fmt.Errorf("run %d has job %q, which this worker does not know", run.ID, run.Job)
	}

	owner := fmt.Sprintf("%s#%016x", h.worker, rand.Uint64())
	part, err = h.store.Acquire(work, d.Ref(), owner, h.lease)
	if errors.Is(err, checkpoint.ErrLeased) {
		// Another delivery of this task runs the chain; when it ends, it
		// hands over or releases, and when it dies, its lease lapses and a
		// sweeper takes the chain over.
		log.Info("not run: another delivery of the task holds the partition's lease")
		return nil
	}
	if err != nil {
		return err
	}
	if part.Takeovers > 0 {
		log.Info("resuming a partition taken over from a lost worker",
			"epoch", part.Epoch, "cursor", part.Cursor, "takeovers", part.Takeovers)
	}
	work, lost := context.WithCancelCause(work)
	stop := h.keepLease(work, lost, d.Ref(), owner)
	next, err := h.batches(work, d, run, part, job, owner)
	stop()
	lost(nil)
	if err != nil {
		// Without an error the lease is gone already: the last commit
		// gave it up (a handover, the partition's end, the run's failure)
		// or the chain is no longer this task's (a stale commit).
		h.release(ctx, *d, owner)
	}
	if err != nil && errors.Is(context.Cause(work), errLeaseLost) {
		// Not a failure of this task: the chain belongs to another now.
		log.Info("stopped: the partition's lease was lost to a takeover", "cause", context.Cause(work))
		return nil
	}
	if err != nil || next == nil {
		return err
	}
	// After the handover, on ctx: the lease is given up (its renewal may
	// even have failed since), and a failed enqueue must be retried.
	_, err = h.enqueuer.Enqueue(ctx, *next)
	return err
}

// batches runs batches of part under owner's lease until the chain is done
// or handed over; next is then the successor task to enqueue.
func (h *Handler) batches(work context.Context, d *delivery, run checkpoint.Run, part checkpoint.Partition, job Job, owner string) (next *Payload, err error) {
	// The run's job, batch size and params are frozen, and each commit's
	// compare-and-set sees a cancelled or failed run: the loop goes on from
	// the partition each commit returns, without reading it again.
	start := time.Now()
	for {
		d.seq = part.Seq
		log := d.log.With("seq", part.Seq)
		from, to, items, err := h.nextItems(work, run, part)
		if err != nil {
			return nil, err
		}
		if run.OverBudget() {
			// A page boundary past the budget: stop here, timed out.
			stopped, err := h.store.TimeOut(work, run.ID)
			if err != nil {
				return nil, err
			}
			if stopped {
				log.Warn("run used up its time budget; stopped it timed_out", "cursor", part.Cursor)
				return nil, nil
			}
		}
		batchStart := time.Now()
		var fetched Fetched
		if len(items) > 0 || run.Unit == checkpoint.UnitPages {
			fetched, err = job.Fetch(work, Batch{Run: run, Partition: part, Items: items, Final: d.final, Log: log})
			if err != nil {
				h.metrics.BatchDone(run.Job, failedOutcome(err), time.Since(batchStart))
				return nil, err
			}
		}

		// A retried task hands over after its first commit: the successor
		// starts with a fresh retry budget, so that a budget counts the
		// failures of one batch, not of everything the task ran before.
		handover := to < part.EndPos && !fetched.Last &&
			(h.slice == 0 || d.retried > 0 || time.Since(start) >= h.slice || h.isStopping() ||
				nearDeadline(work, time.Since(batchStart)))
		res, err := h.store.Commit(work, checkpoint.Batch{
			RunID: run.ID, Partition: part.Index, Attempt: part.Attempt, Seq: part.Seq,
			Epoch: part.Epoch, Owner: owner, LeaseTTL: h.lease, Redrive: part.Redrive,
			From: from, To: to, Handover: handover,
			Outcomes: fetched.Outcomes, Records: fetched.Records, Counts: fetched.Counts, Rejected: fetched.Rejected,
			Last: fetched.Last, PageToken: fetched.PageToken, SourceTotal: fetched.SourceTotal, Warnings: fetched.Warnings,
			TaskID: d.taskID, Worker: h.worker, StartedAt: batchStart, QueueData: fetched.Queue,
		}, nil)
		took := time.Since(batchStart)
		if errors.Is(err, checkpoint.ErrStale) {
			h.metrics.BatchDone(run.Job, outcomeStale, took)
			log.Info("batch not committed: the run stopped or the chain was taken over")
			return nil, nil
		}
		if err != nil {
			h.metrics.BatchDone(run.Job, failedOutcome(err), took)
			return nil, err
		}
		succeeded, failed := fetched.itemCounts()
		h.metrics.BatchDone(run.Job, outcomeCommitted, took)
		h.metrics.ItemsDone(run.Job, succeeded, failed)
		h.metrics.RecordsLanded(run.Job, fetched.Records)
		log.Debug("batch committed", "from", from, "to", to, "succeeded", succeeded, "failed", failed,
			"records", fetched.Records, "duration", took)
		for _, w := range fetched.Warnings {
			log.Warn("batch committed with a warning, recorded on the run", "warning", w)
		}
		if res.RunCompleted {
			log.Info("run completed", "run_key", run.RunKey)
		}
		if res.RunFailed {
			log.Warn("run failed", "run_key", run.RunKey, "reason", res.LastError)
		}
		if res.RunPaused {
			h.log.Info("run paused; its partition stops at this batch boundary", "run", run.ID, "job", run.Job,
				"partition", part.Index, "cursor", to)
		}
		if res.RunTimedOut {
			log.Warn("run used up its time budget; stopped it timed_out", "run_key", run.RunKey, "reason", res.LastError)
		}
		part = res.Partition
		if part.Status != checkpoint.PartitionRunning {
			return nil, nil
		}
		if handover {
			p := ChainPayload(part)
			return &p, nil
		}
	}
}

// itemCounts returns how many of the batch's items succeeded and failed:
// its outcomes, or for a run of pages the records it loaded and rejected.
func (f Fetched) itemCounts() (succeeded, failed int) {
	if f.Counts != nil {
		return f.Counts.Succeeded, f.Counts.Failed
	}
	for _, o := range f.Outcomes {
		if o.OK {
			succeeded++
		} else {
			failed++
		}
	}
	return succeeded, failed
}

// nextItems returns the range and the items of part's next batch: the next
// BatchSize positions, or in a redrive pass the next BatchSize failed items
// (the range then ends after the last of them, or at the partition's end
// when there are no more). The batch of a run of pages is its next page.
func (h *Handler) nextItems(ctx context.Context, run checkpoint.Run, part checkpoint.Partition) (from, to int64, items []checkpoint.Item, err error) {
	from = part.Cursor
	if run.Unit == checkpoint.UnitPages {
		return from, from + 1, nil, nil
	}
	if part.Redrive > 0 {
		items, err = h.store.FailedItems(ctx, run.ID, from, part.EndPos, run.BatchSize)
		if err != nil {
			return 0, 0, nil, err
		}
		to = part.EndPos
		if len(items) == run.BatchSize {
			to = items[len(items)-1].Pos + 1
		}
		return from, to, items, nil
	}
	to = min(from+int64(run.BatchSize), part.EndPos)
	items, err = h.store.Items(ctx, run.ID, from, to)
	if err != nil {
		return 0, 0, nil, err
	}
	if int64(len(items)) != to-from {
		return 0, 0, nil, fault.Wrap(fault.RunFatal, fmt.Errorf("run %d has %d items at positions [%d, %d), want %d", run.ID, len(items), from, to, to-from))
	}
	return from, to, items, nil
}

// keepLease renews owner's lease every third of its length until the
// returned stop is called. When the lease is lost, or cannot be renewed for
// as long as it lasts (it may have lapsed and been taken over), it cancels
// work with errLeaseLost: the batch under way could not commit anyway.
func (h *Handler) keepLease(work context.Context, lost context.CancelCauseFunc, ref checkpoint.TaskRef, owner string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(h.lease / 3)
		defer t.Stop()
		renewed := time.Now()
		for {
			select {
			case <-done:
				return
			case <-work.Done():
				return
			case <-t.C:
			}
			err := h.store.Renew(work, ref, owner, h.lease)
			switch {
			case err == nil:
				renewed = time.Now()
			case errors.Is(err, checkpoint.ErrLeaseLost):
				lost(fmt.Errorf("%w: %w", errLeaseLost, err))
				return
			case time.Since(renewed) >= h.lease:
				lost(fmt.Errorf("%w: not renewed for %s: %w", errLeaseLost, h.lease, err))
				return
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// release gives up owner's lease, if it still holds it, so that the task's
// next delivery (a retry, or another worker after a shutdown) need not wait
// for it to lapse. It runs however the task ended, so it does not inherit
// ctx's cancellation; a release that fails leaves the lease to lapse.
func (h *Handler) release(ctx context.Context, d delivery, owner string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := h.store.Release(ctx, d.Ref(), owner); err != nil {
		d.log.Warn("could not release the partition's lease; it will lapse", "seq", d.Seq, "error", err)
	}
}

func (h *Handler) isStopping() bool {
	select {
	case <-h.stopping:
		return true
	default:
		return false
	}
}

// nearDeadline reports whether ctx's deadline leaves too little time for
// another batch that takes about as long as the last one.
func nearDeadline(ctx context.Context, last time.Duration) bool {
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) < 2*last+5*time.Second
}

// settle turns the outcome of a task into what asynq should do with it;
// stopped is true when the worker's shutdown cut the task short.
func (h *Handler) settle(ctx context.Context, d delivery, err error, stopped bool) error {
	if err == nil || errors.Is(err, asynq.SkipRetry) {
		return err
	}
	switch {
	case stopped || fault.ClassOf(err) == fault.RateLimited:
		if stopped {
			err = fmt.Errorf("%w: %w", errShutdown, err)
		}
		if d.final {
			// asynq archives a task on its last attempt whatever the error;
			// these are not failures, so drop the task instead and let the
			// sweeper put the chain back from its checkpoint.
			return fmt.Errorf("%w: %w", asynq.RevokeTask, err)
		}
		return err
	case fault.ClassOf(err) == fault.RunFatal:
		return fmt.Errorf("%w: %w", h.fail(ctx, d, err), asynq.SkipRetry)
	case d.final:
		return h.fail(ctx, d, fmt.Errorf("retries exhausted: %w", err))
	default:
		return err
	}
}

// fail records on the partition and its run that the chain cannot go on,
// and returns err, with the failure to record it if that failed too.
func (h *Handler) fail(ctx context.Context, d delivery, err error) error {
	failed, ferr := h.store.FailPartition(ctx, d.Ref(), err.Error())
	if ferr != nil {
		return fmt.Errorf("%w (recording the failure failed too: %v)", err, ferr)
	}
	if failed {
		// The error itself is logged once, by the server's error handler.
		d.log.Warn("run failed", "seq", d.Seq, "attempt", d.Attempt)
	}
	return err
}
