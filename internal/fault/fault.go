// Package fault classifies the errors of a sync so that the worker never has to
// guess what to do with one: a transient error retries the batch, a rate-limited
// one waits the time the source asked for, an item-permanent one fails the item
// and lets the batch go on, and a run-fatal one fails the run at once.
package fault

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Class is the class of an error, which decides what happens to the batch.
type Class int

const (
	// Transient errors (5xx, connection reset, timeout) retry the batch with
	// backoff from an unchanged cursor. An unclassified error is transient.
	Transient Class = iota
	// RateLimited errors (429 with Retry-After) retry after the given delay
	// and are not counted as failures.
	RateLimited
	// ItemPermanent errors (unknown symbol, malformed row) fail one item; the
	// batch goes on.
	ItemPermanent
	// RunFatal errors (bad credentials, a bad job definition) fail the run at
	// once, without retries.
	RunFatal
)

// String returns the name of the class as used in logs and metrics.
func (c Class) String() string {
	switch c {
	case Transient:
		return "transient"
	case RateLimited:
		return "rate_limited"
	case ItemPermanent:
		return "item_permanent"
	case RunFatal:
		return "run_fatal"
	default:
		return fmt.Sprintf("class(%d)", int(c))
	}
}

// Error is an error with a class and, for rate-limited errors, the delay the
// source asked for.
type Error struct {
	Class Class
	// RetryAfter is the delay a rate-limited source asked for; zero otherwise.
	RetryAfter time.Duration
	Err        error
}

// Error returns the message of the wrapped error.
func (e *Error) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *Error) Unwrap() error { return e.Err }

// Wrap returns err classified as c. A nil err stays nil.
func Wrap(c Class, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Class: c, Err: err}
}

// Limited returns err classified as rate-limited with the delay the source asked for.
func Limited(err error, retryAfter time.Duration) error {
	return &Error{Class: RateLimited, RetryAfter: retryAfter, Err: err}
}

// ClassOf returns the class of err: the class of the outermost *Error in its
// chain, or Transient for an unclassified error (including context errors: a
// batch cut short by a deadline runs again).
func ClassOf(err error) Class {
	var e *Error
	if errors.As(err, &e) {
		return e.Class
	}
	return Transient
}

// RetryAfter returns the delay a rate-limited error asked for, and whether err
// is rate-limited at all.
func RetryAfter(err error) (time.Duration, bool) {
	var e *Error
	if errors.As(err, &e) && e.Class == RateLimited {
		return e.RetryAfter, true
	}
	return 0, false
}

// IsShutdown reports whether err is the cancellation of a context, which the
// worker treats as a shutdown: not a failure, the batch simply runs again.
func IsShutdown(err error) bool {
	return errors.Is(err, context.Canceled)
}
