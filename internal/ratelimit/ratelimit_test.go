package ratelimit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/testenv"
)

// The limiter holds a rate across every process that shares its Redis: two
// limiters on one key together stay within it.
func TestRedisLimiterIsShared(t *testing.T) {
	r := testenv.NewRedis(t)
	const perSecond, waits = 20, 60
	a := NewRedisLimiter(r.Client, "test:limit", perSecond)
	b := NewRedisLimiter(r.Client, "test:limit", perSecond)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range waits {
		l := a
		if i%2 == 1 {
			l = b
		}
		wg.Go(func() {
			if err := l.Wait(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// A burst of perSecond, then perSecond a second: 60 waits need at least
	// (60-20)/20 = 2 s. A lower bound, so a slow machine cannot fail it.
	if el, min := time.Since(start), time.Duration(waits-perSecond)*time.Second/perSecond; el < min-100*time.Millisecond {
		t.Errorf("%d waits at %d/s took %s, want at least %s", waits, perSecond, el, min)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait on a cancelled context = %v", err)
	}
}
