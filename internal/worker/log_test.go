package worker_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/simulator"
	"github.com/syncworker/syncworker/internal/tasks"
	"github.com/syncworker/syncworker/internal/worker"
)

// batchFields are the fields every log line about a batch carries.
var batchFields = []string{"run_id", "job", "partition", "seq", "task_id"}

// Every line a worker logs about a batch task, in its JSON log, names the
// batch: run_id, job, partition, seq and task_id. The lines come from the
// handler (batches committed), from the job's own fetch code (a quote that
// failed) and from the server's error handler (a page the source answered
// with a 500), for a daily sync and an ETL pull. asynq's own lines follow
// log.level (debug here: its info lines are there).
func TestBatchLogLinesNameTheBatch(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 30, Unknown: 3,
		Jobs: "jobs:\n  - name: logged\n    url: SIM_URL/v1/records\n    pagination: {style: offset, page_size: 100}\n" +
			"    items_path: items\n    total_path: total\n    key: id\n",
		Sim: simulator.Config{Records: 2000, ErrorRate: 0.3, Seed: 11}})
	daily := h.StartDailySync(date, 5, 2)
	pull := h.StartETL("logged", tasks.ETLOptions{})

	var out harness.SafeBuffer
	cfg := h.Config
	cfg.Log.Level, cfg.Log.Format = "debug", "auto" // a buffer is no terminal: JSON
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- worker.Run(ctx, cfg, worker.Options{Name: "json", Logger: cfg.Log.NewLogger(&out)}) }()
	h.WaitEnded(daily.ID, 60*time.Second)
	h.WaitEnded(pull.Run.ID, 60*time.Second)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not stop within 30s")
	}
	batches := len(h.Ledger(daily.ID)) + len(h.Ledger(pull.Run.ID))

	counts := map[string]int{}
	var lines, batchLines int
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines++
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line %d is not JSON: %v: %s", lines, err, sc.Text())
		}
		msg, _ := line["msg"].(string)
		if line["component"] == "asynq" && line["level"] == slog.LevelInfo.String() {
			counts["asynq info"]++
		}
		if line["component"] != "batch" {
			continue
		}
		batchLines++
		counts[msg]++
		for _, f := range batchFields {
			if v, ok := line[f]; !ok || v == "" {
				t.Errorf("batch log line without %s: %s", f, sc.Text())
			}
		}
		// The error handler names the batch that failed, not the first of
		// its task: on the ETL job's partition 0, batch seq N is page N.
		if msg == "task failed; asynq retries it" && line["job"] == "logged" && line["partition"] == 0.0 {
			if page := fmt.Sprintf("page %v ", line["seq"]); !strings.HasPrefix(line["error"].(string), page) {
				t.Errorf("the failed task's line names seq %v, but its error is of another page: %s", line["seq"], sc.Text())
			}
			counts["page 500 named"]++
		}
	}
	t.Logf("%d lines, %d about batches; %d batches committed; by message: %v", lines, batchLines, batches, counts)
	if counts["batch committed"] != batches {
		t.Errorf("%d \"batch committed\" lines, want %d (the ledgers' rows)", counts["batch committed"], batches)
	}
	if counts["quote failed"] < 3 {
		t.Errorf("%d \"quote failed\" lines from the daily sync's fetch, want one for each of the 3 unknown symbols at least", counts["quote failed"])
	}
	if counts["task failed; asynq retries it"] < 1 {
		t.Errorf("no line from the error handler; the source's 500s must have failed a page")
	}
	if counts["page 500 named"] < 1 {
		t.Errorf("no page of the ETL job's partition 0 failed; the test did not check the failed batch's seq")
	}
	if counts["asynq info"] < 1 {
		t.Errorf("no info line from asynq at log.level debug")
	}
}
