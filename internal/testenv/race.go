package testenv

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// WriteAtOnce runs each of writes in a transaction of its own on pool, all
// released at the same moment, rounds times, and fails t at the first
// error: writers that deadlock on each other's rows fail it (Postgres
// aborts one of them).
func WriteAtOnce(t testing.TB, pool *pgxpool.Pool, rounds int, writes ...func(ctx context.Context, tx pgx.Tx, round int) error) {
	t.Helper()
	ctx := context.Background()
	for round := range rounds {
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make([]error, len(writes))
		for i, write := range writes {
			wg.Go(func() {
				errs[i] = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					<-start
					return write(ctx, tx, round)
				})
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, writer %d: %v", round, i, err)
			}
		}
	}
}

// WaitForLockWaiter waits until a session waits for the advisory lock
// hashtext(name || '.' || schema) in pool's database and schema (how
// syncworker names its one-key locks, such as the run creation lock of
// checkpoint.LockRunCreation), and fails t when done closes first, or after
// 10 s: a test that holds the lock sees that the code under test reached it
// (and runs on only once the test lets it go), and code that no longer
// waits fails the test at once.
func WaitForLockWaiter(t testing.TB, pool *pgxpool.Pool, name string, done <-chan struct{}) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		var waiting bool
		if err := pool.QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
				AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND objsubid = 1
				AND objid = (hashtext($1 || '.' || current_schema())::bigint & 4294967295)::oid)`, name).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			return
		}
		select {
		case <-done:
			t.Fatalf("finished without waiting for lock %s", name)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing waited for lock %s within 10 s", name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
