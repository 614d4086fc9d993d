package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/etl"
	"github.com/syncworker/syncworker/internal/tasks"
)

func (a *app) reportCmd() *cobra.Command {
	report := &cobra.Command{
		Use:   "report",
		Short: "Reports over the history of runs",
	}
	report.AddCommand(a.durationsCmd())
	return report
}

func (a *app) durationsCmd() *cobra.Command {
	var job, since string
	var limit int
	cmd := &cobra.Command{
		Use:   "durations",
		Short: "Per job: how long runs take, how often they time out, and the time budget their history suggests",
		// The rules' figures come from package checkpoint, which applies them.
		Long: fmt.Sprintf(`durations reports, per job, the runs created since --since that have at least
one ended attempt: how many there are and completed, the p50, p95 and maximum
duration of the completed runs (running time summed over a run's attempts:
what one attempt would need to complete it), and the runs that timed out at
least once. BUDGET is the time budget of one attempt that new runs get: the
job's timeout in the jobs file (etl.jobs_file), else etl.default_timeout_seconds
(marked "default"); a job no longer defined shows its newest run's budget
("last run"), and the daily sync has none. SUGGESTED is the completed runs'
p95 × %g, rounded up to a whole minute. FLAG says why a job needs a look: its
runs keep timing out (%.0f%% of them or more, at least %d, or the last %d in a
row), or its budget is %d times the suggestion or more (over %d or more
completed runs with no timeout). With --json, every figure, the attempts' own
durations and their outcomes are printed as one JSON object (durations in ms).`,
			checkpoint.Headroom, 100*checkpoint.TimeoutShare, checkpoint.MinTimedOutRuns, checkpoint.TimeoutStreak,
			checkpoint.OversizeFactor, checkpoint.MinCompletedRuns),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return fmt.Errorf("--limit %d: want 0 (every run) or more", limit)
			}
			// --since is checked before anything is read or connected to,
			// so that a wrong one is what the error says.
			from, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			if err := a.load(cmd); err != nil {
				return err
			}
			defined, err := a.definedJobs()
			if err != nil {
				return err
			}
			if err := a.openDB(cmd); err != nil {
				return err
			}
			history, err := a.store.DurationReport(cmd.Context(), checkpoint.ReportFilter{Job: job, Since: from, Limit: limit})
			if err != nil {
				return err
			}
			rows := a.durationRows(history, defined, job, from)
			if job != "" && len(rows) == 0 {
				return fmt.Errorf("job %q has no runs since %s and is not defined in the jobs file %s",
					job, from.Format(sinceLayout), a.cfg.ETL.JobsFile)
			}
			return a.printDurations(durationReport{Since: from, JobsFile: a.cfg.ETL.JobsFile, Jobs: rows})
		},
	}
	cmd.Flags().StringVar(&job, "job", "", "report this job only")
	cmd.Flags().StringVar(&since, "since", "720h", "count the runs created since: a duration back from now (720h, 30d) or a date YYYY-MM-DD (local time)")
	cmd.Flags().IntVar(&limit, "limit", 0, "count only the newest runs of each job, this many (0: every run since --since)")
	return cmd
}

// sinceLayout shows the start of a report's window.
const sinceLayout = "2006-01-02 15:04 MST"

// parseSince reads --since: a duration back from now (Go's, or whole days
// as 30d), a date YYYY-MM-DD (midnight, local time) or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	var from time.Time
	days, isDays := strings.CutSuffix(s, "d")
	n, daysErr := strconv.Atoi(days)
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		from = now.Add(-d)
	} else if isDays && daysErr == nil && n > 0 && n <= 100*366 {
		from = now.AddDate(0, 0, -n)
	} else if t, err := time.ParseInLocation(time.DateOnly, s, time.Local); err == nil {
		from = t
	} else if t, err := time.Parse(time.RFC3339, s); err == nil {
		from = t
	} else {
		return time.Time{}, fmt.Errorf("invalid --since %q: want a positive duration such as 720h or 30d, or a date YYYY-MM-DD", s)
	}
	if from.After(now) {
		return time.Time{}, fmt.Errorf("--since %s is in the future: there are no runs to report yet", s)
	}
	return from, nil
}

// definedJobs returns the ETL jobs of the jobs file by name. A jobs file
// that does not exist at the default path means no ETL jobs.
func (a *app) definedJobs() (map[string]etl.Job, error) {
	path := a.cfg.ETL.JobsFile
	// The report needs only the jobs' names and timeouts: every ${VAR} of
	// a header counts as set, so that it works in a shell that lacks the
	// sources' secrets, and never reads them.
	jobs, err := etl.LoadJobs(path, func(string) (string, bool) { return "", true })
	if err != nil {
		return nil, err
	}
	byName := make(map[string]etl.Job, len(jobs))
	for _, j := range jobs {
		byName[j.Name] = j
	}
	return byName, nil
}

