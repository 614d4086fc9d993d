package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/fault"
	"github.com/syncworker/syncworker/internal/quotes"
)

// TypeKickoff is the asynq task type of a kick-off task: one fire of a
// schedule entry, which starts the entry's run.
//
// The scheduler's leader enqueues a kick-off task rather than starting the
// run itself so that the start is durable: a start that fails for a passing
// reason (Postgres restarting at 18:30, say) is retried by asynq with
// backoff, on any worker, and every fire and its outcome can be seen in
// asynqmon. The task's ID is the entry and the fire time, so a fire enqueued
// twice (by an old leader and its successor) is one task.
const TypeKickoff = "schedule:kickoff"

const (
	// kickoffMaxRetry is how many times a failing start is retried: with
	// the batch tasks' backoff (up to sync.retry_backoff_max, 2m by
	// default) about half an hour, which outlasts a database restart or
	// failover; after it the task is archived, and can be run again from
	// asynqmon.
	kickoffMaxRetry = 20
	// kickoffRetention is how long a done kick-off task stays in Redis: in
	// asynqmon with its outcome, and holding its ID against a second enqueue
	// of the same fire by a new leader catching up (schedule.catch_up is at
	// most 24h).
	kickoffRetention = 25 * time.Hour
)

// Kickoff is the payload of a kick-off task: everything the start needs,
// decided at the fire, so that any worker starts the same run whatever its
// own configuration.
type Kickoff struct {
	// Entry is the schedule entry's name.
	Entry string `json:"entry"`
	// Job is the job to start.
	Job string `json:"job"`
	// Fire is the time the entry fired, in the entry's time zone.
	Fire time.Time `json:"fire"`
	// Date is the trading date of a daily sync, YYYY-MM-DD: the fire's date
	// in the entry's time zone.
	Date string `json:"date,omitempty"`
	// Params are an ETL job's run parameters.
	Params map[string]string `json:"params,omitempty"`
	// Holiday says whether a daily sync's Date is a market holiday, as the
	// scheduler's sync.market_holidays had it at the fire: every worker
	// then decides the same, whatever its own configuration (during a
	// rolling change of it, say). Nil (a kick-off of an older scheduler)
	// leaves it to the worker's configuration.
	Holiday *bool `json:"holiday,omitempty"`
	// Overlap is the entry's overlap policy, config.OverlapSkip or
	// config.OverlapAllow.
	Overlap string `json:"overlap"`
}

// TaskID is the kick-off task's deterministic ID: the entry and the fire
// time (UTC, to the second).
func (k Kickoff) TaskID() string {
	return "kickoff:" + k.Entry + ":" + k.Fire.UTC().Format("20060102T150405Z")
}

// DecodeKickoff parses and checks a kick-off payload.
func DecodeKickoff(b []byte) (Kickoff, error) {
	if len(b) > 16<<10 {
		return Kickoff{}, fmt.Errorf("kickoff payload of %d bytes is too large", len(b))
	}
	var k Kickoff
	if err := decodeStrict(b, &k); err != nil {
		return Kickoff{}, fmt.Errorf("decode kickoff payload: %w", err)
	}
	switch {
	case k.Entry == "" || k.Job == "" || k.Fire.IsZero():
		return Kickoff{}, errors.New("kickoff payload needs entry, job and fire")
	case k.Overlap != config.OverlapSkip && k.Overlap != config.OverlapAllow:
		return Kickoff{}, fmt.Errorf("kickoff payload overlap %q: want %s or %s", k.Overlap, config.OverlapSkip, config.OverlapAllow)
	case k.Job != JobDailySync && k.Holiday != nil:
		return Kickoff{}, fmt.Errorf("kickoff payload of %s has holiday; only daily-sync takes one", k.Job)
	case k.Job == JobDailySync && len(k.Params) > 0:
		return Kickoff{}, errors.New("kickoff payload of daily-sync has params; it takes a date")
	case k.Job == JobDailySync:
		if _, err := time.Parse(quotes.DateLayout, k.Date); err != nil {
			return Kickoff{}, fmt.Errorf("kickoff payload date %q: want YYYY-MM-DD", k.Date)
		}
	case k.Date != "":
		return Kickoff{}, fmt.Errorf("kickoff payload of %s has a date; only daily-sync takes one", k.Job)
	}
	return k, nil
}

