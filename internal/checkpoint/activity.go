package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The reads of this file serve the runs dashboard: what a run's ledger
// committed lately (its rate), over time (its throughput chart), and the
// history of its attempts.

// Attempt is one ended attempt of a run, as run_attempts records it.
type Attempt struct {
	Attempt int `json:"attempt"`
	// Status is how the attempt ended: completed, failed, cancelled,
	// timed_out or paused.
	Status     Status    `json:"status"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	// ElapsedMS is the attempt's running time.
	ElapsedMS int64 `json:"elapsed_ms"`
	// Processed is the run's processed count when the attempt ended.
	Processed int64 `json:"processed"`
}

// Attempts returns the ended attempts of run id, in order; the attempt under
// way, if any, is not among them (it is recorded when it ends).
func (s *Store) Attempts(ctx context.Context, id int64) ([]Attempt, error) {
	rows, err := s.pool.Query(ctx, `SELECT attempt, status, started_at, finished_at, elapsed_ms, processed
		FROM run_attempts WHERE run_id = $1 ORDER BY attempt`, id)
	if err != nil {
		return nil, fmt.Errorf("read attempts of run %d: %w", id, err)
	}
	attempts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Attempt, error) {
		var a Attempt
		err := row.Scan(&a.Attempt, &a.Status, &a.StartedAt, &a.FinishedAt, &a.ElapsedMS, &a.Processed)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("read attempts of run %d: %w", id, err)
	}
	return attempts, nil
}

// Jobs returns the names of the jobs that have runs, in order.
func (s *Store) Jobs(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT job FROM runs ORDER BY job`)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	jobs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return jobs, nil
}

// Pace is what a run's ledger committed within a recent window of its
// current attempt: the source of the rate of a run under way.
type Pace struct {
	// Batches, Items and Records sum the batches committed in the window;
	// Items count the records received, for a run of pages.
	Batches int64 `json:"batches"`
	Items   int64 `json:"items"`
	Records int64 `json:"records"`
	// Window is the time the window spans up to now: the window asked
	// for, or less when the current attempt (or the run) started within it.
	Window time.Duration `json:"window"`
}

// Paces returns the pace of each of the runs ids over the last window, by
// run id, read with Postgres's clock; an unknown run is left out.
func (s *Store) Paces(ctx context.Context, ids []int64, window time.Duration) (map[int64]Pace, error) {
	if window <= 0 {
		return nil, fmt.Errorf("paces: window must be positive, got %s", window)
	}
	rows, err := s.pool.Query(ctx, `WITH w AS (
			SELECT r.id, clock_timestamp() AS now,
				greatest(clock_timestamp() - $2 * interval '1 millisecond',
					coalesce(r.attempt_started_at, r.started_at, r.created_at)) AS since
			FROM runs r WHERE r.id = ANY($1))
		SELECT w.id, count(l.run_id), coalesce(sum(l.items), 0), coalesce(sum(l.records), 0),
			greatest((extract(epoch FROM w.now - w.since) * 1000)::bigint, 0)
		FROM w LEFT JOIN batch_ledger l ON l.run_id = w.id AND l.committed_at > w.since
		GROUP BY w.id, w.now, w.since`, ids, window.Milliseconds())
	if err != nil {
		return nil, fmt.Errorf("read paces: %w", err)
	}
	paces := make(map[int64]Pace, len(ids))
	var id, windowMS int64
	var p Pace
	_, err = pgx.ForEachRow(rows, []any{&id, &p.Batches, &p.Items, &p.Records, &windowMS}, func() error {
		p.Window = time.Duration(windowMS) * time.Millisecond
		paces[id] = p
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read paces: %w", err)
	}
	return paces, nil
}

// Throughput is a run's batch ledger cut into equal spans of time: what the
// run committed when, from its first commit to its last (to now, while the
// run is active, so that a stall shows).
type Throughput struct {
	// Start is when the first bucket starts: the run's first commit; zero
	// when the run has committed nothing, and then there are no buckets.
	Start time.Time `json:"start"`
	// Width is the span of time of each bucket.
	Width time.Duration `json:"width"`
	// Buckets are in order, the empty ones included.
	Buckets []Bucket `json:"buckets"`
}

// Bucket is what the batches committed within one span of a Throughput did.
type Bucket struct {
	Batches int64 `json:"batches"`
	Items   int64 `json:"items"`
	Records int64 `json:"records"`
}

// bucketWidths are the widths Throughput picks from: round ones, so that a
// chart's axis reads well.
var bucketWidths = []time.Duration{
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// BucketWidth returns the width that cuts span into at most n buckets: the
// smallest round width (1s, 2s, 5s, 10s, ... 1h, ... 24h) that does, or
// whole days beyond.
func BucketWidth(span time.Duration, n int) time.Duration {
	n = max(n, 1)
	for _, w := range bucketWidths {
		if int64(span/w) < int64(n) {
			return w
		}
	}
	day := 24 * time.Hour
	return (span/time.Duration(n)/day + 1) * day
}

// Throughput returns the ledger of run id in at most n buckets of a round
// width (see BucketWidth), or an error wrapping ErrNotFound. It reads from
// one snapshot.
func (s *Store) Throughput(ctx context.Context, id int64, n int) (Throughput, error) {
	if n < 1 {
		return Throughput{}, fmt.Errorf("throughput of run %d: buckets must be at least 1, got %d", id, n)
	}
	var th Throughput
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) error {
			var lo, hi *time.Time
			err := tx.QueryRow(ctx, `SELECT min(l.committed_at),
					CASE WHEN r.status IN ('pending', 'running') THEN greatest(clock_timestamp(), max(l.committed_at))
						ELSE max(l.committed_at) END
				FROM runs r LEFT JOIN batch_ledger l ON l.run_id = r.id
				WHERE r.id = $1 GROUP BY r.id, r.status`, id).Scan(&lo, &hi)
			if errors.Is(err, pgx.ErrNoRows) {
				return notFound(id)
			}
			if err != nil {
				return fmt.Errorf("throughput of run %d: %w", id, err)
			}
			if lo == nil {
				return nil
			}
			th.Start = *lo
			span := max(hi.Sub(*lo), 0)
			th.Width = BucketWidth(span, n)
			th.Buckets = make([]Bucket, span/th.Width+1)
			rows, err := tx.Query(ctx, `SELECT floor(extract(epoch FROM committed_at - $2) * 1000 / $3)::bigint,
					count(*), sum(items), sum(records)
				FROM batch_ledger WHERE run_id = $1 GROUP BY 1 ORDER BY 1`, id, th.Start, th.Width.Milliseconds())
			if err != nil {
				return fmt.Errorf("throughput of run %d: %w", id, err)
			}
			var i int64
			var b Bucket
			_, err = pgx.ForEachRow(rows, []any{&i, &b.Batches, &b.Items, &b.Records}, func() error {
				i = min(max(i, 0), int64(len(th.Buckets)-1)) // the last commit falls on the edge
				th.Buckets[i] = b
				return nil
			})
			if err != nil {
				return fmt.Errorf("throughput of run %d: %w", id, err)
			}
			return nil
		})
	if err != nil {
		return Throughput{}, err
	}
	return th, nil
}