// durationReport is the result of report durations, as --json prints it.
type durationReport struct {
	Since    time.Time     `json:"since"`
	JobsFile string        `json:"jobs_file"`
	Jobs     []durationRow `json:"jobs"`
}

// durationRow is one job of the report: its history, the budget its new
// runs get and what the history says about it.
type durationRow struct {
	checkpoint.JobDurations
	checkpoint.Advice
	TimedOutShare float64 `json:"timed_out_share"`
	// BudgetMS is the time budget of one attempt of a new run, nil for
	// none; BudgetFrom says where it comes from: job (its timeout),
	// default (etl.default_timeout_seconds), last run (the job is not
	// defined: its newest run's budget) or none.
	BudgetMS   *int64 `json:"budget_ms"`
	BudgetFrom string `json:"budget_from"`
	// Defined says whether the jobs file defines the job.
	Defined bool `json:"defined"`
	// Note says what else there is to know: no runs in the window, or a
	// job that is no longer defined.
	Note string `json:"note,omitempty"`
}

// durationRows joins the history with the defined jobs (only job, when
// set), in order of name, and gives each its budget and advice.
func (a *app) durationRows(history []checkpoint.JobDurations, defined map[string]etl.Job, job string, since time.Time) []durationRow {
	byName := map[string]checkpoint.JobDurations{}
	for _, d := range history {
		byName[d.Job] = d
	}
	for name := range defined {
		if _, ok := byName[name]; !ok && (job == "" || job == name) {
			byName[name] = checkpoint.JobDurations{Job: name}
		}
	}
	rows := make([]durationRow, 0, len(byName))
	for _, d := range byName {
		r := durationRow{JobDurations: d, TimedOutShare: d.TimedOutShare(), BudgetFrom: "none"}
		var budget time.Duration
		def, ok := defined[d.Job]
		r.Defined = ok
		switch {
		case ok && def.Timeout > 0:
			budget, r.BudgetFrom = def.Timeout, "job"
		case ok:
			budget, r.BudgetFrom = a.cfg.ETL.DefaultTimeout(), "default"
		case d.Job != tasks.JobDailySync && d.RunBudgetMS != nil:
			budget, r.BudgetFrom = time.Duration(*d.RunBudgetMS)*time.Millisecond, "last run"
			r.Note = "not defined in " + a.cfg.ETL.JobsFile
		}
		if budget > 0 {
			ms := budget.Milliseconds()
			r.BudgetMS = &ms
		}
		r.Advice = checkpoint.Suggest(d, budget)
		if d.Runs == 0 {
			r.Note = "no runs since " + since.Format(sinceLayout)
		}
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(x, y durationRow) int { return strings.Compare(x.Job, y.Job) })
	return rows
}

func (a *app) printDurations(rep durationReport) error {
	if a.jsonOut {
		return writeJSON(a.stdout, rep)
	}
	fmt.Fprintf(a.stdout, "runs created since %s; P50, P95, MAX: completed runs' running time summed over their attempts\n",
		rep.Since.Format(sinceLayout))
	if len(rep.Jobs) == 0 {
		_, err := fmt.Fprintln(a.stdout, "no runs, and no ETL jobs defined in", rep.JobsFile)
		return err
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tRUNS\tCOMPLETED\tP50\tP95\tMAX\tTIMED OUT\tBUDGET\tSUGGESTED\tFLAG")
	for _, r := range rep.Jobs {
		timedOut := strconv.FormatInt(r.TimedOutRuns, 10)
		if r.TimedOutRuns > 0 {
			timedOut += fmt.Sprintf(" (%.0f%%)", 100*r.TimedOutShare)
		}
		budget := "none"
		if r.BudgetMS != nil {
			budget = msText(r.BudgetMS)
			if r.BudgetFrom != "job" {
				budget += " (" + r.BudgetFrom + ")"
			}
		}
		flag := "-"
		switch {
		case r.Flag == checkpoint.FlagTimingOut:
			flag = "timing out: " + r.Reason
		case r.Flag == checkpoint.FlagOversized:
			flag = "oversized: " + r.Reason
		case r.Note != "":
			flag = r.Note
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Job, r.Runs, r.Completed,
			msText(r.RunP50MS), msText(r.RunP95MS), msText(r.RunMaxMS), timedOut, budget, msText(r.SuggestedMS), flag)
	}
	return tw.Flush()
}

// msText shows a duration in milliseconds as the report does, "-" for none.
func msText(ms *int64) string {
	if ms == nil {
		return "-"
	}
	return checkpoint.ShortDuration(time.Duration(*ms) * time.Millisecond)
}
