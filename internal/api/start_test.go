package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/fault"
	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/simulator"
	"github.com/syncworker/syncworker/internal/tasks"
)

// etlControl is the harness's control with StartETL and DryRunETL answering
// what a test sets, and recording how they were called: the handler's
// mapping of their results is under test here, not the ETL job itself.
type etlControl struct {
	*tasks.Control
	mu      sync.Mutex
	started tasks.Started
	dry     tasks.DryRun
	err     error
	calls   []string
	job     string
	opts    tasks.ETLOptions
}

func (c *etlControl) StartETL(ctx context.Context, job string, opts tasks.ETLOptions) (tasks.Started, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls, c.job, c.opts = append(c.calls, "StartETL"), job, opts
	return c.started, c.err
}

func (c *etlControl) DryRunETL(ctx context.Context, job string, opts tasks.ETLOptions) (tasks.DryRun, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls, c.job, c.opts = append(c.calls, "DryRunETL"), job, opts
	return c.dry, c.err
}

// set makes the next calls answer started, dry and err, and forgets the calls.
func (c *etlControl) set(started tasks.Started, dry tasks.DryRun, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.started, c.dry, c.err, c.calls, c.job, c.opts = started, dry, err, nil, "", tasks.ETLOptions{}
}

func (c *etlControl) called() ([]string, string, tasks.ETLOptions) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls, c.job, c.opts
}

