package schedule

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/syncworker/syncworker/internal/tasks"
)

// Enqueuer puts kick-off tasks on the queue, idempotently by their IDs.
type Enqueuer interface {
	EnqueueKickoff(ctx context.Context, k tasks.Kickoff) (created bool, err error)
	// RestoreKickoff enqueues a kick-off task again if Redis lost it with
	// its data, not if it was deleted on purpose (see
	// tasks.Enqueuer.RestoreKickoff).
	RestoreKickoff(ctx context.Context, k tasks.Kickoff) (restored bool, err error)
}

// Options configure a Scheduler.
type Options struct {
	// Entries are the entries to fire; none is fine (the election still
	// runs, for IsLeader).
	Entries []Entry
	// ConnConfig connects the leader's lock connection; it is copied.
	ConnConfig *pgx.ConnConfig
	// Name names this worker in the lock connection's application_name.
	Name string
	// Enqueuer enqueues the kick-off tasks.
	Enqueuer Enqueuer
	// PollInterval is how often a follower tries to become the leader and
	// the leader checks that it still is.
	PollInterval time.Duration
	// CatchUp is how far back a new leader looks for missed fires.
	CatchUp time.Duration
	// Holidays are the market's holidays (sync.market_holidays): a daily
	// sync's kick-off says whether its date is one (tasks.Kickoff.Holiday).
	Holidays []string
	Logger   *slog.Logger
}

// Scheduler fires the schedule's entries while this process is the leader.
// Every worker runs one; exactly one of them, the holder of the Postgres
// advisory lock, enqueues. A leader that dies or loses its connection
// releases the lock with its session, and a follower takes it within the
// poll interval. Between the loss of the lock and the leader noticing it (at
// its next check, which is also made before every fire), both may enqueue
// the same fire: its kick-off task's ID makes that one task, and starting a
// run is idempotent anyway. A kick-off task that Redis loses before a worker
// runs it is enqueued again at the leader's next poll (see reassert).
type Scheduler struct {
	entries  []Entry
	lock     lock
	enqueuer Enqueuer
	poll     time.Duration
	catchUp  time.Duration
	holidays []string
	log      *slog.Logger
	leader   atomic.Bool
	// failing is set while tries for the lead fail (Postgres is down), so
	// that the outage is logged once, not at every poll.
	failing bool
}

// New returns a Scheduler.
func New(opts Options) *Scheduler {
	cfg := opts.ConnConfig.Copy()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	// So that operators (and LeaderHolder) can tell who leads.
	cfg.RuntimeParams["application_name"] = "syncworker scheduler " + opts.Name
	// The connection speaks at every poll. One silent for much longer
	// belongs to a process that froze or a host that vanished, which
	// Postgres would otherwise notice only by TCP keepalive (two hours by
	// default), holding the lock, and the schedule, for a dead leader.
	cfg.RuntimeParams["idle_session_timeout"] = strconv.FormatInt((3*opts.PollInterval + 5*time.Second).Milliseconds(), 10)
	return &Scheduler{entries: opts.Entries, lock: lock{cfg: cfg}, enqueuer: opts.Enqueuer,
		poll: opts.PollInterval, catchUp: opts.CatchUp, holidays: opts.Holidays, log: opts.Logger}
}

// IsLeader reports whether this process is the scheduler's leader now: the
// one process that fires the schedule, and that other once-per-fleet duties
// (such as exporting the queue's metrics) may be given to.
func (s *Scheduler) IsLeader() bool { return s.leader.Load() }

// Run elects and fires until ctx ends; then it gives up the lead, closing
// its connection, so that another worker takes over at its next poll.
func (s *Scheduler) Run(ctx context.Context) {
	// last holds, per entry, the time up to which its fires are done;
	// fired says that it is a fire whose kick-off this leader saw on the
	// queue (not the start of its catch-up).
	last := make([]time.Time, len(s.entries))
	fired := make([]bool, len(s.entries))
	timer := time.NewTimer(0)
	defer timer.Stop()
	defer s.resign(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		wait := s.poll
		wasLeader := s.IsLeader()
		leading := s.elect(ctx)
		if wasLeader && !leading {
			// A leader whose connection failed may have a flaky one: it
			// sits out a poll so that a healthy follower takes over.
			wait = 2 * s.poll
		}
		if leading {
			now := time.Now()
			for i := range s.entries {
				if last[i].IsZero() {
					last[i] = now.Add(-s.catchUp)
				}
			}
			for i := range s.entries {
				if fired[i] {
					s.reassert(ctx, s.entries[i], last[i], now)
				}
				if fire := s.fire(ctx, s.entries[i], last[i], now); !fire.Equal(last[i]) {
					last[i], fired[i] = fire, true
				}
			}
			// A fire not enqueued is due still: it is tried again after
			// the poll interval, not at once.
			if next, ok := s.nextFire(last); ok && time.Until(next) > 0 {
				wait = min(wait, time.Until(next))
			}
		} else {
			// A new lead catches up from its own start.
			clear(last)
			clear(fired)
		}
		timer.Reset(wait)
	}
}

