// Package dashboard serves the runs dashboard, the admin listener's web
// pages at /: the recent runs with their progress, rate and ETA, and a page
// per run with its partitions, attempts, errors, failed items, a throughput
// chart of its batch ledger and the buttons that retry, cancel, pause,
// resume or restart it. The pages are rendered on the server from embedded
// templates; a small embedded script swaps their live part for a fresh
// rendering every two seconds while the tab is visible.
//
// Every action is a POST that answers 303 back to a page, with the outcome
// (or the reason it was refused) as a flash message; protection against
// cross-site requests is the admin listener's (http.CrossOriginProtection).
package dashboard

import (
	"bytes"
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/tasks"
)

// Runs reads the run model; *checkpoint.Store is one.
type Runs interface {
	ListRuns(ctx context.Context, f checkpoint.RunFilter) ([]checkpoint.Run, error)
	Jobs(ctx context.Context) ([]string, error)
	Get(ctx context.Context, id int64) (checkpoint.Run, error)
	Partitions(ctx context.Context, id int64) ([]checkpoint.Partition, error)
	Attempts(ctx context.Context, id int64) ([]checkpoint.Attempt, error)
	LedgerSummary(ctx context.Context, id int64) (checkpoint.LedgerSummary, error)
	FailuresOf(ctx context.Context, run checkpoint.Run, limit int) ([]checkpoint.Item, error)
	Paces(ctx context.Context, ids []int64, window time.Duration) (map[int64]checkpoint.Pace, error)
	Throughput(ctx context.Context, id int64, n int) (checkpoint.Throughput, error)
}

// Control changes runs; *tasks.Control is one. Restart starts the run's job
// again from zero and returns the new run.
type Control interface {
	Retry(ctx context.Context, id int64) (checkpoint.Run, error)
	Cancel(ctx context.Context, id int64) (checkpoint.Run, error)
	Pause(ctx context.Context, id int64) (checkpoint.Run, error)
	Resume(ctx context.Context, id int64) (checkpoint.Run, error)
	Restart(ctx context.Context, id int64) (checkpoint.Run, error)
}

// Options are what a Handler serves from; Runs and Control are required.
type Options struct {
	Runs    Runs
	Control Control
	// Logger receives the errors the pages answer with a 5xx; nil
	// discards them.
	Logger *slog.Logger
}

// The sizes of what the pages show.
const (
	// listLimit is the number of runs the list shows.
	listLimit = 50
	// failedShown is the number of failed items a run's page lists.
	failedShown = 20
	// rateWindow is the window of the ledger a running run's rate is
	// taken over.
	rateWindow = 30 * time.Second
)

//go:embed templates static
var files embed.FS

// Handler is the dashboard, an http.Handler.
type Handler struct {
	runs    Runs
	control Control
	log     *slog.Logger
	mux     *http.ServeMux
	list    *template.Template
	run     *template.Template
	missing *template.Template
}

// New returns the Handler of opts with every page routed.
func New(opts Options) *Handler {
	h := &Handler{runs: opts.Runs, control: opts.Control, log: opts.Logger, mux: http.NewServeMux()}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	page := func(name string) *template.Template {
		return template.Must(template.New(name).Funcs(funcs).ParseFS(files,
			"templates/layout.html", "templates/parts.html", "templates/"+name))
	}
	h.list, h.run, h.missing = page("runs.html"), page("run.html"), page("error.html")

	static, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	h.mux.Handle("GET /static/", http.StripPrefix("/static/", noCache(http.FileServerFS(static))))
	h.mux.HandleFunc("GET /{$}", h.listPage)
	h.mux.HandleFunc("GET /fragments/runs", h.listFragment)
	h.mux.HandleFunc("GET /runs/{id}", h.runPage)
	h.mux.HandleFunc("GET /runs/{id}/live", h.runFragment)
	h.mux.HandleFunc("POST /runs/{id}/{action}", h.act)
	h.mux.HandleFunc("/runs/{id}/{action}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", http.MethodPost)
		h.errorPage(w, r, http.StatusMethodNotAllowed, "Method not allowed",
			fmt.Sprintf("%s %s changes a run: it takes a POST, from the buttons of the run's page.", r.Method, r.URL.Path))
	})
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.errorPage(w, r, http.StatusNotFound, "Not found", "There is no page "+r.URL.Path+".")
	})
	return h
}

