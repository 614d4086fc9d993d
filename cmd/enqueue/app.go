package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/db"
	"github.com/syncworker/syncworker/internal/etl"
	"github.com/syncworker/syncworker/internal/tasks"
)

// Exit codes of the command.
const (
	exitOK      = 0
	exitError   = 1
	exitRunning = 2
)

// exitCodeError carries an exit code other than 1 up to execute.
type exitCodeError struct {
	code int
	err  error
}

func (e *exitCodeError) Error() string { return e.err.Error() }
func (e *exitCodeError) Unwrap() error { return e.err }

// app holds what the commands share: their streams, the configuration and
// the connections, opened when a command first needs them.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	configFile     string
	jsonOut        bool

	cfg    config.Config
	loaded bool
	pool   *pgxpool.Pool
	store  *checkpoint.Store
	rdb    *redis.Client
}

// execute runs the command line args and returns the process's exit code.
func execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	defer a.close()
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "enqueue:", err)
	var ec *exitCodeError
	if errors.As(err, &ec) {
		return ec.code
	}
	return exitError
}

// flagKeys maps the CLI's flags to the configuration keys they override.
var flagKeys = map[string]string{
	"database-url":       "database_url",
	"redis-url":          "redis_url",
	"batch-size":         "sync.batch_size",
	"partitions":         "sync.partitions",
	"max-failed-items":   "sync.max_failed_items",
	"max-failed-percent": "sync.max_failed_percent",
	"jobs":               "etl.jobs_file",
}

// load reads the configuration, with cmd's flags on top, once.
func (a *app) load(cmd *cobra.Command) error {
	if a.loaded {
		return nil
	}
	keys := map[string]string{}
	for flag, key := range flagKeys {
		if cmd.Flags().Lookup(flag) != nil {
			keys[flag] = key
		}
	}
	cfg, err := config.Load(config.Options{File: a.configFile, Flags: cmd.Flags(), FlagKeys: keys})
	if err != nil {
		return err
	}
	a.cfg, a.loaded = cfg, true
	return nil
}

// openDB loads the configuration and connects to Postgres.
func (a *app) openDB(cmd *cobra.Command) error {
	if err := a.load(cmd); err != nil {
		return err
	}
	pool, err := db.Open(cmd.Context(), a.cfg.DatabaseURL, 4)
	if err != nil {
		return err
	}
	a.pool = pool
	if err := db.CheckSchema(cmd.Context(), pool); err != nil {
		return err
	}
	a.store = checkpoint.New(pool)
	return nil
}

// openAll connects to Postgres and Redis and returns the run operations.
func (a *app) openAll(cmd *cobra.Command) (*tasks.Control, error) {
	if err := a.openDB(cmd); err != nil {
		return nil, err
	}
	opt, err := redis.ParseURL(a.cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("redis_url: %w", err)
	}
	a.rdb = redis.NewClient(opt)
	enqueuer := tasks.NewEnqueuer(a.rdb, a.cfg.Sync.MaxRetry, a.cfg.Sync.TaskTimeout)
	return tasks.NewControl(a.pool, a.store, enqueuer, asynq.NewInspectorFromRedisClient(a.rdb)), nil
}

// openETL is openAll with the ETL jobs of the jobs file: only the commands
// that start ETL jobs read it, so that a broken jobs file does not stand in
// the way of a retry or a cancel.
func (a *app) openETL(cmd *cobra.Command) (*tasks.Control, error) {
	if err := a.load(cmd); err != nil {
		return nil, err
	}
	defs, err := etl.LoadJobs(a.cfg.ETL.JobsFile, os.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("etl.jobs_file (ETL_JOBS_FILE, --jobs): %w", err)
	}
	control, err := a.openAll(cmd)
	if err != nil {
		return nil, err
	}
	return control.WithETL(tasks.NewETLJobs(defs, a.rdb, a.cfg.ETL.DefaultTimeout(), nil)), nil
}

func (a *app) close() {
	if a.rdb != nil {
		a.rdb.Close()
	}
	if a.pool != nil {
		a.pool.Close()
	}
}

// stderrIsTerminal reports whether progress can be drawn as a live bar.
func (a *app) stderrIsTerminal() bool {
	f, ok := a.stderr.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// parseRunID parses a run id argument.
func parseRunID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 1 {
		return 0, fmt.Errorf("invalid run id %q: want a whole number of 1 or more", s)
	}
	return id, nil
}

// negativeArg matches the error of an argument such as -1 that the flag
// parser took for a flag.
var negativeArg = regexp.MustCompile(`^unknown shorthand flag: '\d' in (-\d\S*)$`)

// flagError is the commands' FlagErrorFunc: a negative number given as a
// RUN_ID is an invalid run id, not an unknown flag.
func flagError(cmd *cobra.Command, err error) error {
	if m := negativeArg.FindStringSubmatch(err.Error()); m != nil && strings.Contains(cmd.Use, "RUN_ID") {
		_, err = parseRunID(m[1])
	}
	return err
}

// warnNotEnqueued turns ErrNotEnqueued into a warning: the run's state is
// safe in Postgres and the sweeper enqueues its tasks later.
func (a *app) warnNotEnqueued(err error) error {
	if errors.Is(err, tasks.ErrNotEnqueued) {
		fmt.Fprintln(a.stderr, "enqueue: warning:", err)
		return nil
	}
	return err
}
