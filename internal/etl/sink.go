package etl

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultTable is the table a job lands its records in when it names none.
const DefaultTable = "etl_records"

// execer runs a statement: a pool, a connection or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// beginner starts a transaction: a pool, a connection, or a transaction
// (a savepoint in it).
type beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// tableLockClass is the first key of the advisory locks that serialize the
// creation of job tables (the second is the table name's hash).
const tableLockClass = 7_000_001

// EnsureTable creates the job's own target table if it does not exist: a
// row per record key with its JSON, the run that loaded it last and when.
// The default table exists with the schema. Two starts that create the same
// table at once take turns: Postgres's CREATE TABLE IF NOT EXISTS does not
// wait for another one of the same name in flight, and fails on the
// catalog's unique index instead of finding the table.
func EnsureTable(ctx context.Context, db beginner, job Job) error {
	if job.Table == "" || job.Table == DefaultTable {
		return nil
	}
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		// Held to the end of the outermost transaction, so a second
		// creator waits until the first one's table is there to be found.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, tableLockClass, job.Table); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+pgx.Identifier{job.Table}.Sanitize()+` (
			record_key text PRIMARY KEY,
			payload    jsonb NOT NULL,
			run_id     bigint,
			loaded_at  timestamptz NOT NULL DEFAULT now())`)
		return err
	})
	if err != nil {
		return fmt.Errorf("job %s: create table %s: %w", job.Name, job.Table, err)
	}
	return nil
}

// Dedupe returns the records with each key once, the last of them (a page
// that repeats a key holds one record for it), and how many it dropped.
func Dedupe(recs []Record) ([]Record, int) {
	last := make(map[string]int, len(recs))
	for i, r := range recs {
		last[r.Key] = i
	}
	if len(last) == len(recs) {
		return recs, 0
	}
	out := make([]Record, 0, len(last))
	for i, r := range recs {
		if last[r.Key] == i {
			out = append(out, r)
		}
	}
	return out, len(recs) - len(out)
}

// WithKeyPrefix puts prefix, a run's key prefix (see Job.KeyPrefix), before
// the key of each of recs.
func WithKeyPrefix(recs []Record, prefix string) {
	if prefix == "" {
		return
	}
	for i := range recs {
		recs[i].Key = prefix + recs[i].Key
	}
}

// Upsert writes records, each key once (see Dedupe), to the job's table in
// one statement: a record that is there is updated, never duplicated. It
// returns the number of rows written.
func Upsert(ctx context.Context, db execer, job Job, runID int64, recs []Record) (int64, error) {
	if len(recs) == 0 {
		return 0, nil
	}
	sql, args := upsertStatement(job, runID, recs)
	tag, err := db.Exec(ctx, sql, args...)
	if err != nil {
		return 0, fmt.Errorf("upsert %d records of job %s: %w", len(recs), job.Name, err)
	}
	return tag.RowsAffected(), nil
}

// QueueUpsert queues Upsert's statement for recs into q, to run in the
// transaction q is sent in (see checkpoint.Batch.QueueData); its result
// must be every record written.
func QueueUpsert(q *pgx.Batch, job Job, runID int64, recs []Record) {
	if len(recs) == 0 {
		return
	}
	sql, args := upsertStatement(job, runID, recs)
	q.Queue(sql, args...).Exec(func(tag pgconn.CommandTag) error {
		if n := tag.RowsAffected(); n != int64(len(recs)) {
			return fmt.Errorf("upserted %d records of job %s, want %d", n, job.Name, len(recs))
		}
		return nil
	})
}

// upsertStatement returns the statement that lands recs, with its
// arguments.
func upsertStatement(job Job, runID int64, recs []Record) (string, []any) {
	// In the order of their keys: the partitions of a run write at once,
	// and two transactions that lock the same rows in the same order
	// cannot deadlock on them (a shifting source can put a key in two
	// partitions' pages, in any order).
	order := make([]int, len(recs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return strings.Compare(recs[a].Key, recs[b].Key) })
	keys := make([]string, len(recs))
	// The payloads go as they are, bytes to text, without a copy each.
	payloads := make([][]byte, len(recs))
	for i, j := range order {
		keys[i], payloads[i] = recs[j].Key, recs[j].Payload
	}
	if job.Table == "" || job.Table == DefaultTable {
		return `INSERT INTO etl_records (job, record_key, payload, run_id)
			SELECT $1, u.k, u.p::jsonb, $2 FROM unnest($3::text[], $4::text[]) AS u(k, p)
			ON CONFLICT (job, record_key) DO UPDATE
			SET payload = excluded.payload, run_id = excluded.run_id, loaded_at = now()`,
			[]any{job.Name, runID, keys, payloads}
	}
	return `INSERT INTO ` + pgx.Identifier{job.Table}.Sanitize() + ` (record_key, payload, run_id)
			SELECT u.k, u.p::jsonb, $1 FROM unnest($2::text[], $3::text[]) AS u(k, p)
			ON CONFLICT (record_key) DO UPDATE
			SET payload = excluded.payload, run_id = excluded.run_id, loaded_at = now()`,
		[]any{runID, keys, payloads}
}
