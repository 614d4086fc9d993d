// Package api serves the runs API over HTTP on the worker's admin listener:
// it lists and shows runs with their checkpoints and batch ledger; retries,
// cancels, redrives, pauses, resumes and restarts them; and starts ETL jobs.
// Every answer is JSON, and every error is {"error": "..."} with a status
// code that says what kind of error it is: 400 bad input, 404 unknown run,
// job or endpoint, 405 wrong method, 409 not in this run's state, 413 body
// too large, 502 a source that failed, 500 anything else.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/fault"
	"github.com/syncworker/syncworker/internal/tasks"
)

// Runs reads the run model; *checkpoint.Store is one.
type Runs interface {
	ListRuns(ctx context.Context, f checkpoint.RunFilter) ([]checkpoint.Run, error)
	Get(ctx context.Context, id int64) (checkpoint.Run, error)
	Partitions(ctx context.Context, id int64) ([]checkpoint.Partition, error)
	LedgerSummary(ctx context.Context, id int64) (checkpoint.LedgerSummary, error)
}

// Control changes runs and starts jobs; *tasks.Control is one.
type Control interface {
	Retry(ctx context.Context, id int64) (checkpoint.Run, error)
	Cancel(ctx context.Context, id int64) (checkpoint.Run, error)
	Redrive(ctx context.Context, id int64) (checkpoint.Run, error)
	Pause(ctx context.Context, id int64) (checkpoint.Run, error)
	Resume(ctx context.Context, id int64) (checkpoint.Run, error)
	Restart(ctx context.Context, id int64) (checkpoint.Run, error)
	StartETL(ctx context.Context, job string, opts tasks.ETLOptions) (tasks.Started, error)
	DryRunETL(ctx context.Context, job string, opts tasks.ETLOptions) (tasks.DryRun, error)
}

// Options are what a Server serves from; Runs and Control are required.
type Options struct {
	Runs    Runs
	Control Control
	// Logger receives the errors the server answers with a 5xx; nil
	// discards them.
	Logger *slog.Logger
}

// Server is the runs API, an http.Handler.
type Server struct {
	runs    Runs
	control Control
	log     *slog.Logger
	mux     *http.ServeMux
}

// New returns the Server of opts with every endpoint routed.
func New(opts Options) *Server {
	s := &Server{runs: opts.Runs, control: opts.Control, log: opts.Logger, mux: http.NewServeMux()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.route("GET", "/api/runs", s.listRuns)
	s.route("GET", "/api/runs/{id}", s.getRun)
	s.route("POST", "/api/runs/{id}/retry", s.action(s.control.Retry, nil))
	s.route("POST", "/api/runs/{id}/cancel", s.action(s.control.Cancel, nil))
	s.route("POST", "/api/runs/{id}/redrive", s.action(s.control.Redrive, nil))
	s.route("POST", "/api/runs/{id}/pause", s.action(s.control.Pause, nil))
	s.route("POST", "/api/runs/{id}/resume", s.action(s.control.Resume, nil))
	s.route("POST", "/api/runs/{id}/restart", s.action(s.control.Restart, requireFromZero))
	s.route("POST", "/api/jobs/{name}/runs", s.startJob)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s", r.Method, r.URL.Path))
	})
	return s
}

// ServeHTTP answers one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// route serves method on path with h, and any other method on path with a
// JSON 405: ServeMux's own 405 is plain text. A GET route serves HEAD too.
func (s *Server) route(method, path string, h http.HandlerFunc) {
	s.mux.HandleFunc(method+" "+path, h)
	allow := method
	if method == http.MethodGet {
		allow += ", " + http.MethodHead
	}
	s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: method not allowed; use %s", r.Method, r.URL.Path, method))
	})
}

