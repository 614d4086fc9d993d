package schedule_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/schedule"
	"github.com/syncworker/syncworker/internal/simulator"
	"github.com/syncworker/syncworker/internal/tasks"
	"github.com/syncworker/syncworker/internal/worker"
)

// pullJob is a one-page ETL job: each of its runs completes at once.
const pullJob = `
jobs:
  - name: pull
    url: SIM_URL/v1/records
    pagination: {style: offset, page_size: 100}
    items_path: items
    total_path: total
    key: id
`

// every2s fires at every even second, whichever worker leads.
const every2s = "CRON_TZ=UTC */2 * * * * *"

// kickoff is a done kick-off task.
type kickoff struct {
	id     string
	fire   time.Time
	result tasks.KickoffResult
}

// kickoffs returns the done kick-off tasks, by fire time.
func kickoffs(t *testing.T, h *harness.Harness) []kickoff {
	t.Helper()
	infos, err := h.Inspector.ListCompletedTasks(tasks.Queue, asynq.PageSize(10_000))
	if errors.Is(err, asynq.ErrQueueNotFound) {
		return nil // nothing enqueued yet
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []kickoff
	for _, info := range infos {
		if info.Type != tasks.TypeKickoff {
			continue
		}
		k, err := tasks.DecodeKickoff(info.Payload)
		if err != nil {
			t.Fatalf("task %s: %v", info.ID, err)
		}
		var res tasks.KickoffResult
		if err := json.Unmarshal(info.Result, &res); err != nil {
			t.Fatalf("task %s: result %q: %v", info.ID, info.Result, err)
		}
		out = append(out, kickoff{id: info.ID, fire: k.Fire, result: res})
	}
	slices.SortFunc(out, func(a, b kickoff) int { return a.fire.Compare(b.fire) })
	return out
}

// waitKickoffs waits until n kick-off tasks are done and returns them.
func waitKickoffs(t *testing.T, h *harness.Harness, n int, timeout time.Duration) []kickoff {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ks := kickoffs(t, h)
		if len(ks) >= n {
			return ks
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d kick-off tasks done after %s, want %d", len(ks), timeout, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLeader waits until a worker other than not holds the scheduler's
// lock, and returns its holder.
func waitLeader(t *testing.T, h *harness.Harness, not string, timeout time.Duration) schedule.Holder {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		holder, ok, err := schedule.LeaderHolder(t.Context(), h.DB.Pool)
		if err != nil {
			t.Fatal(err)
		}
		if ok && holder.Application != app(not) {
			return holder
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader but %q after %s (holder %+v, %v)", not, timeout, holder, ok)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// app is the application_name of worker name's scheduler connection.
func app(name string) string { return "syncworker scheduler " + name }

// logCount counts the log lines with msg logged by worker name ("" for any).
func logCount(h *harness.Harness, msg, name string) int {
	n := 0
	for line := range strings.Lines(h.Log.String()) {
		if strings.Contains(line, `msg="`+msg+`"`) && (name == "" || strings.Contains(line, " worker="+name+" ")) {
			n++
		}
	}
	return n
}

// Three workers run the same schedule; exactly one leads and fires. When
// the leader stops (its context ends), and when the next leader's Postgres
// connection is killed, another worker takes over and goes on firing. Over
// it all, every fire (every even second from the first to the last) has
// exactly one kick-off task, each started or found exactly one run, and
// the runs created are the ones the kick-offs say.
func TestOneLeaderFiresEachFireOnce(t *testing.T) {
	h := harness.New(t, harness.Options{Jobs: pullJob, Sim: simulator.Config{Records: 10}, Configure: func(c *config.Config) {
		c.Schedule.PollInterval = 300 * time.Millisecond
		c.Schedule.CatchUp = 10 * time.Second // covers the handovers
		c.Schedule.Entries = []config.ScheduleEntry{{Name: "tick", Cron: every2s, Job: "pull", Overlap: config.OverlapAllow}}
	}})
	ctx := t.Context()
	workers := map[string]*harness.Worker{"a": h.StartWorker("a"), "b": h.StartWorker("b")}

	first := waitLeader(t, h, "", 10*time.Second)
	firstName := strings.TrimPrefix(first.Application, app(""))
	waitKickoffs(t, h, 3, 30*time.Second)
	if n := logCount(h, "scheduler leader acquired", ""); n != 1 {
		t.Fatalf("%d workers became leader, want 1:\n%s", n, h.Log.String())
	}
	if n := logCount(h, "scheduler leader acquired", firstName); n != 1 {
		t.Errorf("the lock's holder %s did not log that it leads", firstName)
	}

	// The leader stops: the other takes over and fires.
	if err := workers[firstName].Stop(); err != nil {
		t.Fatal(err)
	}
	second := waitLeader(t, h, firstName, 5*time.Second)
	secondName := strings.TrimPrefix(second.Application, app(""))
	if secondName == firstName || workers[secondName] == nil {
		t.Fatalf("after %s stopped the leader is %q", firstName, second.Application)
	}
	before := len(kickoffs(t, h))
	waitKickoffs(t, h, before+2, 30*time.Second)
	if logCount(h, "scheduled fire enqueued", secondName) == 0 {
		t.Errorf("the new leader %s fired nothing", secondName)
	}

	// A third worker joins; the leader's connection is killed: the lock
	// goes with it, the leader notices and steps back, the third takes over.
	workers["c"] = h.StartWorker("c")
	h.WaitWorkers(2, 10*time.Second)
	if _, err := h.DB.Pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, second.PID); err != nil {
		t.Fatal(err)
	}
	third := waitLeader(t, h, secondName, 5*time.Second)
	if third.Application != app("c") {
		t.Errorf("after %s's connection was killed the leader is %q, want worker c", secondName, third.Application)
	}
	deadline := time.Now().Add(5 * time.Second)
	for logCount(h, "scheduler leader lost", secondName) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not notice it lost the lead", secondName)
		}
		time.Sleep(20 * time.Millisecond)
	}
	before = len(kickoffs(t, h))
	waitKickoffs(t, h, before+2, 30*time.Second)
	if logCount(h, "scheduled fire enqueued", "c") == 0 {
		t.Error("the third leader fired nothing")
	}

	// Every fire from the first to the last, once, each with its run.
	ks := kickoffs(t, h)
	created := map[int64]bool{}
	for i, k := range ks {
		if i > 0 && k.fire.Sub(ks[i-1].fire) != 2*time.Second {
			t.Errorf("fire %s follows %s: want one every 2s, none missed or twice", k.fire, ks[i-1].fire)
		}
		if k.fire.Second()%2 != 0 || k.id != "kickoff:tick:"+k.fire.UTC().Format("20060102T150405Z") {
			t.Errorf("kick-off %s fired at %s", k.id, k.fire)
		}
		switch k.result.How {
		case tasks.Created:
			if created[k.result.Run] {
				t.Errorf("run %d created by two fires", k.result.Run)
			}
			created[k.result.Run] = true
		case tasks.Found:
		default:
			t.Errorf("fire %s: %+v, want a run created or found", k.fire, k.result)
		}
	}
	if runs := h.Count(`SELECT count(*) FROM runs WHERE job = 'pull'`); runs != int64(len(created)) {
		t.Errorf("%d runs of pull, but %d kick-offs created one", runs, len(created))
	}
	// Each fire was enqueued as new once; a new leader catching up may
	// meet its predecessor's last fire, which is then not enqueued again.
	if n := logCount(h, "scheduled fire enqueued", ""); n != len(ks) {
		t.Errorf("%d fires enqueued as new, %d kick-off tasks", n, len(ks))
	}
	t.Logf("%d fires over %s, %d runs created, %d fires met as enqueued by an earlier leader",
		len(ks), ks[len(ks)-1].fire.Sub(ks[0].fire), len(created), logCount(h, "scheduled fire was enqueued before (by an earlier try, or an earlier leader)", ""))
}

// Two schedulers with no entries still elect one leader, and hand over when
// it stops: IsLeader is what other once-per-fleet duties ask.
func TestIsLeaderHandsOver(t *testing.T) {
	h := harness.New(t, harness.Options{})
	start := func(name string) (*schedule.Scheduler, context.CancelFunc, chan struct{}) {
		ctx, cancel := context.WithCancel(t.Context())
		s := schedule.New(schedule.Options{ConnConfig: h.DB.Pool.Config().ConnConfig, Name: name,
			PollInterval: 100 * time.Millisecond, Logger: h.Logger(name)})
		done := make(chan struct{})
		go func() { defer close(done); s.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		return s, cancel, done
	}
	a, cancelA, doneA := start("a")
	b, cancelB, doneB := start("b")
	waitFor(t, 5*time.Second, "one leader", func() bool { return a.IsLeader() != b.IsLeader() })
	// Several polls later it is still one.
	for range 10 {
		if a.IsLeader() == b.IsLeader() {
			t.Fatalf("a leads %v, b leads %v", a.IsLeader(), b.IsLeader())
		}
		time.Sleep(50 * time.Millisecond)
	}
	leader, other, cancel, done := a, b, cancelA, doneA
	if b.IsLeader() {
		leader, other, cancel, done = b, a, cancelB, doneB
	}
	cancel()
	<-done
	if leader.IsLeader() {
		t.Error("the stopped leader still says it leads")
	}
	waitFor(t, 5*time.Second, "the other to take over", other.IsLeader)
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s after %s", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A scheduled daily sync does not overlap an unfinished run of another day
// by default: each fire skips, logs it, and starts nothing. With overlap
// allow, the fire starts its day's run beside it.
func TestOverlap(t *testing.T) {
	for _, policy := range []string{config.OverlapSkip, config.OverlapAllow} {
		t.Run(policy, func(t *testing.T) {
			h := harness.New(t, harness.Options{Symbols: 40, Sim: simulator.Config{Latency: 500 * time.Millisecond},
				Configure: func(c *config.Config) {
					c.Quotes.Concurrency = 1
					c.Schedule.PollInterval = 200 * time.Millisecond
					c.Schedule.CatchUp = 0
					c.Schedule.Entries = []config.ScheduleEntry{{Name: "daily", Cron: every2s, Job: tasks.JobDailySync, Overlap: policy}}
				}})
			// Yesterday's sync, still running: 40 quotes at 500 ms, one at a time.
			blocker := h.StartDailySync("2026-01-05", 40, 1)
			h.StartWorker("a")
			ks := waitKickoffs(t, h, 2, 30*time.Second)
			others := h.Count(`SELECT count(*) FROM runs WHERE job = 'daily-sync' AND id <> $1`, blocker.ID)
			skips := logCount(h, "scheduled fire skipped: a run of the job is unfinished and the entry does not allow overlap", "a")
			if r, _ := h.Store.Get(t.Context(), blocker.ID); r.Status.Ended() {
				t.Fatalf("the unfinished run ended during the test: %+v", r)
			}

			if policy == config.OverlapSkip {
				for _, k := range ks {
					if k.result.How != tasks.Skipped || k.result.Run != blocker.ID || k.result.RunStatus.Ended() {
						t.Errorf("fire %s: %+v, want skipped for run %d", k.fire, k.result, blocker.ID)
					}
				}
				if others != 0 {
					t.Errorf("%d runs started beside the unfinished one", others)
				}
				if skips < len(ks) {
					t.Errorf("%d skips logged for %d fires", skips, len(ks))
				}
				return
			}
			if others != 1 || skips != 0 {
				t.Errorf("%d runs started beside the unfinished one, %d skips; want 1 and 0", others, skips)
			}
			for i, k := range ks {
				today := k.fire.UTC().Format("2006-01-02")
				if k.result.RunKey != today || (i == 0 && k.result.How != tasks.Created) || (i > 0 && k.result.How != tasks.Found) {
					t.Errorf("fire %d at %s: %+v, want the run of %s created, then found", i, k.fire, k.result, today)
				}
			}
		})
	}
}

// A schedule entry whose job does not exist, or whose params the job does
// not take, stops the worker's start-up naming the entry's key.
func TestBadEntriesStopStartup(t *testing.T) {
	h := harness.New(t, harness.Options{Jobs: pullJob})
	tests := []struct {
		entry config.ScheduleEntry
		want  string
	}{
		{config.ScheduleEntry{Name: "x", Cron: "@daily", Job: "nope"}, `schedule.entries[0].job (entry x): job "nope" is not defined in the jobs file (defined: pull)`},
		{config.ScheduleEntry{Name: "x", Cron: "@daily", Job: tasks.JobDailySync, Params: map[string]string{"date": "2026-01-05"}},
			"schedule.entries[0].params (entry x): daily-sync takes no params"},
		{config.ScheduleEntry{Name: "x", Cron: "@daily", Job: "pull", Params: map[string]string{"region": "eu"}},
			`schedule.entries[0].params (entry x): job pull has no param "region"`},
	}
	for _, tt := range tests {
		cfg := h.Config
		cfg.Schedule.Entries = []config.ScheduleEntry{tt.entry}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		err := worker.Run(ctx, cfg, worker.Options{Name: "bad", Logger: slog.New(slog.DiscardHandler)})
		cancel()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("worker with entry %+v: %v, want an error with %q", tt.entry, err, tt.want)
		}
	}
}

// Redis loses its data, a fire's kick-off task with it, before any worker
// runs it: the leader enqueues it again at its next poll, and the fire
// starts its run after all. Then Redis loses everything, the done task
// too: the leader enqueues the kick-off again, and its handler, finding the
// fire handled in Postgres, starts nothing (an ETL job's completed run would otherwise be
// followed by its next generation).
func TestLostKickoffFiresAgain(t *testing.T) {
	h, id := hourly(t)
	ctx := t.Context()
	pendingKickoff(t, h, id)
	// Redis loses its data: the task, the mark that it was enqueued and
	// the queue's pause with them.
	if err := h.Redis.Client.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	ks := waitKickoffs(t, h, 1, 30*time.Second)
	if len(ks) != 1 || ks[0].id != id || ks[0].result.How != tasks.Created || ks[0].result.Repeat {
		t.Fatalf("kick-offs %+v, want %s created a run", ks, id)
	}
	if n := logCount(h, "scheduled fire's kick-off task was gone from Redis; enqueued it again", "a"); n != 1 {
		t.Errorf("the kick-off enqueued again %d times, want 1", n)
	}
	run := h.WaitEnded(ks[0].result.Run, 30*time.Second)
	if run.Status != checkpoint.StatusCompleted {
		t.Fatalf("run %+v, want completed", run)
	}

	// Redis loses everything, the done kick-off task and the queue's
	// registration with it.
	if err := h.Redis.Client.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	ks = waitKickoffs(t, h, 1, 30*time.Second)
	if len(ks) != 1 || ks[0].id != id || !ks[0].result.Repeat || ks[0].result.How != tasks.Created || ks[0].result.Run != run.ID {
		t.Fatalf("kick-offs after the flush %+v, want %s found handled: run %d created before", ks, id, run.ID)
	}
	if n := logCount(h, "scheduled fire's kick-off task was gone from Redis; enqueued it again", "a"); n != 2 {
		t.Errorf("the kick-off enqueued again %d times in all, want 2", n)
	}
	if n := logCount(h, "scheduled fire was handled before; its kick-off task was enqueued again (Redis lost the first?): nothing started", "a"); n != 1 {
		t.Errorf("repeat logged %d times, want 1", n)
	}
	if n := h.Count(`SELECT count(*) FROM runs`); n != 1 {
		t.Errorf("%d runs, want the one run of the fire", n)
	}
	if n := h.Count(`SELECT count(*) FROM kickoffs WHERE task_id = $1 AND how = 'created' AND run_id = $2`, id, run.ID); n != 1 {
		t.Errorf("%d kick-off records of %s creating run %d, want 1", n, id, run.ID)
	}
}
