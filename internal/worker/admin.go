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

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/syncworker/syncworker/internal/api"
	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/dashboard"
	"github.com/syncworker/syncworker/internal/tasks"
)

// listenAdmin opens the admin listener on addr. An empty addr means no
// admin HTTP, and so does an address another process holds: several
// workers on one host share the configuration, the first one serves the
// API, and the others warn and go on without it (every worker serves the
// same data). Any other error stops start-up.
func listenAdmin(ctx context.Context, addr string, log *slog.Logger) (net.Listener, error) {
	if addr == "" {
		return nil, nil
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

// adminHandler routes the admin listener: the runs API under /api/ and
// /healthz, the runs dashboard at /. Cross-origin POSTs are refused, so that
// another site open in an operator's browser cannot press the dashboard's
// buttons.
func adminHandler(store *checkpoint.Store, control *tasks.Control, pool *pgxpool.Pool, log *slog.Logger) http.Handler {
	runsAPI := api.New(api.Options{Runs: store, Control: control, DB: pool, Logger: log.With("component", "api")})
	mux := http.NewServeMux()
	mux.Handle("/api/", runsAPI)
	mux.Handle("/healthz", runsAPI)
	mux.Handle("/", dashboard.New(dashboard.Options{Runs: store, Control: pendingControl{control},
		Logger: log.With("component", "dashboard")}))
	return http.NewCrossOriginProtection().Handler(mux)
}

// pendingControl gives the dashboard the controls *tasks.Control does not
// have yet (pause, resume and restart are being added to it); until then
// they are refused as not applying to the run.
type pendingControl struct{ *tasks.Control }

func (pendingControl) Pause(_ context.Context, id int64) (checkpoint.Run, error) {
	return checkpoint.Run{}, fmt.Errorf("run %d: pausing is not in this build yet: %w", id, checkpoint.ErrState)
}

func (pendingControl) Resume(_ context.Context, id int64) (checkpoint.Run, error) {
	return checkpoint.Run{}, fmt.Errorf("run %d: resuming is not in this build yet: %w", id, checkpoint.ErrState)
}

func (pendingControl) Restart(_ context.Context, id int64) (checkpoint.Run, error) {
	return checkpoint.Run{}, fmt.Errorf("run %d: restarting from zero is not in this build yet: %w", id, checkpoint.ErrState)
}
