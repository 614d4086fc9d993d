package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/harness"
)

const reportJobs = `jobs:
  - name: slow
    url: http://127.0.0.1:8081/v1/records
    pagination: {style: offset}
    items_path: items
    key: id
    timeout: 5m
  - name: steady
    url: http://127.0.0.1:8081/v1/records
    pagination: {style: offset}
    items_path: items
    key: id
    headers: {Authorization: "Bearer ${STEADY_TOKEN}"}
    timeout: 1h
  - name: fresh
    url: http://127.0.0.1:8081/v1/records
    pagination: {style: offset}
    items_path: items
    key: id
`

// setupReport is setup with a history of runs, in a working directory whose
// configs/jobs.yaml (the default jobs file) defines slow, steady and fresh:
//   - slow (5m budget): 4 runs, 3 of which timed out at least once; the
//     completed ones ran 7m, 4m and 11m in all;
//   - steady (1h budget): 3 runs completed in 1m, 1m30s and 2m;
//   - daily-sync (no budget): 2 runs completed in 1m30s and 2m30s, the
//     second after a failed attempt;
//   - retired (not defined any more, 10m budget): 1 run completed in 4m;
//   - fresh: no runs.
func setupReport(t *testing.T) *cli {
	t.Helper()
	c := setup(t, harness.Options{Symbols: 2})
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "configs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "configs", "jobs.yaml"), []byte(reportJobs), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)

	n := 0
	history := func(job string, budget time.Duration, attempts ...harness.Attempt) {
		t.Helper()
		n++
		spec := checkpoint.NewRun{Job: job, RunKey: fmt.Sprint("key", n), BatchSize: 10, Partitions: 1, Budget: budget,
			Unit: checkpoint.UnitPages, Pages: 2, Total: 20}
		if budget == 0 {
			spec = checkpoint.NewRun{Job: job, RunKey: fmt.Sprint("key", n), BatchSize: 2, Partitions: 1, Keys: c.h.Symbols}
		}
		harness.MakeHistory(t, c.h.Store, c.h.DB.Pool, spec, attempts...)
	}
	done := func(d time.Duration) harness.Attempt {
		return harness.Attempt{End: checkpoint.StatusCompleted, Took: d}
	}
	timedOut := harness.Attempt{End: checkpoint.StatusTimedOut, Took: 5 * time.Minute}
	history("slow", 5*time.Minute, timedOut, done(2*time.Minute))
	history("slow", 5*time.Minute, done(4*time.Minute))
	history("slow", 5*time.Minute, timedOut, timedOut, done(time.Minute))
	history("slow", 5*time.Minute, timedOut)
	history("steady", time.Hour, done(time.Minute))
	history("steady", time.Hour, done(90*time.Second))
	history("steady", time.Hour, done(2*time.Minute))
	history("daily-sync", 0, done(90*time.Second))
	history("daily-sync", 0, harness.Attempt{End: checkpoint.StatusFailed, Took: 30 * time.Second}, done(2*time.Minute))
	history("retired", 10*time.Minute, done(4*time.Minute))
	return c
}

