package tasks_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/simulator"
	"github.com/syncworker/syncworker/internal/tasks"
)

// A job of 50,000 records with page size 500 lands exactly 50,000 rows,
// pulled by two workers in four page ranges, each page committed once.
func TestETLLandsEveryRecordOnce(t *testing.T) {
	h := harness.New(t, harness.Options{Jobs: harness.PatientsJob, Sim: simulator.Config{Records: 50_000}})
	h.StartWorker("w1")
	h.StartWorker("w2")
	started := h.StartETL("patients", tasks.ETLOptions{})
	if started.How != tasks.Created || started.Run.Total != 50_000 || started.Run.Partitions != 4 || started.Run.Unit != checkpoint.UnitPages {
		t.Fatalf("started %+v", started)
	}
	run := h.WaitEnded(started.Run.ID, 2*time.Minute)
	rep := h.VerifyLanded(run.ID, harness.Records(50_000))
	if run.Processed != 50_000 || run.Succeeded != 50_000 || run.Records != 50_000 || run.Batches != 100 || len(run.Warnings) != 0 {
		t.Errorf("run %+v", run)
	}
	workers := map[string]bool{}
	for _, b := range rep.Ledger {
		workers[b.Worker] = true
	}
	t.Logf("50,000 records in %d pages by %d workers, %d ms", len(rep.Ledger), len(workers), run.DurationMS)
	if n := h.Count(`SELECT count(*) FROM etl_records WHERE job = 'patients'`); n != 50_000 {
		t.Errorf("%d rows, want 50000", n)
	}
}

// jobsOf returns a jobs file of one job named name at SIM_URL+path with the
// given pagination and extra keys.
func jobsOf(name, path, pagination, extra string) string {
	return "jobs:\n  - name: " + name + "\n    url: SIM_URL" + path + "\n    pagination: " + pagination +
		"\n    items_path: items\n    key: id\n" + extra
}

// Each pagination style lands every record once; the cursor walk ends on
// the page without a next token, without asking for another page.
func TestETLPaginationStyles(t *testing.T) {
	tests := []struct {
		name, path, pagination, extra string
		partitions                    int
	}{
		{"offset", "/v1/records", "{style: offset, page_size: 500}", "    total_path: total\n    partitions: 3\n", 3},
		{"page", "/v1/records-paged", "{style: page, page_param: page, size_param: size, page_size: 500}", "    total_path: total\n    partitions: 2\n", 2},
		{"cursor", "/v1/records-cursor", "{style: cursor, cursor_param: cursor, limit_param: limit, next_path: next, page_size: 500}", "", 1},
		{"offset without a total", "/v1/records", "{style: offset, page_size: 500}", "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := harness.New(t, harness.Options{Jobs: jobsOf("pull", tt.path, tt.pagination, tt.extra),
				Sim: simulator.Config{Records: 5_250}})
			h.StartWorker("w1")
			started := h.StartETL("pull", tasks.ETLOptions{})
			if started.Run.Partitions != tt.partitions {
				t.Errorf("%d partitions, want %d", started.Run.Partitions, tt.partitions)
			}
			run := h.WaitEnded(started.Run.ID, time.Minute)
			rep := h.VerifyLanded(run.ID, harness.Records(5_250))
			// 5,250 records are 11 pages, the last of 250.
			if run.Batches != 11 || run.Processed != 5_250 || len(run.Warnings) != 0 {
				t.Errorf("run %+v", run)
			}
			if last := rep.Ledger[len(rep.Ledger)-1]; last.Items != 250 {
				t.Errorf("last page has %d records, want 250", last.Items)
			}
			// The first page once to check the source, then 11; a walk
			// without a total ends at the short page, the cursor walk at
			// the page that has no next token.
			if pages := h.Sim.Stats().Pages; pages != 12 {
				t.Errorf("the source served %d pages, want 12", pages)
			}
		})
	}
}

