package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/audit"
	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/etl"
	"github.com/syncworker/syncworker/internal/testenv"
)

// TestChaosSmall runs the chaos scenario at CI size: 2,000 symbols on three
// worker processes, batches of 100 in 4 partitions, and alongside an ETL
// pull of 5,000 records in 4 page ranges, through a minute of faults
// (SIGKILLs every 15 s, a Redis flush, three Postgres backend kills, a
// SIGTERM mid-batch) against a simulator that answers 5xx, 429, too slowly
// and with garbage, and asserts that both audits pass.
func TestChaosSmall(t *testing.T) {
	t.Parallel()
	pg := testenv.Postgres(t)
	rdb := testenv.NewRedis(t)
	dir := t.TempDir()
	ctx := context.Background()
	workerBin, simBin, err := build(ctx, filepath.Join(dir, "bin"), raceEnabled)
	if err != nil {
		t.Fatal(err)
	}

	o := defaultOptions()
	o.Symbols, o.Unknown, o.Partitions = 2000, 5, 4
	o.Sim.Records = 5000
	o.Faults, o.KillEvery, o.Timeout = time.Minute, 15*time.Second, 5*time.Minute
	o.DatabaseURL, o.RedisURL = pg.URL, rdb.URL
	o.WorkerBin, o.SimBin, o.LogDir = workerBin, simBin, dir
	o.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res.Print(&out)
	t.Logf("\n%s", out.String())
	if !res.Pass() {
		t.Error("chaos verdict: FAIL")
		for _, k := range []string{"sourcesim.log", "worker-01.log"} {
			if b, err := os.ReadFile(filepath.Join(dir, k)); err == nil {
				t.Logf("%s:\n%s", k, tail(string(b), 40))
			}
		}
	}
	f := res.Figures
	if len(f.Kills) != 4 || len(f.Terms) != 1 || len(f.Flushes) != 1 || len(f.Backends) != 3 {
		t.Errorf("faults injected: %d SIGKILLs, %d SIGTERMs, %d flushes, %d backend kills; want 4, 1, 1, 3",
			len(f.Kills), len(f.Terms), len(f.Flushes), len(f.Backends))
	}
	if s := f.Sim; s.ServerErrors == 0 || s.RateLimited == 0 || s.Slow == 0 || s.Garbage == 0 {
		t.Errorf("the simulator did not inject every fault: %+v", s)
	}
	// The killed workers' partitions went on through lease takeovers: tasks
	// of epoch 1 or more (batch:run:partition:attempt:epoch:seq), not asynq's
	// recovery a minute later.
	takenOver := 0
	for _, b := range res.Report.Ledger {
		if f := strings.Split(b.TaskID, ":"); len(f) == 6 && f[4] != "0" {
			takenOver++
		}
	}
	if takenOver == 0 {
		t.Error("no batch was committed by a takeover task")
	}
	t.Logf("%d of %d batches committed by takeover tasks", takenOver, len(res.Report.Ledger))

	// The ETL run landed exactly the source's records, and went on through
	// the faults: its pacing keeps it running past the last of them, and
	// its partitions were taken over too.
	e := f.ETL
	if e.Run.Status != checkpoint.StatusCompleted || e.Run.Records != 5000 || !res.ETL.OK() {
		t.Errorf("etl run %d: %s, %d records landed, %d audit problems; want completed, 5000, none",
			e.Run.ID, e.Run.Status, e.Run.Records, len(res.ETL.Problems))
	}
	events := schedule(o)
	if last := events[len(events)-1].at; e.Wall <= last {
		t.Errorf("the etl run ended %s after the start, before the last fault at %s", e.Wall, last)
	}
	etlTakenOver := 0
	for _, b := range res.ETL.Ledger {
		if f := strings.Split(b.TaskID, ":"); len(f) == 6 && f[4] != "0" {
			etlTakenOver++
		}
	}
	if etlTakenOver == 0 || e.TakenOver == 0 {
		t.Errorf("etl run: %d pages committed by takeover tasks, %d leases taken over; want some of each", etlTakenOver, e.TakenOver)
	}
	t.Logf("etl: %d of %d pages committed by takeover tasks", etlTakenOver, len(res.ETL.Ledger))
}

