package tasks

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/quotes"
)

// MaxBackfillDays bounds the days (weekends included) of one backfill: a
// longer range is more likely a typo in a year than a wish.
const MaxBackfillDays = 366

// What a backfill did with a day.
const (
	// BackfillCreated: the day had no run; its daily sync was started.
	BackfillCreated = "created"
	// BackfillExists: the day has a run, which was left as it is.
	BackfillExists = "exists"
	// BackfillWeekend: a Saturday or Sunday, which has no trading.
	BackfillWeekend = "weekend"
	// BackfillHoliday: a market holiday without a run (see
	// DailySyncOptions.Holidays), which has no trading.
	BackfillHoliday = "holiday"
)

// BackfillDay is what a backfill did with one day of its range.
type BackfillDay struct {
	Date string `json:"date"`
	// Action is created, exists, weekend or holiday.
	Action string `json:"action"`
	// Run and Status are the day's run, created or found.
	Run    int64             `json:"run,omitempty"`
	Status checkpoint.Status `json:"status,omitempty"`
}

// BackfillRange checks a backfill's range, from and to both included, and
// returns its days in order: to must not be before from, nor after today,
// and the range at most MaxBackfillDays long. Its errors wrap ErrInput.
func BackfillRange(from, to, today time.Time) ([]time.Time, error) {
	f, l := from.Format(quotes.DateLayout), to.Format(quotes.DateLayout)
	first := time.Date(from.Year(), from.Month(), from.Day(), 0, 0, 0, 0, time.UTC)
	last := time.Date(to.Year(), to.Month(), to.Day(), 0, 0, 0, 0, time.UTC)
	n := int(last.Sub(first).Hours()/24) + 1
	switch {
	case last.Before(first):
		return nil, fmt.Errorf("--to %s is before --from %s: %w", l, f, ErrInput)
	case f < EarliestDate:
		return nil, fmt.Errorf("--from %s is before %s: %w", f, EarliestDate, ErrInput)
	case l > today.Format(quotes.DateLayout):
		return nil, fmt.Errorf("--to %s is after today (%s) in the market's time zone: %w", l, today.Format(quotes.DateLayout), ErrInput)
	case n > MaxBackfillDays:
		return nil, fmt.Errorf("%s to %s is %d days; a backfill takes at most %d: %w", f, l, n, MaxBackfillDays, ErrInput)
	}
	days := make([]time.Time, n)
	for i := range days {
		days[i] = first.AddDate(0, 0, i)
	}
	return days, nil
}

// Backfill starts the daily sync of every weekday from from to to (both
// included; see BackfillRange) that has no run yet, with opts as for
// StartDailySync (its dates are the days'). A day that has a run, in any
// state, is reported and left alone; so is a market holiday without one. It
// stops at the first error, returning the days it did; tasks that could not
// be enqueued are reported once at the end (ErrNotEnqueued: the sweeper
// enqueues them).
func (c *Control) Backfill(ctx context.Context, from, to time.Time, opts DailySyncOptions) ([]BackfillDay, error) {
	days, err := BackfillRange(from, to, opts.Today)
	if err != nil {
		return nil, err
	}
	var out []BackfillDay
	var notEnqueued []error
	for _, day := range days {
		d := BackfillDay{Date: day.Format(quotes.DateLayout)}
		if wd := day.Weekday(); wd == time.Saturday || wd == time.Sunday {
			d.Action = BackfillWeekend
			out = append(out, d)
			continue
		}
		run, err := c.store.GetByKey(ctx, JobDailySync, d.Date)
		created := false
		if errors.Is(err, checkpoint.ErrNotFound) {
			opts.Date = day
			run, created, err = c.StartDailySync(ctx, opts)
			if errors.Is(err, ErrHoliday) {
				d.Action = BackfillHoliday
				out = append(out, d)
				continue
			}
			if errors.Is(err, ErrNotEnqueued) {
				notEnqueued = append(notEnqueued, err)
				err = nil
			}
		}
		if err != nil {
			return out, fmt.Errorf("backfill %s: %w", d.Date, err)
		}
		d.Action, d.Run, d.Status = BackfillExists, run.ID, run.Status
		if created {
			d.Action = BackfillCreated
		}
		out = append(out, d)
	}
	return out, errors.Join(notEnqueued...)
}
