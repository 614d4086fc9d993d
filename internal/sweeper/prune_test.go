package sweeper_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/simulator"
	"github.com/syncworker/syncworker/internal/tasks"
)

const day = 24 * time.Hour

// endedAgo makes run id of h look as if it had ended ago, in status when
// one is given.
func endedAgo(t *testing.T, h *harness.Harness, id int64, ago time.Duration, status string) {
	t.Helper()
	if _, err := h.DB.Pool.Exec(t.Context(), `UPDATE runs SET finished_at = now() - $2 * interval '1 second',
			status = coalesce(nullif($3, ''), status) WHERE id = $1`, id, ago.Seconds(), status); err != nil {
		t.Fatal(err)
	}
}

func TestPruneDeletesRunsPastTheRetention(t *testing.T) {
	h, _ := setup(t)
	ctx := t.Context()
	w := h.StartWorker("w1")
	old := h.StartDailySync("2026-08-20", 10, 2)
	h.WaitEnded(old.ID, 30*time.Second)
	recent := h.StartDailySync("2026-11-20", 10, 2)
	h.WaitEnded(recent.ID, 30*time.Second)
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	endedAgo(t, h, old.ID, 100*day, "")
	endedAgo(t, h, recent.ID, 10*day, "")
	prices := h.Count(`SELECT count(*) FROM stock_prices WHERE trade_date = '2026-08-20'`)
	if prices == 0 {
		t.Fatal("the old run loaded no prices")
	}

	// Another process pruning: this one waits for the next hour.
	sw := sweeperOf(h, 90*day)
	locked, err := h.Store.WithPruneLock(ctx, func(ctx context.Context) error {
		if res, err := sw.Prune(ctx); err != nil || !res.Skipped || len(res.Runs) != 0 {
			t.Errorf("Prune while another prunes = %+v, %v; want skipped", res, err)
		}
		if res := sweep(t, sw); res.Skipped {
			t.Error("a sweep waited for a prune")
		}
		return nil
	})
	if err != nil || !locked {
		t.Fatalf("WithPruneLock = %v, %v", locked, err)
	}

	res, err := sw.Prune(ctx)
	if err != nil || !slices.Equal(res.Runs, []int64{old.ID}) {
		t.Fatalf("Prune = %+v, %v; want run %d, which ended 100 days ago", res, err, old.ID)
	}
	if n := h.Count(`SELECT count(*) FROM runs WHERE id = $1`, old.ID) +
		h.Count(`SELECT count(*) FROM run_items WHERE run_id = $1`, old.ID) +
		h.Count(`SELECT count(*) FROM batch_ledger WHERE run_id = $1`, old.ID); n != 0 {
		t.Errorf("%d rows of the pruned run left", n)
	}
	if n := h.Count(`SELECT count(*) FROM stock_prices WHERE trade_date = '2026-08-20'`); n != prices {
		t.Errorf("%d prices of the pruned run's day, want its %d kept", n, prices)
	}
	if n := h.Count(`SELECT count(*) FROM run_items WHERE run_id = $1`, recent.ID); n != 40 {
		t.Errorf("the recent run has %d items, want 40 kept", n)
	}
	if res, err := sw.Prune(ctx); err != nil || len(res.Runs) != 0 {
		t.Errorf("Prune again = %+v, %v; want nothing", res, err)
	}

	// No retention keeps every run.
	endedAgo(t, h, recent.ID, 1000*day, "")
	if res, err := sweeperOf(h, 0).Prune(ctx); err != nil || len(res.Runs) != 0 {
		t.Errorf("Prune with no retention = %+v, %v; want nothing", res, err)
	}
	if n := h.Count(`SELECT count(*) FROM runs WHERE id = $1`, recent.ID); n != 1 {
		t.Errorf("with no retention, the run that ended 1000 days ago was deleted")
	}

	// A pruned run is forgotten: its day starts a new one.
	again := h.StartDailySync("2026-08-20", 10, 2)
	if again.ID == old.ID || again.Status.Ended() {
		t.Errorf("start of the pruned run's day = run %d %s, want a new run", again.ID, again.Status)
	}
}

