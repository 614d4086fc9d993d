package fault

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestClassOf(t *testing.T) {
	base := errors.New("boom")
	tests := []struct {
		name  string
		err   error
		class Class
		retry time.Duration
		ok    bool
	}{
		{"unclassified is transient", base, Transient, 0, false},
		{"item", Wrap(ItemPermanent, base), ItemPermanent, 0, false},
		{"fatal wrapped further", fmt.Errorf("batch: %w", Wrap(RunFatal, base)), RunFatal, 0, false},
		{"rate limited", Limited(base, 3*time.Second), RateLimited, 3 * time.Second, true},
		{"rate limited wrapped", fmt.Errorf("fetch: %w", Limited(base, time.Second)), RateLimited, time.Second, true},
		{"outermost class wins", Wrap(RunFatal, Wrap(ItemPermanent, base)), RunFatal, 0, false},
		{"context error", context.DeadlineExceeded, Transient, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c := ClassOf(tt.err); c != tt.class {
				t.Errorf("ClassOf = %s, want %s", c, tt.class)
			}
			d, ok := RetryAfter(tt.err)
			if d != tt.retry || ok != tt.ok {
				t.Errorf("RetryAfter = %s, %v; want %s, %v", d, ok, tt.retry, tt.ok)
			}
			if !errors.Is(tt.err, base) && tt.err != context.DeadlineExceeded {
				t.Errorf("the classified error does not wrap its cause")
			}
		})
	}
	if Wrap(Transient, nil) != nil {
		t.Error("Wrap(nil) is not nil")
	}
}

func TestIsShutdown(t *testing.T) {
	if !IsShutdown(fmt.Errorf("fetch: %w", context.Canceled)) {
		t.Error("a wrapped cancellation is not a shutdown")
	}
	if IsShutdown(context.DeadlineExceeded) || IsShutdown(errors.New("x")) {
		t.Error("a deadline or another error is a shutdown")
	}
}

func TestClassNames(t *testing.T) {
	for c, want := range map[Class]string{Transient: "transient", RateLimited: "rate_limited", ItemPermanent: "item_permanent", RunFatal: "run_fatal", Class(9): "class(9)"} {
		if c.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(c), c.String(), want)
		}
	}
}
