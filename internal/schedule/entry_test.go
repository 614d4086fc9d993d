package schedule

import (
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/tasks"
)

func newYork(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// The next fire of an entry, and the trading date a daily sync fired then
// gets: the fire's calendar day in the entry's time zone, not in UTC, across
// daylight saving time changes.
func TestNextFireAndTradingDate(t *testing.T) {
	ny := newYork(t)
	tests := []struct {
		name     string
		spec     string
		now      string // UTC
		wantFire string // UTC
		wantDate string
	}{
		{"weekday before the fire, winter (EST, UTC-5)", "CRON_TZ=America/New_York 30 18 * * 1-5",
			"2026-03-06T20:00:00Z", "2026-03-06T23:30:00Z", "2026-03-06"},
		{"Friday after the fire: Monday, after the switch to EDT (UTC-4)", "CRON_TZ=America/New_York 30 18 * * 1-5",
			"2026-03-06T23:45:00Z", "2026-03-09T22:30:00Z", "2026-03-09"},
		{"at the fire itself: the next one", "CRON_TZ=America/New_York 30 18 * * 1-5",
			"2026-11-20T23:30:00Z", "2026-11-23T23:30:00Z", "2026-11-23"},
		{"summer (EDT)", "CRON_TZ=America/New_York 30 18 * * 1-5",
			"2026-07-01T12:00:00Z", "2026-07-01T22:30:00Z", "2026-07-01"},
		{"the switch back to EST", "CRON_TZ=America/New_York 30 18 * * 1-5",
			"2026-10-30T23:00:00Z", "2026-11-02T23:30:00Z", "2026-11-02"},
		{"New York evening is the next UTC day: New York's date", "CRON_TZ=America/New_York 30 21 * * *",
			"2026-07-01T00:00:00Z", "2026-07-01T01:30:00Z", "2026-06-30"},
		{"TZ= prefix, ahead of UTC: Tokyo's date", "TZ=Asia/Tokyo 0 8 * * *",
			"2026-11-20T12:00:00Z", "2026-11-20T23:00:00Z", "2026-11-21"},
		{"no prefix: the market's time zone", "30 18 * * 1-5",
			"2026-11-20T12:00:00Z", "2026-11-20T23:30:00Z", "2026-11-20"},
		{"seconds field", "CRON_TZ=UTC */10 * * * * *",
			"2026-11-20T12:00:03Z", "2026-11-20T12:00:10Z", "2026-11-20"},
		{"descriptor in a time zone", "CRON_TZ=America/New_York @daily",
			"2026-11-20T12:00:00Z", "2026-11-21T05:00:00Z", "2026-11-21"},
		{"@every: on the multiples of its interval", "@every 15m",
			"2026-11-20T12:03:07.5Z", "2026-11-20T12:15:00Z", "2026-11-20"},
		{"@every at a fire itself: the next one", "@every 1h",
			"2026-11-20T12:00:00Z", "2026-11-20T13:00:00Z", "2026-11-20"},
		{"@every of a day: UTC midnight, New York's date", "@every 24h",
			"2026-11-20T12:00:00Z", "2026-11-21T00:00:00Z", "2026-11-20"},
		{"@every 7m: multiples since the epoch", "@every 7m",
			"2026-11-20T12:00:00Z", "2026-11-20T12:03:00Z", "2026-11-20"}, // 1,795,176,000 s is 240 s past a multiple of 420
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := NewEntry(config.ScheduleEntry{Name: "daily", Cron: tt.spec, Job: tasks.JobDailySync}, ny)
			if err != nil {
				t.Fatal(err)
			}
			fire := e.Next(utc(tt.now))
			if !fire.Equal(utc(tt.wantFire)) {
				t.Errorf("next fire after %s = %s, want %s", tt.now, fire.UTC().Format(time.RFC3339), tt.wantFire)
			}
			k := e.Kickoff(fire)
			if k.Date != tt.wantDate || TradingDate(fire, e.Location()) != tt.wantDate {
				t.Errorf("trading date of the fire at %s = %s, want %s", fire.UTC().Format(time.RFC3339), k.Date, tt.wantDate)
			}
			if k.Overlap != config.OverlapSkip || k.Entry != "daily" || k.Job != tasks.JobDailySync {
				t.Errorf("kickoff %+v", k)
			}
		})
	}
}

