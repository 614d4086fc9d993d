package testenv

import (
	"context"
	"sync"
	"testing"

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
