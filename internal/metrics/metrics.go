// Package metrics holds syncworker's Prometheus metrics: the counters and
// histograms the batch handler, the sources and the rate limiters report
// to, the runs' figures read from Postgres at scrape time, and asynq's queue
// metrics, all in one registry of the worker's own (never Prometheus's
// global one), served by Handler.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	asynqmetrics "github.com/hibiken/asynq/x/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/fault"
)

// Batch outcomes, the values of the outcome label of syncworker_batches_total.
const (
	// BatchCommitted is a batch whose transaction committed.
	BatchCommitted = "committed"
	// BatchStale is a batch whose commit matched no checkpoint: another
	// delivery committed it, the run stopped, or the chain was taken over.
	BatchStale = "stale"
	// BatchRateLimited is a batch that the source's rate limit sent back to
	// the queue; not a failure.
	BatchRateLimited = "rate_limited"
	// BatchStopped is a batch cut short by the worker's shutdown or a lost
	// lease; it runs again from the same checkpoint.
	BatchStopped = "stopped"
	// BatchFailed is a batch whose fetch or commit failed; asynq retries it.
	BatchFailed = "failed"
)

// DefaultScrapeTimeout bounds the Postgres query of a scrape when the
// options give no timeout.
const DefaultScrapeTimeout = 2 * time.Second

// Runs reads the runs' figures at scrape time.
type Runs interface {
	RunStats(ctx context.Context) (checkpoint.RunStats, error)
}

// Options configure Metrics.
type Options struct {
	// Runs, when set, gives syncworker_runs and
	// syncworker_checkpoint_lag_seconds, read at each scrape.
	Runs Runs
	// Queues, when set, gives asynq's queue metrics (asynq_*).
	Queues *asynq.Inspector
	// Exporter reports whether this process exports the figures that are
	// the same in every worker (the runs and asynq's queues, read from
	// Postgres and Redis), so that only one process of the installation
	// does; nil means this one does.
	Exporter func() bool
	// ScrapeTimeout bounds the Postgres query of a scrape; 0 means
	// DefaultScrapeTimeout.
	ScrapeTimeout time.Duration
	// Logger receives the errors of scrapes; nil means none.
	Logger *slog.Logger
}

// Metrics are the metrics of one worker process.
type Metrics struct {
	reg             *prometheus.Registry
	batches         *prometheus.CounterVec
	items           *prometheus.CounterVec
	records         *prometheus.CounterVec
	batchSeconds    *prometheus.HistogramVec
	fetchSeconds    *prometheus.HistogramVec
	fetchErrors     *prometheus.CounterVec
	rateWaits       *prometheus.CounterVec
	rateWaitSeconds *prometheus.CounterVec

	runs     Runs
	exporter func() bool
	timeout  time.Duration
	log      *slog.Logger
}

