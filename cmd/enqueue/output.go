package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/syncworker/syncworker/internal/checkpoint"
)

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	return enc.Encode(v)
}

// printRun prints the run on stdout: one JSON object with --json, else one line.
func (a *app) printRun(run checkpoint.Run) error {
	if a.jsonOut {
		return writeJSON(a.stdout, run)
	}
	_, err := fmt.Fprintln(a.stdout, summary(run))
	return err
}

// summary is the one-line description of a run.
func summary(r checkpoint.Run) string {
	var b strings.Builder
	if r.Unit == checkpoint.UnitPages {
		fmt.Fprintf(&b, "run %d %s %s: %s, %s in %d pages, %d loaded", r.ID, r.Job, r.RunKey, r.Status,
			records(r), r.Batches, r.Succeeded)
	} else {
		fmt.Fprintf(&b, "run %d %s %s: %s, %d/%d processed (%s), %d succeeded, %d failed",
			r.ID, r.Job, r.RunKey, r.Status, r.Processed, r.Total, percent(r.Processed, r.Total), r.Succeeded, r.Failed)
	}
	if d := duration(r); d > 0 {
		fmt.Fprintf(&b, ", %s", d.Round(time.Second))
	}
	if r.LastError != "" {
		fmt.Fprintf(&b, "; last error: %s", r.LastError)
	}
	return b.String()
}

// records is the progress of a run of pages: records received of the
// total, when the source gave one.
func records(r checkpoint.Run) string {
	if r.Total == 0 {
		return fmt.Sprintf("%d records", r.Processed)
	}
	return fmt.Sprintf("%d/%d records (%s)", r.Processed, r.Total, percent(r.Processed, r.Total))
}

func percent(n, total int64) string {
	if total == 0 {
		return "100.0%"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(total))
}

// duration is how long the run has run, summed over its attempts.
func duration(r checkpoint.Run) time.Duration {
	return time.Duration(r.DurationMS) * time.Millisecond
}

func timestamp(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func (a *app) printRuns(runs []checkpoint.Run) error {
	if a.jsonOut {
		if runs == nil {
			runs = []checkpoint.Run{}
		}
		return writeJSON(a.stdout, runs)
	}
	if len(runs) == 0 {
		_, err := fmt.Fprintln(a.stdout, "no runs yet; start one with `enqueue daily-sync`")
		return err
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tJOB\tRUN KEY\tSTATUS\tPROGRESS\tSUCCEEDED\tFAILED\tSTARTED\tDURATION")
	for _, r := range runs {
		d := "-"
		if dur := duration(r); dur > 0 {
			d = dur.Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d/%d %s\t%d\t%d\t%s\t%s\n", r.ID, r.Job, r.RunKey, r.Status,
			r.Processed, r.Total, percent(r.Processed, r.Total), r.Succeeded, r.Failed, timestamp(r.StartedAt), d)
	}
	return tw.Flush()
}

// runDetail is the JSON of status RUN_ID: the run with its partitions.
type runDetail struct {
	checkpoint.Run
	PartitionList []checkpoint.Partition `json:"partition_list"`
}

func (a *app) printRunDetail(r checkpoint.Run, parts []checkpoint.Partition) error {
	if a.jsonOut {
		return writeJSON(a.stdout, runDetail{Run: r, PartitionList: parts})
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "run\t%d\n", r.ID)
	fmt.Fprintf(tw, "job\t%s %s\n", r.Job, r.RunKey)
	fmt.Fprintf(tw, "status\t%s (attempt %d)\n", r.Status, r.Attempt)
	if r.Redrives > 0 {
		fmt.Fprintf(tw, "redrives\t%d\n", r.Redrives)
	}
	if r.MaxFailures != nil {
		fmt.Fprintf(tw, "failure limit\t%d failed items per attempt (%d in this attempt)\n", *r.MaxFailures, r.AttemptFailed)
	}
	if r.Unit == checkpoint.UnitPages {
		fmt.Fprintf(tw, "progress\t%s in %d pages: %d loaded, %d rows written\n", records(r), r.Batches, r.Succeeded, r.Records)
		fmt.Fprintf(tw, "pages\tof %d records in %d partitions\n", r.BatchSize, r.Partitions)
		if r.BudgetMS != nil {
			fmt.Fprintf(tw, "time budget\t%s per attempt\n", time.Duration(*r.BudgetMS)*time.Millisecond)
		}
	} else {
		fmt.Fprintf(tw, "progress\t%d/%d (%s): %d succeeded, %d failed, %d records written\n",
			r.Processed, r.Total, percent(r.Processed, r.Total), r.Succeeded, r.Failed, r.Records)
		fmt.Fprintf(tw, "batches\tof %d in %d partitions\n", r.BatchSize, r.Partitions)
	}
	fmt.Fprintf(tw, "created\t%s\n", timestamp(&r.CreatedAt))
	fmt.Fprintf(tw, "started\t%s\n", timestamp(r.StartedAt))
	fmt.Fprintf(tw, "finished\t%s\n", timestamp(r.FinishedAt))
	if d := duration(r); d > 0 {
		fmt.Fprintf(tw, "duration\t%s\n", d.Round(time.Second))
	}
	if r.LastError != "" {
		fmt.Fprintf(tw, "last error\t%s\n", r.LastError)
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(tw, "warning\t%s\n", w)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout)
	tw = tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tSTATUS\tPROGRESS\tBATCHES\tLAST PROGRESS\tLAST ERROR")
	for _, p := range parts {
		done := p.Cursor - p.StartPos
		size := p.EndPos - p.StartPos
		if p.Status == checkpoint.PartitionRunning && p.EndPos >= 1<<62 {
			size = done // an open walk: its end is not known yet
		}
		fmt.Fprintf(tw, "%d\t%s\t%d/%d %s\t%d\t%s\t%s\n", p.Index, p.Status, done, size, percent(done, size),
			p.Seq, timestamp(&p.LastProgressAt), p.LastError)
	}
	return tw.Flush()
}

func (a *app) printFailures(run checkpoint.Run, items []checkpoint.Item) error {
	if a.jsonOut {
		if items == nil {
			items = []checkpoint.Item{}
		}
		return writeJSON(a.stdout, items)
	}
	what, column := "failed symbols", "SYMBOL"
	if run.Unit == checkpoint.UnitPages {
		what, column = "rejected records", "RECORD"
	}
	if len(items) == 0 {
		_, err := fmt.Fprintf(a.stdout, "run %d has no %s\n", run.ID, what)
		return err
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\tATTEMPTS\tERROR\n", column)
	for _, it := range items {
		fmt.Fprintf(tw, "%s\t%d\t%s\n", it.Key, it.Attempts, it.Error)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(a.stdout, "%d %s\n", len(items), what)
	return err
}
