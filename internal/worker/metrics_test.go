package worker_test

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

// scrapeSettled scrapes the worker's /metrics at addr until it counts
// batches committed batches of job (the handler counts a batch just after
// its commit, which may be after the run shows it ended), and returns it.
func scrapeSettled(t *testing.T, addr, job string, batches int) harness.Scraped {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := harness.Scrape(t, "http://"+addr+"/metrics")
		got, _ := s.Sum("syncworker_batches_total", "job", job, "outcome", "committed")
		if int(got) == batches {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("syncworker_batches_total{job=%s,outcome=committed} = %v after 10s, want %d (the ledger's rows)", job, got, batches)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// figure is a figure a scrape should show for a job: the sum of the
// series of name with labels.
type figure struct {
	name   string
	labels []string
	want   float64
}

// checkFigures checks the figures of job in s.
func checkFigures(t *testing.T, s harness.Scraped, job string, figures []figure) {
	t.Helper()
	for _, f := range figures {
		labels := append([]string{"job", job}, f.labels...)
		if got := sum(s, f.name, labels...); got != f.want {
			t.Errorf("%s%v = %v, want %v", f.name, labels, got, f.want)
		}
	}
}

// sum is Scraped.Sum without the count of series.
func sum(s harness.Scraped, name string, labels ...string) float64 {
	v, _ := s.Sum(name, labels...)
	return v
}

// The worker's /metrics counts a daily sync exactly: batches as the ledger
// has them, items as the run counts them, requests and their errors by
// class as the simulator answered them (500s, 429s, 404s), waits for the
// rate limit; the runs by status and the checkpoint lag come from Postgres,
// and asynq's queue metrics from this worker, which holds the admin
// listener.
func TestMetricsCountADailySync(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 80, Unknown: 4,
		Sim:       simulator.Config{ErrorRate: 0.1, RateLimitedRate: 0.08, RetryAfter: time.Second, Seed: 5},
		Configure: func(c *config.Config) { c.Quotes.RateLimit = 20 }})
	run := h.StartDailySync(date, 10, 2)
	h.StartWorker("w1")
	addr := h.AdminAddr("w1")

	// Under way: the run is running and its chains have a lag.
	h.WaitFor(run.ID, 30*time.Second, "under way", func(r checkpoint.Run) bool { return r.Processed >= 10 })
	s := harness.Scrape(t, "http://"+addr+"/metrics")
	if r, _ := h.Store.Get(t.Context(), run.ID); r.Status.Ended() {
		t.Fatalf("the run ended before the scrape; slow it down: %+v", r)
	}
	checkFigures(t, s, tasks.JobDailySync, []figure{{"syncworker_runs", []string{"status", "running"}, 1}})
	if lag, n := s.Sum("syncworker_checkpoint_lag_seconds", "job", tasks.JobDailySync); n != 1 || lag < 0 || lag > 30 {
		t.Errorf("checkpoint lag of a running daily sync = %v in %d series, want one of a few seconds", lag, n)
	}

	run = h.WaitEnded(run.ID, 90*time.Second)
	ledger := h.VerifyExactlyOnce(run.ID)
	s = scrapeSettled(t, addr, tasks.JobDailySync, len(ledger))
	st := h.Sim.Stats()
	job := []string{"job", tasks.JobDailySync}
	checkFigures(t, s, tasks.JobDailySync, []figure{
		{"syncworker_items_total", []string{"outcome", "succeeded"}, float64(run.Succeeded)},
		{"syncworker_items_total", []string{"outcome", "failed"}, float64(run.Failed)},
		{"syncworker_records_total", nil, float64(run.Records)},
		{"syncworker_batch_duration_seconds", nil, float64(len(ledger))},
		{"syncworker_fetch_duration_seconds", nil, float64(st.Requests)},
		{"syncworker_fetch_errors_total", []string{"class", "transient"}, float64(st.ServerErrors)},
		{"syncworker_fetch_errors_total", []string{"class", "rate_limited"}, float64(st.RateLimited + st.Throttled)},
		{"syncworker_fetch_errors_total", []string{"class", "item_permanent"}, float64(st.NotFound)},
		{"syncworker_fetch_errors_total", []string{"class", "run_fatal"}, 0},
		{"syncworker_runs", []string{"status", "completed"}, 1},
		{"syncworker_runs", []string{"status", "running"}, 0},
	})
	if st.ServerErrors == 0 || st.RateLimited == 0 || st.NotFound == 0 {
		t.Fatalf("the simulator answered %+v; the test needs 500s, 429s and 404s", st)
	}
	if waits, secs := sum(s, "syncworker_rate_limit_waits_total", job...), sum(s, "syncworker_rate_limit_wait_seconds_total", job...); waits < 1 || secs <= 0 {
		t.Errorf("rate limit waits %v (%v s); %d requests at 20/s must have waited", waits, secs, st.Requests)
	}
	if _, n := s.Sum("syncworker_checkpoint_lag_seconds", job...); n != 0 {
		t.Errorf("a checkpoint lag for the daily sync, which has no active run")
	}
	if _, n := s.Sum("asynq_queue_size", "queue", tasks.Queue); n != 1 {
		t.Errorf("no asynq_queue_size{queue=%s} from the worker that holds the admin listener", tasks.Queue)
	}
	t.Logf("%d batches, %d requests: %d 500s, %d 429s, %d 404s; batches by outcome: failed %v, rate_limited %v; rate limit waited %v s",
		len(ledger), st.Requests, st.ServerErrors, st.RateLimited+st.Throttled, st.NotFound,
		sum(s, "syncworker_batches_total", "outcome", "failed"), sum(s, "syncworker_batches_total", "outcome", "rate_limited"),
		sum(s, "syncworker_rate_limit_wait_seconds_total", job...))
}

