package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/syncworker/syncworker/internal/checkpoint"
)

// The baseline is the physical limit the system is measured against: a bulk
// upsert of price rows into stock_prices through COPY into a temporary
// staging table and one INSERT ... ON CONFLICT DO UPDATE, one transaction per
// batch, on one connection, with no queue and no source. Its SQL is here,
// not in package stocks, because it is the yardstick, not the system's path.

// stagingDDL creates the session's staging table, emptied at every commit.
const stagingDDL = `CREATE TEMP TABLE IF NOT EXISTS bench_price_staging (
	symbol text, trade_date date, open numeric, high numeric, low numeric, close numeric, volume bigint
) ON COMMIT DELETE ROWS`

// mergeSQL moves the staging rows into stock_prices.
const mergeSQL = `INSERT INTO stock_prices (symbol, trade_date, open, high, low, close, volume, run_id)
	SELECT symbol, trade_date, open, high, low, close, volume, $1 FROM bench_price_staging
	ON CONFLICT (symbol, trade_date) DO UPDATE SET
		open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
		volume = EXCLUDED.volume, run_id = EXCLUDED.run_id, updated_at = now()`

// priceRows returns the rows [from, to) of a pass: symbol "B" and the
// index, the trading date day, and prices that differ by version, so that an
// update pass changes every row.
func priceRows(from, to int, day time.Time, version int) [][]any {
	rows := make([][]any, 0, to-from)
	for i := from; i < to; i++ {
		p := float64(i%1000) + float64(version)/100
		rows = append(rows, []any{"B" + strconv.Itoa(i), day, p + 1, p + 2, p, p + 1.5, int64(i + version)})
	}
	return rows
}

// upsertBatch writes rows within tx through the staging table.
func upsertBatch(ctx context.Context, tx pgx.Tx, runID int64, rows [][]any) error {
	if err := stage(ctx, tx, rows); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, mergeSQL, runID); err != nil {
		return fmt.Errorf("merge %d staged rows: %w", len(rows), err)
	}
	return nil
}

// stage copies rows into the staging table within tx.
func stage(ctx context.Context, tx pgx.Tx, rows [][]any) error {
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"bench_price_staging"},
		[]string{"symbol", "trade_date", "open", "high", "low", "close", "volume"}, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("copy %d rows into the staging table: %w", len(rows), err)
	}
	return nil
}

// openPool opens a pool on dbURL whose every connection has the staging
// table (created when it connects, so that no timed transaction does).
func openPool(ctx context.Context, dbURL string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("database url: %w", err)
	}
	cfg.MaxConns = 8
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, stagingDDL)
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	return pool, nil
}

// baseline times the upsert of n rows in transactions of batch rows on
// conns connections at once, each taking every conns-th batch: version 0 of
// day inserts them, any later version updates them.
func baseline(ctx context.Context, pool *pgxpool.Pool, n, batch, conns int, day time.Time, version int) (time.Duration, error) {
	g, ctx := errgroup.WithContext(ctx)
	start := time.Now()
	for c := range conns {
		g.Go(func() error {
			conn, err := pool.Acquire(ctx)
			if err != nil {
				return fmt.Errorf("baseline: %w", err)
			}
			defer conn.Release()
			for from := c * batch; from < n; from += conns * batch {
				rows := priceRows(from, min(from+batch, n), day, version)
				if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return upsertBatch(ctx, tx, 0, rows) }); err != nil {
					return fmt.Errorf("baseline: %w", err)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// checkpointed times the same upsert of n new rows of day, each batch
// written inside checkpoint.Store.Commit of a run of pages (one page per
// batch, one partition) under a lease: the checkpoint transaction the system
// commits every batch with, without the queue or a source. The COPY runs
// before the checkpoint and the merge is sent with it in one round trip, as
// the system sends its own data statements. Each
// checkpointed batch is paired with a bare one (new rows of the day
// before), timed alone right before or after it (each in half the pairs),
// so that both see the same load of a shared machine: ckpt are the
// checkpointed batches' times, bare the bare ones', pair by pair.
func checkpointed(ctx context.Context, pool *pgxpool.Pool, n, batch int, day time.Time) (ckpt, bare []time.Duration, err error) {
	store := checkpoint.New(pool)
	pages := int64((n + batch - 1) / batch)
	run, _, err := store.CreateRun(ctx, checkpoint.NewRun{Job: "bench-checkpoint", RunKey: day.Format(time.DateOnly),
		BatchSize: batch, Partitions: 1, Unit: checkpoint.UnitPages, Pages: pages, Total: int64(n)})
	if err != nil {
		return nil, nil, fmt.Errorf("checkpointed: %w", err)
	}
	if err := store.MarkRunning(ctx, run.ID); err != nil {
		return nil, nil, fmt.Errorf("checkpointed: %w", err)
	}
	parts, err := store.Partitions(ctx, run.ID)
	if err != nil || len(parts) != 1 {
		return nil, nil, fmt.Errorf("checkpointed: partitions of run %d: %d, %v", run.ID, len(parts), err)
	}
	const owner, ttl = "bench", time.Minute
	p, err := store.Acquire(ctx, parts[0].Ref(), owner, ttl)
	if err != nil {
		return nil, nil, fmt.Errorf("checkpointed: %w", err)
	}
	for page := int64(0); page < pages; page++ {
		from := int(page) * batch
		other := priceRows(from, min(from+batch, n), day.AddDate(0, 0, -1), 0)
		rows := priceRows(from, min(from+batch, n), day, 0)
		bareFirst := page%2 == 0 // each goes first in half the pairs
		if bareFirst {
			d, err := bareBatch(ctx, pool, other)
			if err != nil {
				return nil, nil, fmt.Errorf("checkpointed: bare page %d: %w", page, err)
			}
			bare = append(bare, d)
		}
		start := time.Now()
		c, err := store.Commit(ctx, checkpoint.Batch{RunID: run.ID, Partition: 0, Attempt: p.Attempt, Seq: p.Seq,
			Epoch: p.Epoch, Owner: owner, LeaseTTL: ttl, From: p.Cursor, To: p.Cursor + 1,
			Counts:  &checkpoint.Counts{Processed: len(rows), Succeeded: len(rows)},
			Records: len(rows), TaskID: "bench", Worker: owner, StartedAt: time.Now(),
			// The merge goes with the checkpoint, as the system's own
			// writes do (etl.QueueUpsert, stocks.QueueUpsertPrices).
			QueueData: func(q *pgx.Batch) {
				q.Queue(mergeSQL, run.ID).Exec(func(tag pgconn.CommandTag) error {
					if n := tag.RowsAffected(); n != int64(len(rows)) {
						return fmt.Errorf("merged %d staged rows, want %d", n, len(rows))
					}
					return nil
				})
			}},
			func(ctx context.Context, tx pgx.Tx) error { return stage(ctx, tx, rows) })
		if err != nil {
			return nil, nil, fmt.Errorf("checkpointed: page %d: %w", page, err)
		}
		ckpt = append(ckpt, time.Since(start))
		p = c.Partition
		if !bareFirst {
			d, err := bareBatch(ctx, pool, other)
			if err != nil {
				return nil, nil, fmt.Errorf("checkpointed: bare page %d: %w", page, err)
			}
			bare = append(bare, d)
		}
	}
	return ckpt, bare, nil
}

// bareBatch times the upsert of rows in a transaction of its own.
func bareBatch(ctx context.Context, pool *pgxpool.Pool, rows [][]any) (time.Duration, error) {
	start := time.Now()
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return upsertBatch(ctx, tx, 0, rows) }); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}
