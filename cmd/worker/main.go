// Command worker runs syncworker's batch tasks: `worker` serves the queue
// (the asynq server, the sweeper, which also prunes old runs, and the
// scheduler) until SIGINT or SIGTERM, and `worker
// migrate` applies the schema migrations to DATABASE_URL. Any number of
// workers may run against the same Redis and Postgres.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		stop()
		os.Exit(1)
	}
}