// The ETL job lasts about 1.3 times the fault window at a whole number of
// pages a second, with pages of up to 500 records, and its jobs file is one
// the workers load.
func TestETLJobsFile(t *testing.T) {
	for _, c := range []struct {
		records        int
		faults         time.Duration
		wantSize, rate int
	}{
		{5000, time.Minute, 71, 1},        // 71 pages at 1/s
		{20_000, 2 * time.Minute, 141, 1}, // 142 pages at 1/s
		{1_000_000, 2 * time.Minute, 500, 15},
		{3, time.Minute, 1, 1},
	} {
		o := defaultOptions()
		o.Sim.Records, o.Faults = c.records, c.faults
		size, rate := o.etlPacing()
		if size != c.wantSize || rate != c.rate {
			t.Errorf("%d records in %s: page size %d at %d/s, want %d at %d/s", c.records, c.faults, size, rate, c.wantSize, c.rate)
		}
	}

	o := defaultOptions()
	jobs, err := etl.Parse([]byte(o.jobsFile("http://127.0.0.1:1234")), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	j := jobs[0]
	if len(jobs) != 1 || j.Name != etlJob || j.URL != "http://127.0.0.1:1234/v1/records" || j.Pagination.Style != etl.StyleOffset ||
		j.Pagination.PageSize != 141 || j.RateLimit != 1 || j.Partitions != 4 || j.PageTimeout != o.QuotesTimeout ||
		j.TotalPath != "total" || j.Key != "id" {
		t.Errorf("jobs file: %+v", jobs)
	}
}

// testWriter writes to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// The command claims its Redis database in the tests' allocation: it cannot
// take, and so flush, a database a test holds.
func TestRedisClaimExcludesTests(t *testing.T) {
	rdb := testenv.NewRedis(t)
	release, err := environment{}.claimRedis(context.Background(), rdb.URL)
	if err == nil {
		release()
		t.Fatalf("the command claimed redis database %d, which a test holds", rdb.DB)
	}
	if !strings.Contains(err.Error(), "is in use") {
		t.Errorf("claim of a test's database = %v, want it refused as in use", err)
	}
}

func TestSchedule(t *testing.T) {
	o := Options{Faults: time.Minute, KillEvery: 15 * time.Second, Flushes: 1, BackendKills: 3, SIGTERMs: 1}
	var got []string
	for _, e := range schedule(o) {
		got = append(got, e.at.String()+" "+e.fault.String())
	}
	want := []string{"6s SIGTERM", "12s pg_terminate_backend", "15s SIGKILL", "27s Redis FLUSHDB",
		"30s SIGKILL", "33s pg_terminate_backend", "45s SIGKILL", "54s pg_terminate_backend", "1m0s SIGKILL"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("schedule:\n got %s\nwant %s", strings.Join(got, ", "), strings.Join(want, ", "))
	}
}

// The takeover of a kill is the time until the next committed batch of each
// partition the killed worker held (its leases, else the partitions it
// committed last) started, and until it committed; a commit of the killed
// worker after its kill is a problem. The partitions of the two runs are
// told apart.
func TestTakeovers(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	const sync, etlRun = 1, 2
	p := func(part int) Part { return Part{Run: sync, Partition: part} }
	ledger := []audit.Batch{
		{Partition: 0, Seq: 0, Worker: "h:100", Committed: at(1)},
		{Partition: 0, Seq: 1, Worker: "h:200", Committed: at(12)},
		{Partition: 1, Seq: 0, Worker: "h:200", Committed: at(2)},
		{Partition: 1, Seq: 1, Worker: "h:200", Committed: at(6)},
		{Partition: 1, Seq: 2, Worker: "h:100", Committed: at(8)}, // by 100 after its kill
		{Partition: 2, Seq: 0, Worker: "h:300", Committed: at(3)},
		{Partition: 2, Seq: 1, Worker: "h:200", Committed: at(9)},
		{Partition: 3, Seq: 0, Worker: "h:100", Committed: at(4)},
		{Partition: 3, Seq: 1, Worker: "h:400", Committed: at(30)},
	}
	// The ETL run's partition 1, which 300 held too.
	etlLedger := []audit.Batch{
		{Partition: 1, Seq: 0, Worker: "h:300", Committed: at(3)},
		{Partition: 1, Seq: 1, Worker: "h:400", Committed: at(20)},
	}
	for _, l := range [][]audit.Batch{ledger, etlLedger} {
		for i := range l {
			l[i].Started = l[i].Committed.Add(-time.Second)
		}
	}
	kills := []Kill{
		// Nothing seen active on 100: the partitions it committed last, 0 and 3.
		{Time: at(5), Worker: "worker-01", PID: 100},
		// 300 was seen holding partition 1 of each run: those only, not 2.
		{Time: at(5), Worker: "worker-03", PID: 300, Held: []Part{p(1), {Run: etlRun, Partition: 1}}},
		// Nothing left to take over after 40.
		{Time: at(40), Worker: "worker-04", PID: 400, Held: []Part{p(3)}},
	}
	zombies := takeovers(kills, map[int64][]audit.Batch{sync: ledger, etlRun: etlLedger})
	want := [][]Takeover{
		{{p(0), -1, -1, 6 * time.Second, 7 * time.Second, "h:200"}, {p(3), -1, -1, 24 * time.Second, 25 * time.Second, "h:400"}},
		{{p(1), -1, -1, 0, time.Second, "h:200"}, // started before the kill: resumed at once
			{Part{etlRun, 1}, -1, -1, 14 * time.Second, 15 * time.Second, "h:400"}},
		nil,
	}
	for i, k := range kills {
		if fmt.Sprint(k.Takeovers) != fmt.Sprint(want[i]) {
			t.Errorf("takeovers of kill %d: %v, want %v", i+1, k.Takeovers, want[i])
		}
	}
	// The takeover of p1 at 9 comes after p1's commit at 6: not this kill's;
	// that of the ETL run's partition 1 at 12 is.
	takenOver(kills, map[Part][]time.Time{p(0): {at(1), at(9), at(11)}, p(1): {at(9)}, p(3): {at(17)}, {etlRun, 1}: {at(12)}},
		map[Part][]time.Time{p(0): {at(2), at(10)}, p(1): {at(6)}, {etlRun, 1}: {at(13)}})
	if got := kills[0].Takeovers; got[0].TakenOver != 4*time.Second || got[1].TakenOver != 12*time.Second ||
		kills[1].Takeovers[0].TakenOver != -1 || kills[0].MaxTakenOver() != 12*time.Second ||
		kills[1].Takeovers[1].TakenOver != 7*time.Second || kills[1].Takeovers[1].Running != 8*time.Second {
		t.Errorf("taken over: %+v, %+v", kills[0].Takeovers, kills[1].Takeovers)
	}
	// Running again: the first resumption after the takeover (p0 at 10),
	// none logged for p3, none without a takeover (p1).
	if got := kills[0].Takeovers; got[0].Running != 5*time.Second || got[1].Running != -1 ||
		kills[1].Takeovers[0].Running != -1 || kills[0].MaxRunning() != 5*time.Second {
		t.Errorf("running again: %+v, %+v", kills[0].Takeovers, kills[1].Takeovers)
	}
	if kills[0].MaxResume() != 24*time.Second || kills[2].MaxResume() != -1 {
		t.Errorf("max resumes %s, %s; want 24s, -1ns", kills[0].MaxResume(), kills[2].MaxResume())
	}
	if kills[0].MaxTakeover() != 25*time.Second || kills[2].MaxTakeover() != -1 {
		t.Errorf("max takeovers %s, %s; want 25s, -1ns", kills[0].MaxTakeover(), kills[2].MaxTakeover())
	}
	if len(zombies) != 1 || !strings.Contains(zombies[0], "worker-01 (pid 100) committed batch 2 of partition 1 of run 1 3s after its SIGKILL") {
		t.Errorf("zombies: %q", zombies)
	}
}

func TestCountLogs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.log")
	log := `{"level":"WARN","msg":"task failed; asynq retries it","class":"transient"}
{"level":"WARN","msg":"task failed; asynq retries it","class":"transient"}
{"level":"WARN","msg":"task failed; asynq retries it","class":"rate_limited"}
{"level":"ERROR","msg":"task failed for good","class":"run_fatal"}
{"level":"INFO","msg":"task stopped for shutdown; it runs again"}
{"level":"INFO","msg":"chain task was missing; enqueued it from the checkpoint"}
{"level":"INFO","msg":"batch not committed: the run stopped or the chain was taken over"}
{"time":"2026-11-20T10:00:09Z","level":"INFO","msg":"partition's lease lapsed; took it over with a new task","run":7,"partition":3}
{"time":"2026-11-20T10:00:10Z","level":"INFO","msg":"resuming a partition taken over from a lost worker","run":8,"partition":3}
{"level":"WARN","msg":"sweep failed"}
{"level":"INFO","msg":"worker started"}
worker: something went wrong
panic: boom
`
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := countLogs([]string{path})
	if err != nil {
		t.Fatal(err)
	}
	if c.Retries["transient"] != 2 || c.Retries["rate_limited"] != 1 || c.Failed["run_fatal"] != 1 ||
		c.ShutdownStops != 1 || c.Requeued != 1 || c.Stale != 1 || c.Other["WARN sweep failed"] != 1 ||
		len(c.Other) != 1 || len(c.Crashes) != 1 || len(c.TakenOver) != 1 || len(c.TakenOver[Part{7, 3}]) != 1 ||
		c.TakenOver[Part{7, 3}][0].Second() != 9 || len(c.Resumed) != 1 || len(c.Resumed[Part{8, 3}]) != 1 {
		t.Errorf("counts: %+v", c)
	}
}