// The worker's /metrics counts an ETL pull: records landed, pages fetched
// and their 500s, batches as the ledger has them, the job's rate limit's
// waits. The start's own fetch of the first page (by the control, not the
// worker) is left out of the figures.
func TestMetricsCountAnETLPull(t *testing.T) {
	const jobName = "metered"
	h := harness.New(t, harness.Options{
		Jobs: "jobs:\n  - name: " + jobName + "\n    url: SIM_URL/v1/records\n    pagination: {style: offset, page_size: 100}\n" +
			"    items_path: items\n    total_path: total\n    key: id\n    rate_limit: 3\n    partitions: 2\n",
		Sim: simulator.Config{Records: 1000, ErrorRate: 0.3, Seed: 4}})
	started := h.StartETL(jobName, tasks.ETLOptions{})
	before := h.Sim.Stats()
	h.StartWorker("w1")
	addr := h.AdminAddr("w1")
	run := h.WaitEnded(started.Run.ID, 90*time.Second)
	rep := h.VerifyLanded(run.ID, harness.Records(1000))
	s := scrapeSettled(t, addr, jobName, len(rep.Ledger))
	st := h.Sim.Stats()

	job := []string{"job", jobName}
	checkFigures(t, s, jobName, []figure{
		{"syncworker_records_total", nil, float64(run.Records)},
		{"syncworker_items_total", []string{"outcome", "succeeded"}, float64(run.Succeeded)},
		{"syncworker_batch_duration_seconds", nil, float64(len(rep.Ledger))},
		{"syncworker_fetch_duration_seconds", nil, float64(st.Pages - before.Pages)},
		{"syncworker_fetch_errors_total", []string{"class", "transient"}, float64(st.ServerErrors - before.ServerErrors)},
		{"syncworker_batches_total", []string{"outcome", "failed"}, float64(st.ServerErrors - before.ServerErrors)},
		{"syncworker_runs", []string{"status", "completed"}, 1},
	})
	if run.Records != 1000 || st.ServerErrors == before.ServerErrors {
		t.Fatalf("run landed %d records with %d 500s; the test needs 1000 and some 500s", run.Records, st.ServerErrors-before.ServerErrors)
	}
	// The start took a token; a burst of 3 more, then 3 a second: of the
	// 10 pages and their retries, most wait unless the pull takes seconds.
	if waits := sum(s, "syncworker_rate_limit_waits_total", job...); waits < 1 {
		t.Errorf("no rate limit waits; %d pages at 3/s must have waited", st.Pages-before.Pages)
	}
	t.Logf("%d pages, %d 500s, %d records; rate limit waited %v times, %v s", st.Pages-before.Pages,
		st.ServerErrors-before.ServerErrors, run.Records, sum(s, "syncworker_rate_limit_waits_total", job...),
		sum(s, "syncworker_rate_limit_wait_seconds_total", job...))
}

// The figures every worker would export alike (asynq's queues, the runs by
// status) come from one process only, the scheduler's leader, and move with
// the lead when it stops.
func TestQueueMetricsComeFromTheLeaderOnly(t *testing.T) {
	h := harness.New(t, harness.Options{Configure: func(c *config.Config) { c.Schedule.PollInterval = 200 * time.Millisecond }})
	workers := map[string]*harness.Worker{"w1": h.StartWorker("w1"), "w2": h.StartWorker("w2")}
	addrs := map[string]string{"w1": h.AdminAddr("w1"), "w2": h.AdminAddr("w2")}
	// exporter scrapes the running workers until exactly one exports the
	// cluster's figures, and returns it.
	exporter := func(running ...string) string {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			var with, leaders []string
			for _, name := range running {
				s := harness.Scrape(t, "http://"+addrs[name]+"/metrics")
				_, queues := s.Sum("asynq_queue_size")
				_, runs := s.Sum("syncworker_runs")
				if (queues > 0) != (runs > 0) {
					t.Fatalf("worker %s exports %d asynq queue series and %d runs series; want both or neither", name, queues, runs)
				}
				if queues > 0 {
					with = append(with, name)
				}
				if leader, n := s.Sum("syncworker_scheduler_leader"); n != 1 {
					t.Fatalf("worker %s exports %d syncworker_scheduler_leader series, want 1", name, n)
				} else if leader == 1 {
					leaders = append(leaders, name)
				}
			}
			if len(with) == 1 && slices.Equal(leaders, with) {
				return with[0]
			}
			if len(with) > 1 || time.Now().After(deadline) {
				t.Fatalf("workers exporting the cluster's figures: %v; want exactly one", with)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	h.StartDailySync(date, 10, 1)
	first := exporter("w1", "w2")
	other := map[string]string{"w1": "w2", "w2": "w1"}[first]
	if err := workers[first].Stop(); err != nil {
		t.Fatal(err)
	}
	if next := exporter(other); next != other {
		t.Fatalf("after %s stopped, %s exports; want %s", first, next, other)
	}
	t.Logf("%s exported the cluster's figures, then %s when it stopped", first, other)
}
