package tasks_test

import (
	"slices"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/simulator"
	"github.com/syncworker/syncworker/internal/tasks"
)

// benchRecords is the size of the benchmarks' ETL runs and benchSymbols
// that of their daily syncs.
const (
	benchRecords int64 = 50_000
	benchSymbols int64 = 5_000
)

// benchHarness returns a harness with the worker defaults a deployment has
// (task slice, concurrency) rather than the tests' short ones, against the
// simulator at zero latency.
func benchHarness(b *testing.B, opts harness.Options) *harness.Harness {
	b.Helper()
	opts.Configure = func(c *config.Config) {
		def := config.Default()
		c.Sync.TaskSlice = def.Sync.TaskSlice
		c.Worker.Concurrency = def.Worker.Concurrency
		c.Log.Level = "error"
	}
	return harness.New(b, opts)
}

// BenchmarkETLRun pulls an ETL job of 50,000 records in pages of 500 (the
// patients job, in one partition) on one in-process worker, end to end:
// queue, source, checkpoint, sink. Each op is one run on a fresh
// installation, set up off the clock. Profile it with
//
//	go test -run '^$' -bench ETLRun -benchtime 1x -cpuprofile cpu.out ./internal/tasks
func BenchmarkETLRun(b *testing.B) {
	benchRuns(b, benchRecords, harness.Options{Jobs: harness.PatientsJob, Sim: simulator.Config{Records: int(benchRecords)}},
		func(h *harness.Harness) int64 {
			return h.StartETL("patients", tasks.ETLOptions{Partitions: 1}).Run.ID
		})
}

// BenchmarkDailySync syncs 5,000 symbols in batches of 500 on one
// in-process worker, end to end. Each op is one run on a fresh installation.
func BenchmarkDailySync(b *testing.B) {
	benchRuns(b, benchSymbols, harness.Options{Symbols: int(benchSymbols)}, func(h *harness.Harness) int64 {
		return h.StartDailySync("2026-11-20", 500, 1).ID
	})
}

// benchRuns times runs that start, each on a fresh installation of opts with
// one worker, and must land rows rows each.
func benchRuns(b *testing.B, rows int64, opts harness.Options, start func(*harness.Harness) int64) {
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		h := benchHarness(b, opts)
		h.StartWorker("w1")
		b.StartTimer()
		run := h.WaitEnded(start(h), 5*time.Minute)
		b.StopTimer()
		if run.Succeeded != rows || run.Status != checkpoint.StatusCompleted {
			b.Fatalf("run %+v, want %d rows landed", run, rows)
		}
		reportLedger(b, h, run.ID)
		b.StartTimer()
	}
	b.ReportMetric(float64(int64(b.N)*rows)/b.Elapsed().Seconds(), "rows/s")
}

// reportLedger reports from run id's ledger the median time of a batch,
// from its start to its commit (batch_ms), and the median time between a
// batch's commit and the start of the next of its partition (gap_ms): the
// share of a batch that is its own work and the share that is the chain's.
func reportLedger(b *testing.B, h *harness.Harness, id int64) {
	b.Helper()
	ledger := h.Ledger(id)
	var batch, gap []float64
	for i, l := range ledger {
		batch = append(batch, float64(l.Committed.Sub(l.Started).Microseconds())/1000)
		if i > 0 && ledger[i-1].Partition == l.Partition {
			gap = append(gap, float64(l.Started.Sub(ledger[i-1].Committed).Microseconds())/1000)
		}
	}
	median := func(v []float64) float64 {
		if len(v) == 0 {
			return 0
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	b.ReportMetric(median(batch), "batch_ms")
	b.ReportMetric(median(gap), "gap_ms")
}
