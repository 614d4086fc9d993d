package checkpoint_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/testenv"
)

type reportEnv struct {
	store *checkpoint.Store
	pool  *pgxpool.Pool
	keys  int
}

func setup(t *testing.T) *reportEnv {
	t.Helper()
	db := testenv.Postgres(t)
	return &reportEnv{store: checkpoint.New(db.Pool), pool: db.Pool}
}

// pages makes a run of 2 pages of job with budget, through attempts.
func (e *reportEnv) pages(t *testing.T, job string, budget time.Duration, attempts ...harness.Attempt) checkpoint.Run {
	t.Helper()
	e.keys++
	return harness.MakeHistory(t, e.store, e.pool, checkpoint.NewRun{Job: job, RunKey: fmt.Sprint("k", e.keys),
		Unit: checkpoint.UnitPages, Pages: 2, Total: 20, BatchSize: 10, Partitions: 1, Budget: budget}, attempts...)
}

// items makes a run of 3 items of job with no budget, through attempts.
func (e *reportEnv) items(t *testing.T, job string, attempts ...harness.Attempt) checkpoint.Run {
	t.Helper()
	e.keys++
	return harness.MakeHistory(t, e.store, e.pool, checkpoint.NewRun{Job: job, RunKey: fmt.Sprint("k", e.keys),
		Keys: []string{"A", "B", "C"}, BatchSize: 2, Partitions: 1}, attempts...)
}

func done(d time.Duration) harness.Attempt {
	return harness.Attempt{End: checkpoint.StatusCompleted, Took: d}
}
func timedOut(d time.Duration) harness.Attempt {
	return harness.Attempt{End: checkpoint.StatusTimedOut, Took: d}
}

func ptr(n int64) *int64 { return &n }

func minutes(m float64) *int64 { return ptr(int64(m * 60_000)) }

