package metrics_test

import (
	"errors"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/fault"
	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/metrics"
	"github.com/syncworker/syncworker/internal/testenv"
)

// prefixed returns the names of the families of s that start with prefix.
func prefixed(s harness.Scraped, prefix string) []string {
	var names []string
	for name := range s {
		if strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
	}
	return names
}

// cluster returns the metrics of a worker whose gate is exporter, over a
// queue "sync" that holds one pending task, and a pending run and a failed
// one of job "j", and the address they are served at.
func cluster(t *testing.T, exporter func() bool) (*metrics.Metrics, string) {
	t.Helper()
	r := testenv.NewRedis(t)
	client := asynq.NewClientFromRedisClient(r.Client)
	if _, err := client.Enqueue(asynq.NewTask("sync:batch", []byte(`{}`)), asynq.Queue("sync")); err != nil {
		t.Fatal(err)
	}
	db := testenv.Postgres(t)
	store := checkpoint.New(db.Pool)
	if _, _, err := store.CreateRun(t.Context(), checkpoint.NewRun{Job: "j", RunKey: "k", BatchSize: 1, Partitions: 1,
		Keys: []string{"A", "B"}}); err != nil {
		t.Fatal(err)
	}
	failed, _, err := store.CreateRun(t.Context(), checkpoint.NewRun{Job: "j", RunKey: "f", BatchSize: 1, Partitions: 1,
		Keys: []string{"A"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.MarkRunning(t.Context(), failed.ID); err != nil {
		t.Fatal(err)
	}
	// As a fatal error stops it: the attempt is recorded, failed.
	if _, err := db.Pool.Exec(t.Context(), `UPDATE runs SET status = 'failed', finished_at = now() WHERE id = $1`, failed.ID); err != nil {
		t.Fatal(err)
	}
	m := metrics.New(metrics.Options{Runs: store, Queues: asynq.NewInspectorFromRedisClient(r.Client), Exporter: exporter})
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	return m, srv.URL
}

// The figures every worker would export alike, asynq's queues and the
// runs, come only from the process whose gate is open; the gate is asked
// at every scrape.
func TestClusterMetricsOnlyFromTheExporter(t *testing.T) {
	var exporter atomic.Bool
	_, url := cluster(t, exporter.Load)
	off := harness.Scrape(t, url)
	if names := prefixed(off, "asynq_"); len(names) != 0 {
		t.Errorf("with the gate closed the scrape has asynq's metrics %v", names)
	}
	if names := prefixed(off, "syncworker_run"); len(names) != 0 {
		t.Errorf("with the gate closed the scrape has the runs' metrics %v", names)
	}
	if _, n := off.Sum("go_goroutines"); n != 1 {
		t.Errorf("the process's own metrics are missing with the gate closed")
	}

	exporter.Store(true)
	on := harness.Scrape(t, url)
	if v, n := on.Sum("asynq_queue_size", "queue", "sync"); n != 1 || v != 1 {
		t.Errorf("asynq_queue_size{queue=sync} = %v in %d series, want 1 in 1", v, n)
	}
	if v, n := on.Sum("asynq_tasks_enqueued_total", "queue", "sync", "state", "pending"); n != 1 || v != 1 {
		t.Errorf("asynq_tasks_enqueued_total{queue=sync,state=pending} = %v in %d series, want 1", v, n)
	}
	for _, status := range checkpoint.Statuses() {
		want := 0.0
		if status == checkpoint.StatusPending || status == checkpoint.StatusFailed {
			want = 1
		}
		if v, n := on.Sum("syncworker_runs", "job", "j", "status", string(status)); n != 1 || v != want {
			t.Errorf("syncworker_runs{job=j,status=%s} = %v in %d series, want %v", status, v, n, want)
		}
	}
	if v, n := on.Sum("syncworker_checkpoint_lag_seconds", "job", "j"); n != 1 || v < 0 || v > 60 {
		t.Errorf("syncworker_checkpoint_lag_seconds{job=j} = %v in %d series, want one of a few seconds", v, n)
	}
	if v, n := on.Sum("syncworker_run_last_failure_timestamp_seconds", "job", "j"); n != 1 || time.Since(time.Unix(int64(v), 0)).Abs() > time.Minute {
		t.Errorf("syncworker_run_last_failure_timestamp_seconds{job=j} = %v in %d series, want about now", v, n)
	}
}

// A scrape that cannot read the runs from Postgres still serves every
// other metric.
func TestScrapeWithoutPostgresServesTheRest(t *testing.T) {
	db := testenv.Postgres(t)
	pool, err := pgxpool.New(t.Context(), db.URL)
	if err != nil {
		t.Fatal(err)
	}
	pool.Close() // every query fails
	m := metrics.New(metrics.Options{Runs: checkpoint.New(pool), ScrapeTimeout: time.Second})
	m.BatchDone("j", metrics.BatchCommitted, 30*time.Millisecond)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()

	s := harness.Scrape(t, srv.URL)
	if names := prefixed(s, "syncworker_runs"); len(names) != 0 {
		t.Errorf("runs' metrics %v without Postgres", names)
	}
	if v, n := s.Sum("syncworker_batches_total", "job", "j", "outcome", "committed"); v != 1 || n != 1 {
		t.Errorf("syncworker_batches_total{job=j,outcome=committed} = %v in %d series, want 1", v, n)
	}
}

// A source's metrics count each request once, its errors by class, and
// its rate limit's waits.
func TestSourceMetrics(t *testing.T) {
	m := metrics.New(metrics.Options{})
	src := m.Source("j")
	errs := []error{
		nil, nil,
		fault.Wrap(fault.Transient, errors.New("502")),
		errors.New("unclassified: transient"),
		fault.Limited(errors.New("429"), time.Second),
		fault.Wrap(fault.ItemPermanent, errors.New("404")),
		fault.Wrap(fault.RunFatal, errors.New("401")),
	}
	for _, err := range errs {
		src.Fetched(10*time.Millisecond, err)
	}
	src.Waited(250 * time.Millisecond)
	src.Waited(750 * time.Millisecond)
	m.ItemsDone("j", 3, 1)
	m.RecordsLanded("j", 3)
	m.BatchDone("j", metrics.BatchStale, time.Second) // counted, not timed

	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	s := harness.Scrape(t, srv.URL)
	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"syncworker_fetch_duration_seconds", []string{"job", "j"}, 7},
		{"syncworker_fetch_errors_total", []string{"class", "transient"}, 2},
		{"syncworker_fetch_errors_total", []string{"class", "rate_limited"}, 1},
		{"syncworker_fetch_errors_total", []string{"class", "item_permanent"}, 1},
		{"syncworker_fetch_errors_total", []string{"class", "run_fatal"}, 1},
		{"syncworker_rate_limit_waits_total", []string{"job", "j"}, 2},
		{"syncworker_rate_limit_wait_seconds_total", []string{"job", "j"}, 1},
		{"syncworker_items_total", []string{"outcome", "succeeded"}, 3},
		{"syncworker_items_total", []string{"outcome", "failed"}, 1},
		{"syncworker_records_total", []string{"job", "j"}, 3},
		{"syncworker_batches_total", []string{"outcome", "stale"}, 1},
		{"syncworker_batch_duration_seconds", []string{"job", "j"}, 0},
	}
	for _, tt := range tests {
		if got, _ := s.Sum(tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	for name, f := range s {
		if strings.HasPrefix(name, "syncworker_") && !strings.Contains(f.GetHelp(), " ") {
			t.Errorf("%s has no help text", name)
		}
	}
	// A source's error series are there before its first error, at 0, so
	// that the first one is an increase.
	m.Source("k")
	s = harness.Scrape(t, srv.URL)
	if got, n := s.Sum("syncworker_fetch_errors_total", "job", "k"); got != 0 || n != 4 {
		t.Errorf("syncworker_fetch_errors_total{job=k} before any error = %v in %d series, want 0 in one for each of the 4 classes", got, n)
	}
}