// EnqueueKickoff puts the kick-off task of k on the queue. A task with the
// same ID (the same fire, enqueued before) is the same task: EnqueueKickoff
// then reports created false and no error. Either way it marks the fire's
// kick-off as enqueued in Redis (see RestoreKickoff).
func (e *Enqueuer) EnqueueKickoff(ctx context.Context, k Kickoff) (created bool, err error) {
	payload, err := json.Marshal(k)
	if err != nil {
		return false, fmt.Errorf("encode kickoff %s: %w", k.TaskID(), err)
	}
	_, err = e.client.Load().EnqueueContext(ctx, asynq.NewTask(TypeKickoff, payload),
		asynq.Queue(Queue),
		asynq.TaskID(k.TaskID()),
		asynq.MaxRetry(kickoffMaxRetry),
		asynq.Timeout(e.timeout),
		asynq.Retention(kickoffRetention),
	)
	created = err == nil
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return false, fmt.Errorf("enqueue task %s: %w", k.TaskID(), err)
	}
	// After the task: a replica that has the mark has the task too.
	if err := e.rdb.Set(ctx, kickoffMark(k), 1, kickoffRetention).Err(); err != nil {
		return created, fmt.Errorf("mark task %s enqueued: %w", k.TaskID(), err)
	}
	return created, nil
}

// RestoreKickoff enqueues the kick-off task of k again if Redis lost it:
// when the mark that EnqueueKickoff left is gone too (Redis lost its data,
// not just the task). A task that is gone while its mark is there was
// deleted on purpose (in asynqmon, to call the fire off) and stays gone.
// It reports whether it enqueued the task.
func (e *Enqueuer) RestoreKickoff(ctx context.Context, k Kickoff) (restored bool, err error) {
	n, err := e.rdb.Exists(ctx, kickoffMark(k)).Result()
	if err != nil {
		return false, fmt.Errorf("look up the mark of task %s: %w", k.TaskID(), err)
	}
	if n > 0 {
		return false, nil
	}
	// Redis lost the queue's registration with its data, most likely:
	// without it asynqmon shows no queue, and the fire's outcome would not
	// be seen.
	e.Republish()
	return e.EnqueueKickoff(ctx, k)
}

// kickoffMark is the key that says the kick-off task of k was enqueued; it
// lasts as long as the task is retained.
func kickoffMark(k Kickoff) string { return "syncworker:kickoff-enqueued:" + k.TaskID() }

// Skipped: a scheduled start found a run of its job for another run key
// unfinished, and its entry does not allow overlap; it started nothing.
const Skipped How = "skipped"

// Holiday: a scheduled daily sync fell on a market holiday (see
// DailySyncOptions.Holidays) that has no run; it started nothing.
const Holiday How = "holiday"

// KickoffResult is what a kick-off did; it is the task's result in asynqmon.
type KickoffResult struct {
	Entry string    `json:"entry"`
	Job   string    `json:"job"`
	Fire  time.Time `json:"fire"`
	// How is created, found, resumed, skipped or holiday.
	How How `json:"how"`
	// Run is the run started or found; for a skip, the unfinished run that
	// it waited for.
	Run       int64             `json:"run"`
	RunKey    string            `json:"run_key"`
	RunStatus checkpoint.Status `json:"run_status"`
	// Repeat is true when the fire was handled before, by an earlier
	// kick-off task of the same ID (Redis lost it after it ran, and the
	// scheduler enqueued it again): nothing was started, and How and Run
	// are what that one did.
	Repeat bool `json:"repeat,omitempty"`
}

// CheckStart reports whether a start of job with params would be taken
// (the job exists and the params are its own), without starting anything:
// the daily sync takes no params, an ETL job exactly its declared ones.
// Errors wrap ErrUnknownJob or ErrInput.
func (c *Control) CheckStart(job string, params map[string]string) error {
	if job == JobDailySync {
		if len(params) > 0 {
			return fmt.Errorf("daily-sync takes no params (its trading date is the fire's date): %w", ErrInput)
		}
		return nil
	}
	_, _, err := c.etl.prepare(job, ETLOptions{Params: params})
	return err
}

// Kickoff starts the run of a fire of a schedule entry: the daily sync of
// k.Date (a new run taking its sizes from daily), or the ETL job with
// k.Params. Unless k allows overlap, it starts nothing while a run of the
// job for another run key is pending, running or paused (a paused run waits
// for its operator, and a second run beside it would compete for the same
// source); a failed or timed-out run does not hold it up, as it has stopped
// until someone retries it. A run for the same key is the one the fire
// would start anyway: starting finds it.
func (c *Control) Kickoff(ctx context.Context, k Kickoff, daily DailySyncOptions) (KickoffResult, error) {
	return c.kickoff(ctx, k, daily, time.Time{})
}

