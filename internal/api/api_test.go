package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/api"
	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/harness"
)

// env is the runs API of a harness's installation, served by httptest.
type env struct {
	h   *harness.Harness
	url string
}

// setup serves the API of a harness with opts, wired as a worker wires it:
// the real store and control on the test's Postgres schema and Redis
// database. control, when set, replaces the harness's control.
func setup(t *testing.T, opts harness.Options, control api.Control) *env {
	t.Helper()
	h := harness.New(t, opts)
	if control == nil {
		control = h.Control
	}
	srv := httptest.NewServer(api.New(api.Options{Runs: h.Store, Control: control, Logger: h.Logger("api")}))
	t.Cleanup(srv.Close)
	return &env{h: h, url: srv.URL}
}

// send sends a request and returns the answer with its body read. Every
// answer must be JSON.
func (e *env) send(t *testing.T, method, path, body string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); method != http.MethodHead && ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json; body %s", method, path, ct, b)
	}
	return resp, b
}

// do sends a request and returns the status code and the body.
func (e *env) do(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	resp, b := e.send(t, method, path, body)
	return resp.StatusCode, b
}

// call sends a request, checks its status code and decodes the answer into v.
func (e *env) call(t *testing.T, method, path, body string, want int, v any) {
	t.Helper()
	code, b := e.do(t, method, path, body)
	if code != want {
		t.Fatalf("%s %s = %d %s, want %d", method, path, code, b, want)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
}

// errorOf returns the error message of an error answer, failing the test if
// the body is not {"error": "..."}.
func errorOf(t *testing.T, body []byte) string {
	t.Helper()
	var e struct {
		Error *string `json:"error"`
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Error == nil || *e.Error == "" {
		t.Fatalf("error body %s is not {\"error\": \"...\"} (%v)", body, err)
	}
	return *e.Error
}

// listIDs lists the runs of query and returns their ids in order.
func (e *env) listIDs(t *testing.T, query string) []int64 {
	t.Helper()
	var list struct {
		Runs []checkpoint.Run `json:"runs"`
	}
	e.call(t, http.MethodGet, "/api/runs"+query, "", http.StatusOK, &list)
	if list.Runs == nil {
		t.Fatalf("GET /api/runs%s: runs is null, want a list", query)
	}
	ids := make([]int64, len(list.Runs))
	for i, r := range list.Runs {
		ids[i] = r.ID
	}
	return ids
}

func TestListRuns(t *testing.T) {
	e := setup(t, harness.Options{Symbols: 3}, nil)
	ctx := context.Background()
	// Oldest first: d1 pending, etl1 pending, d2 cancelled, etl2 cancelled, d3 failed.
	d1 := e.h.StartDailySync("2026-11-02", 1, 1)
	etl1 := createRun(t, e.h, "etl-a", "p1")
	d2 := e.h.StartDailySync("2026-11-03", 1, 1)
	if _, err := e.h.Control.Cancel(ctx, d2.ID); err != nil {
		t.Fatal(err)
	}
	etl2 := createRun(t, e.h, "etl-a", "p2")
	if _, err := e.h.Control.Cancel(ctx, etl2.ID); err != nil {
		t.Fatal(err)
	}
	d3 := e.h.StartDailySync("2026-11-04", 1, 1)
	failRun(t, e.h, d3.ID)

	tests := []struct {
		query string
		want  []int64
	}{
		{"", []int64{d3.ID, etl2.ID, d2.ID, etl1.ID, d1.ID}},
		{"?job=daily-sync", []int64{d3.ID, d2.ID, d1.ID}},
		{"?job=etl-a", []int64{etl2.ID, etl1.ID}},
		{"?status=cancelled", []int64{etl2.ID, d2.ID}},
		{"?status=failed", []int64{d3.ID}},
		{"?status=timed_out", []int64{}},
		{"?job=daily-sync&status=pending", []int64{d1.ID}},
		{"?job=nope", []int64{}},
		{"?limit=2", []int64{d3.ID, etl2.ID}},
		{"?limit=1000&job=etl-a", []int64{etl2.ID, etl1.ID}},
		{"?status=&job=&limit=", []int64{d3.ID, etl2.ID, d2.ID, etl1.ID, d1.ID}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			if got := e.listIDs(t, tt.query); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("GET /api/runs%s = runs %v, want %v", tt.query, got, tt.want)
			}
		})
	}
}