func TestDurationReport(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	const budget = 5 * time.Minute
	// etl-a: four runs of a 5m budget, three of which timed out at least
	// once; completed runs summed 7m, 4m and 11m.
	e.pages(t, "etl-a", budget, timedOut(5*time.Minute), done(2*time.Minute))
	e.pages(t, "etl-a", budget, done(4*time.Minute))
	e.pages(t, "etl-a", budget, timedOut(5*time.Minute), timedOut(5*time.Minute), done(time.Minute))
	last := e.pages(t, "etl-a", budget, timedOut(5*time.Minute))
	// daily: no budget; one run failed once, one was cancelled and resumed,
	// one is still running its first attempt (not counted: nothing ended).
	e.items(t, "daily", done(90*time.Second))
	e.items(t, "daily", harness.Attempt{End: checkpoint.StatusFailed, Took: 10 * time.Second}, done(140*time.Second))
	dailyLast := e.items(t, "daily", harness.Attempt{End: checkpoint.StatusCancelled, Took: 3 * time.Second}, done(100*time.Second))
	e.items(t, "daily", harness.Attempt{End: checkpoint.StatusRunning})
	// etl-b: one run cancelled; one created and never run (not counted).
	etlBLast := e.pages(t, "etl-b", budget, harness.Attempt{End: checkpoint.StatusCancelled, Took: 30 * time.Second})
	e.pages(t, "etl-b", budget)

	got, err := e.store.DurationReport(ctx, checkpoint.ReportFilter{})
	if err != nil {
		t.Fatal(err)
	}
	want := []checkpoint.JobDurations{{
		// Completed runs 90s, 150s, 103s: p50 103s, p95 90+... sorted
		// 90, 103, 150: 103 + 0.9*47 = 145.3s. Attempts 90, 10, 140, 3, 100.
		Job: "daily", Runs: 3, Completed: 3,
		RunP50MS: ptr(103_000), RunP95MS: ptr(145_300), RunMaxMS: ptr(150_000),
		AttemptP50MS: ptr(90_000), AttemptP95MS: ptr(132_000), AttemptMaxMS: ptr(140_000),
		Attempts:  checkpoint.AttemptCounts{Completed: 3, Failed: 1, Cancelled: 1},
		LastRunID: dailyLast.ID, LastStatus: checkpoint.StatusCompleted,
	}, {
		// Sorted 4m, 7m, 11m: p50 7m, p95 7m + 0.9*4m = 10.6m. Attempts
		// 1m, 2m, 4m and 5m four times: p50 5m.
		Job: "etl-a", Runs: 4, Completed: 3,
		RunP50MS: minutes(7), RunP95MS: minutes(10.6), RunMaxMS: minutes(11),
		AttemptP50MS: minutes(5), AttemptP95MS: minutes(5), AttemptMaxMS: minutes(5),
		Attempts:     checkpoint.AttemptCounts{Completed: 3, TimedOut: 4},
		TimedOutRuns: 3, TimedOutStreak: 2,
		LastRunID: last.ID, LastStatus: checkpoint.StatusTimedOut, RunBudgetMS: minutes(5),
	}, {
		Job: "etl-b", Runs: 1,
		AttemptP50MS: ptr(30_000), AttemptP95MS: ptr(30_000), AttemptMaxMS: ptr(30_000),
		Attempts:  checkpoint.AttemptCounts{Cancelled: 1},
		LastRunID: etlBLast.ID, LastStatus: checkpoint.StatusCancelled, RunBudgetMS: minutes(5),
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DurationReport =\n%s\nwant\n%s", dump(got), dump(want))
	}
	for _, d := range got {
		t.Logf("%s: %s", d.Job, dump(d))
	}

	// One job; the newest two runs of each; the runs created since a time.
	byJob, err := e.store.DurationReport(ctx, checkpoint.ReportFilter{Job: "etl-a", Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(byJob) != 1 || byJob[0].Runs != 2 || byJob[0].Completed != 1 || *byJob[0].RunP50MS != 11*60_000 ||
		byJob[0].TimedOutRuns != 2 || byJob[0].TimedOutStreak != 2 {
		t.Errorf("etl-a, newest 2 runs = %s; want the 2 that timed out, one completed in 11m", dump(byJob))
	}
	if _, err := e.pool.Exec(ctx, `UPDATE runs SET created_at = now() - interval '40 days' WHERE job = 'daily'`); err != nil {
		t.Fatal(err)
	}
	recent, err := e.store.DurationReport(ctx, checkpoint.ReportFilter{Since: time.Now().Add(-30 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(recent) != 2 || recent[0].Job != "etl-a" || recent[1].Job != "etl-b" {
		t.Errorf("the last 30 days = %s; want etl-a and etl-b, not daily's older runs", dump(recent))
	}
	none, err := e.store.DurationReport(ctx, checkpoint.ReportFilter{Job: "nosuch"})
	if err != nil || len(none) != 0 {
		t.Errorf("a job with no runs = %v, %v; want nothing", none, err)
	}
	if _, err := e.store.DurationReport(ctx, checkpoint.ReportFilter{Limit: -1}); err == nil {
		t.Error("a negative limit was accepted")
	}
}

// The streak counts the newest runs in a row that timed out, and a run that
// timed out and then completed still timed out.
func TestDurationReportStreak(t *testing.T) {
	e := setup(t)
	e.pages(t, "etl", time.Minute, done(time.Second))
	for range 3 {
		e.pages(t, "etl", time.Minute, timedOut(time.Minute), done(time.Second))
	}
	got, err := e.store.DurationReport(context.Background(), checkpoint.ReportFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].TimedOutStreak != 3 || got[0].TimedOutRuns != 3 || got[0].Completed != 4 {
		t.Fatalf("report = %s; want a streak of 3 of 4 completed runs", dump(got))
	}
	adv := checkpoint.Suggest(got[0], time.Minute)
	if adv.Flag != checkpoint.FlagTimingOut || adv.Reason == "" {
		t.Errorf("Suggest = %+v; want the job flagged as timing out", adv)
	}
}

func dump(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func TestSuggest(t *testing.T) {
	tests := []struct {
		name      string
		d         checkpoint.JobDurations
		budget    time.Duration
		suggested *int64
		flag      checkpoint.Flag
		reason    string
	}{
		{"no history", checkpoint.JobDurations{}, 5 * time.Minute, nil, "", ""},
		{"p95 × 1.5 rounded up to a minute", checkpoint.JobDurations{Runs: 3, Completed: 3, RunP95MS: minutes(10.6)},
			time.Hour, minutes(16), "", ""},
		{"exact minutes stay", checkpoint.JobDurations{Runs: 1, Completed: 1, RunP95MS: minutes(2)},
			0, minutes(3), "", ""},
		{"at least a minute", checkpoint.JobDurations{Runs: 1, Completed: 1, RunP95MS: ptr(200)},
			0, minutes(1), "", ""},
		{"at most the longest budget", checkpoint.JobDurations{Runs: 1, Completed: 1, RunP95MS: minutes(7 * 24 * 60)},
			0, minutes(7 * 24 * 60), "", ""},
		{"half the runs timed out", checkpoint.JobDurations{Runs: 4, Completed: 2, RunP95MS: minutes(10.6), TimedOutRuns: 2, TimedOutStreak: 1},
			5 * time.Minute, minutes(16), checkpoint.FlagTimingOut,
			"2 of 4 runs timed out (50%); raise the budget from 5m to 16m, which lets 95% of completed runs finish in one attempt"},
		{"one run that timed out is no pattern", checkpoint.JobDurations{Runs: 1, TimedOutRuns: 1, TimedOutStreak: 1},
			5 * time.Minute, nil, "", ""},
		{"under half", checkpoint.JobDurations{Runs: 5, Completed: 5, RunP95MS: minutes(4), TimedOutRuns: 2, TimedOutStreak: 2},
			5 * time.Minute, minutes(6), "", ""},
		{"the last three", checkpoint.JobDurations{Runs: 10, Completed: 10, RunP95MS: minutes(4), TimedOutRuns: 4, TimedOutStreak: 3},
			5 * time.Minute, minutes(6), checkpoint.FlagTimingOut,
			"the last 3 runs all timed out, 4 of 10 in all; raise the budget from 5m to 6m, which lets 95% of completed runs finish in one attempt"},
		{"none completed", checkpoint.JobDurations{Runs: 3, TimedOutRuns: 3, TimedOutStreak: 3},
			5 * time.Minute, nil, checkpoint.FlagTimingOut,
			"the last 3 runs all timed out; no run completed, so there is no duration to size a budget from: raise the budget, or look at the source's speed"},
		{"budget raised since", checkpoint.JobDurations{Runs: 2, Completed: 2, RunP95MS: minutes(10), TimedOutRuns: 2, RunBudgetMS: minutes(5)},
			time.Hour, minutes(15), checkpoint.FlagTimingOut,
			"2 of 2 runs timed out (100%); the newest run had a budget of 5m; the 1h configured now covers the suggested 15m"},
		{"budget enough, runs still time out", checkpoint.JobDurations{Runs: 2, Completed: 1, RunP95MS: minutes(1), TimedOutRuns: 1, TimedOutStreak: 1, RunBudgetMS: minutes(5)},
			5 * time.Minute, minutes(2), "", ""},
		{"slower than the completed runs", checkpoint.JobDurations{Runs: 3, Completed: 1, RunP95MS: minutes(1), TimedOutRuns: 2, RunBudgetMS: minutes(5)},
			5 * time.Minute, minutes(2), checkpoint.FlagTimingOut,
			"2 of 3 runs timed out (67%); the budget 5m covers the suggested 2m: the runs that time out are slower than the completed ones; look at the source's speed"},
		{"timed out with no budget configured", checkpoint.JobDurations{Runs: 2, Completed: 2, RunP95MS: minutes(2), TimedOutRuns: 2},
			0, minutes(3), checkpoint.FlagTimingOut,
			"2 of 2 runs timed out (100%); its runs had budgets of their own; 3m would let 95% of completed runs finish in one attempt"},
		{"far longer than any budget", checkpoint.JobDurations{Runs: 1, Completed: 1, RunP95MS: ptr(math.MaxInt64)},
			0, minutes(7 * 24 * 60), "", ""},
		{"far above need", checkpoint.JobDurations{Runs: 3, Completed: 3, RunP95MS: ptr(100_000)},
			time.Hour, minutes(3), checkpoint.FlagOversized,
			"the budget 1h is 20× the suggested 3m (completed runs' p95 1m40s): an attempt that stalls runs that long before it times out"},
		{"above need, not far", checkpoint.JobDurations{Runs: 3, Completed: 3, RunP95MS: ptr(100_000)},
			11 * time.Minute, minutes(3), "", ""},
		{"too few runs to call it far", checkpoint.JobDurations{Runs: 2, Completed: 2, RunP95MS: ptr(100_000)},
			time.Hour, minutes(3), "", ""},
		{"no budget is not oversized", checkpoint.JobDurations{Runs: 5, Completed: 5, RunP95MS: ptr(100_000)},
			0, minutes(3), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkpoint.Suggest(tt.d, tt.budget)
			if !reflect.DeepEqual(got.SuggestedMS, tt.suggested) || got.Flag != tt.flag || got.Reason != tt.reason {
				t.Errorf("Suggest = %s; want %v %q %q", dump(got), dumpPtr(tt.suggested), tt.flag, tt.reason)
			}
		})
	}
}

func dumpPtr(p *int64) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		850 * time.Millisecond: "850ms", time.Second: "1s", 45*time.Second + 400*time.Millisecond: "45s",
		2*time.Minute + 5*time.Second: "2m5s", 16 * time.Minute: "16m", time.Hour: "1h", 90 * time.Minute: "1h30m",
		time.Hour + 10*time.Second: "1h0m10s", 168 * time.Hour: "168h",
	} {
		if got := checkpoint.ShortDuration(d); got != want {
			t.Errorf("ShortDuration(%s) = %q, want %q", d, got, want)
		}
	}
}
