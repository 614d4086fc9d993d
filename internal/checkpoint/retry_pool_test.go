package checkpoint

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Concurrent retries of one run on a small pool do not wait on each other's
// connections: the holder of the run's row lock reads through its own
// transaction.
func TestConcurrentRetriesOnSmallPool(t *testing.T) {
	e := setup(t)
	a := e.create(t, "A", 4, 2, 1)
	e.age(t, a.ID, StatusFailed, 0)
	cfg := e.pool.Config().Copy()
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store := New(pool)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() { _, _, errs[i] = store.Retry(ctx, a.ID) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("two retries on a pool of 2 waited out their deadline: %v", errs)
	}
}
