// Command sourcesim serves the simulated quotes provider of package simulator,
// with its paged records API, with faults injected as configured, for the
// demo, the tests and docker-compose.
//
// Usage:
//
//	sourcesim [flags]                        serve the quotes and records APIs
//	sourcesim universe -n 2000 --unknown 10  print a CSV of symbols
//
// Every flag of the server can also be set by the environment variable
// SOURCESIM_<FLAG>, the flag's name in upper case with dashes as underscores
// (for example SOURCESIM_ERROR_RATE for --error-rate). A flag given on the
// command line wins over its environment variable.
package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/syncworker/syncworker/internal/simulator"
)

// envPrefix starts the environment variable of every server flag.
const envPrefix = "SOURCESIM_"

// shutdownGrace is how long in-flight requests may go on after a shutdown
// signal before their delays are cut short and their connections closed.
const shutdownGrace = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sourcesim:", err)
		os.Exit(1)
	}
}

// run runs sourcesim with the command-line arguments args (without the program
// name) until ctx is done.
func run(ctx context.Context, args []string) error {
	a := &app{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	return a.execute(ctx, args)
}

// app holds what the commands need from the outside world, so that tests can
// replace it.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	// listening, when set, is called with the server's address once it
	// accepts connections.
	listening func(net.Addr)
}

// execute parses args and runs the chosen command.
func (a *app) execute(ctx context.Context, args []string) error {
	cmd := a.rootCommand()
	cmd.SetArgs(args)
	return cmd.ExecuteContext(ctx)
}

// rootCommand returns the sourcesim command, which serves the simulator.
func (a *app) rootCommand() *cobra.Command {
	var (
		addr string
		cfg  simulator.Config
	)
	root := &cobra.Command{
		Use:   "sourcesim",
		Short: "Serve a simulated quotes provider with injected faults",
		Long: `sourcesim serves GET /v1/quotes/{SYMBOL}?date=YYYY-MM-DD with deterministic
prices, plus /healthz and /stats, and injects latency, errors, rate limiting,
slow and garbage answers at the configured rates.

It also serves --records deterministic records, paged in three styles, with
the same faults (sizes 1..1000, default 100):

  GET /v1/records?skip=S&take=T           {"items":[...],"total":N}
  GET /v1/records-paged?page=P&size=Z     {"items":[...],"total":N,"page":P}
  GET /v1/records-cursor?cursor=C&limit=L {"items":[...],"next":"<token>"}

An item is {"id":"r000042","name":"...","value":123,"updated":"YYYY-MM-DD"};
"next" is absent on the last page; invalid parameters are answered 400. With
--drift N, every page request after the first N inserts a record at the front.

Every flag can also be set by the environment variable SOURCESIM_<FLAG>, for
example SOURCESIM_ERROR_RATE=0.1; a flag on the command line wins.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fromEnv, err := applyEnv(cmd.Flags(), a.getenv)
			if err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				if len(fromEnv) > 0 {
					return fmt.Errorf("invalid configuration (from the flags and %s): %w", strings.Join(fromEnv, ", "), err)
				}
				return fmt.Errorf("invalid configuration: %w", err)
			}
			return a.serve(cmd.Context(), addr, cfg)
		},
	}
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)

	f := root.Flags()
	f.StringVar(&addr, "addr", ":8090", "address to listen on")
	f.DurationVar(&cfg.Latency, "latency", 0, "latency added to every request")
	f.DurationVar(&cfg.Jitter, "jitter", 0, "uniformly random extra latency in [0, jitter)")
	f.Float64Var(&cfg.ErrorRate, "error-rate", 0, "fraction of requests answered 500, 502 or 503")
	f.Float64Var(&cfg.RateLimitedRate, "rate-limited-rate", 0, "fraction of requests answered 429 with Retry-After = --retry-after")
	f.DurationVar(&cfg.RetryAfter, "retry-after", time.Second, "Retry-After of injected 429s (rounded up to whole seconds, at least 1s)")
	f.IntVar(&cfg.RateLimit, "rate-limit", 0, "requests per second accepted (token bucket), excess answered 429; 0 = unlimited")
	f.Float64Var(&cfg.SlowRate, "slow-rate", 0, "fraction of requests answered only after --slow-delay")
	f.DurationVar(&cfg.SlowDelay, "slow-delay", 30*time.Second, "extra delay of slow requests")
	f.Float64Var(&cfg.GarbageRate, "garbage-rate", 0, "fraction of requests answered 200 with an unreadable body")
	f.Float64Var(&cfg.UnknownRate, "unknown-rate", 0, "fraction of symbols that are unknown (404), chosen by a hash of the symbol")
	f.StringVar(&cfg.APIKey, "api-key", "", "API key required as 'Authorization: Bearer <key>'; empty = none")
	f.Int64Var(&cfg.Seed, "seed", 0, "seed of the fault dice; 0 = time-based")
	f.IntVar(&cfg.Records, "records", simulator.DefaultRecords, fmt.Sprintf("number of records of the paged records API, at most %d; 0 = %d", simulator.MaxRecords, simulator.DefaultRecords))
	f.Int64Var(&cfg.Drift, "drift", 0, "when > 0, every page request after the first `N` inserts a record at the front of the dataset; 0 = fixed dataset")

	root.AddCommand(a.universeCommand())
	return root
}

// universeCommand returns the universe command, which prints a CSV of symbols.
func (a *app) universeCommand() *cobra.Command {
	var n, unknown int
	cmd := &cobra.Command{
		Use:   "universe",
		Short: "Print a CSV of simulated symbols: symbol,name,exchange",
		Long: `universe prints a CSV with the header symbol,name,exchange and one row per
symbol: n symbols the simulator knows ("AAA", "AAB", ...) and --unknown symbols
it never knows ("XX0001", ...), sorted.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if n < 0 {
				return fmt.Errorf("--count (-n) must not be negative, got %d", n)
			}
			if unknown < 0 {
				return fmt.Errorf("--unknown must not be negative, got %d", unknown)
			}
			return writeUniverse(a.stdout, simulator.Universe(n, unknown))
		},
	}
	cmd.Flags().IntVarP(&n, "count", "n", 100, "number of known symbols")
	cmd.Flags().IntVar(&unknown, "unknown", 0, "number of unknown symbols (starting with XX)")
	return cmd
}

