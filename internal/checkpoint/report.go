package checkpoint

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The duration report reads the history of runs and their attempts
// (run_attempts, which a trigger fills whenever an attempt ends) to tell,
// per job, how long runs take, how often they time out, and what time budget
// their history asks for (Suggest).

// ReportFilter selects the runs a duration report covers. Only runs with at
// least one ended attempt count: a run that never ran says nothing about
// durations.
type ReportFilter struct {
	// Job limits the report to one job; empty means every job.
	Job string
	// Since limits the report to runs created at or after it; zero means
	// every run.
	Since time.Time
	// Limit keeps the newest Limit runs of each job (after Since); 0 means
	// no limit.
	Limit int
}

// AttemptCounts counts a job's ended attempts by how they ended.
type AttemptCounts struct {
	Completed int64 `json:"completed"`
	Failed    int64 `json:"failed"`
	Cancelled int64 `json:"cancelled"`
	TimedOut  int64 `json:"timed_out"`
	// Paused counts attempts that ended with their run paused (and have
	// not resumed since: a resumed attempt is counted by how it ends).
	Paused int64 `json:"paused,omitempty"`
}

// JobDurations is one job's durations over the runs a report covers. The
// durations are in milliseconds; a percentile or maximum is nil when there
// is nothing to take it of.
type JobDurations struct {
	Job string `json:"job"`
	// Runs counts the runs with at least one ended attempt, Completed
	// those that are completed.
	Runs      int64 `json:"runs"`
	Completed int64 `json:"completed_runs"`
	// RunP50MS, RunP95MS and RunMaxMS are taken of the completed runs'
	// durations: each one's running time summed over its attempts, which is
	// the budget one attempt would need to complete the run (interpolated
	// percentiles, rounded to the millisecond).
	RunP50MS *int64 `json:"run_p50_ms"`
	RunP95MS *int64 `json:"run_p95_ms"`
	RunMaxMS *int64 `json:"run_max_ms"`
	// AttemptP50MS, AttemptP95MS and AttemptMaxMS are taken of every ended
	// attempt of the runs, however it ended (a timed-out one runs about its
	// budget).
	AttemptP50MS *int64        `json:"attempt_p50_ms"`
	AttemptP95MS *int64        `json:"attempt_p95_ms"`
	AttemptMaxMS *int64        `json:"attempt_max_ms"`
	Attempts     AttemptCounts `json:"attempts"`
	// TimedOutRuns counts the runs that timed out at least once, and
	// TimedOutStreak the newest runs in a row that did.
	TimedOutRuns   int64 `json:"timed_out_runs"`
	TimedOutStreak int64 `json:"timed_out_streak"`
	// LastRunID and LastStatus are the newest run's id and its status now.
	LastRunID  int64  `json:"last_run_id"`
	LastStatus Status `json:"last_status"`
	// RunBudgetMS is the time budget frozen in the newest run; nil for
	// none.
	RunBudgetMS *int64 `json:"run_budget_ms"`
}

// TimedOutShare returns the share of the runs that timed out at least once,
// from 0 to 1.
func (d JobDurations) TimedOutShare() float64 {
	if d.Runs == 0 {
		return 0
	}
	return float64(d.TimedOutRuns) / float64(d.Runs)
}