func TestStartJobMapsResultsAndErrors(t *testing.T) {
	control := &etlControl{}
	e := setup(t, harness.Options{Symbols: 1}, control)
	control.Control = e.h.Control
	run := checkpoint.Run{ID: 7, Job: "etl-a", Status: checkpoint.StatusPending}
	total := int64(250)
	rateLimited := fault.Limited(errors.New("source answered 429"), 1500*time.Millisecond)

	body := `{"params": {"since": "2026-01-01"}, "budget": "5m", "partitions": 2}`
	wantOpts := tasks.ETLOptions{Params: map[string]string{"since": "2026-01-01"}, Budget: 5 * time.Minute, Partitions: 2}
	tests := []struct {
		name       string
		body       string
		started    tasks.Started
		dry        tasks.DryRun
		err        error
		wantCall   string
		wantOpts   tasks.ETLOptions
		wantCode   int
		wantError  string
		wantRetry  string // Retry-After
		wantAnswer any    // the JSON of the answer, when not an error
	}{
		{name: "created", body: body, started: tasks.Started{Run: run, How: tasks.Created},
			wantCall: "StartETL", wantOpts: wantOpts, wantCode: 201, wantAnswer: tasks.Started{Run: run, How: tasks.Created}},
		{name: "found", body: body, started: tasks.Started{Run: run, How: tasks.Found},
			wantCall: "StartETL", wantOpts: wantOpts, wantCode: 200, wantAnswer: tasks.Started{Run: run, How: tasks.Found}},
		{name: "resumed", body: "", started: tasks.Started{Run: run, How: tasks.Resumed},
			wantCall: "StartETL", wantCode: 200, wantAnswer: tasks.Started{Run: run, How: tasks.Resumed}},
		{name: "budget 0 is the job's", body: `{"budget": "0", "partitions": 0}`, started: tasks.Started{Run: run, How: tasks.Created},
			wantCall: "StartETL", wantCode: 201, wantAnswer: tasks.Started{Run: run, How: tasks.Created}},
		{name: "created, tasks left to the sweeper", body: "{}", started: tasks.Started{Run: run, How: tasks.Created},
			err: fmt.Errorf("run 7: 1 of 1 %w", tasks.ErrNotEnqueued), wantCall: "StartETL", wantCode: 202,
			wantAnswer: tasks.Started{Run: run, How: tasks.Created}},
		{name: "dry run", body: `{"dry_run": true, "params": {"since": "2026-01-01"}, "budget": "5m", "partitions": 2}`,
			dry:      tasks.DryRun{Job: "etl-a", Params: map[string]string{"since": "2026-01-01"}, Pages: 3, Records: 250, Keys: 249, Total: &total},
			wantCall: "DryRunETL", wantOpts: wantOpts, wantCode: 200,
			wantAnswer: tasks.DryRun{Job: "etl-a", Params: map[string]string{"since": "2026-01-01"}, Pages: 3, Records: 250, Keys: 249, Total: &total}},
		{name: "unknown job", body: body, err: fmt.Errorf("job %q: %w", "etl-a", tasks.ErrUnknownJob),
			wantCall: "StartETL", wantOpts: wantOpts, wantCode: 404, wantError: `job "etl-a": unknown job`},
		{name: "bad params", body: body, err: fmt.Errorf("param since is not a date: %w", tasks.ErrInput),
			wantCall: "StartETL", wantOpts: wantOpts, wantCode: 400, wantError: "param since is not a date"},
		{name: "source refuses", body: body, err: fmt.Errorf("read page 1: %w", fault.Wrap(fault.RunFatal, errors.New("source answered 401"))),
			wantCall: "StartETL", wantOpts: wantOpts, wantCode: 502, wantError: "read page 1: source answered 401"},
		{name: "source rate-limits", body: body, err: rateLimited,
			wantCall: "StartETL", wantOpts: wantOpts, wantCode: 502, wantError: "source answered 429", wantRetry: "2"},
		{name: "dry run of an unknown job", body: `{"dry_run": true}`, err: tasks.ErrUnknownJob,
			wantCall: "DryRunETL", wantCode: 404, wantError: "unknown job"},
		{name: "dry run with a source down", body: `{"dry_run": true}`, err: fault.Wrap(fault.Transient, errors.New("source answered 503")),
			wantCall: "DryRunETL", wantCode: 502, wantError: "source answered 503"},
		{name: "anything else", body: body, err: errors.New("connection to postgres lost"),
			wantCall: "StartETL", wantOpts: wantOpts, wantCode: 500, wantError: "connection to postgres lost"},
		// Bad bodies are refused before anything is called.
		{name: "unknown field", body: `{"params": {}, "dryrun": true}`, wantCode: 400, wantError: `unknown field "dryrun"`},
		{name: "bad budget", body: `{"budget": "5 minutes"}`, wantCode: 400, wantError: `got "5 minutes"`},
		{name: "bad partitions", body: `{"partitions": -2}`, wantCode: 400, wantError: "got -2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			control.set(tt.started, tt.dry, tt.err)
			resp, got := e.send(t, http.MethodPost, "/api/jobs/etl-a/runs", tt.body)
			if resp.StatusCode != tt.wantCode {
				t.Errorf("= %d %s, want %d", resp.StatusCode, got, tt.wantCode)
			}
			calls, job, opts := control.called()
			if tt.wantCall == "" && len(calls) != 0 {
				t.Errorf("called %v, want nothing called", calls)
			}
			if tt.wantCall != "" && (len(calls) != 1 || calls[0] != tt.wantCall || job != "etl-a" || !reflect.DeepEqual(opts, tt.wantOpts)) {
				t.Errorf("called %v(%q, %+v), want %s(etl-a, %+v)", calls, job, opts, tt.wantCall, tt.wantOpts)
			}
			if ra := resp.Header.Get("Retry-After"); ra != tt.wantRetry {
				t.Errorf("Retry-After %q, want %q", ra, tt.wantRetry)
			}
			if tt.wantError != "" {
				if msg := errorOf(t, got); !strings.Contains(msg, tt.wantError) {
					t.Errorf("error %q, want it to say %q", msg, tt.wantError)
				}
				return
			}
			want, err := json.Marshal(tt.wantAnswer)
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(string(got)) != string(want) {
				t.Errorf("answer %s\nwant   %s", got, want)
			}
		})
	}
}

// jobsFile is an offset-style job and a parameterized cursor-style one,
// against the test's simulator.
const jobsFile = `
jobs:
  - name: patients
    url: SIM_URL/v1/records
    pagination: {style: offset, page_size: 500}
    items_path: items
    total_path: total
    key: id
  - name: visits
    url: SIM_URL/v1/records-cursor
    pagination: {style: cursor, next_path: next, page_size: 500}
    items_path: items
    key: id
    params: [since]
    query: {since: "{since}"}
`