func TestReportDurations(t *testing.T) {
	c := setupReport(t)
	r := c.run("", "report", "durations")
	if r.code != exitOK {
		t.Fatalf("report durations = %+v", r)
	}
	t.Logf("report durations:\n%s", r.stdout)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if !strings.HasPrefix(lines[0], "runs created since "+time.Now().Add(-720*time.Hour).Format("2006-01-02")) {
		t.Errorf("header %q does not give the start of the last 720h", lines[0])
	}
	since := strings.TrimPrefix(strings.Split(lines[0], ";")[0], "runs created since ")
	want := []string{
		"JOB         RUNS  COMPLETED  P50    P95     MAX    TIMED OUT  BUDGET          SUGGESTED  FLAG",
		"daily-sync  2     2          2m     2m27s   2m30s  0          none            4m         -",
		"fresh       0     0          -      -       -      0          5m (default)    -          no runs since " + since,
		"retired     1     1          4m     4m      4m     0          10m (last run)  6m         not defined in configs/jobs.yaml",
		"slow        4     3          7m     10m36s  11m    3 (75%)    5m              16m        timing out: 3 of 4 runs timed out (75%); " +
			"raise the budget from 5m to 16m, which lets 95% of completed runs finish in one attempt",
		"steady      3     3          1m30s  1m57s   2m     0          1h              3m         oversized: the budget 1h is 20× the suggested 3m " +
			"(completed runs' p95 1m57s): an attempt that stalls runs that long before it times out",
	}
	if got := lines[1:]; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("report durations table:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Each JSON is decoded into a fresh value: decoding into a used one
	// would keep the fields that the new one omits.
	var rep durationReport
	if r := c.runJSON(&rep, "report", "durations"); r.code != exitOK || len(rep.Jobs) != 5 || rep.JobsFile != "configs/jobs.yaml" {
		t.Fatalf("report durations --json = %+v: %+v", r, rep)
	}
	slow := rep.Jobs[3]
	if slow.Job != "slow" || slow.Runs != 4 || slow.Completed != 3 || *slow.RunP50MS != 420_000 || *slow.RunP95MS != 636_000 ||
		*slow.RunMaxMS != 660_000 || slow.Attempts.TimedOut != 4 || slow.Attempts.Completed != 3 || *slow.AttemptMaxMS != 300_000 ||
		slow.TimedOutRuns != 3 || slow.TimedOutShare != 0.75 || slow.TimedOutStreak != 2 || slow.LastStatus != checkpoint.StatusTimedOut ||
		*slow.BudgetMS != 300_000 || slow.BudgetFrom != "job" || *slow.SuggestedMS != 16*60_000 ||
		slow.Flag != checkpoint.FlagTimingOut || !slow.Defined {
		t.Errorf("slow = %s", dump(slow))
	}
	daily := rep.Jobs[0]
	if daily.Job != "daily-sync" || daily.BudgetMS != nil || daily.BudgetFrom != "none" || daily.Defined ||
		daily.Attempts.Failed != 1 || *daily.AttemptP50MS != 90_000 || *daily.SuggestedMS != 4*60_000 || daily.Flag != "" {
		t.Errorf("daily-sync = %s", dump(daily))
	}
	if fresh := rep.Jobs[1]; fresh.Job != "fresh" || fresh.Runs != 0 || fresh.RunP95MS != nil || fresh.SuggestedMS != nil ||
		*fresh.BudgetMS != 300_000 || fresh.BudgetFrom != "default" || !strings.HasPrefix(fresh.Note, "no runs since") {
		t.Errorf("fresh = %s", dump(fresh))
	}

	// One job; the newest two runs of each.
	rep = durationReport{}
	if r := c.runJSON(&rep, "report", "durations", "--job", "slow", "--limit", "2"); r.code != exitOK || len(rep.Jobs) != 1 ||
		rep.Jobs[0].Runs != 2 || rep.Jobs[0].TimedOutRuns != 2 || *rep.Jobs[0].RunP50MS != 660_000 {
		t.Errorf("--job slow --limit 2 = %+v: %s", r, dump(rep))
	}
	rep = durationReport{}
	if r := c.runJSON(&rep, "report", "durations", "--job", "fresh"); r.code != exitOK || len(rep.Jobs) != 1 || rep.Jobs[0].Runs != 0 {
		t.Errorf("--job fresh = %+v: %s", r, dump(rep))
	}
	// A date is a window too: the runs were all made since yesterday.
	if r := c.run("", "report", "durations", "--since", time.Now().AddDate(0, 0, 1).Format("2006-01-02")); r.code != exitError {
		t.Errorf("--since tomorrow = %+v, want exit 1", r)
	}
	rep = durationReport{}
	if r := c.runJSON(&rep, "report", "durations", "--since", time.Now().AddDate(0, 0, -1).Format("2006-01-02")); r.code != exitOK || len(rep.Jobs) != 5 ||
		rep.Jobs[3].Runs != 4 {
		t.Errorf("--since yesterday = %+v: %s", r, dump(rep))
	}
}

// With the jobs file at its default path missing there are no ETL jobs,
// and the history is reported all the same.
func TestReportDurationsWithoutJobsFile(t *testing.T) {
	c := setup(t, harness.Options{Symbols: 2})
	t.Chdir(t.TempDir())
	harness.MakeHistory(t, c.h.Store, c.h.DB.Pool, checkpoint.NewRun{Job: "daily-sync", RunKey: date, BatchSize: 2, Partitions: 1,
		Keys: c.h.Symbols}, harness.Attempt{End: checkpoint.StatusCompleted, Took: 40 * time.Second})
	r := c.run("", "report", "durations")
	if r.code != exitOK || !strings.Contains(r.stdout, "daily-sync  1     1          40s  40s  40s  0          none    1m         -") {
		t.Errorf("report durations with no jobs file = %+v", r)
	}
	if r := c.run("", "report", "durations", "--since", "1h", "--job", "retired"); r.code != exitError ||
		!strings.Contains(r.stderr, `job "retired" has no runs since`) || !strings.Contains(r.stderr, "is not defined in the jobs file configs/jobs.yaml") {
		t.Errorf("report of an unknown job = %+v", r)
	}
	t.Setenv("ETL_JOBS_FILE", "")
	os.Unsetenv("ETL_JOBS_FILE")
	r = c.run("", "report", "durations", "--json")
	if r.code != exitOK || !strings.Contains(r.stdout, `"job":"daily-sync"`) {
		t.Errorf("report durations --json with no jobs file = %+v", r)
	}
}

func TestReportDurationsBadInput(t *testing.T) {
	c := setup(t, harness.Options{Symbols: 2})
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("jobs:\n  - name: x\n    timeout: forever\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := c.h.Fingerprint()
	tests := []struct {
		name, jobsFile string
		args           []string
		want           string
	}{
		{"word for a since", "", []string{"--since", "yesterday"}, `invalid --since "yesterday": want a positive duration such as 720h or 30d, or a date YYYY-MM-DD`},
		{"negative since", "", []string{"--since", "-5h"}, `invalid --since "-5h"`},
		{"zero since", "", []string{"--since", "0"}, `invalid --since "0"`},
		{"zero days", "", []string{"--since", "0d"}, `invalid --since "0d"`},
		{"impossible date", "", []string{"--since", "2026-02-30"}, `invalid --since "2026-02-30"`},
		{"future date", "", []string{"--since", "2999-01-01"}, "--since 2999-01-01 is in the future"},
		{"since checked before connecting", "", []string{"--since", "soon", "--database-url", "postgres://postgres@127.0.0.1:1/x?sslmode=disable"},
			`invalid --since "soon"`},
		{"negative limit", "", []string{"--limit", "-1"}, "--limit -1: want 0 (every run) or more"},
		{"argument", "", []string{"slow"}, `unknown command "slow" for "enqueue report durations"`},
		{"unknown job", "", []string{"--job", "nosuch"}, `job "nosuch" has no runs since`},
		{"bad jobs file", bad, nil, "jobs file " + bad + `: job "x"`},
		{"missing jobs file named", filepath.Join(dir, "none.yaml"), nil, "none.yaml: no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.jobsFile != "" {
				t.Setenv("ETL_JOBS_FILE", tt.jobsFile)
			}
			r := c.run("", append([]string{"report", "durations", "--json"}, tt.args...)...)
			if r.code != exitError || !strings.Contains(r.stderr, tt.want) || r.stdout != "" {
				t.Errorf("report durations %v = exit %d, stdout %q, stderr %q; want exit 1, no output and %q",
					tt.args, r.code, r.stdout, r.stderr, tt.want)
			}
		})
	}
	c.h.VerifyUnchanged(before, "bad input to report durations")
}

func dump(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
