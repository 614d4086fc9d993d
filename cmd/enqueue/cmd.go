package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/quotes"
	"github.com/syncworker/syncworker/internal/stocks"
	"github.com/syncworker/syncworker/internal/tasks"
)

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "enqueue",
		Short: "Start, follow, retry and cancel syncworker runs",
		Long: `enqueue is syncworker's operator CLI.

Exit codes: 0 success (with --wait: the run completed); 1 an error, or a run
that failed or was cancelled; 2 the run was still running when --timeout
elapsed (nothing is lost: the run goes on, check it later with enqueue status),
or it stopped timed_out (its time budget is used up; enqueue retry resumes it).

Configuration comes from configs/worker.yaml (or --config / SYNCWORKER_CONFIG),
then environment variables (DATABASE_URL, REDIS_URL, SYNC_BATCH_SIZE, ...),
then flags.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.configFile, "config", "", "configuration file (default $"+config.FileEnv+" or "+config.DefaultFile+")")
	pf.String("database-url", "", "Postgres URL (overrides DATABASE_URL)")
	pf.String("redis-url", "", "Redis URL (overrides REDIS_URL)")
	pf.BoolVar(&a.jsonOut, "json", false, "print the result as JSON on stdout")
	pf.String("jobs", "", "ETL jobs file (overrides ETL_JOBS_FILE)")
	root.SetFlagErrorFunc(flagError)
	root.AddCommand(a.dailySyncCmd(), a.etlCmd(), a.statusCmd(), a.retryCmd(), a.redriveCmd(), a.cancelCmd(), a.pauseCmd(), a.resumeCmd(),
		a.restartFromZeroCmd(), a.failuresCmd(), a.stocksCmd(), a.reportCmd(), a.backfillCmd())
	return root
}

// waitFlags are the flags of the commands that can follow a run to its end.
type waitFlags struct {
	wait     bool
	timeout  time.Duration
	interval time.Duration
}

func (w *waitFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&w.wait, "wait", false, "follow the run until it ends, showing progress")
	cmd.Flags().DurationVar(&w.timeout, "timeout", 0, "with --wait: stop waiting after this long and exit 2 (0: wait until the run ends)")
	cmd.Flags().DurationVar(&w.interval, "progress-interval", 10*time.Second, "with --wait and no terminal: time between progress lines")
}

func (w *waitFlags) check(cmd *cobra.Command) error {
	switch {
	case cmd.Flags().Changed("timeout") && !w.wait:
		return errors.New("--timeout only applies with --wait")
	case cmd.Flags().Changed("progress-interval") && !w.wait:
		return errors.New("--progress-interval only applies with --wait")
	case w.timeout < 0:
		return fmt.Errorf("--timeout %s: want a duration of 0 or more", w.timeout)
	case w.interval <= 0:
		return fmt.Errorf("--progress-interval %s: want a positive duration", w.interval)
	}
	return nil
}

// finish follows run when asked to, prints it, and turns its end into the
// command's outcome.
func (a *app) finish(cmd *cobra.Command, run checkpoint.Run, w waitFlags) error {
	if !w.wait {
		return a.printRun(run)
	}
	run, err := a.follow(cmd.Context(), run, w)
	if perr := a.printRun(run); perr != nil {
		return perr
	}
	if err != nil {
		return err
	}
	switch run.Status {
	case checkpoint.StatusCompleted:
		return nil
	case checkpoint.StatusTimedOut:
		return &exitCodeError{code: exitRunning, err: fmt.Errorf("run %d timed out: %s", run.ID, run.LastError)}
	case checkpoint.StatusPaused:
		return &exitCodeError{code: exitRunning, err: fmt.Errorf("run %d is paused at %d/%d processed; go on with `enqueue resume %d`",
			run.ID, run.Processed, run.Total, run.ID)}
	case checkpoint.StatusFailed:
		return fmt.Errorf("run %d failed: %s; resume it with `enqueue retry %d`", run.ID, run.LastError, run.ID)
	default:
		return fmt.Errorf("run %d is %s", run.ID, run.Status)
	}
}

func (a *app) dailySyncCmd() *cobra.Command {
	var date string
	var w waitFlags
	cmd := &cobra.Command{
		Use:   "daily-sync",
		Short: "Start (or find) the daily stock-price sync of a trading date",
		Long: `daily-sync starts the run of the daily stock-price sync for a trading date