// TradingDate alone: 18:30 in New York on a UTC instant.
func TestTradingDate(t *testing.T) {
	ny := newYork(t)
	tests := []struct {
		fire, want string
	}{
		{"2026-11-20T23:30:00Z", "2026-11-20"}, // 18:30 EST
		{"2026-07-01T22:30:00Z", "2026-07-01"}, // 18:30 EDT
		{"2026-07-02T03:59:59Z", "2026-07-01"}, // 23:59:59 EDT: still the 1st
		{"2026-07-02T04:00:00Z", "2026-07-02"}, // midnight EDT
		{"2026-01-01T04:30:00Z", "2025-12-31"}, // 23:30 EST on New Year's Eve
	}
	for _, tt := range tests {
		if got := TradingDate(utc(tt.fire), ny); got != tt.want {
			t.Errorf("TradingDate(%s, New York) = %s, want %s", tt.fire, got, tt.want)
		}
	}
}

// Latest finds the last fire in (after, upTo] and counts the fires there:
// what a leader fires after a pause or when it takes over.
func TestLatest(t *testing.T) {
	e, err := NewEntry(config.ScheduleEntry{Name: "e", Cron: "CRON_TZ=UTC */2 * * * * *", Job: "x"}, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, after, upTo, want string
		n                       int
	}{
		{"none", "2026-11-20T12:00:00Z", "2026-11-20T12:00:01Z", "", 0},
		{"upTo included", "2026-11-20T12:00:00Z", "2026-11-20T12:00:02Z", "2026-11-20T12:00:02Z", 1},
		{"after excluded", "2026-11-20T12:00:02Z", "2026-11-20T12:00:03Z", "", 0},
		{"several: the last", "2026-11-20T12:00:00Z", "2026-11-20T12:00:09Z", "2026-11-20T12:00:08Z", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fire, n, ok := e.Latest(utc(tt.after), utc(tt.upTo))
			if ok != (tt.want != "") || n != tt.n || (ok && !fire.Equal(utc(tt.want))) {
				t.Errorf("Latest = %s, %d, %v; want %s, %d", fire, n, ok, tt.want, tt.n)
			}
		})
	}
}

// An @every entry fires at the same times whenever a leader starts looking:
// two leaders, one taking over from the other, agree on its fires (and so
// on their kick-offs' task IDs), and the new one fires it no sooner than the
// interval after the old one's fire.
func TestEveryFiresTheSameForEveryLeader(t *testing.T) {
	e, err := NewEntry(config.ScheduleEntry{Name: "e", Cron: "@every 10m", Job: "x"}, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	first, _, ok := e.Latest(utc("2026-11-20T11:58:31Z"), utc("2026-11-20T12:04:00Z"))
	if !ok || !first.Equal(utc("2026-11-20T12:00:00Z")) {
		t.Fatalf("first leader's fire = %s, %v; want 12:00:00", first, ok)
	}
	// The next leader takes over at 12:04:17 and looks back 10 minutes.
	fire, _, ok := e.Latest(utc("2026-11-20T11:54:17Z"), utc("2026-11-20T12:04:17Z"))
	if !ok || !fire.Equal(first) || e.Kickoff(fire).TaskID() != e.Kickoff(first).TaskID() {
		t.Errorf("new leader's catch-up fire = %s, %v; want the old leader's %s, the same task", fire, ok, first)
	}
	if next := e.Next(utc("2026-11-20T12:04:17Z")); !next.Equal(utc("2026-11-20T12:10:00Z")) {
		t.Errorf("new leader's next fire = %s, want 12:10:00", next)
	}
}

// The scheduler decides at the fire whether a daily sync's date is a market
// holiday, and says so in the kick-off; an ETL job's kick-off has no say.
func TestKickoffSaysWhetherTheDateIsAHoliday(t *testing.T) {
	s := &Scheduler{holidays: []string{"2026-12-25"}}
	daily, err := NewEntry(config.ScheduleEntry{Name: "d", Cron: "CRON_TZ=UTC 30 18 * * 1-5", Job: tasks.JobDailySync}, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	pull, err := NewEntry(config.ScheduleEntry{Name: "p", Cron: "@daily", Job: "patients"}, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	for fire, want := range map[string]bool{"2026-12-25T18:30:00Z": true, "2026-12-24T18:30:00Z": false} {
		if k := s.kickoff(daily, utc(fire)); k.Holiday == nil || *k.Holiday != want {
			t.Errorf("kick-off of the fire at %s: holiday %v, want %v", fire, k.Holiday, want)
		}
	}
	if k := s.kickoff(pull, utc("2026-12-25T00:00:00Z")); k.Holiday != nil {
		t.Errorf("an ETL job's kick-off has holiday %v", *k.Holiday)
	}
}
