package dashboard

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/checkpoint"
)

// sampleRun returns a run in state s with a bit of everything a page shows.
func sampleRun(s checkpoint.Status, unit checkpoint.Unit) checkpoint.Run {
	now := time.Date(2026, 3, 2, 15, 0, 0, 0, time.UTC)
	r := checkpoint.Run{ID: 7, Job: "daily-sync", RunKey: "2026-03-02", Params: json.RawMessage(`{"date":"2026-03-02"}`),
		Status: s, Unit: unit, Generation: 2, BatchSize: 10, Partitions: 2, Total: 120, Processed: 60, Succeeded: 57, Failed: 3,
		Records: 57, Attempt: 2, MaxFailures: ptr(int64(50)), BudgetMS: ptr(int64(600_000)), DurationMS: 12_000,
		Warnings: []string{"source total drifted from 120 to 121"}, LastError: "partition 1: <script>alert(1)</script>",
		CreatedAt: now.Add(-time.Hour), StartedAt: ptr(now.Add(-time.Hour)), UpdatedAt: now}
	if s.Active() {
		r.AttemptStartedAt = ptr(now.Add(-time.Minute))
	}
	if s.Ended() {
		r.FinishedAt = ptr(now)
	}
	return r
}

// sampleRunData returns the page of run r as runOf makes it, without a store.
func sampleRunData(r checkpoint.Run) runData {
	now := r.UpdatedAt.Add(time.Second)
	d := runData{page: page{Title: "Run 7", Now: now}, Run: r, Progress: progressOf(r, &checkpoint.Pace{Items: 30, Window: 30 * time.Second}),
		Can: allowedFor(r.Status),
		Attempts: []checkpoint.Attempt{{Attempt: 1, Status: checkpoint.StatusFailed, StartedAt: now.Add(-time.Hour),
			FinishedAt: now.Add(-50 * time.Minute), ElapsedMS: 600_000, Processed: 40}},
		Ledger: checkpoint.LedgerSummary{Batches: 6, MeanBatchMS: 812.5, MaxBatchMS: 1400},
		Chart: chartOf(checkpoint.Throughput{Start: now.Add(-time.Minute), Width: 5 * time.Second,
			Buckets: []checkpoint.Bucket{{Batches: 2, Items: 20}, {}, {Batches: 4, Items: 40}}}, unitOf(r.Unit)),
		Failed:     []checkpoint.Item{{Pos: 3, Key: "XX0001", Status: checkpoint.ItemFailed, Attempts: 1, Error: "unknown symbol"}},
		MoreFailed: true, Params: "{\n  \"date\": \"2026-03-02\"\n}"}
	for _, p := range []checkpoint.Partition{
		{RunID: 7, Index: 0, Status: checkpoint.PartitionCompleted, StartPos: 0, EndPos: 60, Cursor: 60, Seq: 6},
		{RunID: 7, Index: 1, Status: checkpoint.PartitionStatus(r.Status), StartPos: 60, EndPos: 120, Cursor: 60,
			LeaseOwner: "w1#00ff", Leased: r.Status.Active(), LastError: "down", LastProgressAt: now},
	} {
		d.Parts = append(d.Parts, partRow{Partition: p, Progress: partProgress(r, p)})
	}
	if r.AttemptStartedAt != nil {
		d.Current = &currentAttempt{Attempt: r.Attempt, StartedAt: *r.AttemptStartedAt, Elapsed: time.Minute}
	}
	return d
}

// Every state of a run renders its page and its live part, with the
// buttons its state allows and none other, and what the run says escaped.
func TestRunPageRendersEveryStatus(t *testing.T) {
	h := New(Options{})
	buttons := []string{"retry", "cancel", "pause", "resume", "restart"}
	for _, unit := range []checkpoint.Unit{checkpoint.UnitItems, checkpoint.UnitPages} {
		for _, s := range checkpoint.Statuses() {
			t.Run(string(unit)+"/"+string(s), func(t *testing.T) {
				d := sampleRunData(sampleRun(s, unit))
				for _, name := range []string{"layout", "run-live"} {
					var buf bytes.Buffer
					if err := h.run.ExecuteTemplate(&buf, name, d); err != nil {
						t.Fatalf("render %s: %v", name, err)
					}
					out := buf.String()
					if !strings.Contains(out, `<span class="badge s-`+string(s)+`">`+label(s)+`</span>`) {
						t.Errorf("%s: no %s badge", name, s)
					}
					if strings.Contains(out, "<script>alert") || !strings.Contains(out, "&lt;script&gt;alert(1)&lt;/script&gt;") {
						t.Errorf("%s: the last error is not escaped", name)
					}
					can := map[string]bool{"retry": d.Can.Retry, "cancel": d.Can.Cancel, "pause": d.Can.Pause,
						"resume": d.Can.Resume, "restart": d.Can.Restart}
					for _, b := range buttons {
						form := `action="/runs/7/` + b + `"`
						if got := strings.Contains(out, form); got != can[b] {
							t.Errorf("%s: %s button shown %v, want %v", name, b, got, can[b])
						}
					}
					for _, want := range []string{`role="progressbar"`, `aria-valuenow="60"`, `<svg viewBox="0 0 800 220"`,
						"XX0001", "source total drifted", "the first 1"} {
						if !strings.Contains(out, want) {
							t.Errorf("%s: no %q in the page", name, want)
						}
					}
					if (name == "layout") != strings.Contains(out, "<!doctype html>") {
						t.Errorf("%s: the layout is in the page %v, want only in the whole page", name, name == "layout")
					}
				}
			})
		}
	}
}

func TestListPageRendersEveryStatus(t *testing.T) {
	h := New(Options{})
	d := listData{page: page{Title: "Runs", Now: time.Date(2026, 3, 2, 16, 0, 0, 0, time.UTC),
		Flash: &flash{Kind: flashError, Message: "There is no status \"<b>\"."}},
		Jobs: []string{"daily-sync", "patients"}, Statuses: checkpoint.Statuses(),
		Filter: checkpoint.RunFilter{Job: "daily-sync"}, LiveURL: "/fragments/runs?job=daily-sync"}
	for i, s := range checkpoint.Statuses() {
		r := sampleRun(s, checkpoint.UnitItems)
		r.ID = int64(i + 1)
		d.Runs = append(d.Runs, runRow{Run: r, Progress: progressOf(r, &checkpoint.Pace{Items: 30, Window: 30 * time.Second})})
	}
	var buf bytes.Buffer
	if err := h.list.ExecuteTemplate(&buf, "layout", d); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, s := range checkpoint.Statuses() {
		if !strings.Contains(out, `data-status="`+string(s)+`"`) {
			t.Errorf("no row of a %s run", s)
		}
	}
	for _, want := range []string{`<option value="daily-sync" selected>`, `data-live="/fragments/runs?job=daily-sync"`,
		`class="flash flash-error"`, "&lt;b&gt;", `<td class="num hide-sm">1.0/s</td>`, `href="/runs/2"`} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in the list page", want)
		}
	}

	buf.Reset()
	d.Runs, d.Filter = nil, checkpoint.RunFilter{}
	if err := h.list.ExecuteTemplate(&buf, "runs-table", d); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "No runs yet") {
		t.Errorf("empty list renders %q", buf.String())
	}
}