// New returns the metrics of a worker process, registered in a registry of
// their own together with the Go runtime's and the process's.
func New(opts Options) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncworker_batches_total",
			Help: "Batches run by this process, by job and outcome: committed; stale (the commit matched no checkpoint: " +
				"another delivery committed it, the run stopped or the chain was taken over); rate_limited (sent back by " +
				"the source's rate limit, not a failure); stopped (cut short by shutdown or a lost lease, runs again); " +
				"failed (fetch or commit failed, retried).",
		}, []string{"job", "outcome"}),
		items: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncworker_items_total",
			Help: "Items of committed batches by job and outcome (succeeded, failed): the symbols of a daily sync, " +
				"the records received of an ETL run (failed: rejected). A redrive pass counts its items again.",
		}, []string{"job", "outcome"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncworker_records_total",
			Help: "Data rows written by committed batches, by job (prices upserted, ETL records landed).",
		}, []string{"job"}),
		batchSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "syncworker_batch_duration_seconds",
			Help:    "Time of each committed batch from the start of its fetch to its commit, by job.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"job"}),
		fetchSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "syncworker_fetch_duration_seconds",
			Help: "Time of each request to a job's source (a quote, an ETL page), failed ones included and " +
				"rate-limit waits excluded, by job.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"job"}),
		fetchErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncworker_fetch_errors_total",
			Help: "Failed requests to a job's source, by job and error class: transient (5xx, timeouts, cut-off " +
				"answers), rate_limited (429), item_permanent (unknown symbol, malformed answer), run_fatal " +
				"(credentials, a request the source refuses).",
		}, []string{"job", "class"}),
		rateWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncworker_rate_limit_waits_total",
			Help: "Requests that waited for the job's shared rate limit before they were made, by job.",
		}, []string{"job"}),
		rateWaitSeconds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncworker_rate_limit_wait_seconds_total",
			Help: "Seconds requests spent waiting for the job's shared rate limit, by job.",
		}, []string{"job"}),
		runs:     opts.Runs,
		exporter: opts.Exporter,
		timeout:  opts.ScrapeTimeout,
		log:      opts.Logger,
	}
	if m.exporter == nil {
		m.exporter = func() bool { return true }
	}
	if m.timeout <= 0 {
		m.timeout = DefaultScrapeTimeout
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	leader := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "syncworker_scheduler_leader",
		Help: "1 while this process is the scheduler's leader (which fires the schedule's entries and exports the runs' " +
			"and the queues' metrics), else 0: summed over the workers, 1.",
	}, func() float64 {
		if m.exporter() {
			return 1
		}
		return 0
	})
	m.reg.MustRegister(m.batches, m.items, m.records, m.batchSeconds, m.fetchSeconds, m.fetchErrors,
		m.rateWaits, m.rateWaitSeconds, leader,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if opts.Queues != nil {
		m.reg.MustRegister(gated{c: asynqmetrics.NewQueueMetricsCollector(opts.Queues), on: m.exporter})
	}
	return m
}

// Handler serves the metrics in Prometheus's exposition format. A scrape
// that cannot read the runs from Postgres still serves every other metric.
func (m *Metrics) Handler() http.Handler {
	errLog := slog.NewLogLogger(m.log.Handler(), slog.LevelWarn)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		promhttp.HandlerFor(m.gatherer(r.Context()), promhttp.HandlerOpts{
			ErrorLog:      errLog,
			ErrorHandling: promhttp.ContinueOnError,
		}).ServeHTTP(w, r)
	})
}

// gatherer returns the registry plus the runs' figures, read on ctx when
// the scrape gathers them.
func (m *Metrics) gatherer(ctx context.Context) prometheus.Gatherer {
	if m.runs == nil {
		return m.reg
	}
	return prometheus.Gatherers{m.reg, prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		if !m.exporter() {
			return nil, nil
		}
		ctx, cancel := context.WithTimeout(ctx, m.timeout)
		defer cancel()
		stats, err := m.runs.RunStats(ctx)
		if err != nil {
			return nil, err
		}
		reg := prometheus.NewPedanticRegistry()
		if err := reg.Register(runsCollector{stats: stats}); err != nil {
			return nil, err
		}
		return reg.Gather()
	})}
}

// BatchDone counts a batch of job that ended with outcome (one of the
// Batch* outcomes), and observes the duration d of a committed one.
func (m *Metrics) BatchDone(job, outcome string, d time.Duration) {
	m.batches.WithLabelValues(job, outcome).Inc()
	if outcome == BatchCommitted {
		m.batchSeconds.WithLabelValues(job).Observe(d.Seconds())
	}
}

// ItemsDone counts the items of a committed batch of job.
func (m *Metrics) ItemsDone(job string, succeeded, failed int) {
	if succeeded > 0 {
		m.items.WithLabelValues(job, "succeeded").Add(float64(succeeded))
	}
	if failed > 0 {
		m.items.WithLabelValues(job, "failed").Add(float64(failed))
	}
}

// RecordsLanded counts the data rows a committed batch of job wrote.
func (m *Metrics) RecordsLanded(job string, n int) {
	if n > 0 {
		m.records.WithLabelValues(job).Add(float64(n))
	}
}

