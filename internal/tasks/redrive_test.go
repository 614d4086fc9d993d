package tasks_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/harness"
)

// notFound answers 404 to the quote requests of the symbols lost says are
// lost (every symbol when lost is nil) while on is true, as a provider that
// has lost its data, or a wrong endpoint, does.
func notFound(on *atomic.Bool, lost map[string]bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			symbol, isQuote := strings.CutPrefix(r.URL.Path, "/v1/quotes/")
			if on.Load() && isQuote && (lost == nil || lost[symbol]) {
				http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// Symbols that failed for good are quarantined on the completed run; a
// redrive runs only them again, as the run's next attempt, and their new
// outcomes replace the old. The unknown symbols fail again.
func TestRedriveRerunsOnlyTheFailedItems(t *testing.T) {
	// The provider has lost the data of 20 known symbols, spread over both
	// partitions.
	var broken atomic.Bool
	broken.Store(true)
	lost := map[string]bool{}
	h := harness.New(t, harness.Options{Symbols: 60, Unknown: 3,
		Wrap:      func(next http.Handler) http.Handler { return notFound(&broken, lost)(next) },
		Configure: func(c *config.Config) { c.Sync.MaxFailedPercent = 0 }})
	for i := 0; len(lost) < 20; i += 3 {
		if s := h.Symbols[i]; h.Known[s] {
			lost[s] = true
		}
	}
	run := h.StartDailySync(date, 10, 2)
	h.StartWorker("w")
	first := h.WaitEnded(run.ID, 30*time.Second)
	if first.Status != checkpoint.StatusCompleted || first.Failed != 23 {
		t.Fatalf("first pass = %+v, want completed with 20 + 3 failed", first)
	}
	failures, err := h.Store.Failures(context.Background(), run.ID)
	if err != nil || len(failures) != 23 {
		t.Fatalf("quarantined items = %d, %v; want 23", len(failures), err)
	}
	for _, f := range failures {
		if f.Attempts != 1 || !strings.Contains(f.Error, "404") {
			t.Errorf("quarantined item %+v, want its 404 and one attempt", f)
		}
	}

	broken.Store(false) // the provider has its data back
	served := h.Sim.Stats().Requests
	r, err := h.Control.Redrive(context.Background(), run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Attempt != 2 || r.Redrives != 1 {
		t.Errorf("redriven run = %+v", r)
	}
	h.WaitFor(run.ID, 30*time.Second, "redrive completed", func(r checkpoint.Run) bool {
		return r.Status == checkpoint.StatusCompleted && r.Redrives == 1
	})
	ledger := h.VerifyExactlyOnce(run.ID)
	if n := h.Sim.Stats().Requests - served; n != 23 {
		t.Errorf("the redrive asked for %d quotes, want the 23 failed ones only", n)
	}
	var redriven int
	for _, l := range ledger {
		if l.Redrive == 1 {
			redriven += l.Items
			if l.Attempt != 2 {
				t.Errorf("redrive batch %+v, want attempt 2", l)
			}
		}
	}
	if redriven != 23 {
		t.Errorf("redrive batches hold %d items, want 23", redriven)
	}
	failures, _ = h.Store.Failures(context.Background(), run.ID)
	for _, f := range failures {
		if f.Attempts != 2 {
			t.Errorf("unknown symbol %+v after the redrive, want 2 attempts", f)
		}
	}
}

// A source that fails every symbol fails the run early, at the failure
// threshold, instead of quarantining the whole universe; once it is fixed,
// a retry goes on from the checkpoint with a fresh count.
func TestBrokenSourceFailsTheRunAtTheThreshold(t *testing.T) {
	var broken atomic.Bool
	broken.Store(true)
	h := harness.New(t, harness.Options{Symbols: 200, Wrap: notFound(&broken, nil),
		Configure: func(c *config.Config) { c.Sync.MaxFailedPercent = 10 }})
	run := h.StartDailySync(date, 20, 1)
	if run.MaxFailures == nil || *run.MaxFailures != 20 {
		t.Fatalf("run's failure limit = %v, want 10%% of 200 = 20", run.MaxFailures)
	}
	h.StartWorker("w")
	r := h.WaitEnded(run.ID, 30*time.Second)
	if r.Status != checkpoint.StatusFailed || r.Processed != 40 || r.Failed != 40 ||
		!strings.Contains(r.LastError, "failure threshold exceeded: 40 items failed in attempt 1, more than the 20 allowed") {
		t.Fatalf("run = %+v, want failed after the second batch", r)
	}

	broken.Store(false)
	if _, err := h.Control.Retry(context.Background(), run.ID); err != nil {
		t.Fatal(err)
	}
	r = h.WaitFor(run.ID, 30*time.Second, "retry completed", func(r checkpoint.Run) bool { return r.Status == checkpoint.StatusCompleted })
	if r.Failed != 40 || r.Succeeded != 160 || r.AttemptFailed != 0 {
		t.Errorf("retried run = %+v, want the 40 quarantined and the rest succeeded", r)
	}
	// A redrive while the source still fails them changes no outcome and
	// leaves the run completed: items that fail again are no new failures,
	// and do not count against the threshold.
	broken.Store(true)
	if _, err := h.Control.Redrive(context.Background(), run.ID); err != nil {
		t.Fatal(err)
	}
	r = h.WaitFor(run.ID, 30*time.Second, "first redrive ended", func(r checkpoint.Run) bool {
		return r.Status.Ended() && r.Redrives == 1
	})
	if r.Status != checkpoint.StatusCompleted || r.Failed != 40 || r.AttemptFailed != 0 {
		t.Fatalf("run after a redrive of still-failing items = %+v, want completed with the 40 still failed", r)
	}

	broken.Store(false)
	if _, err := h.Control.Redrive(context.Background(), run.ID); err != nil {
		t.Fatal(err)
	}
	r = h.WaitFor(run.ID, 30*time.Second, "second redrive completed", func(r checkpoint.Run) bool {
		return r.Status == checkpoint.StatusCompleted && r.Redrives == 2
	})
	if r.Failed != 0 {
		t.Errorf("run after the second redrive = %+v, want nothing failed", r)
	}
	h.VerifyExactlyOnce(run.ID)
}
