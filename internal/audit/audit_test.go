package audit_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/audit"
	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/harness"
)

// The audit passes a clean run and reports each kind of damage done to one:
// it must be able to fail, or it proves nothing.
func TestAuditFindsEveryKindOfDamage(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 40, Unknown: 2})
	ctx := context.Background()
	exec := func(t *testing.T, sql string, args ...any) {
		t.Helper()
		tag, err := h.DB.Pool.Exec(ctx, sql, args...)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		if tag.RowsAffected() != 1 {
			t.Fatalf("%s changed %d rows, want 1", sql, tag.RowsAffected())
		}
	}
	cases := []struct {
		name string
		// damage damages run id of trading date day.
		damage func(t *testing.T, id int64, day string)
		// want are the checks that must report the damage.
		want []string
	}{
		{"clean", func(*testing.T, int64, string) {}, nil},
		{"price corrupted", func(t *testing.T, _ int64, day string) {
			exec(t, `UPDATE stock_prices SET close = close + 0.01 WHERE symbol = 'AAB' AND trade_date = $1`, day)
		}, []string{audit.CheckPrice}},
		{"price row missing", func(t *testing.T, _ int64, day string) {
			exec(t, `DELETE FROM stock_prices WHERE symbol = 'AAC' AND trade_date = $1`, day)
		}, []string{audit.CheckPrice, audit.CheckCounters}},
		{"price row of an unknown symbol", func(t *testing.T, id int64, day string) {
			exec(t, `INSERT INTO stock_prices (symbol, trade_date, open, high, low, close, volume, run_id)
				SELECT 'XX0001', trade_date, open, high, low, close, volume, run_id FROM stock_prices
				WHERE symbol = 'AAA' AND trade_date = $1`, day)
		}, []string{audit.CheckPrice, audit.CheckCounters}},
		{"ledger row deleted", func(t *testing.T, id int64, _ string) {
			exec(t, `DELETE FROM batch_ledger WHERE run_id = $1 AND partition = 0 AND seq = 1`, id)
		}, []string{audit.CheckLedger, audit.CheckLedgerSums}},
		{"batch committed twice", func(t *testing.T, id int64, _ string) {
			exec(t, `INSERT INTO batch_ledger (run_id, partition, seq, attempt, cursor_from, cursor_to, items,
					succeeded, failed, records, task_id, worker, started_at, duration_ms)
				SELECT run_id, partition, (SELECT max(seq) + 1 FROM batch_ledger WHERE run_id = $1 AND partition = 0),
					attempt, cursor_from, cursor_to, items, succeeded, failed, records, task_id, 'zombie', started_at, duration_ms
				FROM batch_ledger WHERE run_id = $1 AND partition = 0 AND seq = 0`, id)
		}, []string{audit.CheckLedger, audit.CheckLedgerSums}},
		{"double-counted", func(t *testing.T, id int64, _ string) {
			exec(t, `UPDATE runs SET succeeded = succeeded + 10, processed = processed + 10, total = total + 10 WHERE id = $1`, id)
		}, []string{audit.CheckCounters, audit.CheckItem, audit.CheckLedgerSums}},
		{"item undone", func(t *testing.T, id int64, _ string) {
			exec(t, `UPDATE run_items SET status = 'pending' WHERE run_id = $1 AND key = 'AAD'`, id)
		}, []string{audit.CheckItem, audit.CheckCounters, audit.CheckLedgerSums}},
		{"unknown symbol succeeded", func(t *testing.T, id int64, _ string) {
			exec(t, `UPDATE run_items SET status = 'succeeded', error = NULL WHERE run_id = $1 AND key = 'XX0002'`, id)
		}, []string{audit.CheckItem, audit.CheckCounters, audit.CheckLedgerSums}},
		{"redrive pass without batches", func(t *testing.T, id int64, _ string) {
			exec(t, `UPDATE run_partitions SET redrive = 1 WHERE run_id = $1 AND partition = 0`, id)
		}, []string{audit.CheckLedger}},
		{"redrive success that changed no item", func(t *testing.T, id int64, _ string) {
			exec(t, `INSERT INTO batch_ledger (run_id, partition, seq, attempt, redrive, cursor_from, cursor_to, items,
					succeeded, failed, records, task_id, worker, started_at, duration_ms)
				SELECT p.run_id, p.partition, p.seq, 2, 1, p.start_pos, p.end_pos, 1, 1, 0, 1, 'redrive', 'w', now(), 1
				FROM run_partitions p WHERE p.run_id = $1 AND p.partition = 0`, id)
			exec(t, `UPDATE run_partitions SET redrive = 1, seq = seq + 1 WHERE run_id = $1 AND partition = 0`, id)
		}, []string{audit.CheckLedgerSums}},
		{"run not completed", func(t *testing.T, id int64, _ string) {
			exec(t, `UPDATE runs SET status = 'running' WHERE id = $1`, id)
		}, []string{audit.CheckStatus}},
	}

	// One run per case, each on its own trading date, all done by one worker.
	runs := make([]checkpoint.Run, len(cases))
	for i := range cases {
		runs[i] = h.StartDailySync(fmt.Sprintf("2026-10-%02d", i+1), 5, 2)
	}
	h.StartWorker("w")
	for _, r := range runs {
		h.WaitEnded(r.ID, 60*time.Second)
	}

	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			run := runs[i]
			c.damage(t, run.ID, run.RunKey)
			rep, err := audit.Run(ctx, h.DB.Pool, run.ID, func(s string) bool { return h.Known[s] })
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Ledger) == 0 || len(rep.Partitions) != 2 {
				t.Errorf("report has %d ledger rows and %d partitions", len(rep.Ledger), len(rep.Partitions))
			}
			if c.want == nil {
				if !rep.OK() {
					t.Errorf("clean run: problems %v", rep.Problems)
				}
				return
			}
			for _, check := range c.want {
				if !rep.Has(check) {
					t.Errorf("no %q problem reported; problems: %v", check, rep.Problems)
				}
			}
			var lines []string
			for _, p := range rep.Problems {
				lines = append(lines, p.String())
			}
			t.Logf("%d problems:\n%s", len(rep.Problems), strings.Join(lines, "\n"))
		})
	}
}