// elect takes or checks the lead, logging each change, and reports whether
// this process leads.
func (s *Scheduler) elect(ctx context.Context) bool {
	cctx, cancel := context.WithTimeout(ctx, min(s.poll, 10*time.Second))
	defer cancel()
	if s.leader.Load() {
		if err := s.lock.check(cctx); err != nil {
			s.leader.Store(false)
			if ctx.Err() == nil {
				s.log.Warn("scheduler leader lost", "error", err)
			}
		}
		return s.leader.Load()
	}
	locked, err := s.lock.tryAcquire(cctx)
	switch {
	case err != nil:
		if ctx.Err() == nil && !s.failing {
			s.log.Warn("scheduler cannot try for the lead; trying again every poll interval", "error", err, "poll_interval", s.poll)
		}
		s.failing = true
		return false
	case locked:
		s.leader.Store(true)
		s.log.Info("scheduler leader acquired", "entries", len(s.entries), "catch_up", s.catchUp)
	}
	s.failing = false
	return s.leader.Load()
}

// resign gives up the lead when the worker stops.
func (s *Scheduler) resign(ctx context.Context) {
	s.lock.close(context.WithoutCancel(ctx))
	if s.leader.Swap(false) {
		s.log.Info("scheduler leader released: the worker stops")
	}
}

// kickoff returns the kick-off of e's fire at fire, with whether a daily
// sync's date is a market holiday decided here, at the fire.
func (s *Scheduler) kickoff(e Entry, fire time.Time) tasks.Kickoff {
	k := e.Kickoff(fire)
	if k.Job == tasks.JobDailySync {
		holiday := slices.Contains(s.holidays, k.Date)
		k.Holiday = &holiday
	}
	return k
}

// fire enqueues the kick-off of e's last fire in (last, now], if any, and
// returns the time up to which e's fires are done: that fire when its
// kick-off is enqueued and marked, else last, to try again at the next
// poll. Fires missed besides the last one (a catch-up, a long pause) are not
// fired: their runs are superseded by the last one's, and a backfill starts
// any that are wanted.
func (s *Scheduler) fire(ctx context.Context, e Entry, last, now time.Time) time.Time {
	fire, n, ok := e.Latest(last, now)
	if !ok {
		return last
	}
	k := s.kickoff(e, fire)
	created, err := s.enqueuer.EnqueueKickoff(ctx, k)
	log := s.log.With("entry", e.Name, "job", e.Job, "fire", k.Fire, "task", k.TaskID())
	if n > 1 {
		log = log.With("missed", n-1)
	}
	switch {
	case err != nil && created:
		if ctx.Err() == nil {
			log.Warn("scheduled fire enqueued, but not marked as enqueued; marking it again", "error", err)
		}
		return last
	case err != nil:
		if ctx.Err() == nil {
			log.Warn("scheduled fire not enqueued; trying again", "error", err)
		}
		return last
	case created:
		log.Info("scheduled fire enqueued")
	default:
		log.Info("scheduled fire was enqueued before (by an earlier try, or an earlier leader)")
	}
	return fire
}

// reassert enqueues the kick-off of e's fire done again, while it is within
// the catch-up window, if Redis lost it (a flush, a failover to a replica
// behind, a restart without persistence) before a worker ran it: the fire
// starts its run after all. A kick-off an operator deleted in asynqmon
// stays deleted (see tasks.Enqueuer.RestoreKickoff). A kick-off that did
// run before it was lost is handled once still: its handler finds the fire
// recorded in Postgres and starts nothing (see tasks.KickoffHandler).
func (s *Scheduler) reassert(ctx context.Context, e Entry, done, now time.Time) {
	if now.Sub(done) > s.catchUp {
		return
	}
	k := s.kickoff(e, done)
	restored, err := s.enqueuer.RestoreKickoff(ctx, k)
	if err != nil || !restored {
		// An error is Redis failing: the next poll tries again, and the
		// worker's other users of Redis report the outage.
		return
	}
	s.log.Warn("scheduled fire's kick-off task was gone from Redis; enqueued it again",
		"entry", e.Name, "job", e.Job, "fire", k.Fire, "task", k.TaskID())
}

// nextFire returns the soonest fire of any entry after the times its fires
// are done up to.
func (s *Scheduler) nextFire(last []time.Time) (time.Time, bool) {
	var next time.Time
	for i, e := range s.entries {
		if t := e.Next(last[i]); !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	return next, !next.IsZero()
}
