package tasks

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/fault"
)

// Enqueuer puts batch tasks on the queue, idempotently.
type Enqueuer struct {
	rdb      redis.UniversalClient
	client   atomic.Pointer[asynq.Client]
	maxRetry int
	timeout  time.Duration
}

// NewEnqueuer returns an Enqueuer on rdb whose tasks are retried up to
// maxRetry times and each run at most timeout.
func NewEnqueuer(rdb redis.UniversalClient, maxRetry int, timeout time.Duration) *Enqueuer {
	e := &Enqueuer{rdb: rdb, maxRetry: maxRetry, timeout: timeout}
	e.client.Store(asynq.NewClientFromRedisClient(rdb))
	return e
}

// Republish makes the next enqueue register its queue in Redis again. An
// asynq client registers a queue once and remembers that it did; after Redis
// lost its data the queue's tasks are still processed, but the inspector
// (and asynqmon) see no queue until a client registers it again.
func (e *Enqueuer) Republish() {
	e.client.Store(asynq.NewClientFromRedisClient(e.rdb))
}

// Enqueue puts the task of p on the queue. A task with the same ID that is
// already there (asynq.ErrTaskIDConflict) is the same task: Enqueue then
// reports created false and no error.
func (e *Enqueuer) Enqueue(ctx context.Context, p Payload) (created bool, err error) {
	task := asynq.NewTask(TypeBatch, p.Encode())
	_, err = e.client.Load().EnqueueContext(ctx, task,
		asynq.Queue(Queue),
		asynq.TaskID(p.TaskID()),
		asynq.MaxRetry(e.maxRetry),
		asynq.Timeout(e.timeout),
	)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("enqueue task %s: %w", p.TaskID(), err)
	}
	return true, nil
}

// ChainPayload returns the payload of the task that owns a partition's chain now.
func ChainPayload(p checkpoint.Partition) Payload {
	return Payload{Run: p.RunID, Partition: p.Index, Attempt: p.Attempt, Epoch: p.Epoch, Seq: p.TaskSeq}
}

// RetryDelay is the asynq RetryDelayFunc of batch tasks: a rate-limited
// batch waits what the source asked for, a batch stopped by a shutdown runs
// again at once elsewhere, and any other failure backs off exponentially
// from one second up to maxBackoff, with jitter.
func RetryDelay(maxBackoff time.Duration) asynq.RetryDelayFunc {
	return func(n int, err error, _ *asynq.Task) time.Duration {
		if d, ok := fault.RetryAfter(err); ok {
			d = max(d, time.Second)
			return d + rand.N(d/10)
		}
		if fault.IsShutdown(err) {
			return 500 * time.Millisecond
		}
		d := min(time.Second<<min(n, 30), maxBackoff)
		return d/2 + rand.N(d/2+1)
	}
}

// ServerConfig returns the asynq server configuration of a worker that runs
// batch tasks with the given settings; errorHandler and logger may be nil.
// Its LogLevel is warn; a worker sets it from log.level.
func ServerConfig(w config.Worker, s config.Sync, errorHandler asynq.ErrorHandler, logger asynq.Logger) asynq.Config {
	cfg := asynq.Config{
		Concurrency:              w.Concurrency,
		Queues:                   map[string]int{Queue: 1},
		TaskCheckInterval:        w.TaskCheckInterval,
		DelayedTaskCheckInterval: w.DelayedTaskCheckInterval,
		RetryDelayFunc:           RetryDelay(s.RetryBackoffMax),
		IsFailure:                IsFailure,
		ShutdownTimeout:          w.ShutdownTimeout,
		ErrorHandler:             errorHandler,
		LogLevel:                 asynq.WarnLevel,
	}
	if logger != nil {
		cfg.Logger = logger
	}
	return cfg
}

// IsFailure is the asynq IsFailure func of batch tasks: waiting for a rate
// limit and stopping for a shutdown are not failures and do not use up a
// task's retries.
func IsFailure(err error) bool {
	if _, ok := fault.RetryAfter(err); ok {
		return false
	}
	return !fault.IsShutdown(err)
}
