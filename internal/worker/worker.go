// Package worker is the worker process of syncworker, wired from the
// configuration: the asynq server that runs batch tasks with the daily-sync
// job, the sweeper, the scheduler, and the admin HTTP listener that serves
// the runs API and the runs dashboard.
// cmd/worker runs it; tests run it in-process.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"strconv"
	"sync"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/syncworker/syncworker/internal/admin"
	"github.com/syncworker/syncworker/internal/api"
	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/dashboard"
	"github.com/syncworker/syncworker/internal/db"
	"github.com/syncworker/syncworker/internal/etl"
	"github.com/syncworker/syncworker/internal/fault"
	"github.com/syncworker/syncworker/internal/metrics"
	"github.com/syncworker/syncworker/internal/quotes"
	"github.com/syncworker/syncworker/internal/ratelimit"
	"github.com/syncworker/syncworker/internal/schedule"
	"github.com/syncworker/syncworker/internal/sweeper"
	"github.com/syncworker/syncworker/internal/tasks"
)

// rateLimitKey is the Redis key of the quotes provider's shared rate limit.
const rateLimitKey = "syncworker:ratelimit:quotes"

// Options are what a worker takes besides the configuration.
type Options struct {
	// Name names the worker in the batch ledger; empty means hostname:pid.
	Name string
	// Logger receives the worker's logs; nil means the configured logger on stderr.
	Logger *slog.Logger
}