// POST /api/jobs/{name}/runs with the real control: 201 for a new run, 200
// for the same parameters again, budget and partitions on the run, 200 for
// a run resumed after it timed out, a dry run that writes nothing, and the
// errors of unknown jobs, bad parameters and a source that refuses.
func TestStartJobEndToEnd(t *testing.T) {
	e := setup(t, harness.Options{Jobs: jobsFile, Sim: simulator.Config{Records: 2_000}}, nil)
	var first tasks.Started
	e.call(t, "POST", "/api/jobs/patients/runs", `{"budget": "2m", "partitions": 2}`, http.StatusCreated, &first)
	if first.How != tasks.Created || first.Run.Partitions != 2 || first.Run.BudgetMS == nil || *first.Run.BudgetMS != 120_000 || first.Run.Total != 2_000 {
		t.Fatalf("created %+v", first)
	}
	var again tasks.Started
	e.call(t, "POST", "/api/jobs/patients/runs", ``, http.StatusOK, &again)
	if again.How != tasks.Found || again.Run.ID != first.Run.ID {
		t.Errorf("second start = %+v, want run %d found", again, first.Run.ID)
	}

	before := e.h.Fingerprint()
	var dry tasks.DryRun
	e.call(t, "POST", "/api/jobs/visits/runs", `{"params": {"since": "2026-01-01"}, "dry_run": true}`, http.StatusOK, &dry)
	if dry.Pages != 4 || dry.Records != 2_000 || dry.Keys != 2_000 {
		t.Errorf("dry run = %+v", dry)
	}
	for _, tt := range []struct {
		path, body string
		code       int
		want       string
	}{
		{"/api/jobs/nosuch/runs", ``, http.StatusNotFound, `job \"nosuch\" is not defined`},
		{"/api/jobs/visits/runs", ``, http.StatusBadRequest, "needs --param since=VALUE"},
		{"/api/jobs/visits/runs", `{"params": {"since": "x", "until": "y"}}`, http.StatusBadRequest, `has no param \"until\"`},
		{"/api/jobs/patients/runs", `{"partitions": 99}`, http.StatusBadRequest, "partitions 0 to 64"},
	} {
		code, body := e.do(t, "POST", tt.path, tt.body)
		if code != tt.code || !strings.Contains(string(body), tt.want) {
			t.Errorf("POST %s %s = %d %s, want %d with %q", tt.path, tt.body, code, body, tt.code, tt.want)
		}
	}
	e.h.VerifyUnchanged(before, "a dry run and refused starts")

	// A run that timed out is resumed by starting its job again.
	ctx := context.Background()
	if err := e.h.Store.MarkRunning(ctx, first.Run.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.h.DB.Pool.Exec(ctx, `UPDATE runs SET budget_ms = 1 WHERE id = $1`, first.Run.ID); err != nil {
		t.Fatal(err)
	}
	e.h.WaitFor(first.Run.ID, 10*time.Second, "timed out", func(checkpoint.Run) bool {
		stopped, err := e.h.Store.TimeOut(ctx, first.Run.ID)
		return err == nil && stopped
	})
	var resumed tasks.Started
	e.call(t, "POST", "/api/jobs/patients/runs", ``, http.StatusOK, &resumed)
	if resumed.How != tasks.Resumed || resumed.Run.ID != first.Run.ID || resumed.Run.Attempt != 2 {
		t.Errorf("start after a timeout = %+v, want run %d resumed as attempt 2", resumed, first.Run.ID)
	}
}

// A source that refuses the credentials is a 502 that says so, and no run.
func TestStartJobOnARefusingSourceIs502(t *testing.T) {
	e := setup(t, harness.Options{Jobs: jobsFile, Sim: simulator.Config{Records: 100, APIKey: "right"}}, nil)
	code, body := e.do(t, "POST", "/api/jobs/patients/runs", ``)
	if code != http.StatusBadGateway || !strings.Contains(string(body), "the source refused the credentials (401)") {
		t.Errorf("start = %d %s, want 502", code, body)
	}
	if n := e.h.Count(`SELECT count(*) FROM runs`); n != 0 {
		t.Errorf("%d runs after a refused start", n)
	}
}
