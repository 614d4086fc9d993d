package main

import (
	"context"

	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/worker"
)

// run serves tasks until ctx ends (SIGINT or SIGTERM).
func run(ctx context.Context, cfg config.Config) error {
	return worker.Run(ctx, cfg, worker.Options{})
}
