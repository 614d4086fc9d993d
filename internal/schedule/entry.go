// Package schedule is syncworker's scheduler: the cron entries of the
// configuration, fired by exactly one worker, the leader, elected with a
// Postgres advisory lock. Each fire becomes a kick-off task (package tasks)
// that starts the entry's run, idempotently.
package schedule

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/quotes"
	"github.com/syncworker/syncworker/internal/tasks"
)

// Entry is a schedule entry ready to fire.
type Entry struct {
	config.ScheduleEntry
	sched cron.Schedule
	loc   *time.Location
}

// NewEntry parses e; a spec without a CRON_TZ= or TZ= prefix is in def,
// the market's time zone.
func NewEntry(e config.ScheduleEntry, def *time.Location) (Entry, error) {
	sched, err := config.ParseCron(e.Cron)
	if err != nil {
		return Entry{}, fmt.Errorf("schedule entry %s: %w", e.Name, err)
	}
	loc := def
	switch s := sched.(type) {
	case *cron.SpecSchedule:
		if s.Location != time.Local {
			loc = s.Location
		}
	case cron.ConstantDelaySchedule:
		sched = every{s.Delay}
	}
	return Entry{ScheduleEntry: e, sched: sched, loc: loc}, nil
}

// every is the schedule of @every d: the multiples of d since the Unix
// epoch (@every 1h: each hour on the hour, UTC). cron's own counts d from
// the time it is asked about, which is each new leader's start: leaders
// would each fire at times of their own, under task IDs of their own, and
// a new leader could fire soon after the old one's last fire.
type every struct {
	d time.Duration
}

// Next returns the first multiple of d after t.
func (e every) Next(t time.Time) time.Time {
	d := e.d.Nanoseconds()
	n := t.UnixNano()
	next := (n/d + 1) * d
	if n < 0 && n%d != 0 {
		next -= d // division truncates toward zero
	}
	return time.Unix(0, next).In(t.Location())
}

// Location returns the entry's time zone.
func (e Entry) Location() *time.Location { return e.loc }

// Next returns the entry's first fire after t, in its time zone; the zero
// time if it never fires again.
func (e Entry) Next(t time.Time) time.Time {
	next := e.sched.Next(t.In(e.loc))
	if next.IsZero() {
		return next
	}
	return next.In(e.loc)
}

// maxScan bounds the fires Latest steps through: a day of fires every
// second, the most that schedule.catch_up (at most 24h) can hold.
const maxScan = 24 * 3600

// Latest returns the last fire in (after, upTo], and how many fires the
// interval holds; ok is false when it holds none.
func (e Entry) Latest(after, upTo time.Time) (fire time.Time, n int, ok bool) {
	for t := e.Next(after); !t.IsZero() && !t.After(upTo) && n < maxScan; t = e.Next(t) {
		fire, n, ok = t, n+1, true
	}
	return fire, n, ok
}

// TradingDate returns the trading date of a daily sync fired at fire: its
// calendar day in loc, YYYY-MM-DD.
func TradingDate(fire time.Time, loc *time.Location) string {
	return fire.In(loc).Format(quotes.DateLayout)
}

// Kickoff returns the kick-off of the entry's fire at fire.
func (e Entry) Kickoff(fire time.Time) tasks.Kickoff {
	k := tasks.Kickoff{Entry: e.Name, Job: e.Job, Fire: fire.In(e.loc), Params: e.Params, Overlap: e.OverlapPolicy()}
	if e.Job == tasks.JobDailySync {
		k.Date = TradingDate(fire, e.loc)
	}
	return k
}
