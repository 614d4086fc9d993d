package etl

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/syncworker/syncworker/internal/testenv"
)

// Two transactions that land the same keys at once, given in opposite
// orders (two partitions of a run over a source that shifted, a stale batch
// beside the live one), both commit: Upsert writes in the order of the
// keys, so neither holds a row the other needs while it waits for one the
// other holds. Written in the order given, they deadlock nearly every time.
func TestUpsertsOfTheSameKeysDoNotDeadlock(t *testing.T) {
	db := testenv.Postgres(t)
	ctx := context.Background()
	job := Job{Name: "deadlock"}
	const n = 3000
	asc := make([]Record, n)
	for i := range asc {
		asc[i] = Record{Key: fmt.Sprintf("k%05d", i), Payload: []byte(fmt.Sprintf(`{"i":%d}`, i))}
	}
	desc := slices.Clone(asc)
	slices.Reverse(desc)
	write := func(recs []Record) func(ctx context.Context, tx pgx.Tx, round int) error {
		return func(ctx context.Context, tx pgx.Tx, round int) error {
			_, err := Upsert(ctx, tx, job, int64(round), recs)
			return err
		}
	}
	testenv.WriteAtOnce(t, db.Pool, 10, write(asc), write(desc))
	var rows int64
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM etl_records WHERE job = $1`, job.Name).Scan(&rows); err != nil || rows != n {
		t.Errorf("etl_records holds %d rows of the job (%v), want %d", rows, err, n)
	}
}

// Two starts that create the same job table at once both succeed: the
// second's CREATE TABLE IF NOT EXISTS waits for the first's and would fail
// on the catalog's unique index (SQLSTATE 23505) instead of finding the
// table.
func TestEnsureTableAtOnce(t *testing.T) {
	db := testenv.Postgres(t)
	ensure := func(ctx context.Context, tx pgx.Tx, round int) error {
		return EnsureTable(ctx, tx, Job{Name: "j", Table: fmt.Sprintf("records_%d", round)})
	}
	testenv.WriteAtOnce(t, db.Pool, 10, ensure, ensure, ensure)
}