// The longest time without progress counts the wait for the first commit,
// the waits between commits and, for a partition still open, the wait since
// its last commit.
func TestFiguresGaps(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	run := checkpoint.Run{StartedAt: &t0}
	parts := []checkpoint.Partition{
		{Index: 0, Status: checkpoint.PartitionCompleted},
		{Index: 1, Status: checkpoint.PartitionRunning},
		{Index: 2, Status: checkpoint.PartitionCompleted},
	}
	ledger := []audit.Batch{
		{Partition: 0, Seq: 0, Worker: "a", Committed: at(3)},
		{Partition: 0, Seq: 1, Worker: "b", Committed: at(10)}, // 7 s
		{Partition: 0, Seq: 2, Worker: "b", Committed: at(12)},
		{Partition: 1, Seq: 0, Worker: "a", Committed: at(20)}, // 20 s to the first commit
		{Partition: 1, Seq: 1, Worker: "a", Committed: at(21)}, // then 29 s until now
		{Partition: 2, Seq: 0, Worker: "c", Committed: at(1)},
	}
	got := audit.Figures(run, parts, ledger, at(50))
	want := []audit.Partition{
		{Index: 0, Batches: 3, Workers: 2, MaxGap: 7 * time.Second, GapFrom: at(3)},
		{Index: 1, Batches: 2, Workers: 1, MaxGap: 29 * time.Second, GapFrom: at(21)},
		{Index: 2, Batches: 1, Workers: 1, MaxGap: time.Second, GapFrom: at(0)},
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("partition %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	rep := audit.Report{Partitions: got}
	if gap, p := rep.MaxGap(); gap != 29*time.Second || p != 1 {
		t.Errorf("MaxGap = %s on %d, want 29s on 1", gap, p)
	}
}