over the active symbols of the stocks table, and enqueues the first batch task
of each partition. There is one run per date: when it exists, that run is
returned (and its tasks enqueued again if it is active; that changes nothing
where they exist). A completed run is not redone.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := w.check(cmd); err != nil {
				return err
			}
			// The date is checked before anything is connected to, so that
			// a wrong one is what the error says, whatever else is down.
			if err := a.load(cmd); err != nil {
				return err
			}
			loc := a.cfg.Location()
			today := time.Now().In(loc)
			day := today
			if date != "" {
				var err error
				if day, err = time.ParseInLocation(quotes.DateLayout, date, loc); err != nil {
					return fmt.Errorf("invalid --date %q: want a date YYYY-MM-DD", date)
				}
			}
			control, err := a.openAll(cmd)
			if err != nil {
				return err
			}
			opts := tasks.DailyOptions(a.cfg.Sync)
			opts.Date, opts.Today = day, today
			run, created, err := control.StartDailySync(cmd.Context(), opts)
			if err = a.warnNotEnqueued(err); err != nil {
				return err
			}
			a.describeStart(cmd, run, created)
			return a.finish(cmd, run, w)
		},
	}
	cmd.Flags().StringVar(&date, "date", "", "trading date, YYYY-MM-DD (default: today in the market time zone)")
	cmd.Flags().Int("batch-size", 0, "symbols per batch of a new run (overrides SYNC_BATCH_SIZE)")
	cmd.Flags().Int("partitions", 0, "independent chains of a new run (overrides SYNC_PARTITIONS)")
	cmd.Flags().Int64("max-failed-items", 0, "failed symbols one attempt of a new run may have before it fails early; 0 = no limit (overrides SYNC_MAX_FAILED_ITEMS)")
	cmd.Flags().Float64("max-failed-percent", 0, "the same limit as a percentage of the run's symbols; 0 = no limit (overrides SYNC_MAX_FAILED_PERCENT)")
	w.register(cmd)
	return cmd
}

// describeStart tells, on stderr, whether the run is new or found.
func (a *app) describeStart(cmd *cobra.Command, run checkpoint.Run, created bool) {
	if created {
		fmt.Fprintf(a.stderr, "run %d: started %s %s over %d symbols in %d partitions, batches of %d\n",
			run.ID, run.Job, run.RunKey, run.Total, run.Partitions, run.BatchSize)
		return
	}
	fmt.Fprintf(a.stderr, "run %d: %s %s exists and is %s (%d/%d processed)\n",
		run.ID, run.Job, run.RunKey, run.Status, run.Processed, run.Total)
	for flag, v := range map[string]int{"batch-size": run.BatchSize, "partitions": run.Partitions} {
		if cmd.Flags().Changed(flag) {
			fmt.Fprintf(a.stderr, "run %d: --%s applies to new runs only; this run keeps %d\n", run.ID, flag, v)
		}
	}
}

func (a *app) statusCmd() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "status [RUN_ID]",
		Short: "Show a run and its partitions, or the recent runs, newest first",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 1 {
				return fmt.Errorf("--limit %d: want 1 or more", limit)
			}
			if len(args) == 1 && cmd.Flags().Changed("limit") {
				return errors.New("--limit applies to the list of recent runs, not to status RUN_ID")
			}
			var id int64
			if len(args) == 1 {
				var err error
				if id, err = parseRunID(args[0]); err != nil {
					return err
				}
			}
			if err := a.openDB(cmd); err != nil {
				return err
			}
			ctx := cmd.Context()
			if id == 0 {
				runs, err := a.store.List(ctx, limit)
				if err != nil {
					return err
				}
				return a.printRuns(runs)
			}
			run, err := a.store.Get(ctx, id)
			if err != nil {
				return err
			}
			parts, err := a.store.Partitions(ctx, id)
			if err != nil {
				return err
			}
			return a.printRunDetail(run, parts)
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 20, "number of recent runs to list (without RUN_ID)")
	return cmd
}

