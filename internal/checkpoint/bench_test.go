package checkpoint

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/syncworker/syncworker/internal/testenv"
)

// benchBatches is the number of batches of a benchmark's run; a new run
// starts, off the clock, when one is done.
const benchBatches = 100

// BenchmarkCommit commits batches of 500, the default batch size, of a run
// of items (500 item outcomes each, as a daily sync commits) and of a run of
// pages (counters only, as an ETL run commits), without data and with 500
// rows written through the WriteFunc. The difference between the two is what
// checkpointing costs a batch on top of its data.
func BenchmarkCommit(b *testing.B) {
	db := testenv.Postgres(b)
	ctx := b.Context()
	store := New(db.Pool)
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE bench_data (run_id bigint, pos bigint, payload text,
		PRIMARY KEY (run_id, pos))`); err != nil {
		b.Fatal(err)
	}
	const size = 500
	payloads := make([]string, size)
	for i := range payloads {
		payloads[i] = fmt.Sprintf(`{"id":"r%06d","name":"Item abc","value":%d}`, i, i*7)
	}
	// write lands size rows of the batch's run, as a job's sink does.
	write := func(runID int64, from int64) WriteFunc {
		pos := make([]int64, size)
		for i := range pos {
			pos[i] = from*size + int64(i)
		}
		return func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO bench_data (run_id, pos, payload)
				SELECT $1, u.pos, u.payload FROM unnest($2::bigint[], $3::text[]) AS u(pos, payload)`,
				runID, pos, payloads)
			return err
		}
	}
	runs := 0
	for _, unit := range []Unit{UnitItems, UnitPages} {
		for _, data := range []bool{false, true} {
			name := fmt.Sprintf("%s/nodata", unit)
			if data {
				name = fmt.Sprintf("%s/data", unit)
			}
			b.Run(name, func(b *testing.B) {
				var run Run
				var p Partition
				fresh := func() {
					runs++
					spec := NewRun{Job: "bench", RunKey: fmt.Sprintf("bench-%d", runs), Params: map[string]int{"n": runs},
						BatchSize: size, Partitions: 1, Unit: unit}
					if unit == UnitPages {
						spec.Pages, spec.Total = benchBatches, benchBatches*size
					} else {
						spec.Keys = make([]string, benchBatches*size)
						for i := range spec.Keys {
							spec.Keys[i] = fmt.Sprintf("K%06d", i)
						}
					}
					var err error
					if run, _, err = store.CreateRun(ctx, spec); err != nil {
						b.Fatal(err)
					}
					_, p, err = store.Load(ctx, run.ID, 0)
					if err != nil {
						b.Fatal(err)
					}
					if p, err = store.Acquire(ctx, p.Ref(), "bench#1", time.Minute); err != nil {
						b.Fatal(err)
					}
				}
				fresh()
				b.ReportAllocs()
				for b.Loop() {
					if p.Cursor >= p.EndPos {
						b.StopTimer()
						fresh()
						b.StartTimer()
					}
					batch := Batch{RunID: run.ID, Partition: p.Index, Attempt: p.Attempt, Seq: p.Seq,
						Epoch: p.Epoch, Owner: "bench#1", LeaseTTL: time.Minute, From: p.Cursor,
						TaskID: "bench", Worker: "bench", StartedAt: time.Now(), Records: size}
					if unit == UnitPages {
						batch.To = p.Cursor + 1
						batch.Counts = &Counts{Processed: size, Succeeded: size}
					} else {
						batch.To = p.Cursor + size
						batch.Outcomes = make([]Outcome, size)
						for i := range batch.Outcomes {
							batch.Outcomes[i] = Outcome{Pos: p.Cursor + int64(i), OK: true, Attempts: 1}
						}
					}
					var w WriteFunc
					if data {
						w = write(run.ID, p.Seq)
					}
					res, err := store.Commit(ctx, batch, w)
					if err != nil {
						b.Fatal(err)
					}
					p = res.Partition
				}
				b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "rows/s")
			})
		}
	}
}
