// Command enqueue is syncworker's operator CLI: it starts the daily sync
// (optionally waiting for it with a progress bar), shows runs and their
// failures, retries and cancels runs, and imports the stock universe.
//
// Exit codes: 0 success (with --wait: the run completed), 1 an error or a
// failed or cancelled run, 2 the run was still running when --timeout
// elapsed (nothing is lost; come back later).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