// A sweeper with a retention prunes as it starts (and hourly after).
func TestSweeperPrunesAsItStarts(t *testing.T) {
	h, _ := setup(t)
	run := h.StartDailySync("2026-08-20", 10, 2)
	if _, err := h.Control.Cancel(t.Context(), run.ID); err != nil {
		t.Fatal(err)
	}
	endedAgo(t, h, run.ID, 100*day, "")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		sweeperOf(h, 90*day).Run(ctx)
	}()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(10 * time.Second); h.Count(`SELECT count(*) FROM runs WHERE id = $1`, run.ID) != 0; {
		if time.Now().After(deadline) {
			t.Fatal("the cancelled run that ended 100 days ago is still there 10 s after the sweeper started")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A timed-out (or failed) run is what its job's next start resumes: however
// long ago it stopped, the prune keeps its progress.
func TestPruneKeepsAResumableRun(t *testing.T) {
	h := harness.New(t, harness.Options{Jobs: harness.PatientsJob, Sim: simulator.Config{Records: 5_000}})
	ctx := t.Context()
	first := h.StartETL("patients", tasks.ETLOptions{})
	// As if its first attempt pulled 2 pages of each partition and used up
	// its budget 100 days ago (a quarterly schedule, say).
	if _, err := h.DB.Pool.Exec(ctx, `UPDATE run_partitions SET status = 'timed_out', cursor = start_pos + 2, seq = 2, task_seq = 2
		WHERE run_id = $1`, first.Run.ID); err != nil {
		t.Fatal(err)
	}
	endedAgo(t, h, first.Run.ID, 100*day, "timed_out")
	if res, err := sweeperOf(h, 90*day).Prune(ctx); err != nil || len(res.Runs) != 0 {
		t.Fatalf("Prune = %+v, %v; want the resumable run kept", res, err)
	}
	again := h.StartETL("patients", tasks.ETLOptions{})
	if again.How != tasks.Resumed || again.Run.ID != first.Run.ID {
		t.Errorf("start after the prune = %s run %d (generation %d); want run %d resumed from its checkpoint",
			again.How, again.Run.ID, again.Run.Generation, first.Run.ID)
	}
}

// A kick-off whose start went through but whose record did not is retried
// (over days, with a long sync.retry_backoff_max) or archived, to be run
// again by hand; its claim is what makes that find the fire's run. A prune
// must not take the claim and let one fire start two runs.
func TestPruneKeepsTheClaimOfALiveKickoff(t *testing.T) {
	h := harness.New(t, harness.Options{Jobs: harness.PatientsJob, Sim: simulator.Config{Records: 10}})
	ctx := t.Context()
	k := tasks.Kickoff{Entry: "e", Job: "patients", Fire: time.Now().Add(-72 * time.Hour).UTC().Truncate(time.Second), Overlap: "allow"}
	h.UnrecordedKickoff(k)
	// All that three days ago; the run completed (after resumes) a day ago.
	if _, err := h.DB.Pool.Exec(ctx, `UPDATE kickoffs SET handled_at = now() - interval '72 hours'`); err != nil {
		t.Fatal(err)
	}
	if _, err := h.DB.Pool.Exec(ctx, `UPDATE runs SET created_at = now() - interval '71 hours', finished_at = now() - interval '24 hours'`); err != nil {
		t.Fatal(err)
	}
	if _, err := sweeperOf(h, 48*time.Hour).Prune(ctx); err != nil {
		t.Fatal(err)
	}

	if err := h.KickoffHandler().ProcessTask(ctx, h.KickoffTask(k)); err != nil {
		t.Fatal(err)
	}
	if n := h.Count(`SELECT count(*) FROM runs WHERE job = 'patients'`); n != 1 {
		t.Errorf("one fire started %d runs, want 1", n)
	}
}