// ServeHTTP answers one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The pages run only their own script and styles (the bars' widths are
	// style attributes), and are framed by nobody.
	w.Header().Set("Content-Security-Policy",
		"default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	h.mux.ServeHTTP(w, r)
}

// noCache makes browsers ask again for the static files, so that a worker
// upgraded in place serves its own.
func noCache(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}

// page is what every page's layout shows.
type page struct {
	Title string
	Flash *flash
	// Now is when the page was rendered; times are shown relative to it.
	Now time.Time
}

// runRow is one run of the list.
type runRow struct {
	checkpoint.Run
	Progress progress
}

// Duration returns the run's running time over its attempts.
func (r runRow) Duration() time.Duration { return time.Duration(r.DurationMS) * time.Millisecond }

// listData is the list page.
type listData struct {
	page
	Runs     []runRow
	Jobs     []string
	Statuses []checkpoint.Status
	Filter   checkpoint.RunFilter
	// LiveURL answers the live part of the page.
	LiveURL string
}

// filterOf reads the list's filters from q; an unknown status is dropped
// and reported.
func filterOf(q url.Values) (checkpoint.RunFilter, *flash) {
	f := checkpoint.RunFilter{Job: q.Get("job"), Status: checkpoint.Status(q.Get("status")), Limit: listLimit}
	if f.Status != "" && !slices.Contains(checkpoint.Statuses(), f.Status) {
		bad := f.Status
		f.Status = ""
		return f, &flash{Kind: flashError, Message: fmt.Sprintf("There is no status %q; showing runs of any status.", bad)}
	}
	return f, nil
}

// listOf reads the runs that f selects, with their progress.
func (h *Handler) listOf(ctx context.Context, f checkpoint.RunFilter) (listData, error) {
	d := listData{page: page{Title: "Runs", Now: time.Now()}, Statuses: checkpoint.Statuses(), Filter: f}
	runs, err := h.runs.ListRuns(ctx, f)
	if err != nil {
		return listData{}, err
	}
	if d.Jobs, err = h.runs.Jobs(ctx); err != nil {
		return listData{}, err
	}
	var running []int64
	for _, r := range runs {
		if r.Status == checkpoint.StatusRunning {
			running = append(running, r.ID)
		}
	}
	paces := map[int64]checkpoint.Pace{}
	if len(running) > 0 {
		if paces, err = h.runs.Paces(ctx, running, rateWindow); err != nil {
			return listData{}, err
		}
	}
	for _, r := range runs {
		var pace *checkpoint.Pace
		if p, ok := paces[r.ID]; ok {
			pace = &p
		}
		d.Runs = append(d.Runs, runRow{Run: r, Progress: progressOf(r, pace)})
	}
	q := url.Values{}
	if f.Job != "" {
		q.Set("job", f.Job)
	}
	if f.Status != "" {
		q.Set("status", string(f.Status))
	}
	d.LiveURL = "/fragments/runs?" + q.Encode()
	return d, nil
}

func (h *Handler) listPage(w http.ResponseWriter, r *http.Request) {
	f, bad := filterOf(r.URL.Query())
	d, err := h.listOf(r.Context(), f)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	d.Flash = cmp.Or(takeFlash(w, r), bad)
	h.render(w, r, h.list, "layout", http.StatusOK, d)
}

func (h *Handler) listFragment(w http.ResponseWriter, r *http.Request) {
	f, _ := filterOf(r.URL.Query())
	d, err := h.listOf(r.Context(), f)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.render(w, r, h.list, "runs-table", http.StatusOK, d)
}

