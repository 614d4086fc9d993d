package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/simulator"
)

const etlJobs = `
jobs:
  - name: patients
    url: SIM_URL/v1/records
    pagination: {style: offset, skip_param: skip, take_param: take, page_size: 500}
    items_path: items
    total_path: total
    key: id
  - name: visits
    url: SIM_URL/v1/records-cursor
    pagination: {style: cursor, cursor_param: cursor, limit_param: limit, next_path: next, page_size: 500}
    items_path: items
    key: id
    params: [since]
    query: {since: "{since}"}
`

// enqueue etl starts a pull, follows it to its end and says what it did; a
// dry run reports and writes nothing; bad command lines are refused.
func TestETLCommand(t *testing.T) {
	c := setup(t, harness.Options{Jobs: etlJobs, Sim: simulator.Config{Records: 3_000}})
	c.h.StartWorker("w")

	r := c.run("", "etl", "patients", "--wait", "--progress-interval", "1h")
	if r.code != 0 || !strings.Contains(r.stderr, "started patients (default) over 3000 records in 1 partitions, pages of 500, a time budget of 5m0s per attempt") ||
		!strings.Contains(r.stdout, "completed, 3000/3000 records (100.0%) in 6 pages, 3000 loaded") {
		t.Fatalf("etl patients --wait = %+v", r)
	}
	id := strings.Fields(r.stdout)[1]
	r = c.run("", "etl", "visits", "--param", "since=2026-01-01", "--wait", "--budget", "1h")
	if r.code != 0 || !strings.Contains(r.stderr, "over an open-ended walk in 1 partitions, pages of 500, a time budget of 1h0m0s") ||
		!strings.Contains(r.stdout, "visits since=2026-01-01: completed, 3000 records in 6 pages, 3000 loaded") {
		t.Fatalf("etl visits = %+v", r)
	}
	if n := c.h.Count(`SELECT count(*) FROM etl_records`); n != 6_000 {
		t.Errorf("%d rows, want 3000 of each job", n)
	}

	before := c.h.Fingerprint()
	var dry map[string]any
	r = c.runJSON(&dry, "etl", "visits", "--param", "since=2026-01-01", "--dry-run")
	if r.code != 0 || dry["pages"] != 6.0 || dry["records"] != 3000.0 || dry["keys"] != 3000.0 {
		t.Errorf("dry run = %v (%+v)", dry, r)
	}
	if r = c.run("", "etl", "patients", "--dry-run"); r.code != 0 ||
		!strings.Contains(r.stdout, "dry run of patients: 6 pages checked, 3000 records, 3000 distinct keys (a total of 3000)") {
		t.Errorf("dry run = %+v", r)
	}
	c.h.VerifyUnchanged(before, "dry runs")

	r = c.run("", "status", id)
	if r.code != 0 || !strings.Contains(r.stdout, "time budget") || !strings.Contains(r.stdout, "6 pages") {
		t.Errorf("status %s = %+v", id, r)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"etl", "nosuch"}, `job "nosuch" is not defined in the jobs file (defined: patients, visits)`},
		{[]string{"etl", "visits"}, "job visits needs --param since=VALUE"},
		{[]string{"etl", "patients", "--param", "x"}, `invalid --param "x": want NAME=VALUE`},
		{[]string{"etl", "patients", "--param", "region=eu"}, `job patients has no param "region" (its params: none)`},
		{[]string{"etl", "visits", "--param", "since=1", "--partitions", "2"}, "cannot be split into 2 partitions"},
		{[]string{"etl", "patients", "--dry-run", "--wait"}, "nothing to --wait for"},
		{[]string{"etl", "patients", "--budget", "-1s"}, "--budget -1s"},
		{[]string{"etl"}, "accepts 1 arg(s)"},
		{[]string{"etl", "patients", "--jobs", "/nonexistent/jobs.yaml"}, "jobs file: open /nonexistent/jobs.yaml"},
	} {
		before := c.h.Fingerprint()
		if r := c.run("", tt.args...); r.code != 1 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("enqueue %v = %+v, want exit 1 and %q", tt.args, r, tt.want)
		}
		c.h.VerifyUnchanged(before, strconv.Quote(strings.Join(tt.args, " ")))
	}
}

// --wait exits 2 when the run stops timed_out, and says how to resume it.
func TestETLWaitExits2WhenTimedOut(t *testing.T) {
	c := setup(t, harness.Options{Jobs: etlJobs,
		Sim: simulator.Config{Records: 50_000, Latency: 50 * 1_000_000}}) // 50 ms a page
	c.h.StartWorker("w")
	r := c.run("", "etl", "patients", "--wait", "--budget", "300ms", "--progress-interval", "1h")
	if r.code != 2 || !strings.Contains(r.stderr, "timed out: time budget of 300ms used up in attempt 1") ||
		!strings.Contains(r.stderr, "resume with `enqueue retry") || !strings.Contains(r.stdout, "timed_out") {
		t.Fatalf("etl --wait on a run that times out = %+v, want exit 2", r)
	}
	id := strings.Fields(r.stdout)[1]
	// Starting the job again resumes it, with a fresh budget.
	if r = c.run("", "etl", "patients"); r.code != 0 || !strings.Contains(r.stderr, "run "+id+": patients (default) had stopped; resumed as attempt 2") {
		t.Errorf("etl patients again = %+v", r)
	}
}