func (a *app) retryCmd() *cobra.Command {
	return a.restartCmd(a.openAll, &cobra.Command{
		Use:   "retry RUN_ID",
		Short: "Resume a failed or cancelled run from its checkpoints",
	}, func(ctx context.Context, c *tasks.Control, id int64) (checkpoint.Run, string, error) {
		run, err := c.Retry(ctx, id)
		return run, fmt.Sprintf("resumed as attempt %d from %d/%d processed", run.Attempt, run.Processed, run.Total), err
	})
}

func (a *app) redriveCmd() *cobra.Command {
	return a.restartCmd(a.openAll, &cobra.Command{
		Use:   "redrive RUN_ID",
		Short: "Run the failed symbols of a completed run again",
		Long: `Run only the failed symbols of a completed run again (see ` + "`enqueue failures`" + `),
as the run's next attempt; each new outcome replaces the old, and symbols that
fail again stay failed with their new error.`,
	}, func(ctx context.Context, c *tasks.Control, id int64) (checkpoint.Run, string, error) {
		run, err := c.Redrive(ctx, id)
		return run, fmt.Sprintf("redriving %d failed symbols as attempt %d", run.Failed, run.Attempt), err
	})
}

// restartCmd completes cmd as a command that makes the run RUN_ID go on
// through op, with the control that open gives, and can wait for the run's
// end; op also says what it did.
func (a *app) restartCmd(open func(*cobra.Command) (*tasks.Control, error), cmd *cobra.Command,
	op func(context.Context, *tasks.Control, int64) (checkpoint.Run, string, error)) *cobra.Command {
	var w waitFlags
	cmd.Args = cobra.ExactArgs(1)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		id, err := parseRunID(args[0])
		if err != nil {
			return err
		}
		if err := w.check(cmd); err != nil {
			return err
		}
		control, err := open(cmd)
		if err != nil {
			return err
		}
		run, what, err := op(cmd.Context(), control, id)
		if err = a.warnNotEnqueued(err); err != nil {
			return err
		}
		fmt.Fprintf(a.stderr, "run %d: %s\n", run.ID, what)
		return a.finish(cmd, run, w)
	}
	w.register(cmd)
	return cmd
}

func (a *app) resumeCmd() *cobra.Command {
	return a.restartCmd(a.openAll, &cobra.Command{
		Use:   "resume RUN_ID",
		Short: "Resume a paused run from its checkpoints",
	}, func(ctx context.Context, c *tasks.Control, id int64) (checkpoint.Run, string, error) {
		run, err := c.Resume(ctx, id)
		return run, fmt.Sprintf("resumed as attempt %d from %d/%d processed", run.Attempt, run.Processed, run.Total), err
	})
}

func (a *app) restartFromZeroCmd() *cobra.Command {
	var fromZero bool
	cmd := a.restartCmd(a.openETL, &cobra.Command{
		Use:   "restart RUN_ID --from-zero",
		Short: "Start an ended run over from zero, as a new run",
		Long: `restart starts the job and run key of an ended run (completed, failed, cancelled
or timed out) over from zero, as a new run (the next generation): its work is
frozen anew (today's active symbols, or the source's pages now) and it keeps
the old run's batch size, partitions, failure limit and time budget. The old
run stays as it was. A run that is pending, running or paused must be cancelled
first. To go on from the checkpoints instead, use retry or resume.`,
	}, func(ctx context.Context, c *tasks.Control, id int64) (checkpoint.Run, string, error) {
		run, err := c.Restart(ctx, id)
		return run, fmt.Sprintf("run %d started over from zero as run %d (generation %d), %d to do",
			id, run.ID, run.Generation, run.Total), err
	})
	cmd.Flags().BoolVar(&fromZero, "from-zero", false, "required: say that the run starts over, leaving its checkpoints behind")
	// Checked before anything is connected to or changed: starting over is
	// never a default.
	cmd.PreRunE = func(cmd *cobra.Command, args []string) error {
		if !fromZero {
			return fmt.Errorf("restart starts run %s over from zero as a new run; say so with --from-zero "+
				"(to go on from its checkpoints, use `enqueue retry` or `enqueue resume`)", args[0])
		}
		return nil
	}
	return cmd
}

