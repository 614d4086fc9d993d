package tasks_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/tasks"
)

// A scheduled daily sync that falls on a market holiday starts nothing and
// says so (not an error: the kick-off is done, not retried or archived); a
// start of the holiday by hand is refused with ErrHoliday, which is bad
// input; the next day starts as usual.
func TestScheduledSyncSkipsHolidays(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 10, Configure: func(c *config.Config) {
		c.Sync.MarketHolidays = []string{"2026-12-25"}
	}})
	ctx := t.Context()
	daily := tasks.DailyOptions(h.Config.Sync)
	fire := time.Date(2026, 12, 25, 18, 30, 0, 0, time.UTC)
	res, err := h.Control.Kickoff(ctx, tasks.Kickoff{Entry: "daily", Job: tasks.JobDailySync, Fire: fire,
		Date: "2026-12-25", Overlap: config.OverlapSkip}, daily)
	if err != nil || res.How != tasks.Holiday || res.Run != 0 {
		t.Fatalf("kick-off on a holiday = %+v, %v; want holiday, no run", res, err)
	}
	if n := h.Count(`SELECT count(*) FROM runs`); n != 0 {
		t.Fatalf("%d runs after a holiday's kick-off", n)
	}

	daily.Date, daily.Today = fire, fire
	if _, _, err := h.Control.StartDailySync(ctx, daily); !errors.Is(err, tasks.ErrHoliday) || !errors.Is(err, tasks.ErrInput) {
		t.Errorf("start of a holiday by hand = %v, want ErrHoliday (bad input)", err)
	}

	next := fire.AddDate(0, 0, 1)
	res, err = h.Control.Kickoff(ctx, tasks.Kickoff{Entry: "daily", Job: tasks.JobDailySync, Fire: next,
		Date: "2026-12-26", Overlap: config.OverlapSkip}, tasks.DailyOptions(h.Config.Sync))
	if err != nil || res.How != tasks.Created || res.Run == 0 {
		t.Errorf("kick-off of the day after = %+v, %v; want a run created", res, err)
	}
}

// A kick-off carries the scheduler's decision whether its date is a
// holiday, made at the fire, and every worker follows it whatever its own
// sync.market_holidays (during a rolling change of them): an old payload
// without one leaves it to the worker's.
func TestKickoffCarriesTheFiresHolidayDecision(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 10, Configure: func(c *config.Config) {
		c.Sync.MarketHolidays = []string{"2026-12-25"}
	}})
	ctx := t.Context()
	yes, no := true, false
	for _, tt := range []struct {
		date    string
		holiday *bool
		want    tasks.How
	}{
		{"2026-12-25", &no, tasks.Created},  // the worker's config says holiday; the fire did not
		{"2026-12-28", &yes, tasks.Holiday}, // a Monday the fire took for a holiday
		{"2026-12-29", nil, tasks.Created},  // an older scheduler's kick-off: the worker's config
	} {
		day, _ := time.Parse(time.DateOnly, tt.date)
		res, err := h.Control.Kickoff(ctx, tasks.Kickoff{Entry: "daily", Job: tasks.JobDailySync, Fire: day.Add(18 * time.Hour),
			Date: tt.date, Holiday: tt.holiday, Overlap: config.OverlapAllow}, tasks.DailyOptions(h.Config.Sync))
		if err != nil || res.How != tt.want {
			said := "unsaid"
			if tt.holiday != nil {
				said = fmt.Sprint(*tt.holiday)
			}
			t.Errorf("kick-off of %s (holiday %s) = %+v, %v; want %s", tt.date, said, res, err, tt.want)
		}
	}
}

// A fire on a holiday reports holiday even while another day's run is
// unfinished and the entry does not allow overlap: nothing was skipped, as
// there is nothing to start that day.
func TestHolidayFireWhileAnotherRunIsUnfinished(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 10, Configure: func(c *config.Config) {
		c.Sync.MarketHolidays = []string{"2026-12-25"}
	}})
	before := h.StartDailySync("2026-12-24", 5, 1) // no worker: it stays unfinished
	res, err := h.Control.Kickoff(t.Context(), tasks.Kickoff{Entry: "daily", Job: tasks.JobDailySync,
		Fire: time.Date(2026, 12, 25, 18, 30, 0, 0, time.UTC), Date: "2026-12-25", Overlap: config.OverlapSkip},
		tasks.DailyOptions(h.Config.Sync))
	if err != nil || res.How != tasks.Holiday || res.Run != 0 {
		t.Errorf("kick-off on a holiday while run %d is unfinished = %+v, %v; want holiday", before.ID, res, err)
	}
}
