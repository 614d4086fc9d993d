package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/simulator"
)

const date = "2026-11-20"

// cli runs the enqueue command in-process against h.
type cli struct {
	t *testing.T
	h *harness.Harness
}

func setup(t *testing.T, opts harness.Options) *cli {
	t.Helper()
	h := harness.New(t, opts)
	for _, kv := range h.Config.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	t.Setenv(config.FileEnv, os.DevNull)
	return &cli{t: t, h: h}
}

type result struct {
	code           int
	stdout, stderr string
}

func (c *cli) run(stdin string, args ...string) result {
	c.t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := execute(ctx, args, strings.NewReader(stdin), &out, &errOut)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

func (c *cli) runJSON(v any, args ...string) result {
	c.t.Helper()
	r := c.run("", append(args, "--json")...)
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		c.t.Fatalf("enqueue %v: stdout %q is not one JSON value: %v (stderr %q)", args, r.stdout, err, r.stderr)
	}
	return r
}

func TestDailySyncStartsOnceAndPrintsJSON(t *testing.T) {
	c := setup(t, harness.Options{Symbols: 25})
	var first map[string]any
	r := c.runJSON(&first, "daily-sync", "--date", date, "--batch-size", "10", "--partitions", "2")
	if r.code != 0 || !strings.Contains(r.stderr, "started daily-sync "+date+" over 25 symbols in 2 partitions, batches of 10") {
		t.Fatalf("daily-sync = %+v", r)
	}
	for _, key := range []string{"id", "job", "run_key", "status", "total", "processed", "succeeded", "failed", "started_at", "finished_at"} {
		if _, ok := first[key]; !ok {
			t.Errorf("JSON lacks %q: %v", key, first)
		}
	}
	if first["job"] != "daily-sync" || first["run_key"] != date || first["total"] != 25.0 || first["status"] != "pending" {
		t.Errorf("JSON = %v", first)
	}

	var second map[string]any
	r = c.runJSON(&second, "daily-sync", "--date", date, "--batch-size", "99")
	if r.code != 0 || second["id"] != first["id"] || !strings.Contains(r.stderr, "exists and is pending") ||
		!strings.Contains(r.stderr, "--batch-size applies to new runs only; this run keeps 10") {
		t.Errorf("second daily-sync = %+v", r)
	}
	if n := c.h.Count(`SELECT count(*) FROM runs`); n != 1 {
		t.Errorf("%d runs, want 1", n)
	}
}

func TestWaitExitCodes(t *testing.T) {
	c := setup(t, harness.Options{Symbols: 60, Sim: simulator.Config{Latency: 2 * time.Millisecond}})

	// Nothing serves the queue: still running when the timeout elapses.
	r := c.run("", "daily-sync", "--date", date, "--wait", "--timeout", "1s", "--progress-interval", "100ms", "--json")
	if r.code != exitRunning || !strings.Contains(r.stderr, "still pending after 1s") || !strings.Contains(r.stderr, "it goes on") {
		t.Fatalf("--wait with no worker = %+v, want exit 2", r)
	}
	var run checkpoint.Run
	if err := json.Unmarshal([]byte(r.stdout), &run); err != nil || run.Status != checkpoint.StatusPending {
		t.Fatalf("--json after a timeout printed %q (%v)", r.stdout, err)
	}

	// A worker serves it: waiting again for the same date follows it to the end.
	c.h.StartWorker("w")
	r = c.run("", "daily-sync", "--date", date, "--wait", "--progress-interval", "100ms", "--json")
	if r.code != exitOK {
		t.Fatalf("--wait with a worker = %+v, want exit 0", r)
	}
	if err := json.Unmarshal([]byte(r.stdout), &run); err != nil || run.Status != checkpoint.StatusCompleted || run.Processed != 60 || run.FinishedAt == nil {
		t.Fatalf("--json at the end = %q (%v)", r.stdout, err)
	}
	if !strings.Contains(r.stderr, "completed 60/60 (100.0%)") {
		t.Errorf("progress lines lack the final state:\n%s", r.stderr)
	}
}

