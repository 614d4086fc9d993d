package stocks

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/syncworker/syncworker/internal/testenv"
)

// upsertFunc writes a batch of prices within a transaction.
type upsertFunc func(ctx context.Context, tx pgx.Tx, runID int64, prices []Price) (int64, error)

// benchPrices returns n prices of distinct symbols on one day.
func benchPrices(n int) []Price {
	out := make([]Price, n)
	for i := range out {
		out[i] = Price{Symbol: fmt.Sprintf("S%05d", i), Date: "2000-01-01",
			Open: "123.45", High: "130.00", Low: "120.01", Close: "125.5", Volume: int64(1000 + i)}
	}
	return out
}

// BenchmarkUpsertPrices writes batches of 500 and 5,000 prices, one
// transaction per batch, of new rows (a new trading day each op) and of
// updates (the same rows again), through UpsertPrices's unnest-array
// statement and through two COPY-staging alternatives to it.
// rows/s is the figure to compare with the physical limit.
func BenchmarkUpsertPrices(b *testing.B) {
	db := testenv.Postgres(b)
	ctx := b.Context()
	paths := []struct {
		name string
		f    upsertFunc
	}{{"unnest", UpsertPrices}, {"copy", upsertPricesCopy}, {"copydrop", upsertPricesCopyDrop}}
	day := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, size := range []int{500, 5000} {
		for _, path := range paths {
			for _, mode := range []string{"new", "update"} {
				b.Run(fmt.Sprintf("%s/%s/%d", path.name, mode, size), func(b *testing.B) {
					// Each starts from an empty table, so that the order
					// they run in does not favour one.
					if _, err := db.Pool.Exec(ctx, `TRUNCATE stock_prices`); err != nil {
						b.Fatal(err)
					}
					prices := benchPrices(size)
					write := func() {
						err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
							n, err := path.f(ctx, tx, 1, prices)
							if err == nil && n != int64(size) {
								err = fmt.Errorf("wrote %d rows, want %d", n, size)
							}
							return err
						})
						if err != nil {
							b.Fatal(err)
						}
					}
					if mode == "update" {
						day = day.AddDate(0, 0, 1)
						for i := range prices {
							prices[i].Date = day.Format(time.DateOnly)
						}
						write()
					}
					b.ReportAllocs()
					for i := 0; b.Loop(); i++ {
						if mode == "new" {
							day = day.AddDate(0, 0, 1)
							d := day.Format(time.DateOnly)
							for j := range prices {
								prices[j].Date = d
							}
						} else {
							prices[0].Volume = int64(i) // a change, not the same row again
						}
						write()
					}
					b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "rows/s")
				})
			}
		}
	}
}

// upsertPricesCopyDrop stages through a temporary table created in each
// transaction and dropped at its commit: the alternative to UpsertPrices's
// per-session staging table, which the benchmark measures.
func upsertPricesCopyDrop(ctx context.Context, tx pgx.Tx, runID int64, prices []Price) (int64, error) {
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE stock_prices_drop (
			symbol text, trade_date text, open text, high text, low text, close text, volume bigint)
		ON COMMIT DROP`); err != nil {
		return 0, err
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"pg_temp", "stock_prices_drop"},
		[]string{"symbol", "trade_date", "open", "high", "low", "close", "volume"},
		pgx.CopyFromSlice(len(prices), func(i int) ([]any, error) {
			p := &prices[i]
			return []any{p.Symbol, p.Date, p.Open, p.High, p.Low, p.Close, p.Volume}, nil
		})); err != nil {
		return 0, err
	}
	tag, err := tx.Exec(ctx, `
		INSERT INTO stock_prices (symbol, trade_date, open, high, low, close, volume, run_id)
		SELECT s.symbol, s.trade_date::date, s.open::numeric, s.high::numeric, s.low::numeric,
			s.close::numeric, s.volume, $1
		FROM pg_temp.stock_prices_drop s
		ON CONFLICT (symbol, trade_date) DO UPDATE SET
			open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
			volume = EXCLUDED.volume, run_id = EXCLUDED.run_id, updated_at = now()`, runID)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// upsertPricesCopy stages a batch through COPY: the session's own
// temporary table, created the first time and emptied at every commit or
// rollback (ON COMMIT DELETE ROWS), then one INSERT ... SELECT ... ON
// CONFLICT that empties it as it reads. Measured against UpsertPrices's
// unnest-array statement it is slower at batch 500 and 1,000 and faster
// only from a few thousand rows on (see docs/benchmarks-micro.md), so
// UpsertPrices keeps the arrays and this stays as the comparison.
func upsertPricesCopy(ctx context.Context, tx pgx.Tx, runID int64, prices []Price) (int64, error) {
	if len(prices) == 0 {
		return 0, nil
	}
	n := len(prices)
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS stock_prices_stage (
			symbol text, trade_date text, open text, high text, low text, close text, volume bigint)
		ON COMMIT DELETE ROWS`); err != nil {
		return 0, fmt.Errorf("upsert %d prices: create staging table: %w", n, err)
	}
	copied, err := tx.CopyFrom(ctx, pgx.Identifier{"pg_temp", "stock_prices_stage"},
		[]string{"symbol", "trade_date", "open", "high", "low", "close", "volume"},
		pgx.CopyFromSlice(n, func(i int) ([]any, error) {
			p := &prices[i]
			return []any{p.Symbol, p.Date, p.Open, p.High, p.Low, p.Close, p.Volume}, nil
		}))
	if err != nil {
		return 0, fmt.Errorf("upsert %d prices: copy to staging table: %w", n, err)
	}
	if copied != int64(n) {
		return 0, fmt.Errorf("upsert %d prices: copied %d to the staging table", n, copied)
	}
	// Postgres parses the dates and decimals, as it did the array
	// elements: the values arrive as text, exactly as the provider wrote
	// them. The statement empties the staging table as it reads it, so that
	// a second batch in the same transaction starts from nothing; a DELETE
	// of the rows just copied is cheap, where TRUNCATE of a temporary table
	// swaps its file.
	tag, err := tx.Exec(ctx, `
		WITH s AS (DELETE FROM pg_temp.stock_prices_stage RETURNING *)
		INSERT INTO stock_prices (symbol, trade_date, open, high, low, close, volume, run_id)
		SELECT s.symbol, s.trade_date::date, s.open::numeric, s.high::numeric, s.low::numeric,
			s.close::numeric, s.volume, $1
		FROM s
		ON CONFLICT (symbol, trade_date) DO UPDATE SET
			open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
			volume = EXCLUDED.volume, run_id = EXCLUDED.run_id, updated_at = now()`, runID)
	if err != nil {
		return 0, fmt.Errorf("upsert %d prices: %w", n, err)
	}
	return tag.RowsAffected(), nil
}
