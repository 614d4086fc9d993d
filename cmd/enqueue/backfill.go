package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/syncworker/syncworker/internal/quotes"
	"github.com/syncworker/syncworker/internal/tasks"
)

func (a *app) backfillCmd() *cobra.Command {
	backfill := &cobra.Command{
		Use:   "backfill",
		Short: "Start the runs a range of days is missing",
	}
	var from, to string
	daily := &cobra.Command{
		Use:   "daily-sync --from YYYY-MM-DD --to YYYY-MM-DD",
		Short: "Start the daily sync of every trading day in a range that has no run yet",
		Long: `backfill daily-sync starts the daily stock-price sync of every weekday from
--from to --to (both included) that has no run yet. Weekends are skipped,
and so are the days of sync.market_holidays without a run, reported as
holidays. A day that has a run, in any state, is reported as existing and
left alone (retry a failed one with enqueue retry). The range may not end after today in the
market time zone, nor span more than ` + fmt.Sprint(tasks.MaxBackfillDays) + ` days; a bad range is refused and
nothing is started. Prints what it did with each day.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.load(cmd); err != nil {
				return err
			}
			loc := a.cfg.Location()
			first, err := parseDay("--from", from, loc)
			if err != nil {
				return err
			}
			last, err := parseDay("--to", to, loc)
			if err != nil {
				return err
			}
			today := time.Now().In(loc)
			// The range is checked before anything is connected to.
			if _, err := tasks.BackfillRange(first, last, today); err != nil {
				return err
			}
			control, err := a.openAll(cmd)
			if err != nil {
				return err
			}
			opts := tasks.DailyOptions(a.cfg.Sync)
			opts.Today = today
			days, err := control.Backfill(cmd.Context(), first, last, opts)
			if perr := a.printBackfill(days); perr != nil {
				return perr
			}
			return a.warnNotEnqueued(err)
		},
	}
	daily.Flags().StringVar(&from, "from", "", "first day, YYYY-MM-DD (required)")
	daily.Flags().StringVar(&to, "to", "", "last day, YYYY-MM-DD, included (required)")
	_ = daily.MarkFlagRequired("from") // cannot fail: the flags exist
	_ = daily.MarkFlagRequired("to")
	daily.Flags().Int("batch-size", 0, "symbols per batch of the new runs (overrides SYNC_BATCH_SIZE)")
	daily.Flags().Int("partitions", 0, "independent chains of the new runs (overrides SYNC_PARTITIONS)")
	backfill.AddCommand(daily)
	return backfill
}

// parseDay parses the date of flag.
func parseDay(flag, s string, loc *time.Location) (time.Time, error) {
	day, err := time.ParseInLocation(quotes.DateLayout, s, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid %s %q: want a date YYYY-MM-DD", flag, s)
	}
	return day, nil
}

// backfillReport is the JSON of a backfill: each day, and the counts.
type backfillReport struct {
	Days     []tasks.BackfillDay `json:"days"`
	Created  int                 `json:"created"`
	Existing int                 `json:"existing"`
	Weekend  int                 `json:"weekend"`
	Holiday  int                 `json:"holiday"`
}

// printBackfill prints what a backfill did with each day and the counts.
func (a *app) printBackfill(days []tasks.BackfillDay) error {
	rep := backfillReport{Days: days}
	if rep.Days == nil {
		rep.Days = []tasks.BackfillDay{}
	}
	for _, d := range days {
		switch d.Action {
		case tasks.BackfillCreated:
			rep.Created++
		case tasks.BackfillExists:
			rep.Existing++
		case tasks.BackfillWeekend:
			rep.Weekend++
		case tasks.BackfillHoliday:
			rep.Holiday++
		}
	}
	if a.jsonOut {
		return writeJSON(a.stdout, rep)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DATE\tDAY\tACTION\tRUN\tSTATUS")
	for _, d := range days {
		day, _ := time.Parse(quotes.DateLayout, d.Date) // written by Backfill
		run, status := "-", "-"
		if d.Run != 0 {
			run, status = fmt.Sprint(d.Run), string(d.Status)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Date, day.Weekday().String()[:3], d.Action, run, status)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(a.stdout, "%d started, %d existing, %d weekend days and %d holidays skipped\n", rep.Created, rep.Existing, rep.Weekend, rep.Holiday)
	return err
}
