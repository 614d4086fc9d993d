package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/syncworker/syncworker/internal/checkpoint"
)

// pollInterval is how often --wait reads the run.
const pollInterval = 500 * time.Millisecond

// follow reads the run until it ends or is paused, showing progress on stderr: a live bar
// on a terminal, else a line every w.interval. It returns the run as last
// read; the error carries exit code 2 when w.timeout elapsed or the wait was
// interrupted while the run goes on.
func (a *app) follow(ctx context.Context, run checkpoint.Run, w waitFlags) (checkpoint.Run, error) {
	var show progress
	if a.stderrIsTerminal() {
		show = newBar(a.stderr, run)
	} else {
		show = &lines{w: a.stderr, every: w.interval}
	}
	var deadline <-chan time.Time
	if w.timeout > 0 {
		t := time.NewTimer(w.timeout)
		defer t.Stop()
		deadline = t.C
	}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		show.update(run)
		if run.Status.Ended() || run.Status == checkpoint.StatusPaused {
			// A paused run waits for an operator, not for time.
			show.done(run)
			return run, nil
		}
		select {
		case <-ctx.Done():
			show.done(run)
			return run, &exitCodeError{code: exitRunning, err: fmt.Errorf(
				"stopped waiting; run %d goes on (%d/%d processed): check it with `enqueue status %d`",
				run.ID, run.Processed, run.Total, run.ID)}
		case <-deadline:
			show.done(run)
			return run, &exitCodeError{code: exitRunning, err: fmt.Errorf(
				"run %d is still %s after %s (%d/%d processed); it goes on: check it later with `enqueue status %d`",
				run.ID, run.Status, w.timeout, run.Processed, run.Total, run.ID)}
		case <-tick.C:
		}
		next, err := a.store.Get(ctx, run.ID)
		if err != nil {
			if ctx.Err() != nil {
				continue // the select above reports the interruption
			}
			show.done(run)
			return run, err
		}
		run = next
	}
}

// progress shows a run's progress while --wait follows it.
type progress interface {
	update(checkpoint.Run)
	done(checkpoint.Run)
}

// bar is a live progress bar with count, rate and ETA, for terminals.
type bar struct {
	w   io.Writer
	bar *progressbar.ProgressBar
}

func newBar(w io.Writer, run checkpoint.Run) *bar {
	total, unit := run.Total, "items"
	if run.Unit == checkpoint.UnitPages {
		unit = "records"
	}
	if total == 0 {
		total = -1 // an open walk: a spinner with the count
	}
	return &bar{w: w, bar: progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(fmt.Sprintf("run %d %s", run.ID, run.RunKey)),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString(unit),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetWidth(30),
		progressbar.OptionSetRenderBlankState(true),
	)}
}

func (b *bar) update(run checkpoint.Run) { _ = b.bar.Set64(run.Processed) }

func (b *bar) done(run checkpoint.Run) {
	_ = b.bar.Set64(run.Processed)
	_ = b.bar.Exit()
	fmt.Fprintln(b.w)
}

// lines prints a progress line every so often, for logs and pipes.
type lines struct {
	w         io.Writer
	every     time.Duration
	last      time.Time
	status    checkpoint.Status
	processed int64
	t0        time.Time
	p0        int64
	started   bool
}

func (l *lines) update(run checkpoint.Run) {
	now := time.Now()
	if !l.started {
		l.started, l.t0, l.p0 = true, now, run.Processed
	}
	if run.Status == l.status && now.Sub(l.last) < l.every {
		return
	}
	l.print(run, now)
}

// done prints the last state, unless it was just printed.
func (l *lines) done(run checkpoint.Run) {
	if run.Status != l.status || run.Processed != l.processed {
		l.print(run, time.Now())
	}
}

func (l *lines) print(run checkpoint.Run, now time.Time) {
	l.last, l.status, l.processed = now, run.Status, run.Processed
	line := fmt.Sprintf("run %d %s: %s %d/%d (%s), %d succeeded, %d failed",
		run.ID, run.RunKey, run.Status, run.Processed, run.Total, percent(run.Processed, run.Total),
		run.Succeeded, run.Failed)
	unit := "items"
	if run.Unit == checkpoint.UnitPages {
		unit = "records"
		line = fmt.Sprintf("run %d %s: %s %s in %d pages", run.ID, run.RunKey, run.Status, records(run), run.Batches)
	}
	if el := now.Sub(l.t0).Seconds(); el >= 1 && run.Processed > l.p0 {
		rate := float64(run.Processed-l.p0) / el
		line += fmt.Sprintf(", %.1f %s/s", rate, unit)
		if left := run.Total - run.Processed; left > 0 && !run.Status.Ended() {
			line += fmt.Sprintf(", eta %s", time.Duration(float64(left)/rate*float64(time.Second)).Round(time.Second))
		}
	}
	fmt.Fprintln(l.w, line)
}
