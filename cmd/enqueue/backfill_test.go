package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/harness"
)

// A backfill over a week starts the weekdays that have no run, reports the
// day that has one as existing without touching it, and skips the weekend;
// run again, it starts nothing.
func TestBackfillStartsTheMissingWeekdays(t *testing.T) {
	c := setup(t, harness.Options{Symbols: 10})
	existing := c.h.StartDailySync("2026-11-16", 5, 1)
	before := c.h.Fingerprint()["runs"]

	var rep backfillReport
	r := c.runJSON(&rep, "backfill", "daily-sync", "--from", "2026-11-12", "--to", "2026-11-18")
	if r.code != 0 || rep.Created != 4 || rep.Existing != 1 || rep.Weekend != 2 || len(rep.Days) != 7 {
		t.Fatalf("backfill = %+v, %+v", r, rep)
	}
	want := []string{"created", "created", "weekend", "weekend", "exists", "created", "created"}
	for i, d := range rep.Days {
		if d.Action != want[i] || (d.Action == "weekend") != (d.Run == 0) {
			t.Errorf("day %s: %+v, want %s", d.Date, d, want[i])
		}
	}
	if rep.Days[4].Run != existing.ID {
		t.Errorf("existing day reported as run %d, want %d", rep.Days[4].Run, existing.ID)
	}
	rows, err := c.h.DB.Pool.Query(t.Context(), `SELECT run_key FROM runs WHERE job = 'daily-sync' ORDER BY run_key`)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"2026-11-12", "2026-11-13", "2026-11-16", "2026-11-17", "2026-11-18"}) {
		t.Errorf("runs for %v", keys)
	}
	// The existing run's row was not written to.
	var row string
	if err := c.h.DB.Pool.QueryRow(t.Context(), `SELECT x::text || '@' || x.xmin::text FROM runs x WHERE id = $1`, existing.ID).Scan(&row); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(before, row) {
		t.Errorf("the existing run was written to: %s", row)
	}

	r = c.run("", "backfill", "daily-sync", "--from", "2026-11-12", "--to", "2026-11-18")
	if r.code != 0 || !strings.Contains(r.stdout, "0 started, 5 existing, 2 weekend days and 0 holidays skipped") ||
		!strings.Contains(r.stdout, "2026-11-14  Sat  weekend") || !strings.Contains(r.stdout, "2026-11-16  Mon  exists") {
		t.Errorf("second backfill = %+v", r)
	}
	if n := c.h.Count(`SELECT count(*) FROM runs`); n != 5 {
		t.Errorf("%d runs after the second backfill, want 5", n)
	}
}

// A market holiday (sync.market_holidays) without a run is reported as a
// holiday by a backfill and starts nothing, and a start of it by hand is
// refused with exit 1 and says why.
func TestHolidaysHaveNoDailySync(t *testing.T) {
	c := setup(t, harness.Options{Symbols: 10, Configure: func(cfg *config.Config) {
		cfg.Sync.MarketHolidays = []string{"2026-11-13", "2026-11-17"}
	}})
	existing := c.h.StartDailySync("2026-11-12", 5, 1)

	r := c.run("", "daily-sync", "--date", "2026-11-17")
	if r.code != 1 || !strings.Contains(r.stderr, "date 2026-11-17 is a market holiday, which has no trading (sync.market_holidays)") {
		t.Fatalf("daily-sync of a holiday = %+v, want exit 1 naming the holiday", r)
	}
	if n := c.h.Count(`SELECT count(*) FROM runs WHERE run_key = '2026-11-17'`); n != 0 {
		t.Fatalf("%d runs of the holiday", n)
	}

	var rep backfillReport
	r = c.runJSON(&rep, "backfill", "daily-sync", "--from", "2026-11-12", "--to", "2026-11-18")
	if r.code != 0 || rep.Created != 2 || rep.Existing != 1 || rep.Weekend != 2 || rep.Holiday != 2 {
		t.Fatalf("backfill = %+v, %+v; want 2 created, 1 existing, 2 weekend, 2 holidays", r, rep)
	}
	want := []string{"exists", "holiday", "weekend", "weekend", "created", "holiday", "created"}
	for i, d := range rep.Days {
		if d.Action != want[i] {
			t.Errorf("day %s: %+v, want %s", d.Date, d, want[i])
		}
	}
	if rep.Days[0].Run != existing.ID {
		t.Errorf("2026-11-12 reported as run %d, want %d", rep.Days[0].Run, existing.ID)
	}
	if n := c.h.Count(`SELECT count(*) FROM runs WHERE run_key IN ('2026-11-13', '2026-11-17')`); n != 0 {
		t.Errorf("%d runs of the holidays after the backfill", n)
	}
}

// A bad range is refused with exit 1 and a reason, and nothing is written.
func TestBackfillRefusesBadRanges(t *testing.T) {
	c := setup(t, harness.Options{Symbols: 10})
	before := c.h.Fingerprint()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"to before from", []string{"--from", "2026-11-18", "--to", "2026-11-12"}, "--to 2026-11-12 is before --from 2026-11-18"},
		{"too long", []string{"--from", "2024-01-01", "--to", "2026-11-12"}, "a backfill takes at most 366"},
		{"bad from", []string{"--from", "2026-13-01", "--to", "2026-11-12"}, `invalid --from "2026-13-01"`},
		{"bad to", []string{"--from", "2026-11-01", "--to", "yesterday"}, `invalid --to "yesterday"`},
		{"future", []string{"--from", "2026-11-01", "--to", "2999-01-01"}, "--to 2999-01-01 is after today"},
		{"missing to", []string{"--from", "2026-11-01"}, `required flag(s) "to" not set`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.run("", append([]string{"backfill", "daily-sync"}, tt.args...)...)
			if r.code != exitError || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("backfill %v = %+v, want exit 1 with %q", tt.args, r, tt.want)
			}
		})
	}
	c.h.VerifyUnchanged(before, "refused backfills")
	if n := c.h.Count(`SELECT count(*) FROM runs`); n != 0 {
		t.Errorf("%d runs after refused backfills", n)
	}
}
