package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/syncworker/syncworker/internal/admin"
	"github.com/syncworker/syncworker/internal/config"
)

// listenAdmin opens the admin listener on cfg.Addr. An empty address means
// no admin HTTP, and so does an address another process holds: several
// workers on one host share the configuration, the first one serves the
// API, and the others warn and go on without it (every worker serves the
// same data). An address beyond loopback without a token stops start-up
// unless cfg.AllowPublic (config validation refuses it too; this holds for
// a configuration that was not validated), and so does any other error.
func listenAdmin(ctx context.Context, cfg config.HTTP, log *slog.Logger) (net.Listener, error) {
	addr := cfg.Addr
	if addr == "" {
		return nil, nil
	}
	if err := cfg.CheckExposure(); err != nil {
		return nil, err
	}
	if cfg.AdminToken == "" && !config.Loopback(addr) {
		log.Warn("admin HTTP serves beyond loopback without a token (http.allow_public): anyone who reaches it may use the runs API", "addr", addr)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		log.Warn("admin HTTP address in use (another worker on this host?); this worker serves no admin HTTP",
			"addr", addr, "error", err)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("http.addr: listen on %s: %w", addr, err)
	}
	return ln, nil
}

// adminReadHeaderTimeout bounds how long a client may take to send a
// request's headers, so that idle or slow clients cannot hold connections.
const adminReadHeaderTimeout = 10 * time.Second

// serveAdmin serves h on ln until ctx ends, then shuts down: it takes no
// new request and gives those under way up to timeout before it closes
// their connections. It returns once the server has stopped.
func serveAdmin(ctx context.Context, ln net.Listener, h http.Handler, timeout time.Duration, log *slog.Logger) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: adminReadHeaderTimeout,
		// A request keeps the worker's values but not its end, so that one
		// under way at shutdown can finish within the timeout.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("admin HTTP: requests still under way at the shutdown timeout; closing them", "timeout", timeout, "error", err)
			_ = srv.Close() // its error is the listener's, closed already by Shutdown
		}
	}()
	log.Info("admin HTTP serving the runs API", "addr", ln.Addr().String())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		log.Error("admin HTTP stopped serving; the worker goes on without it", "error", err)
	}
	<-stopped
}

// adminDeps are what the admin handler serves from; a nil handler is a
// route not served (the worker has no metrics yet).
type adminDeps struct {
	api, metrics, dashboard http.Handler
	db                      pinger
	rdb                     redis.UniversalClient
	log                     *slog.Logger
}

// pinger tells whether a database answers; *pgxpool.Pool is one.
type pinger interface {
	Ping(ctx context.Context) error
}

// adminHandler composes the admin HTTP of a worker: the runs API, asynqmon
// on the worker's Redis, and readiness of Postgres and Redis, behind
// http.admin_token when it is set.
func adminHandler(cfg config.Config, d adminDeps) (*admin.Handler, error) {
	queues, err := asynq.ParseRedisURI(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("redis_url: %s: %w", redact(cfg.RedisURL), err)
	}
	return admin.New(admin.Options{
		API:       d.api,
		Metrics:   d.metrics,
		Dashboard: d.dashboard,
		Queues:    queues,
		Ready: []admin.Check{
			{Name: "postgres", Ping: d.db.Ping},
			{Name: "redis", Ping: func(ctx context.Context) error { return d.rdb.Ping(ctx).Err() }},
		},
		Token:          cfg.HTTP.AdminToken,
		TrustedProxies: cfg.HTTP.Proxies(),
		Logger:         d.log,
		Pprof:          cfg.HTTP.Pprof,
	}), nil
}
