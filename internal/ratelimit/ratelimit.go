// Package ratelimit holds the request budgets of the sources, shared by every
// worker process through Redis.
package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// RedisLimiter is a rate limit shared by every process that uses the same
// Redis and key: the provider's budget holds across all workers, however
// many there are. It uses the GCRA of redis_rate.
type RedisLimiter struct {
	limiter *redis_rate.Limiter
	key     string
	limit   redis_rate.Limit
	metrics Metrics
}

// Metrics receive the waits of a limiter, for monitoring.
type Metrics interface {
	// Waited observes a request that waited d before it was let through
	// (or before its context ended).
	Waited(d time.Duration)
}

// NewRedisLimiter returns a limiter of perSecond requests per second under
// key, with a burst of a tenth of a second's worth (at least 1).
//
// The burst is small on purpose: a source that limits requests counts them
// as they arrive, a little later and less evenly than they were let
// through, so a burst of a full second's worth, on top of whatever the
// source's own bucket holds, earns 429s at the start of a run (measured:
// 6 of 2,006 requests at 500/s). A tenth of a second's worth absorbs the
// workers' timer jitter, so the rate is used in full, and stays far inside
// any bucket the source keeps.
func NewRedisLimiter(rdb redis.UniversalClient, key string, perSecond int) *RedisLimiter {
	limit := redis_rate.PerSecond(perSecond)
	limit.Burst = max(1, perSecond/10)
	return &RedisLimiter{
		limiter: redis_rate.NewLimiter(rdb),
		key:     key,
		limit:   limit,
	}
}

// WithMetrics makes l report its waits to m, and returns l.
func (l *RedisLimiter) WithMetrics(m Metrics) *RedisLimiter {
	l.metrics = m
	return l
}

// Wait blocks until one request may be made or ctx ends.
func (l *RedisLimiter) Wait(ctx context.Context) error {
	var start time.Time // set when the request has to wait
	defer func() {
		if l.metrics != nil && !start.IsZero() {
			l.metrics.Waited(time.Since(start))
		}
	}()
	for {
		res, err := l.limiter.Allow(ctx, l.key, l.limit)
		if err != nil {
			return fmt.Errorf("take from rate limit %s: %w", l.key, err)
		}
		if res.Allowed > 0 {
			return nil
		}
		if start.IsZero() {
			start = time.Now()
		}
		t := time.NewTimer(max(res.RetryAfter, time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