// runData is a run's page.
type runData struct {
	page
	Run      checkpoint.Run
	Progress progress
	Can      allowed
	Parts    []partRow
	Attempts []checkpoint.Attempt
	// Current is the attempt under way, which run_attempts lists only
	// once it ends; nil when none is.
	Current *currentAttempt
	Ledger  checkpoint.LedgerSummary
	Chart   chart
	Failed  []checkpoint.Item
	// MoreFailed is true when the run has more failed items than Failed.
	MoreFailed bool
	// Params is the run's parameters as indented JSON.
	Params string
}

// partRow is one partition of a run's page.
type partRow struct {
	checkpoint.Partition
	Progress progress
}

// currentAttempt is the attempt of a run under way.
type currentAttempt struct {
	Attempt   int
	StartedAt time.Time
	Elapsed   time.Duration
}

// runOf reads everything run id's page shows.
func (h *Handler) runOf(ctx context.Context, id int64) (runData, error) {
	d := runData{page: page{Now: time.Now()}}
	var err error
	if d.Run, err = h.runs.Get(ctx, id); err != nil {
		return runData{}, err
	}
	d.Title = fmt.Sprintf("Run %d · %s %s", id, d.Run.Job, d.Run.RunKey)
	var pace *checkpoint.Pace
	if d.Run.Status == checkpoint.StatusRunning {
		paces, err := h.runs.Paces(ctx, []int64{id}, rateWindow)
		if err != nil {
			return runData{}, err
		}
		if p, ok := paces[id]; ok {
			pace = &p
		}
	}
	d.Progress, d.Can = progressOf(d.Run, pace), allowedFor(d.Run.Status)
	parts, err := h.runs.Partitions(ctx, id)
	if err != nil {
		return runData{}, err
	}
	for _, p := range parts {
		d.Parts = append(d.Parts, partRow{Partition: p, Progress: partProgress(d.Run, p)})
	}
	if d.Attempts, err = h.runs.Attempts(ctx, id); err != nil {
		return runData{}, err
	}
	if d.Run.Status.Active() && d.Run.AttemptStartedAt != nil {
		d.Current = &currentAttempt{Attempt: d.Run.Attempt, StartedAt: *d.Run.AttemptStartedAt,
			Elapsed: max(d.Now.Sub(*d.Run.AttemptStartedAt), 0)}
	}
	if d.Ledger, err = h.runs.LedgerSummary(ctx, id); err != nil {
		return runData{}, err
	}
	th, err := h.runs.Throughput(ctx, id, chartBuckets)
	if err != nil {
		return runData{}, err
	}
	d.Chart = chartOf(th, d.Progress.Unit)
	if d.Run.Failed > 0 {
		if d.Failed, err = h.runs.FailuresOf(ctx, d.Run, failedShown); err != nil {
			return runData{}, err
		}
		d.MoreFailed = int64(len(d.Failed)) < d.Run.Failed
	}
	var params bytes.Buffer
	if json.Indent(&params, d.Run.Params, "", "  ") == nil && params.String() != "{}" && params.String() != "null" {
		d.Params = params.String()
	}
	return d, nil
}

// pathID reads the run id of the path; ok is false when it is not one.
func pathID(r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	return id, err == nil && id > 0
}

func (h *Handler) runPage(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r)
	if !ok {
		h.errorPage(w, r, http.StatusNotFound, "Not found", fmt.Sprintf("%q is not a run id.", r.PathValue("id")))
		return
	}
	d, err := h.runOf(r.Context(), id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	d.Flash = takeFlash(w, r)
	h.render(w, r, h.run, "layout", http.StatusOK, d)
}

func (h *Handler) runFragment(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r)
	if !ok {
		http.NotFound(w, r)
		return
	}
	d, err := h.runOf(r.Context(), id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.render(w, r, h.run, "run-live", http.StatusOK, d)
}

// action is one thing an operator can do to a run.
type action struct {
	do func(ctx context.Context, id int64) (checkpoint.Run, error)
	// done says what was done, for the flash message.
	done func(before int64, after checkpoint.Run) string
}