func (a *app) pauseCmd() *cobra.Command {
	return a.changeCmd(&cobra.Command{
		Use:   "pause RUN_ID",
		Short: "Pause a run at a batch boundary; resume it later",
	}, func(ctx context.Context, c *tasks.Control, id int64) (checkpoint.Run, string, error) {
		run, err := c.Pause(ctx, id)
		return run, fmt.Sprintf("paused at %d/%d processed (a batch under way commits first); go on with `enqueue resume %d`",
			run.Processed, run.Total, id), err
	})
}

func (a *app) cancelCmd() *cobra.Command {
	return a.changeCmd(&cobra.Command{
		Use:   "cancel RUN_ID",
		Short: "Cancel a run; what it committed stays, the rest is not done",
	}, func(ctx context.Context, c *tasks.Control, id int64) (checkpoint.Run, string, error) {
		run, err := c.Cancel(ctx, id)
		return run, fmt.Sprintf("cancelled at %d/%d processed", run.Processed, run.Total), err
	})
}

// changeCmd completes cmd as a command that changes the run RUN_ID through
// op, which also says what it did, and prints the run.
func (a *app) changeCmd(cmd *cobra.Command, op func(context.Context, *tasks.Control, int64) (checkpoint.Run, string, error)) *cobra.Command {
	cmd.Args = cobra.ExactArgs(1)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		id, err := parseRunID(args[0])
		if err != nil {
			return err
		}
		control, err := a.openAll(cmd)
		if err != nil {
			return err
		}
		run, what, err := op(cmd.Context(), control, id)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stderr, "run %d: %s\n", run.ID, what)
		return a.printRun(run)
	}
	return cmd
}

func (a *app) failuresCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "failures RUN_ID",
		Short: "List the failed symbols of a run, or the rejected records of an ETL run, with their errors",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseRunID(args[0])
			if err != nil {
				return err
			}
			if err := a.openDB(cmd); err != nil {
				return err
			}
			run, err := a.store.Get(cmd.Context(), id)
			if err != nil {
				return err
			}
			items, err := a.store.FailuresOf(cmd.Context(), run, math.MaxInt32)
			if err != nil {
				return err
			}
			return a.printFailures(run, items)
		},
	}
}

func (a *app) stocksCmd() *cobra.Command {
	stocksCmd := &cobra.Command{
		Use:   "stocks",
		Short: "Manage the stock universe",
	}
	stocksCmd.AddCommand(&cobra.Command{
		Use:   "import FILE|-",
		Short: "Upsert stocks from a CSV file (or stdin) with a symbol column",
		Long: `import reads a CSV with a header row: a symbol column, and optional name,
exchange and active (true/false) columns. Every row is checked first; one bad
row rejects the whole file and nothing is written. Stocks that exist are
updated, the others inserted.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var in io.Reader = a.stdin
			name := "stdin"
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				in, name = f, args[0]
			}
			list, err := stocks.ReadCSV(in)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if err := a.openDB(cmd); err != nil {
				return err
			}
			res, err := stocks.Upsert(cmd.Context(), a.pool, list)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return writeJSON(a.stdout, res)
			}
			fmt.Fprintf(a.stdout, "imported %d stocks from %s: %d new, %d updated\n", len(list), name, res.Inserted, res.Updated)
			return nil
		},
	})
	return stocksCmd
}