// kickoff is Kickoff, for a kick-off claimed at claimed (zero: unknown): a
// run of the job and key created since, which an earlier attempt of the
// same kick-off may have started, is the fire's run, found, even when it
// has completed or been cancelled since (a start would begin the job's
// next generation).
func (c *Control) kickoff(ctx context.Context, k Kickoff, daily DailySyncOptions, claimed time.Time) (KickoffResult, error) {
	res := KickoffResult{Entry: k.Entry, Job: k.Job, Fire: k.Fire}
	key := k.Date
	if k.Holiday != nil {
		// The fire's decision, not this worker's configuration.
		daily.Holidays = nil
		if *k.Holiday {
			daily.Holidays = []string{k.Date}
		}
	}
	if k.Job != JobDailySync {
		_, params, err := c.etl.prepare(k.Job, ETLOptions{Params: k.Params})
		if err != nil {
			return res, err
		}
		key = runKey(params)
	} else if daily.holiday(key) {
		// A holiday without a run has nothing to start, whatever else is
		// unfinished: it is no skip. One with a run is found below.
		_, err := c.store.GetByKey(ctx, k.Job, key)
		switch {
		case errors.Is(err, checkpoint.ErrNotFound):
			res.How = Holiday
			return res, nil
		case err != nil:
			return res, err
		}
	}
	alone := k.Overlap != config.OverlapAllow
	if alone {
		// Checked first to spare an ETL job's first page. Not enough on
		// its own: another fire of the job may start a run between this
		// check and the start, which checks again (see
		// checkpoint.NewRun.Alone).
		if err := c.store.CheckAlone(ctx, k.Job, key); err != nil {
			return overlapped(res, err)
		}
	}

	var run checkpoint.Run
	var err error
	if k.Job == JobDailySync {
		day, _ := time.Parse(quotes.DateLayout, k.Date) // checked by DecodeKickoff
		// The date is the fire's own day in the entry's time zone, never
		// ahead of it, whatever the market's time zone says.
		daily.Date, daily.Today, daily.alone = day, day, alone
		var created bool
		run, created, err = c.StartDailySync(ctx, daily)
		res.How = Found
		if created {
			res.How = Created
		}
		if errors.Is(err, ErrHoliday) {
			res.How, err = Holiday, nil
		}
	} else {
		var started Started
		started, err = c.StartETL(ctx, k.Job, ETLOptions{Params: k.Params, alone: alone, claimed: claimed})
		run, res.How = started.Run, started.How
	}
	res.Run, res.RunKey, res.RunStatus = run.ID, run.RunKey, run.Status
	return overlapped(res, err)
}

// overlapped returns res as a skip for the unfinished run when err is a
// *checkpoint.OverlapError, else res and err.
func overlapped(res KickoffResult, err error) (KickoffResult, error) {
	var oe *checkpoint.OverlapError
	if !errors.As(err, &oe) {
		return res, err
	}
	res.How, res.Run, res.RunKey, res.RunStatus = Skipped, oe.Run.ID, oe.Run.RunKey, oe.Run.Status
	return res, nil
}

