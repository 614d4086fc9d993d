package etl

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/syncworker/syncworker/internal/testenv"
)

// upsertCopy stages a page's records through COPY into the session's own
// temporary table (emptied at every commit or rollback), then lands them with
// one INSERT ... SELECT ... ON CONFLICT that empties it as it reads: the
// alternative to Upsert's unnest arrays that BenchmarkUpsert measures. It
// writes etl_records only.
func upsertCopy(ctx context.Context, tx pgx.Tx, job Job, runID int64, recs []Record) (int64, error) {
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS etl_records_stage (k text, p text)
		ON COMMIT DELETE ROWS`); err != nil {
		return 0, err
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"pg_temp", "etl_records_stage"}, []string{"k", "p"},
		pgx.CopyFromSlice(len(recs), func(i int) ([]any, error) {
			return []any{recs[i].Key, string(recs[i].Payload)}, nil
		})); err != nil {
		return 0, err
	}
	tag, err := tx.Exec(ctx, `WITH s AS (DELETE FROM pg_temp.etl_records_stage RETURNING *)
		INSERT INTO etl_records (job, record_key, payload, run_id)
		SELECT $1, s.k, s.p::jsonb, $2 FROM s
		ON CONFLICT (job, record_key) DO UPDATE
		SET payload = excluded.payload, run_id = excluded.run_id, loaded_at = now()`, job.Name, runID)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// BenchmarkUpsert lands pages of 500 and 5,000 records of the simulator's
// shape in etl_records, one transaction per page, new records (new keys each
// op) and updates (the same keys again), through Upsert's unnest arrays and
// through COPY staging.
func BenchmarkUpsert(b *testing.B) {
	db := testenv.Postgres(b)
	ctx := b.Context()
	job := Job{Name: "bench"}
	paths := []struct {
		name string
		f    func(ctx context.Context, tx pgx.Tx, job Job, runID int64, recs []Record) (int64, error)
	}{
		{"unnest", func(ctx context.Context, tx pgx.Tx, job Job, runID int64, recs []Record) (int64, error) {
			return Upsert(ctx, tx, job, runID, recs)
		}},
		{"copy", upsertCopy},
	}
	for _, size := range []int{500, 5000} {
		for _, path := range paths {
			for _, mode := range []string{"new", "update"} {
				b.Run(fmt.Sprintf("%s/%s/%d", path.name, mode, size), func(b *testing.B) {
					if _, err := db.Pool.Exec(ctx, `TRUNCATE etl_records`); err != nil {
						b.Fatal(err)
					}
					page, err := NewSource(mustBenchJob(b), nil, nil).Parse(benchPage(b, size), nil)
					if err != nil {
						b.Fatal(err)
					}
					recs := page.Records
					keys := make([]string, size)
					for i := range keys {
						keys[i] = recs[i].Key
					}
					write := func() {
						err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
							n, err := path.f(ctx, tx, job, 1, recs)
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
						write()
					}
					b.ReportAllocs()
					for i := 0; b.Loop(); i++ {
						if mode == "new" {
							for j := range recs {
								recs[j].Key = fmt.Sprintf("%s-%d", keys[j], i)
							}
						}
						write()
					}
					b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "rows/s")
				})
			}
		}
	}
}
