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

// WhileLockHeld runs code while a transaction on pool holds the advisory
// lock hashtext(name || '.' || schema) (how syncworker names its one-key
// locks, such as checkpoint.LockRunCreation's): hold takes the lock in the
// transaction and writes what it holds it for, code runs in a goroutine,
// and once code waits for the lock the transaction commits. It returns
// code's error. Code that finishes without waiting for the lock fails t at
// once, and code that does not reach it within 10 s fails t then: a test
// stands for a concurrent writer under way at the moment code checks.
func WhileLockHeld(t testing.TB, pool *pgxpool.Pool, name string, hold func(ctx context.Context, tx pgx.Tx) error, code func() error) error {
	t.Helper()
	ctx := t.Context()
	done := make(chan struct{})
	var codeErr error
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := hold(ctx, tx); err != nil {
			return err
		}
		go func() {
			defer close(done)
			codeErr = code()
		}()
		waitForLockWaiter(t, pool, name, done)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	<-done
	return codeErr
}

// waitForLockWaiter waits until a session waits for the advisory lock of
// name in pool's database and schema, and fails t when done closes first,
// or after 10 s.
func waitForLockWaiter(t testing.TB, pool *pgxpool.Pool, name string, done <-chan struct{}) {
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
