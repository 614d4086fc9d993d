// Package admin is the worker's admin HTTP handler. It composes, on one
// listener, the liveness and readiness checks (/healthz, /readyz), the runs
// API (/api/), the embedded asynqmon UI (/monitoring/), the Prometheus
// metrics (/metrics), Go's profiles (/debug/pprof/) and the runs dashboard
// (/), and puts every route but the two checks behind the admin token when
// one is configured (see auth.go). Cross-origin unsafe requests from browsers are refused, so a
// logged-in browser cannot be made to change anything by another site.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
)

// MonitoringPath is where asynqmon is served.
const MonitoringPath = "/monitoring"

// Check is a dependency /readyz pings.
type Check struct {
	// Name names the dependency in /readyz's answer, such as "postgres".
	Name string
	// Ping returns nil when the dependency answers within ctx.
	Ping func(ctx context.Context) error
}

// Options are what a Handler serves; every handler is optional (nil: the
// route is not served), so that the worker composes what it has.
type Options struct {
	// API serves /api/, the runs API.
	API http.Handler
	// Metrics serves /metrics.
	Metrics http.Handler
	// Dashboard serves / and every path no other route takes.
	Dashboard http.Handler
	// Queues is the Redis asynqmon shows under /monitoring/; nil serves no
	// asynqmon. Without a token asynqmon is read-only; with one, only
	// authorized callers reach it, and they may change tasks and queues.
	Queues asynq.RedisConnOpt
	// Ready are the dependencies /readyz pings, each within ReadyTimeout
	// (0 means 2s).
	Ready        []Check
	ReadyTimeout time.Duration
	// Token is the admin token; empty means no authentication.
	Token string
	// SessionTTL is how long a login through /login lasts; 0 means 12h.
	SessionTTL time.Duration
	// Now tells the time of sessions; nil means time.Now. Tests move it.
	Now func() time.Time
	// Logger receives failed readiness checks and logins; nil discards them.
	Logger *slog.Logger
	// Pprof serves Go's runtime profiles under /debug/pprof/.
	Pprof bool
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client that the wrong-token throttle counts (see clientOf).
	TrustedProxies []netip.Prefix
}

// Handler is the admin HTTP handler; Close it when done, to close
// asynqmon's Redis connections.
type Handler struct {
	auth    *auth
	ready   []Check
	timeout time.Duration
	log     *slog.Logger
	mon     *asynqmon.HTTPHandler
	root    http.Handler
}

// Defaults of Options.
const (
	defaultReadyTimeout = 2 * time.Second
	defaultSessionTTL   = 12 * time.Hour
)

// New returns the Handler of opts with every route it has composed.
func New(opts Options) *Handler {
	h := &Handler{ready: opts.Ready, timeout: opts.ReadyTimeout, log: opts.Logger}
	if h.timeout <= 0 {
		h.timeout = defaultReadyTimeout
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}

	protected := http.NewServeMux()
	if opts.API != nil {
		protected.Handle("/api/", opts.API)
	}
	if opts.Queues != nil {
		// One instance is enough: without a token everyone gets the
		// read-only one, with a token only authorized callers get past
		// the auth check to the full one.
		h.mon = asynqmon.New(asynqmon.Options{RootPath: MonitoringPath, RedisConnOpt: opts.Queues, ReadOnly: opts.Token == ""})
		protected.Handle(MonitoringPath+"/", h.mon)
	}
	if opts.Metrics != nil {
		protected.Handle("/metrics", opts.Metrics)
	}
	if opts.Pprof {
		// Registered one by one, not through the package's init on
		// http.DefaultServeMux, which this handler does not serve.
		protected.HandleFunc("/debug/pprof/", pprof.Index)
		protected.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		protected.HandleFunc("/debug/pprof/profile", pprof.Profile)
		protected.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		protected.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	home := "/"
	if opts.Dashboard != nil {
		protected.Handle("/", opts.Dashboard)
	} else {
		protected.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s", r.Method, r.URL.Path))
		})
		switch {
		case h.mon != nil:
			home = MonitoringPath + "/"
		case opts.API != nil:
			home = "/api/runs"
		}
	}
	h.auth = newAuth(opts.Token, opts.SessionTTL, opts.Now, home, h.log)
	h.auth.proxies = opts.TrustedProxies

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", h.health)
	mux.HandleFunc("/readyz", h.readiness)
	mux.HandleFunc("/login", h.auth.login)
	mux.HandleFunc("/logout", h.auth.logout)
	mux.Handle("/", h.auth.require(protected))

	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "cross-origin request refused: "+r.Method+" "+r.URL.Path+" must come from this site's own pages")
	}))
	h.root = cop.Handler(mux)
	return h
}

// ServeHTTP answers one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.root.ServeHTTP(w, r) }

// Close closes asynqmon's connections to Redis.
func (h *Handler) Close() error {
	if h.mon == nil {
		return nil
	}
	if err := h.mon.Close(); err != nil {
		return fmt.Errorf("close asynqmon: %w", err)
	}
	return nil
}

// allowGet answers 405 to any method but GET and HEAD, and reports whether
// it did not.
func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: method not allowed; use GET", r.Method, r.URL.Path))
	return false
}

// health answers that the process is up: it checks nothing else, so that it
// stays cheap and a slow database does not get the worker restarted.
func (h *Handler) health(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok\n"))
}

// readyAnswer is the answer of /readyz: "ok" or what failed, per check.
type readyAnswer struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
	Error  string            `json:"error,omitempty"`
}

// readiness pings every dependency at once, each within the timeout, and
// answers 200 when all answer, else 503 naming those that did not. The
// errors themselves (which may name hosts and users) go only to callers
// that may see everything anyway, and to the log.
func (h *Handler) readiness(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	errs := make([]error, len(h.ready))
	var wg sync.WaitGroup
	for i, c := range h.ready {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
			defer cancel()
			errs[i] = c.Ping(ctx)
		})
	}
	wg.Wait()

	// A token is a guess here too, throttled and counted (see auth.check).
	detail, _ := h.auth.check(r)
	ans := readyAnswer{Status: "ready", Checks: make(map[string]string, len(h.ready))}
	var failed []string
	for i, c := range h.ready {
		err := errs[i]
		switch {
		case err == nil:
			ans.Checks[c.Name] = "ok"
			continue
		case detail:
			ans.Checks[c.Name] = err.Error()
		case errors.Is(err, context.DeadlineExceeded):
			ans.Checks[c.Name] = fmt.Sprintf("no answer within %s", h.timeout)
		default:
			ans.Checks[c.Name] = "unreachable (the worker log says why)"
		}
		failed = append(failed, c.Name)
		h.log.Warn("readiness check failed", "check", c.Name, "error", err)
	}
	code := http.StatusOK
	if failed != nil {
		code = http.StatusServiceUnavailable
		ans.Status = "unavailable"
		ans.Error = strings.Join(failed, ", ") + " not reachable"
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, code, ans)
}

// writeJSON writes v as the JSON answer with code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // a write error is the client's going away
}

// writeError writes {"error": msg} with code, as the runs API does.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