// Run serves tasks until ctx ends, then shuts down: handlers stop at once,
// their transactions roll back, and their tasks go back to the queue.
func Run(ctx context.Context, cfg config.Config, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = cfg.Log.NewLogger(os.Stderr)
	}
	name := opts.Name
	if name == "" {
		hostname, _ := os.Hostname()
		name = hostname + ":" + strconv.Itoa(os.Getpid())
	}

	pool, err := db.Open(ctx, cfg.DatabaseURL, int32(cfg.Worker.Concurrency+4))
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := db.CheckSchema(ctx, pool); err != nil {
		return err
	}

	rdbOpt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("redis_url: %w", err)
	}
	rdb := redis.NewClient(rdbOpt)
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("connect to redis at %s: %w", redact(cfg.RedisURL), err)
	}
	inspector := asynq.NewInspectorFromRedisClient(rdb)

	// Listen before anything serves, so that a bad address stops start-up.
	adminLn, err := listenAdmin(ctx, cfg.HTTP, log)
	if err != nil {
		return err
	}
	if adminLn != nil {
		defer adminLn.Close() // for a start-up that fails below; serveAdmin closes it otherwise
	}

	store := checkpoint.New(pool)
	// The figures every worker would export alike (runs, asynq's queues)
	// come from one process only: the scheduler's leader. sched is set
	// below, before anything serves a scrape.
	var sched *schedule.Scheduler
	m := metrics.New(metrics.Options{Runs: store, Queues: inspector,
		Exporter: func() bool { return sched != nil && sched.IsLeader() },
		Logger:   log.With("component", "metrics")})

	etlJobs, err := etlJobsWith(cfg, rdb, m)
	if err != nil {
		return err
	}
	jobs, err := jobsWith(cfg, rdb, etlJobs, m)
	if err != nil {
		return err
	}
	enqueuer := tasks.NewEnqueuer(rdb, cfg.Sync.MaxRetry, cfg.Sync.TaskTimeout)
	stopping := make(chan struct{})
	// Every line about a batch task, the handler's and the error handler's,
	// carries its run_id, job, partition, seq and task_id.
	batchLog := log.With("component", "batch")
	handler := tasks.NewHandler(tasks.HandlerOptions{
		Store:    store,
		Enqueuer: enqueuer,
		Jobs:     jobs,
		Slice:    cfg.Sync.TaskSlice,
		Lease:    cfg.Sync.Lease,
		MaxRetry: cfg.Sync.MaxRetry,
		Worker:   name,
		Logger:   batchLog,
		Metrics:  m,
		Stopping: stopping,
	})

	control := tasks.NewControl(pool, store, enqueuer, inspector).WithETL(etlJobs)
	entries, err := scheduleEntries(cfg, control)
	if err != nil {
		return err
	}
	kickoff := tasks.NewKickoffHandler(control, tasks.DailyOptions(cfg.Sync), log.With("component", "scheduler"))

	var adminH *admin.Handler
	if adminLn != nil {
		control := tasks.NewControl(pool, store, enqueuer, inspector).WithETL(etlJobs)
		adminH, err = adminHandler(cfg, adminDeps{
			api:       api.New(api.Options{Runs: store, Control: control, Logger: log.With("component", "api")}),
			metrics:   m.Handler(),
			dashboard: dashboard.New(dashboard.Options{Runs: store, Control: control, Logger: log.With("component", "dashboard")}),
			db:        pool, rdb: rdb, log: log.With("component", "http"),
		})
		if err != nil {
			return err
		}
		defer func() {
			if err := adminH.Close(); err != nil {
				log.Warn("admin HTTP: closing asynqmon's Redis connections", "error", err)
			}
		}()
	}

	srvCfg := tasks.ServerConfig(cfg.Worker, cfg.Sync, asynq.ErrorHandlerFunc(logTaskError(batchLog)),
		asynqLogger{log: log.With("component", "asynq")})
	srvCfg.LogLevel = asynqLevel(cfg.Log.SlogLevel())
	srv := asynq.NewServerFromRedisClient(rdb, srvCfg)
	if err := srv.Start(route(handler, kickoff)); err != nil {
		return fmt.Errorf("start asynq server: %w", err)
	}

	sw := sweeper.New(sweeper.Options{
		Store: store, Enqueuer: enqueuer, Inspector: inspector,
		Interval: cfg.Sweeper.Interval, TakeoverInterval: cfg.Sweeper.TakeoverInterval,
		MaxTakeovers: cfg.Sync.MaxRetry, Retention: cfg.Sweeper.Retention,
		Logger: log.With("component", "sweeper"),
	})
	sched = schedule.New(schedule.Options{
		Entries: entries, ConnConfig: pool.Config().ConnConfig, Name: name, Enqueuer: enqueuer,
		PollInterval: cfg.Schedule.PollInterval, CatchUp: cfg.Schedule.CatchUp, Holidays: cfg.Sync.MarketHolidays,
		Logger: log.With("component", "scheduler"),
	})
	var wg sync.WaitGroup
	wg.Go(func() { sw.Run(ctx) })
	wg.Go(func() { sched.Run(ctx) })
	if adminLn != nil {
		wg.Go(func() { serveAdmin(ctx, adminLn, adminH, cfg.Worker.ShutdownTimeout, log.With("component", "http")) })
	}

	log.Info("worker started", "name", name, "concurrency", cfg.Worker.Concurrency, "queue", tasks.Queue,
		"task_slice", cfg.Sync.TaskSlice, "lease", cfg.Sync.Lease, "sweeper_interval", cfg.Sweeper.Interval,
		"quotes", cfg.Quotes.BaseURL, "rate_limit", cfg.Quotes.RateLimit, "schedule_entries", len(entries))
	<-ctx.Done()
	log.Info("shutting down: stopping running batches")
	srv.Stop() // take no new task, then stop the running ones at once
	close(stopping)
	srv.Shutdown()
	wg.Wait()
	log.Info("worker stopped")
	return nil
}

// Jobs returns the jobs a worker runs, by name, with their sources built
// from cfg; rdb carries the sources' rate limits, shared by all workers.
func Jobs(cfg config.Config, rdb redis.UniversalClient) (map[string]tasks.Job, error) {
	etlJobs, err := ETLJobs(cfg, rdb)
	if err != nil {
		return nil, err
	}
	return jobsWith(cfg, rdb, etlJobs, nil)
}

// jobsWith is Jobs with the ETL jobs loaded already; the daily sync's source
// reports to m when it is not nil.
func jobsWith(cfg config.Config, rdb redis.UniversalClient, etlJobs *tasks.ETLJobs, m *metrics.Metrics) (map[string]tasks.Job, error) {
	var sm tasks.SourceMetrics
	if m != nil {
		sm = m.Source(tasks.JobDailySync)
	}
	var limiter quotes.Limiter
	if cfg.Quotes.RateLimit > 0 {
		limiter = ratelimit.NewRedisLimiter(rdb, rateLimitKey, cfg.Quotes.RateLimit).WithMetrics(sm)
	}
	source, err := quotes.NewClient(quotes.Options{
		BaseURL:       cfg.Quotes.BaseURL,
		APIKey:        cfg.Quotes.APIKey,
		Timeout:       cfg.Quotes.Timeout,
		MaxAttempts:   cfg.Quotes.MaxAttempts,
		MaxRetryAfter: cfg.Quotes.MaxRetryAfter,
		Limiter:       limiter,
		Metrics:       sm,
	})
	if err != nil {
		return nil, err
	}
	jobs := map[string]tasks.Job{tasks.JobDailySync: tasks.NewDailySync(source, cfg.Quotes.Concurrency)}
	maps.Copy(jobs, etlJobs.Jobs())
	return jobs, nil
}