// actions returns the actions by the last element of their path.
func (h *Handler) actions() map[string]action {
	state := func(verb string) func(int64, checkpoint.Run) string {
		return func(id int64, r checkpoint.Run) string {
			return fmt.Sprintf("Run %d %s; it is %s now.", id, verb, label(r.Status))
		}
	}
	return map[string]action{
		"retry": {h.control.Retry, func(id int64, r checkpoint.Run) string {
			return fmt.Sprintf("Run %d retried: attempt %d resumes from its checkpoints.", id, r.Attempt)
		}},
		"cancel": {h.control.Cancel, state("cancelled")},
		"pause":  {h.control.Pause, state("paused at its next batch boundary")},
		"resume": {h.control.Resume, state("resumed from its checkpoints")},
		"restart": {h.control.Restart, func(id int64, r checkpoint.Run) string {
			return fmt.Sprintf("Run %d restarted from zero as run %d.", id, r.ID)
		}},
	}
}

// act does the action of the path to run {id} and answers 303 to the run's
// page (the new run's, for a restart) with the outcome as a flash message.
func (h *Handler) act(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r)
	name := r.PathValue("action")
	a, known := h.actions()[name]
	if !ok || !known {
		h.errorPage(w, r, http.StatusNotFound, "Not found", "There is no action "+r.URL.Path+".")
		return
	}
	back := fmt.Sprintf("/runs/%d", id)
	run, err := a.do(r.Context(), id)
	switch {
	case errors.Is(err, tasks.ErrNotEnqueued):
		h.log.Warn("dashboard: run changed, its tasks are left to the sweeper", "run_id", id, "action", name, "error", err)
		setFlash(w, flash{Kind: flashWarn, Message: a.done(id, run) +
			" Some of its tasks could not be queued yet; a worker's sweeper queues them once Redis answers."})
	case errors.Is(err, checkpoint.ErrNotFound):
		back = "/"
		setFlash(w, flash{Kind: flashError, Message: fmt.Sprintf("Run %d does not exist.", id)})
	case errors.Is(err, checkpoint.ErrState):
		setFlash(w, flash{Kind: flashError, Message: "Not done: " + err.Error()})
	case err != nil:
		if r.Context().Err() == nil {
			h.log.Error("dashboard: action failed", "run_id", id, "action", name, "error", err)
		}
		setFlash(w, flash{Kind: flashError, Message: fmt.Sprintf("Could not %s run %d: %v", name, id, err)})
	default:
		setFlash(w, flash{Kind: flashOK, Message: a.done(id, run)})
	}
	if name == "restart" && run.ID != 0 && (err == nil || errors.Is(err, tasks.ErrNotEnqueued)) {
		// The new run exists, whether or not all its tasks are queued yet.
		back = fmt.Sprintf("/runs/%d", run.ID)
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// errorData is the page of an error.
type errorData struct {
	page
	Code    int
	Message string
}

// errorPage answers with an error page.
func (h *Handler) errorPage(w http.ResponseWriter, r *http.Request, code int, title, msg string) {
	h.render(w, r, h.missing, "layout", code, errorData{page: page{Title: title, Now: time.Now()}, Code: code, Message: msg})
}

// fail answers err: a page that says the run does not exist, or that the
// page could not be read (logged).
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, checkpoint.ErrNotFound) {
		h.errorPage(w, r, http.StatusNotFound, "Run not found", fmt.Sprintf("There is no run %s.", r.PathValue("id")))
		return
	}
	if r.Context().Err() != nil {
		return // the browser went away; nobody reads the answer
	}
	h.log.Error("dashboard: page failed", "path", r.URL.Path, "error", err)
	h.errorPage(w, r, http.StatusInternalServerError, "Something went wrong", "The page could not be read: "+err.Error())
}

// render executes template name of t with data and sends it; a template
// error is logged and answered 500 as plain text, as the page cannot be
// rendered.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, t *template.Template, name string, code int, data any) {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, name, data); err != nil {
		h.log.Error("dashboard: render failed", "path", r.URL.Path, "template", name, "error", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = buf.WriteTo(w)
}