// listResponse is the answer of GET /api/runs.
type listResponse struct {
	Runs []checkpoint.Run `json:"runs"`
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request) {
	f, err := runFilter(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	runs, err := s.runs.ListRuns(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if runs == nil {
		runs = []checkpoint.Run{}
	}
	s.writeJSON(w, http.StatusOK, listResponse{Runs: runs})
}

// runDetail is the answer of GET /api/runs/{id}.
type runDetail struct {
	Run        checkpoint.Run           `json:"run"`
	Partitions []checkpoint.Partition   `json:"partitions"`
	Ledger     checkpoint.LedgerSummary `json:"ledger"`
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request) {
	id, ok := runID(w, r)
	if !ok {
		return
	}
	// Three reads, not one snapshot: on a run that is under way the
	// partitions and the ledger may be a commit or two ahead of the run.
	var d runDetail
	var err error
	if d.Run, err = s.runs.Get(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	if d.Partitions, err = s.runs.Partitions(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	if d.Ledger, err = s.runs.LedgerSummary(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, d)
}

// actionRequest is the body of an action on a run, optional but for a
// restart. The earlier system's retry endpoint took {"dry_run": false}, so
// operators' scripts may send it; none of these has a dry run.
type actionRequest struct {
	DryRun bool `json:"dry_run"`
	// FromZero must be true for a restart, which starts the run over as a
	// new run, and is refused elsewhere.
	FromZero bool `json:"from_zero"`
}

// requireFromZero checks the body of a restart: starting over is never a
// default.
func requireFromZero(req actionRequest) error {
	if !req.FromZero {
		return errors.New(`from_zero: a restart starts the run over from zero as a new run; send {"from_zero": true} ` +
			"(to go on from its checkpoints, POST retry or resume)")
	}
	return nil
}

// action serves a POST that changes run {id} with do and answers with the
// run as it is after (a restart: the new run). check, if not nil, checks
// the body; without it, from_zero is refused.
func (s *Server) action(do func(ctx context.Context, id int64) (checkpoint.Run, error), check func(actionRequest) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := runID(w, r)
		if !ok {
			return
		}
		var req actionRequest
		if !s.decodeBody(w, r, &req) {
			return
		}
		if req.DryRun {
			writeError(w, http.StatusBadRequest, "dry_run: "+r.URL.Path+" has no dry run; GET /api/runs/{id} shows what a run has left")
			return
		}
		if check == nil && req.FromZero {
			writeError(w, http.StatusBadRequest, "from_zero: only POST /api/runs/{id}/restart starts a run over")
			return
		}
		if check != nil {
			if err := check(req); err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
		}
		run, err := do(r.Context(), id)
		if s.notEnqueued(r, err) {
			s.writeJSON(w, http.StatusAccepted, run)
			return
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.writeJSON(w, http.StatusOK, run)
	}
}

// startRequest is the body of POST /api/jobs/{name}/runs; every field is
// optional.
type startRequest struct {
	Params map[string]string `json:"params"`
	DryRun bool              `json:"dry_run"`
	// Budget is a duration with its unit, such as "5m"; empty or "0" means
	// the job's own.
	Budget     string `json:"budget"`
	Partitions int    `json:"partitions"`
}

// maxPartitions is the most partitions a run may be asked for, as for
// sync.partitions.
const maxPartitions = 1024

// options checks req and returns the ETL options it asks for.
func (req startRequest) options() (tasks.ETLOptions, error) {
	opts := tasks.ETLOptions{Params: req.Params, Partitions: req.Partitions}
	if req.Budget != "" {
		d, err := time.ParseDuration(req.Budget)
		if err != nil || d < 0 {
			return tasks.ETLOptions{}, fmt.Errorf(`budget: want a duration of 0 (the job's) or more with its unit, such as "5m" or "1h30m", got %q`, req.Budget)
		}
		opts.Budget = d
	}
	if req.Partitions < 0 || req.Partitions > maxPartitions {
		return tasks.ETLOptions{}, fmt.Errorf("partitions: want 0 (the job's) to %d, got %d", maxPartitions, req.Partitions)
	}
	return opts, nil
}

func (s *Server) startJob(w http.ResponseWriter, r *http.Request) {
	job := r.PathValue("name")
	var req startRequest
	if !s.decodeBody(w, r, &req) {
		return
	}
	opts, err := req.options()
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.DryRun {
		dry, err := s.control.DryRunETL(r.Context(), job, opts)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.writeJSON(w, http.StatusOK, dry)
		return
	}
	started, err := s.control.StartETL(r.Context(), job, opts)
	switch {
	case s.notEnqueued(r, err) && started.Run.ID != 0:
		s.writeJSON(w, http.StatusAccepted, started)
	case err != nil:
		s.fail(w, r, err)
	case started.How == tasks.Created:
		s.writeJSON(w, http.StatusCreated, started)
	default:
		s.writeJSON(w, http.StatusOK, started)
	}
}

// notEnqueued reports whether err says that a run's state changed in
// Postgres but some of its tasks are not on the queue yet: the request
// did what it asked (202), and a worker's sweeper enqueues the tasks once
// Redis answers.
func (s *Server) notEnqueued(r *http.Request, err error) bool {
	if !errors.Is(err, tasks.ErrNotEnqueued) {
		return false
	}
	s.log.Warn("api: run changed, its tasks are left to the sweeper", "method", r.Method, "path", r.URL.Path, "error", err)
	return true
}

// runID reads the run id of the path, or answers 400.
func runID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	raw := r.PathValue("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id < 1 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid run id %q: want a whole number of 1 or more", raw))
		return 0, false
	}
	return id, true
}

// statusOf returns the status code that answers err.
func statusOf(err error) int {
	switch {
	case errors.Is(err, checkpoint.ErrNotFound), errors.Is(err, tasks.ErrUnknownJob):
		return http.StatusNotFound
	case errors.Is(err, checkpoint.ErrState):
		return http.StatusConflict
	case errors.Is(err, tasks.ErrInput):
		return http.StatusBadRequest
	case errors.As(err, new(*fault.Error)):
		// Only a classified error is the source's: fault.ClassOf calls an
		// unclassified one transient, which says nothing about whose it is.
		return http.StatusBadGateway
	default:
		return http.StatusInternalServerError
	}
}

// fail answers err with its status code and message; a 5xx is logged, as
// it is the server's or the source's trouble rather than the caller's.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		// The caller went away (or the worker is stopping): nobody reads
		// the answer.
		s.log.Debug("api: request ended before its answer", "method", r.Method, "path", r.URL.Path, "error", err)
		return
	}
	code := statusOf(err)
	if code >= 500 {
		s.log.Error("api: request failed", "method", r.Method, "path", r.URL.Path, "status", code, "error", err)
	}
	if d, ok := fault.RetryAfter(err); ok && d > 0 {
		// Whole seconds, rounded up: waiting less than asked is no use.
		w.Header().Set("Retry-After", strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10))
	}
	writeError(w, code, err.Error())
}

// errorBody is the answer of every error.
type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	// A write error means the caller went away; there is no one to tell.
	_ = json.NewEncoder(w).Encode(errorBody{Error: msg})
}

func (s *Server) writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		s.log.Error("api: encode answer", "error", err)
		writeError(w, http.StatusInternalServerError, "encode answer: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}