func TestWaitOnAFailedRunExits1(t *testing.T) {
	c := setup(t, harness.Options{Symbols: 5, Sim: simulator.Config{APIKey: "secret"}})
	c.h.StartWorker("w")
	r := c.run("", "daily-sync", "--date", date, "--wait")
	if r.code != exitError || !strings.Contains(r.stderr, "failed") || !strings.Contains(r.stderr, "credentials") ||
		!strings.Contains(r.stderr, "enqueue retry") {
		t.Fatalf("--wait on a run that fails = %+v, want exit 1 with the reason and the way to resume", r)
	}
	if !strings.Contains(r.stdout, ": failed, 0/5 processed") {
		t.Errorf("summary line = %q", r.stdout)
	}
}

func TestStatusFailuresRetryCancel(t *testing.T) {
	c := setup(t, harness.Options{Symbols: 20, Unknown: 3})
	r := c.run("", "status")
	if r.code != 0 || !strings.Contains(r.stdout, "no runs yet") {
		t.Fatalf("status with no runs = %+v", r)
	}
	var run checkpoint.Run
	c.runJSON(&run, "daily-sync", "--date", date, "--batch-size", "5", "--partitions", "2", "--max-failed-items", "5")
	id := strconv.FormatInt(run.ID, 10)
	if run.MaxFailures == nil || *run.MaxFailures != 5 {
		t.Errorf("run's failure limit = %v, want the 5 of --max-failed-items", run.MaxFailures)
	}

	// Cancel, then retry resumes it; a worker completes it.
	if r := c.run("", "cancel", id); r.code != 0 || !strings.Contains(r.stderr, "cancelled at 0/23") {
		t.Fatalf("cancel = %+v", r)
	}
	if r := c.run("", "retry", id); r.code != 0 || !strings.Contains(r.stderr, "resumed as attempt 2") {
		t.Fatalf("retry = %+v", r)
	}
	if r := c.run("", "retry", id); r.code != 1 || !strings.Contains(r.stderr, "only a failed, cancelled or timed-out run can be retried") {
		t.Errorf("retry of a running run = %+v, want exit 1", r)
	}
	if r := c.run("", "redrive", id); r.code != 1 || !strings.Contains(r.stderr, "only a completed run's failed items can be redriven") {
		t.Errorf("redrive of a running run = %+v, want exit 1", r)
	}
	c.h.StartWorker("w")
	c.h.WaitEnded(run.ID, 30*time.Second)
	if r := c.run("", "cancel", id); r.code != 1 || !strings.Contains(r.stderr, "completed; there is nothing to cancel") {
		t.Errorf("cancel of a completed run = %+v", r)
	}

	r = c.run("", "status")
	if r.code != 0 || !strings.Contains(r.stdout, "RUN KEY") || !strings.Contains(r.stdout, date) || !strings.Contains(r.stdout, "23/23 100.0%") {
		t.Errorf("status = %+v", r)
	}
	var list []checkpoint.Run
	if r := c.runJSON(&list, "status"); r.code != 0 || len(list) != 1 || list[0].ID != run.ID {
		t.Errorf("status --json = %+v", list)
	}
	r = c.run("", "status", id)
	if r.code != 0 || !strings.Contains(r.stdout, "completed (attempt 2)") || !strings.Contains(r.stdout, "PARTITION") {
		t.Errorf("status %s = %+v", id, r)
	}
	var detail struct {
		checkpoint.Run
		PartitionList []checkpoint.Partition `json:"partition_list"`
	}
	if r := c.runJSON(&detail, "status", id); r.code != 0 || detail.ID != run.ID || len(detail.PartitionList) != 2 {
		t.Errorf("status %s --json = %+v", id, detail)
	}

	r = c.run("", "failures", id)
	if r.code != 0 || !strings.Contains(r.stdout, "XX0001") || !strings.Contains(r.stdout, "3 failed symbols") || !strings.Contains(r.stdout, "404") {
		t.Errorf("failures = %+v", r)
	}
	var items []checkpoint.Item
	if r := c.runJSON(&items, "failures", id); r.code != 0 || len(items) != 3 || items[0].Status != checkpoint.ItemFailed {
		t.Errorf("failures --json = %+v", items)
	}

	// Redrive runs the 3 failed symbols again; they fail again.
	r = c.run("", "redrive", id, "--wait", "--progress-interval", "100ms")
	if r.code != 0 || !strings.Contains(r.stderr, "redriving 3 failed symbols as attempt 3") {
		t.Fatalf("redrive = %+v", r)
	}
	r = c.run("", "status", id)
	if !strings.Contains(r.stdout, "completed (attempt 3)") || !strings.Contains(r.stdout, "redrives") {
		t.Errorf("status after the redrive = %+v", r)
	}
	if r := c.runJSON(&items, "failures", id); r.code != 0 || len(items) != 3 || items[0].Attempts != 2 {
		t.Errorf("failures after the redrive = %+v, want the 3 tried twice", items)
	}
	if r := c.run("", "redrive", "999"); r.code != 1 || !strings.Contains(r.stderr, "run 999: not found") {
		t.Errorf("redrive of an unknown run = %+v", r)
	}
}

