package sweeper_test

import (
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestPruneDeletesRunsPastTheRetention(t *testing.T) {
	h, _ := setup(t)
	ctx := t.Context()
	const day = 24 * time.Hour
	w := h.StartWorker("w1")
	old := h.StartDailySync("2026-08-20", 10, 2)
	h.WaitEnded(old.ID, 30*time.Second)
	recent := h.StartDailySync("2026-11-20", 10, 2)
	h.WaitEnded(recent.ID, 30*time.Second)
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	finish := func(id int64, ago time.Duration) {
		t.Helper()
		if _, err := h.DB.Pool.Exec(ctx, `UPDATE runs SET finished_at = now() - $2 * interval '1 second' WHERE id = $1`,
			id, ago.Seconds()); err != nil {
			t.Fatal(err)
		}
	}
	finish(old.ID, 100*day)
	finish(recent.ID, 10*day)
	prices := h.Count(`SELECT count(*) FROM stock_prices WHERE trade_date = '2026-08-20'`)
	if prices == 0 {
		t.Fatal("the old run loaded no prices")
	}

	// Another process sweeping: the prune waits for the next hour.
	sw := sweeperOf(h, 90*day)
	err := pgx.BeginFunc(ctx, h.DB.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('syncworker.sweeper.' || current_schema()))`); err != nil {
			return err
		}
		if res, err := sw.Prune(ctx); err != nil || !res.Skipped || len(res.Runs) != 0 {
			t.Errorf("Prune while another sweeps = %+v, %v; want skipped", res, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
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
	finish(recent.ID, 1000*day)
	if res, err := sweeperOf(h, 0).Prune(ctx); err != nil || len(res.Runs) != 0 {
		t.Errorf("Prune with no retention = %+v, %v; want nothing", res, err)
	}

	// A pruned run is forgotten: its day starts a new one.
	again := h.StartDailySync("2026-08-20", 10, 2)
	if again.ID == old.ID || again.Status.Ended() {
		t.Errorf("start of the pruned run's day = run %d %s, want a new run", again.ID, again.Status)
	}
}