// Source returns the metrics of job's source and rate limit. Its errors'
// series start at 0, one for each class, so that the first error of a class
// is an increase (an alert on increase() sees no step at a series' birth).
func (m *Metrics) Source(job string) *Source {
	errs := m.fetchErrors.MustCurryWith(prometheus.Labels{"job": job})
	for c := fault.Transient; c <= fault.RunFatal; c++ {
		errs.WithLabelValues(c.String())
	}
	return &Source{
		fetchSeconds:    m.fetchSeconds.WithLabelValues(job),
		fetchErrors:     errs,
		rateWaits:       m.rateWaits.WithLabelValues(job),
		rateWaitSeconds: m.rateWaitSeconds.WithLabelValues(job),
	}
}

// Source are the metrics of one job's source and its rate limit, with the
// job's label bound once, so that a request costs no label lookup.
type Source struct {
	fetchSeconds    prometheus.Observer
	fetchErrors     *prometheus.CounterVec
	rateWaits       prometheus.Counter
	rateWaitSeconds prometheus.Counter
}

// Fetched observes one request to the source that took d and failed with
// err (nil: succeeded), counted by its class (package fault).
func (s *Source) Fetched(d time.Duration, err error) {
	s.fetchSeconds.Observe(d.Seconds())
	if err != nil {
		s.fetchErrors.WithLabelValues(fault.ClassOf(err).String()).Inc()
	}
}

// Waited counts a request that waited d for the rate limit.
func (s *Source) Waited(d time.Duration) {
	s.rateWaits.Inc()
	s.rateWaitSeconds.Add(d.Seconds())
}

var (
	runsDesc = prometheus.NewDesc("syncworker_runs",
		"Runs by job and status, read from Postgres at scrape time (every status of a job that has runs is listed, 0 included).",
		[]string{"job", "status"}, nil)
	lagDesc = prometheus.NewDesc("syncworker_checkpoint_lag_seconds",
		"For each job with an active (pending or running) run: the longest time any running partition of those runs has "+
			"gone without committing a batch, counted from its last commit or from the start of the run's current attempt, "+
			"whichever is later (from its creation before it ever ran). A lag that keeps growing is a stuck chain. "+
			"Read from Postgres at scrape time.",
		[]string{"job"}, nil)
	failureDesc = prometheus.NewDesc("syncworker_run_last_failure_timestamp_seconds",
		"For each job with a failed run attempt: when the latest one ended, in seconds since the epoch. "+
			"An alert on time() minus it sees every failure, whatever retries or the retention change besides. "+
			"Read from Postgres at scrape time.",
		[]string{"job"}, nil)
)

// runsCollector exports the runs' figures of one scrape.
type runsCollector struct{ stats checkpoint.RunStats }

func (c runsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- runsDesc
	ch <- lagDesc
	ch <- failureDesc
}

func (c runsCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]map[checkpoint.Status]int64{}
	for _, rc := range c.stats.Runs {
		if counts[rc.Job] == nil {
			counts[rc.Job] = map[checkpoint.Status]int64{}
		}
		counts[rc.Job][rc.Status] += rc.Runs
	}
	for job, byStatus := range counts {
		for _, s := range checkpoint.Statuses() {
			ch <- prometheus.MustNewConstMetric(runsDesc, prometheus.GaugeValue, float64(byStatus[s]), job, string(s))
		}
	}
	for job, lag := range c.stats.Lag {
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, lag.Seconds(), job)
	}
	for job, at := range c.stats.LastFailure {
		ch <- prometheus.MustNewConstMetric(failureDesc, prometheus.GaugeValue, float64(at.UnixNano())/1e9, job)
	}
}

// gated is a collector that collects only while on reports true.
type gated struct {
	c  prometheus.Collector
	on func() bool
}

// Describe describes nothing: the collector is unchecked, because asynq's
// collector describes itself by collecting, which would read Redis at
// registration.
func (g gated) Describe(chan<- *prometheus.Desc) {}

func (g gated) Collect(ch chan<- prometheus.Metric) {
	if g.on() {
		g.c.Collect(ch)
	}
}