// writeUniverse writes symbols to w as a CSV of symbol, name and exchange.
func writeUniverse(w io.Writer, symbols []string) error {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"symbol", "name", "exchange"}); err != nil {
		return fmt.Errorf("write universe: %w", err)
	}
	for _, s := range symbols {
		if err := cw.Write([]string{s, "Simulated " + s + " Inc", "SIM"}); err != nil {
			return fmt.Errorf("write universe: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write universe: %w", err)
	}
	return nil
}

// applyEnv sets every flag of fs that was not given on the command line from
// its environment variable, when that is set and not empty. It returns the
// names of the variables it used.
func applyEnv(fs *pflag.FlagSet, getenv func(string) string) ([]string, error) {
	var (
		used []string
		errs []error
	)
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" {
			return
		}
		name := envName(f.Name)
		v := getenv(name)
		if v == "" {
			return
		}
		if err := f.Value.Set(v); err != nil {
			errs = append(errs, fmt.Errorf("invalid %s=%q (--%s): %w", name, v, f.Name, err))
			return
		}
		f.Changed = true
		used = append(used, name)
	})
	return used, errors.Join(errs...)
}

// envName returns the environment variable of a flag: "error-rate" becomes
// SOURCESIM_ERROR_RATE.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// serve serves the simulator on addr until ctx is done, then shuts down
// gracefully.
func (a *app) serve(ctx context.Context, addr string, cfg simulator.Config) error {
	logger := slog.New(slog.NewTextHandler(a.stderr, nil))
	ln, err := new(net.ListenConfig).Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	sim := simulator.New(cfg)
	// Requests outlive ctx for a grace period; cancelRequests cuts their
	// delays short when that is over.
	reqCtx, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRequests()
	srv := &http.Server{
		Handler:           sim,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return reqCtx },
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}

	logger.Info("sourcesim listening", "addr", ln.Addr().String(), configAttrs(cfg))
	if a.listening != nil {
		a.listening(ln.Addr())
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	logger.Info("sourcesim shutting down", "grace", shutdownGrace)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("sourcesim grace period over; closing open connections", "error", err)
		cancelRequests()
		if err := srv.Close(); err != nil {
			return fmt.Errorf("close server: %w", err)
		}
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	}
	st := sim.Stats()
	logger.Info("sourcesim stopped",
		"requests", st.Requests, "ok", st.OK, "not_found", st.NotFound,
		"bad_request", st.BadRequest, "unauthorized", st.Unauthorized,
		"rate_limited", st.RateLimited, "throttled", st.Throttled,
		"server_errors", st.ServerErrors, "slow", st.Slow, "garbage", st.Garbage,
		"pages", st.Pages)
	return nil
}

// configAttrs returns cfg as a log group, without the API key itself.
func configAttrs(cfg simulator.Config) slog.Attr {
	return slog.Group("config",
		"latency", cfg.Latency,
		"jitter", cfg.Jitter,
		"error_rate", cfg.ErrorRate,
		"rate_limited_rate", cfg.RateLimitedRate,
		"retry_after", cfg.RetryAfter,
		"rate_limit", cfg.RateLimit,
		"slow_rate", cfg.SlowRate,
		"slow_delay", cfg.SlowDelay,
		"garbage_rate", cfg.GarbageRate,
		"unknown_rate", cfg.UnknownRate,
		"api_key_set", cfg.APIKey != "",
		"seed", cfg.Seed,
		"records", cfg.Records,
		"drift", cfg.Drift,
	)
}