// slowPages makes the first request for each of the given skip values take
// delay, to push an attempt past its time budget at a known page.
func slowPages(delay time.Duration, skips ...string) func(http.Handler) http.Handler {
	var once sync.Map
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			skip := r.URL.Query().Get("skip")
			if slices.Contains(skips, skip) {
				if _, seen := once.LoadOrStore(skip, true); !seen {
					time.Sleep(delay)
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// A run that hits its time budget three times stops timed_out each time at
// a page boundary, keeping its checkpoint; resumed three times, it lands the
// same records, with its counters accumulated and its attempts' durations
// summed.
func TestETLTimeBudgetStopsAndResumes(t *testing.T) {
	// 20 pages; the first request for pages 5, 10 and 15 takes 1.2 s, past
	// the 1 s budget, so attempts stop after pages 5, 10 and 15.
	h := harness.New(t, harness.Options{
		Jobs: jobsOf("budgeted", "/v1/records", "{style: offset, page_size: 500}", "    total_path: total\n    timeout: 1s\n"),
		Sim:  simulator.Config{Records: 10_000},
		Wrap: slowPages(1200*time.Millisecond, "2500", "5000", "7500"),
		// The stops must come from the budget alone: with the harness's 2 s
		// lease, a machine too busy to renew it during a slow page had the
		// page's task taken over, and the idle run stopped a page early.
		Configure: func(c *config.Config) { c.Sync.Lease = 30 * time.Second },
	})
	h.StartWorker("w1")
	ctx := context.Background()
	started := h.StartETL("budgeted", tasks.ETLOptions{})
	id := started.Run.ID
	for i, wantPages := range []int64{6, 11, 16} {
		run := h.WaitEnded(id, time.Minute)
		_, part, err := h.Store.Load(ctx, id, 0)
		if err != nil {
			t.Fatal(err)
		}
		if run.Status != checkpoint.StatusTimedOut || part.Status != checkpoint.PartitionTimedOut || part.Cursor != wantPages ||
			run.Processed != wantPages*500 || run.Attempt != i+1 ||
			!strings.Contains(run.LastError, "time budget of 1s used up in attempt") ||
			!strings.Contains(run.LastError, fmt.Sprintf("enqueue retry %d", id)) {
			t.Fatalf("stop %d: run %+v, partition %+v", i+1, run, part)
		}
		if n := h.Count(`SELECT count(*) FROM etl_records`); n != wantPages*500 {
			t.Errorf("stop %d: %d rows landed, want %d", i+1, n, wantPages*500)
		}
		t.Logf("attempt %d timed out at page %d after %d ms in all", run.Attempt, part.Cursor, run.DurationMS)
		// Resume once by starting the job again, else with retry.
		if i == 0 {
			if s := h.StartETL("budgeted", tasks.ETLOptions{}); s.How != tasks.Resumed || s.Run.ID != id {
				t.Fatalf("starting the job again = %+v, want run %d resumed", s, id)
			}
		} else if _, err := h.Control.Retry(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	run := h.WaitEnded(id, time.Minute)
	h.VerifyLanded(id, harness.Records(10_000))
	if run.Status != checkpoint.StatusCompleted || run.Attempt != 4 || run.Processed != 10_000 || run.Batches != 20 {
		t.Errorf("run %+v", run)
	}
	var timedOut, completed, sum, slowest int64
	if err := h.DB.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'timed_out'),
			count(*) FILTER (WHERE status = 'completed'), sum(elapsed_ms), min(elapsed_ms) FILTER (WHERE status = 'timed_out')
		FROM run_attempts WHERE run_id = $1`, id).Scan(&timedOut, &completed, &sum, &slowest); err != nil {
		t.Fatal(err)
	}
	if timedOut != 3 || completed != 1 || run.DurationMS != sum || slowest < 1000 {
		t.Errorf("attempts: %d timed out (the shortest %d ms), %d completed, %d ms in all; the run says %d ms",
			timedOut, slowest, completed, sum, run.DurationMS)
	}
	t.Logf("completed in attempt %d: %d records, %d pages, %d ms over 4 attempts", run.Attempt, run.Processed, run.Batches, run.DurationMS)
}

// A job whose record keys are unique only under a parameter (each tenant's
// IDs, which other tenants reuse) keeps the tenants' records apart with
// key_params: the same IDs pulled by two runs land as two records each. A
// run keeps the key prefix it was created with, whatever the job's
// definition says by the time it runs.
func TestETLKeyParamsKeepTenantsApart(t *testing.T) {
	const params = "    total_path: total\n    params: [tenant]\n    query: {tenant: \"{tenant}\"}\n"
	pair := "  - name: pair\n    url: SIM_URL/v1/records\n    pagination: {style: offset}\n    items_path: items\n    key: id\n" +
		"    params: [a, b]\n    key_params: [a, b]\n"
	h := harness.New(t, harness.Options{
		Jobs: jobsOf("tenants", "/v1/records", "{style: offset, page_size: 500}", params+"    key_params: [tenant]\n") + pair,
		Sim:  simulator.Config{Records: 1_000}})
	runs := map[string]int64{}
	for _, tenant := range []string{"acme", "globex"} {
		started := h.StartETL("tenants", tasks.ETLOptions{Params: map[string]string{"tenant": tenant}})
		if started.Run.KeyPrefix != tenant+"/" {
			t.Errorf("run of tenant %s has the key prefix %q", tenant, started.Run.KeyPrefix)
		}
		runs[tenant] = started.Run.ID
	}
	// A key prefix too long for Postgres's index is refused at the start.
	before := h.Fingerprint()
	long := strings.Repeat("é", 128) // 256 bytes, 768 escaped
	if _, err := h.Control.StartETL(t.Context(), "pair", tasks.ETLOptions{Params: map[string]string{"a": long, "b": long}}); !errors.Is(err, tasks.ErrInput) ||
		!strings.Contains(err.Error(), "key prefix of 1538 bytes, more than 1024") {
		t.Errorf("start with long key params = %v; want ErrInput for its key prefix", err)
	}
	h.VerifyUnchanged(before, "a start refused for its key prefix")
	// The job's key_params are taken out before its runs run.
	jobs := strings.ReplaceAll(jobsOf("tenants", "/v1/records", "{style: offset, page_size: 500}", params), "SIM_URL", h.SimURL)
	if err := os.WriteFile(h.Config.ETL.JobsFile, []byte(jobs), 0o600); err != nil {
		t.Fatal(err)
	}
	h.StartWorker("w1")
	for tenant, id := range runs {
		if run := h.WaitEnded(id, time.Minute); run.Status != checkpoint.StatusCompleted || run.Records != 1_000 {
			t.Fatalf("run of tenant %s = %+v", tenant, run)
		}
		h.VerifyLanded(id, harness.Records(1_000)) // its rows under its prefix
	}
	if n := h.Count(`SELECT count(*) FROM etl_records WHERE job = 'tenants'`); n != 2_000 {
		t.Errorf("%d records landed, want 1,000 for each tenant", n)
	}
	first := harness.Records(1)[0]
	for _, tenant := range []string{"acme", "globex"} {
		if n := h.Count(`SELECT count(*) FROM etl_records WHERE record_key = $1 AND payload->>'id' = $2`, tenant+"/"+first.ID, first.ID); n != 1 {
			t.Errorf("record %s of tenant %s: %d rows, want 1", first.ID, tenant, n)
		}
	}
}

// The same job started many times at once yields one run; its parameters
// are its identity, and after it completed a start pulls it anew.
func TestETLStartIsIdempotent(t *testing.T) {
	h := harness.New(t, harness.Options{
		Jobs: jobsOf("regional", "/v1/records", "{style: offset, page_size: 500}",
			"    total_path: total\n    params: [region]\n    query: {region: \"{region}\"}\n"),
		Sim: simulator.Config{Records: 2_000},
	})
	eu := tasks.ETLOptions{Params: map[string]string{"region": "eu"}}
	var wg sync.WaitGroup
	results := make([]tasks.Started, 8)
	for i := range results {
		wg.Go(func() { results[i] = h.StartETL("regional", eu) })
	}
	wg.Wait()
	var created int
	for _, r := range results {
		if r.Run.ID != results[0].Run.ID {
			t.Errorf("runs %d and %d for the same parameters", r.Run.ID, results[0].Run.ID)
		}
		if r.How == tasks.Created {
			created++
		}
	}
	if created != 1 || h.Count(`SELECT count(*) FROM runs`) != 1 {
		t.Fatalf("%d starts created a run, %d runs exist; want 1 and 1", created, h.Count(`SELECT count(*) FROM runs`))
	}
	us := h.StartETL("regional", tasks.ETLOptions{Params: map[string]string{"region": "us"}})
	if us.How != tasks.Created || us.Run.ID == results[0].Run.ID || us.Run.RunKey != "region=us" {
		t.Errorf("other parameters = %+v", us)
	}

	// Bad starts, before any worker writes: refused, nothing written.
	for _, bad := range []struct {
		job    string
		params map[string]string
		want   error
		text   string
	}{
		{"regional", nil, tasks.ErrInput, "needs --param region=VALUE"},
		{"regional", map[string]string{"region": "eu", "tier": "1"}, tasks.ErrInput, `has no param "tier"`},
		{"regional", map[string]string{"region": ""}, tasks.ErrInput, "param region"},
		{"nosuch", nil, tasks.ErrUnknownJob, `job "nosuch" is not defined in the jobs file (defined: regional)`},
	} {
		before := h.Fingerprint()
		_, err := h.Control.StartETL(context.Background(), bad.job, tasks.ETLOptions{Params: bad.params})
		if !errors.Is(err, bad.want) || !strings.Contains(err.Error(), bad.text) {
			t.Errorf("start %s %v = %v, want %v with %q", bad.job, bad.params, err, bad.want, bad.text)
		}
		h.VerifyUnchanged(before, "a refused start")
	}

	// A cancelled run is over: starting its job again pulls it anew, and
	// the cancelled one can no longer be retried (one run per job and
	// parameters goes on at a time).
	apac := map[string]string{"region": "apac"}
	old := h.StartETL("regional", tasks.ETLOptions{Params: apac})
	if _, err := h.Control.Cancel(context.Background(), old.Run.ID); err != nil {
		t.Fatal(err)
	}
	if s := h.StartETL("regional", tasks.ETLOptions{Params: apac}); s.How != tasks.Created || s.Run.Generation != 2 {
		t.Errorf("a start after a cancel = %+v, want generation 2 created", s)
	}
	if _, err := h.Control.Retry(context.Background(), old.Run.ID); !errors.Is(err, checkpoint.ErrState) ||
		!strings.Contains(err.Error(), "was followed by run") {
		t.Errorf("retry of a cancelled run that has a newer generation = %v, want refused", err)
	}

	h.StartWorker("w1")
	first := h.WaitEnded(results[0].Run.ID, time.Minute)
	again := h.StartETL("regional", eu)
	if first.Status != checkpoint.StatusCompleted || again.How != tasks.Created || again.Run.Generation != 2 || again.Run.ID == first.ID {
		t.Errorf("after run %d completed, a start = %+v; want generation 2 created", first.ID, again)
	}
	// Pulling the same records again updates their rows, never duplicates them.
	h.WaitEnded(again.Run.ID, time.Minute)
	h.VerifyLanded(again.Run.ID, harness.Records(2_000))
}

// A job's rate limit holds across its pages: 41 pages at 20 requests a
// second (a burst of 20) take at least a second.
func TestETLRateLimit(t *testing.T) {
	h := harness.New(t, harness.Options{
		Jobs: jobsOf("paced", "/v1/records", "{style: offset, page_size: 100}", "    total_path: total\n    rate_limit: 20\n    partitions: 4\n"),
		Sim:  simulator.Config{Records: 4_100},
	})
	h.StartWorker("w1")
	start := time.Now()
	run := h.WaitEnded(h.StartETL("paced", tasks.ETLOptions{}).Run.ID, time.Minute)
	took := time.Since(start)
	h.VerifyLanded(run.ID, harness.Records(4_100))
	// 42 requests (the start's check and 41 pages), 20 of them in the burst:
	// (42-20)/20 s at the least. A lower bound, so a slow machine cannot fail it.
	if took < 1100*time.Millisecond-100*time.Millisecond {
		t.Errorf("41 pages at 20/s took %s, want at least 1.1s", took)
	}
	t.Logf("41 pages at 20 requests/s in %s", took)
}

// answer makes the source answer body (200) to every request whose skip is
// one of skips.
func answer(body string, skips ...string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if slices.Contains(skips, r.URL.Query().Get("skip")) {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, body)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// Bad pages give clear errors and write nothing wrong: a first page that
// does not check out starts no run, and a later one, once its retries are
// used up, fails the run with the pages before it landed and nothing else.
func TestETLBadPages(t *testing.T) {
	const job = "jobs:\n  - name: pull\n    url: SIM_URL/v1/records\n    pagination: {style: offset, page_size: 100}\n    items_path: items\n    total_path: total\n    key: id\n"
	tests := []struct {
		name, body, want string
	}{
		{"not JSON", `{"items":[{"id":"r0`, "the response is not JSON"},
		{"no items", `{"data":[],"total":1000}`, `items_path "items": missing from the response`},
		{"items not an array", `{"items":{"id":"a"},"total":1000}`, `items_path "items" is an object, want an array of records`},
		{"record not an object", `{"items":[1,2],"total":1000}`, "record 0 is the number 1, want an object"},
		{"key missing", `{"items":[{"name":"x"}],"total":1000}`, `record 0: key "id": missing from the response`},
		{"key of the wrong type", `{"items":[{"id":true}],"total":1000}`, `record 0: key "id" is a bool, want a string or an integer`},
		{"total of the wrong type", `{"items":[],"total":"many"}`, `total_path "total" is a string "many", want a whole number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := harness.New(t, harness.Options{Jobs: job, Sim: simulator.Config{Records: 1_000},
				Wrap: answer(tt.body, "0", "500"), Configure: func(c *config.Config) { c.Sync.MaxRetry = 1 }})
			before := h.Fingerprint()
			_, err := h.Control.StartETL(context.Background(), "pull", tasks.ETLOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "no run was started") {
				t.Fatalf("start on a bad first page = %v, want %q", err, tt.want)
			}
			h.VerifyUnchanged(before, "a start on a bad first page")
		})
	}

	// Mid-run: page 5 (skip=500) is bad for good.
	h := harness.New(t, harness.Options{Jobs: job, Sim: simulator.Config{Records: 1_000},
		Wrap:      answer(`{"items":[{"id":{"nested":1}}],"total":1000}`, "500"),
		Configure: func(c *config.Config) { c.Sync.MaxRetry = 1 }})
	h.StartWorker("w1")
	run := h.WaitEnded(h.StartETL("pull", tasks.ETLOptions{}).Run.ID, time.Minute)
	if run.Status != checkpoint.StatusFailed || run.Processed != 500 ||
		!strings.Contains(run.LastError, `page 5 (skip=500): none of the page's 1 records can be landed; the first: record 0: key "id" is an object, want a string or an integer`) {
		t.Fatalf("run %+v", run)
	}
	if n := h.Count(`SELECT count(*) FROM etl_records`); n != 500 ||
		h.Count(`SELECT count(*) FROM etl_records WHERE record_key >= 'r000500'`) != 0 {
		t.Errorf("%d rows landed, want the 500 of pages 0 to 4", n)
	}
}

// A source that changes under an offset walk is reported on the run: its
// total changed, and the run received other records than it started with.
func TestETLReportsDrift(t *testing.T) {
	h := harness.New(t, harness.Options{
		Jobs: jobsOf("drifty", "/v1/records", "{style: offset, page_size: 500}", "    total_path: total\n"),
		// After the 3rd page request, each request inserts a record at the front.
		Sim: simulator.Config{Records: 5_000, Drift: 3},
	})
	h.StartWorker("w1")
	run := h.WaitEnded(h.StartETL("drifty", tasks.ETLOptions{}).Run.ID, time.Minute)
	if run.Status != checkpoint.StatusCompleted || run.SourceTotal == nil || *run.SourceTotal <= run.Total {
		t.Fatalf("run %+v", run)
	}
	joined := strings.Join(run.Warnings, "\n")
	for _, want := range []string{"the source's total changed from 5000 to", "records added or removed during the run were not all pulled"} {
		if !strings.Contains(joined, want) {
			t.Errorf("warnings %q lack %q", run.Warnings, want)
		}
	}
	// Inserts at the front shift every later page: records are seen twice
	// and the last ones never, which the rows show.
	if n := h.Count(`SELECT count(*) FROM etl_records`); n >= 5_000 {
		t.Errorf("%d rows after a drifting walk of 5000, want fewer (records repeated, others missed)", n)
	}
	t.Logf("warnings: %q", run.Warnings)
}

// A run whose worker stops mid-run, that is cancelled and retried, and that
// another worker finishes, lands exactly the same records.
func TestETLStoppedCancelledAndResumedLandsTheSame(t *testing.T) {
	h := harness.New(t, harness.Options{Jobs: harness.PatientsJob, Sim: simulator.Config{Records: 50_000, Latency: 20 * time.Millisecond}})
	w1 := h.StartWorker("w1")
	id := h.StartETL("patients", tasks.ETLOptions{}).Run.ID
	h.WaitFor(id, time.Minute, "a fifth pulled", func(r checkpoint.Run) bool { return r.Processed >= 10_000 })
	if err := w1.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Control.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	cancelled, err := h.Store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Control.Retry(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	h.StartWorker("w2")
	run := h.WaitEnded(id, 2*time.Minute)
	h.VerifyLanded(id, harness.Records(50_000))
	t.Logf("stopped and cancelled at %d records, completed in attempt %d: %d pages, %d ms", cancelled.Processed, run.Attempt, run.Batches, run.DurationMS)
}

// A dry run fetches and checks every page, reports what a run would land,
// and writes nothing.
func TestETLDryRunWritesNothing(t *testing.T) {
	h := harness.New(t, harness.Options{
		Jobs: jobsOf("pull", "/v1/records-cursor", "{style: cursor, next_path: next, page_size: 500}", ""),
		Sim:  simulator.Config{Records: 5_250},
	})
	before := h.Fingerprint()
	report, err := h.Control.DryRunETL(context.Background(), "pull", tasks.ETLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if report.Pages != 11 || report.Records != 5_250 || report.Keys != 5_250 || report.Total != nil || len(report.Warnings) != 0 {
		t.Errorf("dry run = %+v", report)
	}
	h.VerifyUnchanged(before, "a dry run")
}

// A job that names its own table lands its records there (created on the
// job's first start), not in etl_records.
func TestETLOwnTable(t *testing.T) {
	h := harness.New(t, harness.Options{
		Jobs: jobsOf("pull", "/v1/records-paged", "{style: page, page_size: 300}", "    total_path: total\n    table: pulled_records\n"),
		Sim:  simulator.Config{Records: 1_000},
	})
	h.StartWorker("w1")
	run := h.WaitEnded(h.StartETL("pull", tasks.ETLOptions{}).Run.ID, time.Minute)
	if run.Status != checkpoint.StatusCompleted || run.Batches != 4 {
		t.Fatalf("run %+v", run)
	}
	if n, m := h.Count(`SELECT count(*) FROM pulled_records`), h.Count(`SELECT count(*) FROM etl_records`); n != 1_000 || m != 0 {
		t.Errorf("%d rows in pulled_records and %d in etl_records, want 1000 and 0", n, m)
	}
	if n := h.Count(`SELECT count(*) FROM pulled_records WHERE payload->>'id' = record_key AND run_id = $1`, run.ID); n != 1_000 {
		t.Errorf("%d rows keyed by their id from run %d, want 1000", n, run.ID)
	}
}

// A malformed record fails alone and the page goes on: a record Postgres
// cannot store (a \u0000) or without its key is rejected, counted failed,
// named in a warning and kept with the run, each with its reason, while the
// page's other records land.
func TestETLRejectsBadRecordsAlone(t *testing.T) {
	const job = "jobs:\n  - name: pull\n    url: SIM_URL/v1/records\n    pagination: {style: offset, page_size: 3}\n    items_path: items\n    total_path: total\n    key: id\n"
	h := harness.New(t, harness.Options{Jobs: job, Sim: simulator.Config{Records: 9},
		Wrap: answer(`{"items":[{"id":"r000003","name":"bad\u0000"},{"name":"no id"},{"id":"r000005","name":"ok"}],"total":9}`, "3")})
	h.StartWorker("w1")
	run := h.WaitEnded(h.StartETL("pull", tasks.ETLOptions{}).Run.ID, time.Minute)
	if run.Status != checkpoint.StatusCompleted || run.Processed != 9 || run.Succeeded != 7 || run.Failed != 2 || run.Records != 7 {
		t.Fatalf("run %+v", run)
	}
	if len(run.Warnings) != 1 || !strings.Contains(run.Warnings[0], "page 1: 2 records rejected and not landed, the first: record 0 holds a \\u0000 character") {
		t.Errorf("warnings %q", run.Warnings)
	}
	if n := h.Count(`SELECT count(*) FROM etl_records WHERE record_key IN ('r000003', 'r000004')`); n != 0 ||
		h.Count(`SELECT count(*) FROM etl_records`) != 7 {
		t.Errorf("the rejected records landed, or others are missing")
	}
	failed, err := h.Store.Failures(t.Context(), run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 2 || failed[0].Key != "page 1, record 0" || !strings.Contains(failed[0].Error, "record 0 holds a \\u0000 character") ||
		failed[1].Key != "page 1, record 1" || !strings.HasPrefix(failed[1].Error, "record 1") || failed[0].Status != checkpoint.ItemFailed {
		t.Errorf("failures %+v, want the two rejected records of page 1 with their reasons", failed)
	}
}

// A source that caps its pages below the job's page size would make an
// offset walk skip records: the start refuses, saying what page size works.
func TestETLRefusesASourceThatCapsPages(t *testing.T) {
	for _, extra := range []string{"    total_path: total\n", ""} {
		// The source serves at most 700 records a page, whatever it is asked.
		h := harness.New(t, harness.Options{Jobs: jobsOf("pull", "/v1/records", "{style: offset, page_size: 1000}", extra),
			Sim: simulator.Config{Records: 5_000}, Wrap: capPages(700)})
		before := h.Fingerprint()
		_, err := h.Control.StartETL(context.Background(), "pull", tasks.ETLOptions{})
		if !errors.Is(err, tasks.ErrInput) || !strings.Contains(err.Error(), "answered 700 records for a page of 1000 and has more") ||
			!strings.Contains(err.Error(), "set pagination.page_size to 700 or less") {
			t.Errorf("start with total_path %t = %v", extra != "", err)
		}
		h.VerifyUnchanged(before, "a refused start")
	}
}

// capPages makes the source answer at most limit records a page.
func capPages(limit int) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			if take, err := strconv.Atoi(q.Get("take")); err == nil && take > limit {
				q.Set("take", strconv.Itoa(limit))
				r.URL.RawQuery = q.Encode()
			}
			next.ServeHTTP(w, r)
		})
	}
}
