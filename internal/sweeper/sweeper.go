// Package sweeper keeps every chain of every active run alive. Postgres is
// the truth and Redis only the transport: a periodic sweep, run by one worker
// at a time, looks up the task that owns each running partition and enqueues
// it again from the checkpoint when Redis has lost it (a flush, a restart
// without persistence, a crash between a commit and an enqueue), and fails
// the partition when asynq has archived the task after its last retry. A
// more frequent takeover pass hands every partition whose lease lapsed (its
// worker died or hangs) to a new task of the next epoch, and an hourly prune
// deletes the runs that ended longer ago than the retention.
package sweeper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/tasks"
)

// Sweeper puts lost chains back on the queue, takes over lapsed ones, and
// prunes the runs past their retention.
type Sweeper struct {
	store     *checkpoint.Store
	enqueuer  *tasks.Enqueuer
	inspector *asynq.Inspector
	interval  time.Duration
	takeover  time.Duration
	maxTakes  int
	retention time.Duration
	log       *slog.Logger
}

const (
	// pruneInterval is the time between prunes.
	pruneInterval = time.Hour
	// pruneBatch bounds the runs one prune deletes: a backlog (the first
	// prune of a long history, say) is spread over several hours' prunes,
	// so that no prune keeps Postgres busy long.
	pruneBatch = 200
)

// Options configure a Sweeper.
type Options struct {
	Store     *checkpoint.Store
	Enqueuer  *tasks.Enqueuer
	Inspector *asynq.Inspector
	// Interval is the time between sweeps.
	Interval time.Duration
	// TakeoverInterval is the time between takeover passes.
	TakeoverInterval time.Duration
	// MaxTakeovers is how many times a partition is taken over without a
	// commit in between before it fails: the retry budget of its batch.
	MaxTakeovers int
	// Retention is how long a run is kept after it ended; 0 keeps runs for
	// ever.
	Retention time.Duration
	Logger    *slog.Logger
}

// New returns a Sweeper.
func New(opts Options) *Sweeper {
	return &Sweeper{store: opts.Store, enqueuer: opts.Enqueuer, inspector: opts.Inspector,
		interval: opts.Interval, takeover: opts.TakeoverInterval, maxTakes: opts.MaxTakeovers,
		retention: opts.Retention, log: opts.Logger}
}

// Result counts what a sweep did.
type Result struct {
	// Skipped is true when another process held the sweep lock.
	Skipped bool
	// Checked is the number of running partitions looked at.
	Checked int
	// Enqueued is the number of chains whose task was missing and was enqueued.
	Enqueued int
	// Failed is the number of partitions failed because their task was archived.
	Failed int
}

// Run sweeps at once and then every interval, takes over lapsed leases
// every takeover interval, and prunes ended runs at once and then hourly
// (with a retention), until ctx ends. A failed pass is logged and the next
// one tries again: the sweeper must outlive the outages it repairs.
func (s *Sweeper) Run(ctx context.Context) {
	sweep := time.NewTicker(s.interval)
	defer sweep.Stop()
	takeover := time.NewTicker(s.takeover)
	defer takeover.Stop()
	if s.retention > 0 {
		// On its own: a prune that takes long holds up no takeover.
		pruned := make(chan struct{})
		defer func() { <-pruned }()
		go func() {
			defer close(pruned)
			s.prune(ctx)
		}()
	}
	s.sweepOnce(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-sweep.C:
			s.sweepOnce(ctx)
		case <-takeover.C:
			if _, err := s.TakeOver(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("takeover pass failed", "error", err)
			}
			if _, err := s.TimeOut(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("time budget pass failed", "error", err)
			}
		}
	}
}

func (s *Sweeper) sweepOnce(ctx context.Context) {
	res, err := s.Sweep(ctx)
	switch {
	case ctx.Err() != nil:
	case err != nil:
		s.log.Warn("sweep failed", "error", err, "checked", res.Checked, "enqueued", res.Enqueued, "failed", res.Failed)
	case res.Enqueued > 0 || res.Failed > 0:
		s.log.Info("sweep repaired chains", "checked", res.Checked, "enqueued", res.Enqueued, "failed", res.Failed)
	}
}

// PruneResult says what a prune did.
type PruneResult struct {
	// Skipped is true when another process held the prune lock.
	Skipped bool
	// Before is the time the deleted runs ended before.
	Before time.Time
	// Runs are the IDs of the runs deleted, oldest first.
	Runs []int64
	// Kickoffs is the number of kick-off records deleted.
	Kickoffs int64
}

// Prune deletes the runs that ended longer ago than the retention and that
// nothing will take up again (see checkpoint.Store.PruneRuns), at most
// pruneBatch of them (the next prune goes on), and the kick-off records
// handled as long ago, if no other process is pruning; with no retention it
// does nothing.
func (s *Sweeper) Prune(ctx context.Context) (PruneResult, error) {
	if s.retention <= 0 {
		return PruneResult{}, nil
	}
	res := PruneResult{Before: time.Now().Add(-s.retention)}
	locked, err := s.store.WithPruneLock(ctx, func(ctx context.Context) error {
		ids, err := s.store.PruneRuns(ctx, res.Before, pruneBatch)
		res.Runs = ids
		if err != nil {
			return err
		}
		res.Kickoffs, err = s.store.PruneKickoffs(ctx, res.Before)
		return err
	})
	res.Skipped = !locked && err == nil
	return res, err
}