// createRun creates a run of job with run key key, of 2 items, without
// enqueuing anything.
func createRun(t *testing.T, h *harness.Harness, job, key string) checkpoint.Run {
	t.Helper()
	run, _, err := h.Store.CreateRun(context.Background(), checkpoint.NewRun{
		Job: job, RunKey: key, BatchSize: 1, Partitions: 1, Keys: []string{"A", "B"}})
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// failRun fails partition 0 of run id, and with it the run, as a chain that
// used up its retries does.
func failRun(t *testing.T, h *harness.Harness, id int64) {
	t.Helper()
	ctx := context.Background()
	_, p, err := h.Store.Load(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := h.Store.FailPartition(ctx, p.Ref(), "provider down"); err != nil || !ok {
		t.Fatalf("fail run %d: %v, %v", id, ok, err)
	}
}

func TestGetRunAfterADailySync(t *testing.T) {
	e := setup(t, harness.Options{Symbols: 40, Unknown: 3}, nil)
	run := e.h.StartDailySync("2026-11-20", 5, 3)
	e.h.StartWorker("w1")
	done := e.h.WaitEnded(run.ID, 60*time.Second)
	ledger := e.h.VerifyExactlyOnce(run.ID)

	var got struct {
		Run        checkpoint.Run           `json:"run"`
		Partitions []checkpoint.Partition   `json:"partitions"`
		Ledger     checkpoint.LedgerSummary `json:"ledger"`
	}
	e.call(t, http.MethodGet, fmt.Sprintf("/api/runs/%d", run.ID), "", http.StatusOK, &got)

	r := got.Run
	if r.ID != run.ID || r.Status != checkpoint.StatusCompleted || r.Total != 43 || r.Processed != 43 ||
		r.Succeeded != 40 || r.Failed != 3 || r.Records != 40 || r.Attempt != 1 || r.Partitions != 3 ||
		r.Batches != int64(len(ledger)) || r.DurationMS != done.DurationMS || r.FinishedAt == nil {
		t.Errorf("run = %+v\nwant it as the store has it: %+v", r, done)
	}

	if len(got.Partitions) != 3 {
		t.Fatalf("%d partitions, want 3: %+v", len(got.Partitions), got.Partitions)
	}
	var end int64
	for i, p := range got.Partitions {
		batches := int64(0)
		for _, l := range ledger {
			if l.Partition == i {
				batches++
			}
		}
		if p.RunID != run.ID || p.Index != i || p.Status != checkpoint.PartitionCompleted || p.StartPos != end ||
			p.Cursor != p.EndPos || p.Seq != batches || p.Leased || p.LeaseOwner != "" {
			t.Errorf("partition %d = %+v, want completed from %d to its end in %d batches, unleased", i, p, end, batches)
		}
		end = p.EndPos
	}
	if end != 43 {
		t.Errorf("partitions end at %d, want 43", end)
	}

	var items, ok, failed, records, maxMS int64
	first, last := ledger[0].Committed, ledger[0].Committed
	for _, l := range ledger {
		items, ok, failed, records = items+int64(l.Items), ok+int64(l.OK), failed+int64(l.Failed), records+int64(l.Records)
		maxMS = max(maxMS, l.Committed.Sub(l.Started).Milliseconds())
		first, last = minTime(first, l.Committed), maxTime(last, l.Committed)
	}
	s := got.Ledger
	if s.Batches != int64(len(ledger)) || s.Items != items || s.Succeeded != ok || s.Failed != failed || s.Records != records ||
		items != 43 || failed != 3 {
		t.Errorf("ledger summary = %+v, want %d batches of %d items (%d succeeded, %d failed), %d records",
			s, len(ledger), items, ok, failed, records)
	}
	if s.FirstCommitAt == nil || !s.FirstCommitAt.Equal(first) || s.LastCommitAt == nil || !s.LastCommitAt.Equal(last) {
		t.Errorf("ledger commits from %v to %v, want %v to %v", s.FirstCommitAt, s.LastCommitAt, first, last)
	}
	// duration_ms is measured by the worker, committed_at by Postgres: close.
	if s.MaxBatchMS > maxMS+1000 || s.MeanBatchMS > float64(s.MaxBatchMS) || s.MeanBatchMS < 0 {
		t.Errorf("batches took %.1f ms on average, at most %d ms; the ledger says at most about %d ms", s.MeanBatchMS, s.MaxBatchMS, maxMS)
	}
	if len(s.Attempts) != 1 || s.Attempts[0] != (checkpoint.AttemptBatches{Attempt: 1, Batches: s.Batches, Records: 40, Items: 43}) {
		t.Errorf("attempts = %+v, want one attempt with every batch", s.Attempts)
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// TestRunActions drives retry, cancel and redrive through the states of a
// run: each refused with 409 where it does not apply, and each that applies
// answering with the run as it is after; the runs that were resumed then
// complete on a worker.
func TestRunActions(t *testing.T) {
	e := setup(t, harness.Options{Symbols: 20, Unknown: 2}, nil)
	ctx := context.Background()
	pending := e.h.StartDailySync("2026-11-02", 5, 2)
	running := e.h.StartDailySync("2026-11-03", 5, 2)
	if err := e.h.Store.MarkRunning(ctx, running.ID); err != nil {
		t.Fatal(err)
	}
	failed := e.h.StartDailySync("2026-11-04", 5, 2)
	failRun(t, e.h, failed.ID)
	path := func(id int64, action string) string { return fmt.Sprintf("/api/runs/%d/%s", id, action) }

	type step struct {
		path       string
		body       string
		wantCode   int
		wantStatus checkpoint.Status // of the run answered
		wantError  string            // in the error answered
	}
	steps := func(t *testing.T, steps []step) {
		t.Helper()
		for _, s := range steps {
			code, body := e.do(t, http.MethodPost, s.path, s.body)
			if code != s.wantCode {
				t.Errorf("POST %s %s = %d %s, want %d", s.path, s.body, code, body, s.wantCode)
				continue
			}
			if s.wantError != "" {
				if msg := errorOf(t, body); !strings.Contains(msg, s.wantError) {
					t.Errorf("POST %s: error %q, want it to say %q", s.path, msg, s.wantError)
				}
				continue
			}
			var r checkpoint.Run
			if err := json.Unmarshal(body, &r); err != nil || r.Status != s.wantStatus {
				t.Errorf("POST %s = %s (%v), want the run %s", s.path, body, err, s.wantStatus)
			}
		}
	}

	steps(t, []step{
		{path(pending.ID, "retry"), "", http.StatusConflict, "", "run " + fmt.Sprint(pending.ID) + " is pending"},
		{path(running.ID, "retry"), "", http.StatusConflict, "", "is running"},
		{path(pending.ID, "redrive"), "", http.StatusConflict, "", "only a completed run"},
		{path(failed.ID, "redrive"), "", http.StatusConflict, "", "is failed"},
		{path(pending.ID, "pause"), "", http.StatusOK, checkpoint.StatusPaused, ""},
		{path(pending.ID, "pause"), "{}", http.StatusOK, checkpoint.StatusPaused, ""}, // changes nothing
		{path(pending.ID, "retry"), "", http.StatusConflict, "", "is paused; resume it instead"},
		{path(pending.ID, "restart"), `{"from_zero": true}`, http.StatusConflict, "", "is paused; cancel it before restarting it from zero"},
		{path(pending.ID, "resume"), "", http.StatusOK, checkpoint.StatusRunning, ""},
		{path(pending.ID, "resume"), "", http.StatusConflict, "", "only a paused run can be resumed"},
		{path(failed.ID, "pause"), "", http.StatusConflict, "", "only a pending or running run can be paused"},
		{path(failed.ID, "restart"), "", http.StatusBadRequest, "", `send {"from_zero": true}`},
		{path(failed.ID, "restart"), `{"from_zero": false}`, http.StatusBadRequest, "", `send {"from_zero": true}`},
		{path(failed.ID, "retry"), `{"from_zero": true}`, http.StatusBadRequest, "", "only POST /api/runs/{id}/restart starts a run over"},
		{path(999999, "pause"), "", http.StatusNotFound, "", "run 999999: not found"},
		{path(999999, "resume"), "", http.StatusNotFound, "", "run 999999: not found"},
		{path(999999, "restart"), `{"from_zero": true}`, http.StatusNotFound, "", "run 999999: not found"},
		{path(running.ID, "cancel"), "", http.StatusOK, checkpoint.StatusCancelled, ""},
		{path(running.ID, "cancel"), "", http.StatusOK, checkpoint.StatusCancelled, ""}, // changes nothing
		{path(running.ID, "retry"), `{"dry_run": false}`, http.StatusOK, checkpoint.StatusRunning, ""},
		{path(failed.ID, "retry"), "{}", http.StatusOK, checkpoint.StatusRunning, ""},
		{path(failed.ID, "retry"), "", http.StatusConflict, "", "is running"},
		{path(999999, "retry"), "", http.StatusNotFound, "", "run 999999: not found"},
		{path(999999, "cancel"), "", http.StatusNotFound, "", "run 999999: not found"},
		{path(999999, "redrive"), "", http.StatusNotFound, "", "run 999999: not found"},
	})

	e.h.StartWorker("w1")
	for _, id := range []int64{pending.ID, running.ID, failed.ID} {
		if r := e.h.WaitEnded(id, 60*time.Second); r.Status != checkpoint.StatusCompleted {
			t.Fatalf("run %d ended %s, want completed: %+v", id, r.Status, r)
		}
		e.h.VerifyExactlyOnce(id)
	}
	if r, _ := e.h.Store.Get(ctx, failed.ID); r.Attempt != 2 {
		t.Errorf("the retried run completed in attempt %d, want 2", r.Attempt)
	}

	steps(t, []step{
		{path(pending.ID, "retry"), "", http.StatusConflict, "", "is completed"},
		{path(pending.ID, "cancel"), "", http.StatusConflict, "", "is completed"},
		{path(pending.ID, "redrive"), "", http.StatusOK, checkpoint.StatusRunning, ""},
	})
	if r := e.h.WaitEnded(pending.ID, 60*time.Second); r.Status != checkpoint.StatusCompleted || r.Redrives != 1 || r.Failed != 2 {
		t.Errorf("after the redrive the run is %+v, want it completed with its 2 unknown symbols failed again", r)
	}

	// A restart answers with the new run: the next generation of the day.
	var next checkpoint.Run
	e.call(t, http.MethodPost, path(pending.ID, "restart"), `{"from_zero": true}`, http.StatusOK, &next)
	if next.ID == pending.ID || next.Generation != 2 || next.RunKey != pending.RunKey || next.Total != pending.Total {
		t.Fatalf("restart answered %+v; want generation 2 of %s", next, pending.RunKey)
	}
	steps(t, []step{{path(pending.ID, "restart"), `{"from_zero": true}`, http.StatusConflict, "", "was followed by run"}})
	if r := e.h.WaitEnded(next.ID, 60*time.Second); r.Status != checkpoint.StatusCompleted {
		t.Errorf("the restarted run ended %s", r.Status)
	}
	e.h.VerifyExactlyOnce(next.ID)
}

// TestBadRequests: whatever is wrong with a request is a 4xx with a JSON
// error that names it, and changes nothing.
func TestBadRequests(t *testing.T) {
	e := setup(t, harness.Options{Symbols: 3}, nil)
	run := e.h.StartDailySync("2026-11-02", 1, 1)
	id := fmt.Sprint(run.ID)
	before := e.h.Fingerprint()

	tests := []struct {
		method, path, body string
		wantCode           int
		wantError          string
	}{
		{"GET", "/api/runs/abc", "", 400, `invalid run id "abc": want a whole number of 1 or more`},
		{"GET", "/api/runs/0", "", 400, `invalid run id "0"`},
		{"GET", "/api/runs/-3", "", 400, `invalid run id "-3"`},
		{"GET", "/api/runs/1.5", "", 400, `invalid run id "1.5"`},
		{"GET", "/api/runs/99999999999999999999", "", 400, `invalid run id "99999999999999999999"`},
		{"POST", "/api/runs/abc/retry", "", 400, `invalid run id "abc"`},
		{"POST", "/api/runs/0/cancel", "", 400, `invalid run id "0"`},
		{"POST", "/api/runs/x/redrive", "", 400, `invalid run id "x"`},
		{"GET", "/api/runs/999999", "", 404, "run 999999: not found"},
		{"GET", "/api/runs?status=runing", "", 400, `status: unknown status "runing"; want one of pending, running, paused, completed, failed, cancelled, timed_out`},
		{"GET", "/api/runs?limit=0", "", 400, `limit: want a whole number from 1 to 1000, got "0"`},
		{"GET", "/api/runs?limit=1001", "", 400, `got "1001"`},
		{"GET", "/api/runs?limit=ten", "", 400, `got "ten"`},
		{"GET", "/api/runs?stauts=failed", "", 400, `unknown query parameter "stauts"`},
		{"GET", "/api/runs?status=failed&status=running", "", 400, "status: given 2 times"},
		{"GET", "/api/runs?limit=0&status=x", "", 400, `limit: want a whole number from 1 to 1000, got "0"; status: unknown status "x"`},
		{"POST", "/api/runs/" + id + "/retry", `{"dry_run": true}`, 400, "has no dry run"},
		{"POST", "/api/runs/" + id + "/cancel", `{"force": true}`, 400, `body: unknown field "force"; the fields are dry_run`},
		{"POST", "/api/runs/" + id + "/cancel", `{"dry_run": "no"}`, 400, "body: dry_run: want true or false, got string"},
		{"POST", "/api/runs/" + id + "/cancel", `[]`, 400, "body: want a JSON object, got array"},
		{"POST", "/api/runs/" + id + "/cancel", `{"dry_run": false`, 400, "body: not valid JSON"},
		{"POST", "/api/runs/" + id + "/cancel", `{} {}`, 400, "more than one JSON value"},
		{"POST", "/api/runs/" + id + "/cancel", `{"x": "` + strings.Repeat("a", 2<<20) + `"}`, 413, "body: larger than 1048576 bytes"},
		{"POST", "/api/jobs/etl-a/runs", `{"param": {"a": "1"}}`, 400, `body: unknown field "param"; the fields are params, dry_run, budget, partitions`},
		{"POST", "/api/jobs/etl-a/runs", `{"params": {"a": 1}}`, 400, "body: params: every value must be text, got number"},
		{"POST", "/api/jobs/etl-a/runs", `{"params": ["a"]}`, 400, "body: params: want an object, got array"},
		{"POST", "/api/jobs/etl-a/runs", `{"budget": 300}`, 400, "body: budget: want text, got number"},
		{"POST", "/api/jobs/etl-a/runs", `{"budget": "300"}`, 400, `budget: want a duration of 0 (the job's) or more with its unit, such as "5m" or "1h30m", got "300"`},
		{"POST", "/api/jobs/etl-a/runs", `{"budget": "-5m"}`, 400, `got "-5m"`},
		{"POST", "/api/jobs/etl-a/runs", `{"partitions": -1}`, 400, "partitions: want 0 (the job's) to 1024, got -1"},
		{"POST", "/api/jobs/etl-a/runs", `{"partitions": 1.5}`, 400, "body: partitions: want a whole number, got number 1.5"},
		{"POST", "/api/jobs/etl-a/runs", `{"partitions": 2000}`, 400, "got 2000"},
		{"POST", "/api/jobs/etl-a/runs", `{"dry_run": true, "budget": "soon"}`, 400, `got "soon"`},
		{"POST", "/api/jobs/etl-a/runs", `"params"`, 400, "body: want a JSON object, got string"},
		{"POST", "/api/runs", "", 405, "POST /api/runs: method not allowed; use GET"},
		{"DELETE", "/api/runs/" + id, "", 405, "method not allowed; use GET"},
		{"GET", "/api/runs/" + id + "/retry", "", 405, "method not allowed; use POST"},
		{"PUT", "/api/jobs/etl-a/runs", "", 405, "method not allowed; use POST"},
		{"GET", "/api/nothing", "", 404, "no endpoint GET /api/nothing"},
		{"GET", "/api/runs/", "", 404, "no endpoint GET /api/runs/"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path+" "+tt.body[:min(len(tt.body), 40)], func(t *testing.T) {
			code, body := e.do(t, tt.method, tt.path, tt.body)
			if code != tt.wantCode {
				t.Fatalf("= %d %s, want %d", code, body, tt.wantCode)
			}
			if msg := errorOf(t, body); !strings.Contains(msg, tt.wantError) {
				t.Errorf("error %q, want it to say %q", msg, tt.wantError)
			}
		})
	}
	e.h.VerifyUnchanged(before, "bad requests")
}

func TestMethodNotAllowedSaysWhatIsAllowed(t *testing.T) {
	e := setup(t, harness.Options{Symbols: 1}, nil)
	for path, allow := range map[string]string{"/api/runs": "GET, HEAD", "/api/runs/1/retry": "POST"} {
		resp, _ := e.send(t, http.MethodPatch, path, "")
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != allow {
			t.Errorf("PATCH %s = %d, Allow %q; want 405, Allow %q", path, resp.StatusCode, resp.Header.Get("Allow"), allow)
		}
	}
}