// kickoffOnce handles k through Kickoff the first time, and records what it
// did; a kick-off of the same fire handled before (enqueued again after
// Redis lost the first task, see schedule.Scheduler) starts nothing and
// reports the recorded outcome with Repeat set. The kick-off is claimed in
// Postgres before the start and recorded after it: a worker that dies
// between the two (or a record that fails) leaves the task to be retried,
// and the retry takes a run of the job created since the claim for the
// fire's own, even one that has completed or been cancelled since, rather
// than start the job's next generation. Two deliveries at once (the first
// not recorded yet) both start, and find the same run.
func (h *KickoffHandler) kickoffOnce(ctx context.Context, k Kickoff) (KickoffResult, error) {
	store := h.control.store
	rec, err := store.KickoffOf(ctx, k.TaskID())
	switch {
	case err == nil:
		res := KickoffResult{Entry: k.Entry, Job: k.Job, Fire: k.Fire, How: How(rec.How), Run: rec.RunID, Repeat: true}
		if rec.RunID != 0 {
			run, err := store.Get(ctx, rec.RunID)
			switch {
			case errors.Is(err, checkpoint.ErrNotFound):
				res.Run = 0 // pruned since the record was read
			case err != nil:
				return res, err
			default:
				res.RunKey, res.RunStatus = run.RunKey, run.Status
			}
		}
		return res, nil
	case !errors.Is(err, checkpoint.ErrNotFound):
		return KickoffResult{}, err
	}
	record := checkpoint.Kickoff{TaskID: k.TaskID(), Entry: k.Entry, Job: k.Job, Fire: k.Fire}
	claimed, err := store.ClaimKickoff(ctx, record)
	if err != nil {
		return KickoffResult{}, err
	}
	res, err := h.control.kickoff(ctx, k, h.daily, claimed)
	if refused(err) {
		// Started nothing, for good: the claim goes, so that a refused
		// kick-off leaves nothing behind (an operator who fixes the
		// cause runs the archived task again, which claims anew) - unless
		// a run of the job was created since the claim, which an earlier
		// attempt may have started (see UnclaimKickoff).
		if uerr := store.UnclaimKickoff(ctx, record.TaskID); uerr != nil {
			// Not refused then, but retried: archived now, the task would
			// leave its claim behind (and a run of it again by hand would
			// take that old claim for its own). The retry is refused
			// again and takes the claim back.
			return res, fmt.Errorf("start refused (%v), and its claim was not taken back: %w", err, uerr)
		}
		return res, err
	}
	if err != nil && !errors.Is(err, ErrNotEnqueued) {
		return res, err
	}
	record.How, record.RunID = string(res.How), res.Run
	if rerr := store.RecordKickoff(ctx, record); rerr != nil {
		// Retried: the retry finds the run this one started (see above).
		return res, rerr
	}
	return res, err
}

// refused reports whether err refuses a start for good: an unknown job, bad
// params, an empty stock universe, a source that refuses the job's
// credentials.
func refused(err error) bool {
	return err != nil && (errors.Is(err, ErrInput) || errors.Is(err, ErrUnknownJob) || fault.ClassOf(err) == fault.RunFatal)
}

// KickoffHandler runs kick-off tasks.
type KickoffHandler struct {
	control *Control
	daily   DailySyncOptions
	log     *slog.Logger
}

// NewKickoffHandler returns the handler of kick-off tasks, which starts runs
// through control; a new daily sync takes its sizes and failure limits from
// daily (its dates are the fire's).
func NewKickoffHandler(control *Control, daily DailySyncOptions, log *slog.Logger) *KickoffHandler {
	return &KickoffHandler{control: control, daily: daily, log: log}
}

// ProcessTask starts the run of one fire. A start refused for good (an
// unknown job, bad params, an empty stock universe, a source that refuses
// the job's credentials) fails the task without retries, its reason kept in
// asynqmon; any other error is retried with backoff.
func (h *KickoffHandler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	k, err := DecodeKickoff(t.Payload())
	if err != nil {
		return fmt.Errorf("malformed task payload: %w: %w", err, asynq.SkipRetry)
	}
	log := h.log.With("entry", k.Entry, "job", k.Job, "fire", k.Fire)
	res, err := h.kickoffOnce(ctx, k)
	switch {
	case err == nil:
	case errors.Is(err, ErrNotEnqueued):
		// The run is safe in Postgres; the sweeper enqueues its tasks.
		log.Warn("scheduled run started, some of its tasks not enqueued yet", "run", res.Run, "error", err)
	case refused(err):
		return fmt.Errorf("scheduled start of %s refused: %w: %w", k.Job, fault.Wrap(fault.RunFatal, err), asynq.SkipRetry)
	case err != nil:
		return fmt.Errorf("scheduled start of %s: %w", k.Job, err)
	}
	switch {
	case res.Repeat:
		log.Warn("scheduled fire was handled before; its kick-off task was enqueued again (Redis lost the first?): nothing started",
			"how", res.How, "run", res.Run)
	case res.How == Holiday:
		log.Info("scheduled fire on a market holiday: nothing started", "date", k.Date)
	case res.How == Skipped:
		log.Warn("scheduled fire skipped: a run of the job is unfinished and the entry does not allow overlap",
			"unfinished_run", res.Run, "run_key", res.RunKey, "status", res.RunStatus)
	default:
		log.Info("scheduled run started", "how", res.How, "run", res.Run, "run_key", res.RunKey, "status", res.RunStatus)
	}
	if w := t.ResultWriter(); w != nil {
		// Best effort: the result only shows in asynqmon.
		b, _ := json.Marshal(res) // cannot fail: text, numbers and a time
		_, _ = w.Write(b)
	}
	return nil
}
