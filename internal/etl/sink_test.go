package etl

import (
	"context"
	"fmt"
	"slices"
	"strings"
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

// No job may land records in one of syncworker's own tables, whichever
// migration made it: the list the definitions are checked against holds
// every table of a migrated schema but etl_records, the jobs' default.
func TestOwnTablesAreRefused(t *testing.T) {
	db := testenv.Postgres(t)
	rows, err := db.Pool.Query(t.Context(), `SELECT table_name::text FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_name <> 'etl_records'`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(tables) < 10 {
		t.Fatalf("tables of a migrated schema = %v, %v", tables, err)
	}
	for _, table := range tables {
		yaml := "jobs:\n  - name: a\n    url: http://x/y\n    pagination: {style: offset}\n    items_path: items\n    key: id\n    table: " + table + "\n"
		if _, err := Parse([]byte(yaml), noEnv); err == nil || !strings.Contains(err.Error(), "one of syncworker's own tables") {
			t.Errorf("a job landing in %s = %v, want it refused", table, err)
		}
	}
}