// DurationReport returns the durations of the jobs whose runs f selects,
// ordered by job.
func (s *Store) DurationReport(ctx context.Context, f ReportFilter) ([]JobDurations, error) {
	if f.Limit < 0 {
		return nil, fmt.Errorf("duration report: limit must be 0 (none) or more, got %d", f.Limit)
	}
	var since *time.Time
	if !f.Since.IsZero() {
		since = &f.Since
	}
	// rn numbers each job's runs newest first, so that the limit, the
	// newest run and the streak of timeouts are all read off it; the
	// attempts are aggregated apart, so that joining them does not repeat
	// the runs.
	rows, err := s.pool.Query(ctx, `
		WITH ranked AS (
			SELECT r.id, r.job, r.status, r.elapsed_ms, r.budget_ms,
				row_number() OVER (PARTITION BY r.job ORDER BY r.created_at DESC, r.id DESC) AS rn,
				EXISTS (SELECT 1 FROM run_attempts a WHERE a.run_id = r.id AND a.status = 'timed_out') AS timed_out
			FROM runs r
			WHERE ($1 = '' OR r.job = $1) AND ($2::timestamptz IS NULL OR r.created_at >= $2)
				AND EXISTS (SELECT 1 FROM run_attempts a WHERE a.run_id = r.id)
		), picked AS (
			SELECT * FROM ranked WHERE $3 = 0 OR rn <= $3
		), attempts AS (
			SELECT p.job,
				round(percentile_cont(0.5) WITHIN GROUP (ORDER BY a.elapsed_ms))::bigint AS p50,
				round(percentile_cont(0.95) WITHIN GROUP (ORDER BY a.elapsed_ms))::bigint AS p95,
				max(a.elapsed_ms) AS longest,
				count(*) FILTER (WHERE a.status = 'completed') AS completed,
				count(*) FILTER (WHERE a.status = 'failed') AS failed,
				count(*) FILTER (WHERE a.status = 'cancelled') AS cancelled,
				count(*) FILTER (WHERE a.status = 'timed_out') AS timed_out,
				count(*) FILTER (WHERE a.status = 'paused') AS paused
			FROM picked p JOIN run_attempts a ON a.run_id = p.id
			GROUP BY p.job
		)
		SELECT p.job, count(*), count(*) FILTER (WHERE p.status = 'completed'),
			round(percentile_cont(0.5) WITHIN GROUP (ORDER BY p.elapsed_ms) FILTER (WHERE p.status = 'completed'))::bigint,
			round(percentile_cont(0.95) WITHIN GROUP (ORDER BY p.elapsed_ms) FILTER (WHERE p.status = 'completed'))::bigint,
			max(p.elapsed_ms) FILTER (WHERE p.status = 'completed'),
			a.p50, a.p95, a.longest, a.completed, a.failed, a.cancelled, a.timed_out, a.paused,
			count(*) FILTER (WHERE p.timed_out),
			coalesce(min(p.rn) FILTER (WHERE NOT p.timed_out), count(*) + 1) - 1,
			min(p.id) FILTER (WHERE p.rn = 1), min(p.status) FILTER (WHERE p.rn = 1),
			min(p.budget_ms) FILTER (WHERE p.rn = 1)
		FROM picked p JOIN attempts a ON a.job = p.job
		GROUP BY p.job, a.p50, a.p95, a.longest, a.completed, a.failed, a.cancelled, a.timed_out, a.paused
		ORDER BY p.job`, f.Job, since, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("duration report: %w", err)
	}
	report, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (JobDurations, error) {
		var d JobDurations
		a := &d.Attempts
		err := row.Scan(&d.Job, &d.Runs, &d.Completed, &d.RunP50MS, &d.RunP95MS, &d.RunMaxMS,
			&d.AttemptP50MS, &d.AttemptP95MS, &d.AttemptMaxMS,
			&a.Completed, &a.Failed, &a.Cancelled, &a.TimedOut, &a.Paused,
			&d.TimedOutRuns, &d.TimedOutStreak, &d.LastRunID, &d.LastStatus, &d.RunBudgetMS)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("duration report: %w", err)
	}
	return report, nil
}

// The rules of Suggest.
const (
	// Headroom is what the suggested budget adds to the completed runs'
	// p95 duration: ×1.5, for a source that is slower on some days.
	Headroom = 1.5
	// TimeoutShare and MinTimedOutRuns: a job keeps timing out when at
	// least this share of its runs, and at least this many, timed out at
	// least once.
	TimeoutShare    = 0.5
	MinTimedOutRuns = 2
	// TimeoutStreak: a job also keeps timing out when its newest runs, this
	// many in a row, all timed out at least once.
	TimeoutStreak = 3
	// OversizeFactor and MinCompletedRuns: a budget is far above need when
	// it is at least this many times the suggestion, taken of at least this
	// many completed runs, none of which timed out.
	OversizeFactor   = 4
	MinCompletedRuns = 3
	// MaxBudget is the longest budget a job definition may set (its
	// timeout); a suggestion never goes beyond it.
	MaxBudget = 7 * 24 * time.Hour
)

// Flag says what is wrong with a job's time budget.
type Flag string

