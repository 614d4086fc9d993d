package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/syncworker/syncworker/internal/tasks"
)

func (a *app) etlCmd() *cobra.Command {
	var (
		params     []string
		dryRun     bool
		budget     time.Duration
		partitions int
		w          waitFlags
	)
	cmd := &cobra.Command{
		Use:   "etl JOB",
		Short: "Start (or resume) a pull of an ETL job from the jobs file",
		Long: `etl starts a run of the ETL job JOB, declared in the jobs file (etl.jobs_file,
ETL_JOBS_FILE or --jobs), which pulls the job's paginated source into Postgres
page by page. The run's identity is the job and its --param values: the same
parameters find the same unfinished run. An active run is returned as it is;
a failed or timed-out one is resumed from its checkpoint with a fresh time
budget; after a completed or cancelled one a new run starts.

The first page is fetched and checked before the run is created, so a wrong
definition or an unreachable source is an error and no run. --dry-run fetches
and checks every page, writes nothing, and reports what a run would load.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := w.check(cmd); err != nil {
				return err
			}
			opts := tasks.ETLOptions{Budget: budget, Partitions: partitions, Params: map[string]string{}}
			for _, p := range params {
				k, v, ok := strings.Cut(p, "=")
				if !ok || k == "" {
					return fmt.Errorf("invalid --param %q: want NAME=VALUE", p)
				}
				if _, dup := opts.Params[k]; dup {
					return fmt.Errorf("--param %s is given twice", k)
				}
				opts.Params[k] = v
			}
			switch {
			case budget < 0:
				return fmt.Errorf("--budget %s: want a duration of 0 (the job's) or more", budget)
			case partitions < 0:
				return fmt.Errorf("--partitions %d: want 0 (the job's) or more", partitions)
			case dryRun && w.wait:
				return errors.New("--dry-run writes nothing and starts no run; there is nothing to --wait for")
			}
			control, err := a.openETL(cmd)
			if err != nil {
				return err
			}
			if dryRun {
				report, err := control.DryRunETL(cmd.Context(), args[0], opts)
				if err != nil {
					return err
				}
				return a.printDryRun(report)
			}
			started, err := control.StartETL(cmd.Context(), args[0], opts)
			if err = a.warnNotEnqueued(err); err != nil {
				return err
			}
			a.describeETL(cmd, started)
			return a.finish(cmd, started.Run, w)
		},
	}
	cmd.Flags().StringArrayVar(&params, "param", nil, "a run parameter NAME=VALUE of a parameterized job (repeatable)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "fetch and check every page, write nothing, report what a run would load")
	cmd.Flags().DurationVar(&budget, "budget", 0, "time budget of each attempt of a new run (default: the job's timeout, else ETL_DEFAULT_TIMEOUT_SECONDS)")
	cmd.Flags().IntVar(&partitions, "partitions", 0, "page ranges a new run is split into (default: the job's; needs a source with a total)")
	w.register(cmd)
	return cmd
}

// describeETL tells, on stderr, what StartETL did.
func (a *app) describeETL(cmd *cobra.Command, s tasks.Started) {
	r := s.Run
	switch s.How {
	case tasks.Created:
		size := "an open-ended walk"
		if r.Total > 0 || r.Partitions > 1 {
			size = fmt.Sprintf("%d records", r.Total)
		}
		budget := "no time budget"
		if r.BudgetMS != nil {
			budget = "a time budget of " + (time.Duration(*r.BudgetMS) * time.Millisecond).String() + " per attempt"
		}
		fmt.Fprintf(a.stderr, "run %d: started %s (%s) over %s in %d partitions, pages of %d, %s\n",
			r.ID, r.Job, r.RunKey, size, r.Partitions, r.BatchSize, budget)
	case tasks.Resumed:
		fmt.Fprintf(a.stderr, "run %d: %s (%s) had stopped; resumed as attempt %d from %d records, with a fresh time budget\n",
			r.ID, r.Job, r.RunKey, r.Attempt, r.Processed)
	default:
		fmt.Fprintf(a.stderr, "run %d: %s (%s) is already %s (%d records so far)\n", r.ID, r.Job, r.RunKey, r.Status, r.Processed)
		for _, flag := range []string{"budget", "partitions"} {
			if cmd.Flags().Changed(flag) {
				fmt.Fprintf(a.stderr, "run %d: --%s applies to new runs only\n", r.ID, flag)
			}
		}
	}
}

// printDryRun prints what a dry run found.
func (a *app) printDryRun(r tasks.DryRun) error {
	if a.jsonOut {
		return writeJSON(a.stdout, r)
	}
	total := "no total"
	if r.Total != nil {
		total = fmt.Sprintf("a total of %d", *r.Total)
	}
	fmt.Fprintf(a.stdout, "dry run of %s: %d pages checked, %d records, %d distinct keys (%s), in %s; nothing was written\n",
		r.Job, r.Pages, r.Records, r.Keys, total, (time.Duration(r.DurationMS) * time.Millisecond).Round(time.Millisecond))
	for _, w := range r.Warnings {
		fmt.Fprintf(a.stdout, "warning: %s\n", w)
	}
	return nil
}