// prune prunes at once and then every pruneInterval until ctx ends.
func (s *Sweeper) prune(ctx context.Context) {
	tick := time.NewTicker(pruneInterval)
	defer tick.Stop()
	for {
		s.pruneOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (s *Sweeper) pruneOnce(ctx context.Context) {
	res, err := s.Prune(ctx)
	// Each run's deletion commits on its own: those done are told, whatever
	// stopped the rest.
	if len(res.Runs) > 0 || res.Kickoffs > 0 {
		s.log.Info("pruned runs past their retention", "ended_before", res.Before, "runs_deleted", len(res.Runs),
			"runs", res.Runs, "kickoffs_deleted", res.Kickoffs)
	}
	if err != nil && ctx.Err() == nil {
		s.log.Warn("prune failed", "error", err)
	}
}

// TakeOver hands every running partition whose lease lapsed to a new task of
// the chain's next epoch, and returns how many it handed over. A partition
// whose new task could not be enqueued is left to the sweep, which finds its
// task missing.
func (s *Sweeper) TakeOver(ctx context.Context) (int, error) {
	parts, failed, err := s.store.TakeOver(ctx, s.maxTakes)
	if failed > 0 {
		s.log.Warn("partitions lost their worker too often without progress; failed their runs", "partitions", failed)
	}
	errs := []error{err}
	for _, p := range parts {
		payload := tasks.ChainPayload(p)
		if _, err := s.enqueuer.Enqueue(ctx, payload); err != nil {
			errs = append(errs, err)
			continue
		}
		s.log.Info("partition's lease lapsed; took it over with a new task",
			"task", payload.TaskID(), "run", p.RunID, "partition", p.Index, "epoch", p.Epoch, "cursor", p.Cursor)
	}
	return len(parts), errors.Join(errs...)
}

// TimeOut stops timed_out every run whose attempt used up its time budget
// while no task was working on it (one that waits out a retry backoff, say),
// and returns how many it stopped. A run a task works on is stopped by that
// task at its next page boundary.
func (s *Sweeper) TimeOut(ctx context.Context) (int, error) {
	ids, err := s.store.TimeOutIdle(ctx)
	for _, id := range ids {
		s.log.Warn("run used up its time budget; stopped it timed_out", "run", id)
	}
	return len(ids), err
}

// Sweep makes one pass over the running partitions, if no other process is
// sweeping. A partition it cannot check does not stop it from checking the
// others; their errors are returned together.
func (s *Sweeper) Sweep(ctx context.Context) (Result, error) {
	var res Result
	locked, err := s.store.WithSweepLock(ctx, func(ctx context.Context) error {
		parts, err := s.store.ActivePartitions(ctx)
		if err != nil {
			return err
		}
		var errs []error
		for _, p := range parts {
			if err := ctx.Err(); err != nil {
				return err
			}
			res.Checked++
			if err := s.check(ctx, p, &res); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
	res.Skipped = !locked && err == nil
	if err != nil {
		return res, fmt.Errorf("sweep: %w", err)
	}
	return res, nil
}

// check makes sure the task that owns p's chain exists. A partition whose
// lease is held is being worked on: its holder hands over or releases, or
// its lease lapses and the takeover pass hands it on. A lapsed lease is the
// takeover pass's too: were the sweep to enqueue the chain's task again under
// the same epoch, a batch that hangs every worker would run for ever with a
// fresh retry budget each time, never counted as taken over.
func (s *Sweeper) check(ctx context.Context, p checkpoint.Partition, res *Result) error {
	if p.Leased || p.LeaseOwner != "" {
		return nil
	}
	payload := tasks.ChainPayload(p)
	id := payload.TaskID()
	info, err := s.inspector.GetTaskInfo(tasks.Queue, id)
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		// The chain may have moved on since the pass read it (a handover
		// deletes the old task): look again before enqueueing.
		_, now, err2 := s.store.Load(ctx, p.RunID, p.Index)
		if err2 != nil {
			return err2
		}
		if now.Status != checkpoint.PartitionRunning || now.Ref() != p.Ref() || now.Leased {
			return nil
		}
		if errors.Is(err, asynq.ErrQueueNotFound) {
			s.enqueuer.Republish() // Redis lost the queue's registration too
		}
		created, err := s.enqueuer.Enqueue(ctx, payload)
		if err != nil {
			return err
		}
		if created {
			res.Enqueued++
			s.log.Info("chain task was missing; enqueued it from the checkpoint",
				"task", id, "run", p.RunID, "partition", p.Index, "cursor", p.Cursor)
		}
		return nil
	case err != nil:
		return fmt.Errorf("look up task %s: %w", id, err)
	case info.State == asynq.TaskStateArchived:
		failed, err := s.store.FailPartition(ctx, p.Ref(), "retries exhausted: "+info.LastErr)
		if err != nil {
			return err
		}
		if failed {
			res.Failed++
			s.log.Warn("chain task was archived after its last retry; failed the run",
				"task", id, "run", p.RunID, "partition", p.Index, "last_error", info.LastErr)
		}
	}
	return nil
}