// The flags of Suggest.
const (
	// FlagTimingOut: the job's runs keep timing out.
	FlagTimingOut Flag = "timing_out"
	// FlagOversized: the budget is far above what the runs need.
	FlagOversized Flag = "oversized"
)

// Advice is what a job's history says about its time budget.
type Advice struct {
	// SuggestedMS is the suggested budget of one attempt, in milliseconds:
	// the completed runs' p95 duration × Headroom, rounded up to a whole
	// minute (at least one, at most MaxBudget). Nil when no run completed.
	SuggestedMS *int64 `json:"suggested_budget_ms"`
	// Flag is empty when nothing is wrong; Reason then is empty too.
	Flag   Flag   `json:"flag,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Suggest returns what d says about the time budget of its job, whose
// attempts now get budget (0 for none).
func Suggest(d JobDurations, budget time.Duration) Advice {
	var adv Advice
	var suggested time.Duration
	if d.RunP95MS != nil {
		minutes := math.Ceil(float64(*d.RunP95MS) * Headroom / float64(time.Minute/time.Millisecond))
		// Capped as a float, before it can overflow a Duration.
		suggested = time.Duration(min(max(minutes, 1), MaxBudget.Minutes())) * time.Minute
		ms := suggested.Milliseconds()
		adv.SuggestedMS = &ms
	}

	share := d.TimedOutShare()
	byShare := d.TimedOutRuns >= MinTimedOutRuns && share >= TimeoutShare
	byStreak := d.TimedOutStreak >= TimeoutStreak
	switch {
	case byShare || byStreak:
		adv.Flag = FlagTimingOut
		what := fmt.Sprintf("%d of %d runs timed out (%.0f%%)", d.TimedOutRuns, d.Runs, 100*share)
		if byStreak {
			what = fmt.Sprintf("the last %d runs all timed out", d.TimedOutStreak)
			if d.TimedOutStreak < d.TimedOutRuns {
				what += fmt.Sprintf(", %d of %d in all", d.TimedOutRuns, d.Runs)
			}
		}
		adv.Reason = what + "; " + timeoutAdvice(d, budget, suggested)
	case budget > 0 && suggested > 0 && d.Completed >= MinCompletedRuns && d.TimedOutRuns == 0 &&
		budget >= OversizeFactor*suggested:
		// A budget is the longest a stuck or crawling attempt holds its
		// run before it stops; far more than the runs need only delays that.
		adv.Flag = FlagOversized
		adv.Reason = fmt.Sprintf("the budget %s is %.0f× the suggested %s (completed runs' p95 %s): "+
			"an attempt that stalls runs that long before it times out",
			ShortDuration(budget), float64(budget)/float64(suggested), ShortDuration(suggested), ShortDuration(ms(*d.RunP95MS)))
	}
	return adv
}

// timeoutAdvice says what to do about a job that keeps timing out.
func timeoutAdvice(d JobDurations, budget, suggested time.Duration) string {
	switch {
	case suggested == 0:
		return "no run completed, so there is no duration to size a budget from: raise the budget, or look at the source's speed"
	case budget == 0:
		return fmt.Sprintf("its runs had budgets of their own; %s would let 95%% of completed runs finish in one attempt", ShortDuration(suggested))
	case budget < suggested:
		return fmt.Sprintf("raise the budget from %s to %s, which lets 95%% of completed runs finish in one attempt",
			ShortDuration(budget), ShortDuration(suggested))
	case d.RunBudgetMS != nil && ms(*d.RunBudgetMS) < budget:
		return fmt.Sprintf("the newest run had a budget of %s; the %s configured now covers the suggested %s",
			ShortDuration(ms(*d.RunBudgetMS)), ShortDuration(budget), ShortDuration(suggested))
	default:
		return fmt.Sprintf("the budget %s covers the suggested %s: the runs that time out are slower than the completed ones; look at the source's speed",
			ShortDuration(budget), ShortDuration(suggested))
	}
}

func ms(n int64) time.Duration { return time.Duration(n) * time.Millisecond }

// ShortDuration formats d for a report: milliseconds under a second, else
// rounded to the second without zero units at the end (1h, 1h30m, 2m5s, 45s).
func ShortDuration(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	s := d.Round(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
