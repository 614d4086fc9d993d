package tasks_test

import (
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/simulator"
	"github.com/syncworker/syncworker/internal/tasks"
)

// patientsJob is the offset-style job of configs/jobs.yaml, against the
// test's simulator, split into four page ranges.
const patientsJob = `
jobs:
  - name: patients
    url: SIM_URL/v1/records
    pagination: {style: offset, skip_param: skip, take_param: take, page_size: 500}
    items_path: items
    total_path: total
    key: id
    timeout: 1h
    partitions: 4
`

// A job of 50,000 records with page size 500 lands exactly 50,000 rows,
// pulled by two workers in four page ranges, each page committed once.
func TestETLLandsEveryRecordOnce(t *testing.T) {
	h := harness.New(t, harness.Options{Jobs: patientsJob, Sim: simulator.Config{Records: 50_000}})
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