// ETLJobs loads the ETL jobs of the configured jobs file; rdb carries their
// rate limits, shared by all workers.
func ETLJobs(cfg config.Config, rdb redis.UniversalClient) (*tasks.ETLJobs, error) {
	return etlJobsWith(cfg, rdb, nil)
}

// etlJobsWith is ETLJobs whose sources report to m when it is not nil.
func etlJobsWith(cfg config.Config, rdb redis.UniversalClient, m *metrics.Metrics) (*tasks.ETLJobs, error) {
	defs, err := etl.LoadJobs(cfg.ETL.JobsFile, os.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("etl.jobs_file (ETL_JOBS_FILE): %w", err)
	}
	var sources func(job string) tasks.SourceMetrics
	if m != nil {
		sources = func(job string) tasks.SourceMetrics { return m.Source(job) }
	}
	return tasks.NewETLJobs(defs, rdb, cfg.ETL.DefaultTimeout(), sources), nil
}

// scheduleEntries returns the schedule's entries, each checked against the
// jobs control starts: a job that does not exist, or params it does not
// take, stop start-up naming the entry's key rather than fail at 18:30.
func scheduleEntries(cfg config.Config, control *tasks.Control) ([]schedule.Entry, error) {
	var entries []schedule.Entry
	var errs []error
	for i, ce := range cfg.Schedule.Entries {
		if err := control.CheckStart(ce.Job, ce.Params); err != nil {
			key := "job"
			if !errors.Is(err, tasks.ErrUnknownJob) {
				key = "params"
			}
			errs = append(errs, fmt.Errorf("config: schedule.entries[%d].%s (entry %s): %w", i, key, ce.Name, err))
			continue
		}
		e, err := schedule.NewEntry(ce, cfg.Location())
		if err != nil {
			errs = append(errs, fmt.Errorf("config: schedule.entries[%d].cron: %w", i, err))
			continue
		}
		entries = append(entries, e)
	}
	return entries, errors.Join(errs...)
}

// route sends batch tasks to batch and kick-off tasks to kickoff, and
// archives a task of any other type with the reason, instead of retrying
// what no worker can handle.
func route(batch, kickoff asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		switch t.Type() {
		case tasks.TypeBatch:
			return batch.ProcessTask(ctx, t)
		case tasks.TypeKickoff:
			return kickoff.ProcessTask(ctx, t)
		}
		return fmt.Errorf("unknown task type %q: %w", t.Type(), asynq.SkipRetry)
	})
}

// logTaskError logs each task error once, at a level that fits its class,
// with the fields that name the batch (see tasks.LogFields).
func logTaskError(log *slog.Logger) func(ctx context.Context, t *asynq.Task, err error) {
	return func(ctx context.Context, t *asynq.Task, err error) {
		retried, _ := asynq.GetRetryCount(ctx)
		maxRetry, _ := asynq.GetMaxRetry(ctx)
		attrs := append(tasks.LogFields(ctx, t, err), "type", t.Type(), "retried", retried, "max_retry", maxRetry, "error", err)
		switch {
		case fault.IsShutdown(err):
			log.Info("task stopped for shutdown; it runs again", attrs...)
		case errors.Is(err, asynq.RevokeTask):
			log.Warn("task dropped on its last attempt without failing; the sweeper restores its chain", attrs...)
		case errors.Is(err, asynq.SkipRetry) && !errors.As(err, new(*fault.Error)):
			// Not a failure of the work but of the task itself (a malformed
			// payload, an unknown run or type): it has no class.
			log.Error("bad task archived with the reason, not run", attrs...)
		case errors.Is(err, asynq.SkipRetry) || retried >= maxRetry:
			log.Error("task failed for good", append(attrs, "class", fault.ClassOf(err).String())...)
		default:
			log.Warn("task failed; asynq retries it", append(attrs, "class", fault.ClassOf(err).String())...)
		}
	}
}

// redact hides the password of a URL for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}