func TestStocksImport(t *testing.T) {
	c := setup(t, harness.Options{Symbols: 2})
	file := filepath.Join(t.TempDir(), "stocks.csv")
	if err := os.WriteFile(file, []byte("symbol,name\nnew1,New One\nAAA,Renamed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := c.run("", "stocks", "import", file); r.code != 0 || !strings.Contains(r.stdout, "imported 2 stocks from "+file+": 1 new, 1 updated") {
		t.Errorf("import file = %+v", r)
	}
	if r := c.run("symbol\nnew2\n", "stocks", "import", "-"); r.code != 0 || !strings.Contains(r.stdout, "1 new") {
		t.Errorf("import stdin = %+v", r)
	}
	before := c.h.Count(`SELECT count(*) FROM stocks`)
	r := c.run("symbol\nGOOD\nbad symbol!\n", "stocks", "import", "-")
	if r.code != 1 || !strings.Contains(r.stderr, "stdin: csv line 3: invalid symbol") {
		t.Errorf("import of a bad file = %+v", r)
	}
	if after := c.h.Count(`SELECT count(*) FROM stocks`); after != before {
		t.Errorf("a rejected file changed the stocks: %d -> %d", before, after)
	}
	if r := c.run("", "stocks", "import", filepath.Join(t.TempDir(), "missing.csv")); r.code != 1 || !strings.Contains(r.stderr, "no such file") {
		t.Errorf("import of a missing file = %+v", r)
	}
}

// Every bad command line gets exit code 1, a message on stderr that names
// what is wrong, nothing on stdout (not even with --json), and writes
// nothing: not a row, not a row version.
func TestBadInputIsAnsweredClearly(t *testing.T) {
	c := setup(t, harness.Options{Symbols: 2})
	var existing checkpoint.Run
	c.runJSON(&existing, "daily-sync", "--date", date)
	id := strconv.FormatInt(existing.ID, 10)
	before := c.h.Fingerprint()

	loc := c.h.Config.Location()
	tomorrow := time.Now().In(loc).AddDate(0, 0, 2).Format("2006-01-02")
	dir := t.TempDir()
	configFile := func(name, body string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	unknownKey := configFile("unknown.yaml", "sync:\n  batch_sise: 10\n")
	wrongType := configFile("type.yaml", "sync:\n  batch_size: 10.7\n")
	badValue := configFile("value.yaml", "log:\n  level: loud\n")
	nowhere := "postgres://postgres@127.0.0.1:1/nowhere?sslmode=disable"
	tests := []struct {
		name string
		args []string
		want string
	}{
		// Failure limits.
		{"failure percent over 100", []string{"daily-sync", "--date", "2026-11-19", "--max-failed-percent", "150"},
			"sync.max_failed_percent (--max-failed-percent) must be between 0 (no limit) and 100, got 150"},
		{"negative failure count", []string{"daily-sync", "--date", "2026-11-19", "--max-failed-items", "-1"},
			"sync.max_failed_items (--max-failed-items)"},
		{"redrive of a run with no failures", []string{"redrive", id}, "is pending; only a completed run's failed items can be redriven"},
		// Dates.
		{"malformed date", []string{"daily-sync", "--date", "20-11-2026"}, `invalid --date "20-11-2026": want a date YYYY-MM-DD`},
		{"impossible date", []string{"daily-sync", "--date", "2026-02-30"}, `invalid --date "2026-02-30"`},
		{"word for a date", []string{"daily-sync", "--date", "tomorrow"}, `invalid --date "tomorrow"`},
		{"date without zeros", []string{"daily-sync", "--date", "2026-1-5"}, `invalid --date "2026-1-5"`},
		{"date with a time", []string{"daily-sync", "--date", date + "T10:00:00Z"}, "invalid --date"},
		{"future date", []string{"daily-sync", "--date", tomorrow}, "is after today"},
		{"far future date", []string{"daily-sync", "--date", "9999-12-31"}, "date 9999-12-31 is after today"},
		{"ancient date", []string{"daily-sync", "--date", "0026-11-20"}, "date 0026-11-20 is before 1900-01-01"},
		{"date checked before connecting", []string{"daily-sync", "--date", "2026-13-01", "--database-url", nowhere}, `invalid --date "2026-13-01"`},

		// Flags, and flags that contradict each other.
		{"timeout without wait", []string{"daily-sync", "--timeout", "5s"}, "--timeout only applies with --wait"},
		{"progress interval without wait", []string{"daily-sync", "--progress-interval", "5s"}, "--progress-interval only applies with --wait"},
		{"retry progress interval without wait", []string{"retry", id, "--progress-interval", "1s"}, "--progress-interval only applies with --wait"},
		{"limit with a run id", []string{"status", id, "--limit", "3"}, "--limit applies to the list of recent runs, not to status RUN_ID"},
		{"negative timeout", []string{"daily-sync", "--wait", "--timeout", "-5s"}, "want a duration of 0 or more"},
		{"zero progress interval", []string{"daily-sync", "--wait", "--progress-interval", "0s"}, "--progress-interval 0s: want a positive duration"},
		{"timeout not a duration", []string{"daily-sync", "--wait", "--timeout", "5"}, `invalid argument "5" for "--timeout"`},
		{"zero batch size", []string{"daily-sync", "--batch-size", "0"}, "sync.batch_size (--batch-size) must be between 1"},
		{"negative batch size", []string{"daily-sync", "--batch-size", "-5"}, "sync.batch_size (--batch-size) must be between 1 and 100000, got -5"},
		{"batch size not a number", []string{"daily-sync", "--batch-size", "many"}, `invalid argument "many" for "--batch-size"`},
		{"huge partitions", []string{"daily-sync", "--partitions", "99999"}, "sync.partitions (--partitions)"},
		{"bad limit", []string{"status", "--limit", "0"}, "--limit 0"},
		{"negative limit", []string{"status", "--limit", "-3"}, "--limit -3"},
		{"unknown flag", []string{"daily-sync", "--dat", date}, "unknown flag: --dat"},
		{"argument to daily-sync", []string{"daily-sync", date}, `unknown command "` + date + `" for "enqueue daily-sync"`},
		{"bad database url flag", []string{"status", "--database-url", "mysql://x/y"}, "database_url (--database-url) must be a postgres or postgresql URL"},

		// Configuration files.
		{"config file with an unknown key", []string{"status", "--config", unknownKey}, "config file " + unknownKey + ": unknown key sync.batch_sise"},
		{"config file with a wrong type", []string{"status", "--config", wrongType},
			"config file " + wrongType + ": sync.batch_size (SYNC_BATCH_SIZE) is 10.7: want a whole number"},
		{"config file with a bad value", []string{"status", "--config", badValue},
			"config file " + badValue + ": log.level (LOG_LEVEL) must be debug, info, warn or error"},
		{"missing config file", []string{"status", "--config", filepath.Join(dir, "none.yaml")}, "none.yaml"},

		// Run ids.
		{"unknown run", []string{"status", "999"}, "run 999: not found"},
		{"unknown run as JSON", []string{"status", "999", "--json"}, "run 999: not found"},
		{"unknown run failures", []string{"failures", "999"}, "run 999: not found"},
		{"unknown run retry", []string{"retry", "999"}, "run 999: not found"},
		{"unknown run cancel", []string{"cancel", "999"}, "run 999: not found"},
		{"unknown run pause", []string{"pause", "999"}, "run 999: not found"},
		{"unknown run resume", []string{"resume", "999"}, "run 999: not found"},
		{"unknown run restart", []string{"restart", "999", "--from-zero"}, "run 999: not found"},
		{"restart without --from-zero", []string{"restart", id}, "say so with --from-zero"},
		{"restart of a run under way", []string{"restart", id, "--from-zero"}, "cancel it before restarting it from zero"},
		{"resume of a run that is not paused", []string{"resume", id}, "only a paused run can be resumed"},
		{"pause with a bad run id", []string{"pause", "x"}, `invalid run id "x"`},
		{"run id not a number", []string{"status", "abc"}, `invalid run id "abc"`},
		{"run id zero", []string{"cancel", "0"}, `invalid run id "0"`},
		{"negative run id", []string{"status", "-1"}, `invalid run id "-1": want a whole number of 1 or more`},
		{"negative run id to cancel", []string{"cancel", "-5"}, `invalid run id "-5"`},
		{"negative run id to retry", []string{"retry", "-2", "--wait"}, `invalid run id "-2"`},
		{"negative fractional run id", []string{"failures", "-1.5"}, `invalid run id "-1.5"`},
		{"fractional run id", []string{"status", "1.5"}, `invalid run id "1.5"`},
		{"hexadecimal run id", []string{"status", "0x1"}, `invalid run id "0x1"`},
		{"run id past int64", []string{"status", "99999999999999999999"}, `invalid run id "99999999999999999999"`},
		{"sql in run id", []string{"status", "1; DROP TABLE runs"}, "invalid run id"},
		{"sql in run id to cancel", []string{"cancel", "1 OR 1=1"}, `invalid run id "1 OR 1=1"`},
		{"missing run id", []string{"retry"}, "accepts 1 arg"},
		{"two run ids", []string{"status", id, id}, "accepts at most 1 arg"},
		{"unknown command", []string{"dailysync"}, `unknown command "dailysync"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if slices.Contains(tt.args, "--config") {
				// The file's values count where no variable overrides them:
				// keep only the connections' (restored after the subtest).
				for _, kv := range c.h.Config.Environ() {
					if k, _, _ := strings.Cut(kv, "="); k != "DATABASE_URL" && k != "REDIS_URL" {
						t.Setenv(k, "")
						os.Unsetenv(k)
					}
				}
			}
			r := c.run("", tt.args...)
			if r.code != exitError || !strings.Contains(r.stderr, tt.want) || r.stdout != "" {
				t.Errorf("enqueue %v = exit %d, stdout %q, stderr %q; want exit 1, no output and %q", tt.args, r.code, r.stdout, r.stderr, tt.want)
			}
		})
	}
	c.h.VerifyUnchanged(before, "bad input")
}

// --json and --wait do not contradict each other: the progress goes to
// stderr, and stdout holds only the run's one JSON object.
func TestJSONWithWaitKeepsStdoutClean(t *testing.T) {
	c := setup(t, harness.Options{Symbols: 3})
	c.h.StartWorker("w")
	var run checkpoint.Run
	r := c.runJSON(&run, "daily-sync", "--date", date, "--wait", "--progress-interval", "10ms")
	if r.code != exitOK || run.Status != checkpoint.StatusCompleted || !strings.Contains(r.stderr, "completed 3/3") {
		t.Fatalf("daily-sync --wait --json = %+v, run %+v", r, run)
	}
}

// A file with a bad row is refused whole, naming the line; names and
// exchanges that look like SQL are data, stored exactly as given.
func TestStocksImportRefusesBadFilesWhole(t *testing.T) {
	c := setup(t, harness.Options{Symbols: 2})
	before := c.h.Fingerprint()
	tests := []struct {
		name, csv, want string
	}{
		{"sql-looking symbol", "symbol\nGOOD\n'; DROP TABLE stocks;--\n", `stdin: csv line 3: invalid symbol "'; DROP TABLE stocks;--"`},
		{"sql-looking quoted symbol", "symbol,name\nGOOD,Good\n\"x'); DELETE FROM stocks;--\",Bad\n", "stdin: csv line 3: invalid symbol"},
		{"NUL in a name", "symbol,name\nGOOD,Go\x00od\n", `stdin: csv line 2: name "Go\x00od" has control characters`},
		{"invalid UTF-8 in an exchange", "symbol,exchange\nGOOD,NY\xffSE\n", "stdin: csv line 2: exchange"},
		{"escape sequence in a name", "symbol,name\nGOOD,\x1b[31mred\n", "stdin: csv line 2: name"},
		{"bad active", "symbol,active\nGOOD,yes please\n", `stdin: csv line 2: active is "yes please"`},
		{"repeated symbol", "symbol\nGOOD\ngood\n", "stdin: csv line 3: symbol GOOD repeats line 2"},
		{"unterminated quote", "symbol,name\n\"GOOD", "stdin: read csv: parse error on line 2"},
		{"no symbol column", "ticker\nGOOD\n", "has no symbol column"},
		{"empty", "", "csv is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.run(tt.csv, "stocks", "import", "-", "--json")
			if r.code != exitError || !strings.Contains(r.stderr, tt.want) || r.stdout != "" {
				t.Errorf("import = exit %d, stdout %q, stderr %q; want exit 1 and %q", r.code, r.stdout, r.stderr, tt.want)
			}
		})
	}
	c.h.VerifyUnchanged(before, "a refused import")

	const name, exchange = `Robert'); DROP TABLE stocks;--`, `NYSE" OR "1"="1`
	csv := "symbol,name,exchange\nSQL1,\"" + strings.ReplaceAll(name, `"`, `""`) + "\",\"" + strings.ReplaceAll(exchange, `"`, `""`) + "\"\n"
	if r := c.run(csv, "stocks", "import", "-"); r.code != exitOK || !strings.Contains(r.stdout, "1 new") {
		t.Fatalf("import of SQL-looking text = %+v", r)
	}
	var gotName, gotExchange string
	if err := c.h.DB.Pool.QueryRow(context.Background(), `SELECT name, exchange FROM stocks WHERE symbol = 'SQL1'`).Scan(&gotName, &gotExchange); err != nil {
		t.Fatal(err)
	}
	if gotName != name || gotExchange != exchange {
		t.Errorf("stored name %q, exchange %q; want them exactly as given, %q and %q", gotName, gotExchange, name, exchange)
	}
	if n := c.h.Count(`SELECT count(*) FROM stocks`); n != int64(len(c.h.Symbols))+1 {
		t.Errorf("%d stocks, want %d", n, len(c.h.Symbols)+1)
	}
}

func TestDefaultDateIsTodayInTheMarketTimeZone(t *testing.T) {
	c := setup(t, harness.Options{Symbols: 2})
	var run checkpoint.Run
	if r := c.runJSON(&run, "daily-sync"); r.code != 0 {
		t.Fatalf("daily-sync = %+v", r)
	}
	// The run key is taken on the market's calendar; allow for a test that
	// straddles midnight there.
	loc := c.h.Config.Location()
	before, after := time.Now().In(loc).Add(-time.Minute).Format("2006-01-02"), time.Now().In(loc).Format("2006-01-02")
	if run.RunKey != before && run.RunKey != after {
		t.Errorf("run key %s, want today in %s (%s)", run.RunKey, loc, after)
	}
}

// Pause, resume and restart from zero, from the command line: a paused run
// waits (and --wait says so with exit 2) until resumed, and a restart makes
// a new run of the same day.
func TestPauseResumeRestart(t *testing.T) {
	c := setup(t, harness.Options{Symbols: 20, Unknown: 3})
	var run checkpoint.Run
	c.runJSON(&run, "daily-sync", "--date", date, "--batch-size", "5", "--partitions", "2")
	id := strconv.FormatInt(run.ID, 10)
	if r := c.run("", "pause", id); r.code != 0 || !strings.Contains(r.stderr, "paused at 0/23") || !strings.Contains(r.stderr, "enqueue resume "+id) {
		t.Fatalf("pause = %+v", r)
	}
	if r := c.run("", "daily-sync", "--date", date, "--wait", "--timeout", "30s"); r.code != exitRunning || !strings.Contains(r.stderr, "is paused at 0/23") {
		t.Errorf("daily-sync --wait on a paused run = %+v; want exit 2 at once, saying it is paused", r)
	}
	if r := c.run("", "retry", id); r.code != 1 || !strings.Contains(r.stderr, "resume it instead") {
		t.Errorf("retry of a paused run = %+v", r)
	}
	c.h.StartWorker("w")
	if r := c.run("", "resume", id, "--wait", "--progress-interval", "100ms"); r.code != 0 || !strings.Contains(r.stderr, "resumed as attempt 2 from 0/23") {
		t.Fatalf("resume --wait = %+v", r)
	}
	if r := c.run("", "pause", id); r.code != 1 || !strings.Contains(r.stderr, "only a pending or running run can be paused") {
		t.Errorf("pause of a completed run = %+v", r)
	}
	var again checkpoint.Run
	r := c.runJSON(&again, "restart", id, "--from-zero", "--wait")
	if r.code != 0 || again.ID == run.ID || again.Generation != 2 || again.Status != checkpoint.StatusCompleted ||
		!strings.Contains(r.stderr, "started over from zero as run "+strconv.FormatInt(again.ID, 10)+" (generation 2), 23 to do") {
		t.Fatalf("restart --from-zero --wait = %+v, run %+v", r, again)
	}
	c.h.VerifyExactlyOnce(again.ID)
}
