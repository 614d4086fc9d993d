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
	// A burst of perSecond/10 (2), then perSecond a second: 60 waits need
	// at least (60-2)/20 = 2.9 s. A lower bound, so a slow machine cannot
	// fail it.
	if el, min := time.Since(start), time.Duration(waits-perSecond/10)*time.Second/perSecond; el < min-100*time.Millisecond {
		t.Errorf("%d waits at %d/s took %s, want at least %s", waits, perSecond, el, min)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait on a cancelled context = %v", err)
	}
}

// waitLog records a limiter's waits.
type waitLog struct {
	mu    sync.Mutex
	waits int
	total time.Duration
}

func (w *waitLog) Waited(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.waits++
	w.total += d
}

// A limiter reports each request that had to wait, and for how long: past
// the burst, one request after the other spends its time waiting.
func TestRedisLimiterReportsItsWaits(t *testing.T) {
	r := testenv.NewRedis(t)
	const perSecond, requests = 5, 10
	var log waitLog
	l := NewRedisLimiter(r.Client, "test:waits", perSecond).WithMetrics(&log)
	start := time.Now()
	for range requests {
		if err := l.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	// The burst of 1 passes at once, the other 9 wait 200 ms each: 1.8 s.
	if elapsed < 1600*time.Millisecond {
		t.Fatalf("%d requests at %d/s took %s; the limit did not hold", requests, perSecond, elapsed)
	}
	if log.waits < 1 || log.waits > requests-1 {
		t.Errorf("%d requests waited, want 1 to %d (those past the burst)", log.waits, requests-1)
	}
	if log.total > elapsed || log.total < elapsed-300*time.Millisecond {
		t.Errorf("waited %s in all over %s of one request after another; want nearly all of it", log.total, elapsed)
	}
}
