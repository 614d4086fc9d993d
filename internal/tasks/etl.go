package tasks

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/etl"
	"github.com/syncworker/syncworker/internal/fault"
	"github.com/syncworker/syncworker/internal/ratelimit"
)

// ErrUnknownJob means no ETL job of that name is defined.
var ErrUnknownJob = errors.New("unknown job")

// ETLOptions describe an ETL run to start.
type ETLOptions struct {
	// Params are the run's parameters: exactly the job's declared params.
	// They are the run's identity: the same parameters find the same
	// unfinished run.
	Params map[string]string
	// Budget overrides the time budget of each attempt of a new run; 0
	// means the job's timeout, else etl.default_timeout_seconds.
	Budget time.Duration
	// Partitions overrides the job's partitions for a new run; 0 means the
	// job's. Only a source that gives a total can be split.
	Partitions int
	// alone starts nothing, neither a new run nor the resume of a failed
	// one, while a run of the job for other parameters is unfinished (see
	// checkpoint.NewRun.Alone): a scheduled fire that allows no overlap.
	alone bool
	// claimed is when a kick-off claimed its fire (zero: no kick-off): a
	// run created since, which an earlier attempt of the kick-off may have
	// started, is the fire's, found even when it has completed or been
	// cancelled since, rather than a reason to pull the next generation.
	claimed time.Time
}

// How says what StartETL did.
type How string

// What StartETL can do.
const (
	// Created: a new run was created.
	Created How = "created"
	// Found: the job has an active run with these parameters; its chains
	// were enqueued again (which changes nothing where they exist).
	Found How = "found"
	// Resumed: the job's last run with these parameters had stopped
	// (failed or timed out); it was retried from its checkpoints.
	Resumed How = "resumed"
)

// Started is the run StartETL started, found or resumed.
type Started struct {
	Run checkpoint.Run `json:"run"`
	How How            `json:"how"`
}

// DryRun is what a dry run of an ETL job found: the pages it fetched and
// checked, and what a run would load. Nothing is written.
type DryRun struct {
	Job    string            `json:"job"`
	Params map[string]string `json:"params"`
	// Pages and Records are what was fetched; Keys the distinct record
	// keys among them (what a run would land).
	Pages   int64 `json:"pages"`
	Records int64 `json:"records"`
	Keys    int64 `json:"keys"`
	// Rejected counts the records a run would leave out (see etl.Page).
	Rejected int64 `json:"rejected"`
	// Total is the source's total, when it gives one.
	Total *int64 `json:"total,omitempty"`
	// Warnings are what a run would notice, such as duplicate keys.
	Warnings   []string `json:"warnings,omitempty"`
	DurationMS int64    `json:"duration_ms"`
}

// ETLJobs are the ETL jobs of a jobs file, each with its source.
type ETLJobs struct {
	sources       map[string]*etl.Source
	defaultBudget time.Duration
}

// SourceMetrics receive what a job's source did, for monitoring: its
// requests and its rate limit's waits.
type SourceMetrics interface {
	etl.Metrics
	ratelimit.Metrics
}

// NewETLJobs returns the jobs of defs, whose runs get defaultBudget as their
// time budget when the job sets none; rdb carries the jobs' rate limits,
// shared by every worker. metrics, when not nil, gives each job's source
// the metrics it reports to.
func NewETLJobs(defs []etl.Job, rdb redis.UniversalClient, defaultBudget time.Duration, metrics func(job string) SourceMetrics) *ETLJobs {
	e := &ETLJobs{sources: make(map[string]*etl.Source, len(defs)), defaultBudget: defaultBudget}
	for _, d := range defs {
		var m SourceMetrics
		if metrics != nil {
			m = metrics(d.Name)
		}
		var limiter etl.Limiter
		if d.RateLimit > 0 {
			limiter = ratelimit.NewRedisLimiter(rdb, "syncworker:ratelimit:etl:"+d.Name, d.RateLimit).WithMetrics(m)
		}
		e.sources[d.Name] = etl.NewSource(d, limiter, nil).WithMetrics(m)
	}
	return e
}

// Names returns the names of the jobs, sorted.
func (e *ETLJobs) Names() []string {
	if e == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(e.sources))
}

// Jobs returns the Job of each ETL job by name, for a Handler.
func (e *ETLJobs) Jobs() map[string]Job {
	jobs := map[string]Job{}
	if e == nil {
		return jobs
	}
	for name, src := range e.sources {
		jobs[name] = &etlJob{src: src}
	}
	return jobs
}

// source returns the source of job name, or an error wrapping ErrUnknownJob.
func (e *ETLJobs) source(name string) (*etl.Source, error) {
	if e != nil {
		if src, ok := e.sources[name]; ok {
			return src, nil
		}
	}
	defined := "none"
	if names := e.Names(); len(names) > 0 {
		defined = strings.Join(names, ", ")
	}
	return nil, fmt.Errorf("job %q is not defined in the jobs file (defined: %s): %w", name, defined, ErrUnknownJob)
}

// prepare returns the source of job name and the run parameters that opts
// give it, checked.
func (e *ETLJobs) prepare(name string, opts ETLOptions) (*etl.Source, map[string]string, error) {
	src, err := e.source(name)
	if err != nil {
		return nil, nil, err
	}
	params, err := checkParams(src.Job(), opts.Params)
	if err != nil {
		return nil, nil, err
	}
	return src, params, nil
}

// WithETL makes c start the ETL jobs of jobs, and returns c.
func (c *Control) WithETL(jobs *ETLJobs) *Control {
	c.etl = jobs
	return c
}

// maxParamValue bounds the length of a run parameter's value.
const maxParamValue = 256

// checkParams returns the run parameters of job: exactly its declared ones,
// each with a value.
func checkParams(job etl.Job, given map[string]string) (map[string]string, error) {
	params := map[string]string{}
	var errs []error
	for _, name := range job.Params {
		v, ok := given[name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("job %s needs --param %s=VALUE", job.Name, name))
		case v == "" || len(v) > maxParamValue || strings.ContainsFunc(v, unicode.IsControl):
			errs = append(errs, fmt.Errorf("param %s: want 1 to %d characters without control characters, got %q",
				name, maxParamValue, fault.Sanitize(v, 40)))
		default:
			params[name] = v
		}
	}
	for _, name := range slices.Sorted(maps.Keys(given)) {
		if !slices.Contains(job.Params, name) {
			want := "none"
			if len(job.Params) > 0 {
				want = strings.Join(job.Params, ", ")
			}
			errs = append(errs, fmt.Errorf("job %s has no param %q (its params: %s)", job.Name, name, want))
		}
	}
	if len(errs) == 0 {
		if _, err := job.KeyPrefix(params); err != nil {
			errs = append(errs, fmt.Errorf("job %s: %w", job.Name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", err, ErrInput)
	}
	return params, nil
}

// runKey is the run key of an ETL run with params: its identity besides the
// job, the same for the same parameters in any order.
func runKey(params map[string]string) string {
	if len(params) == 0 {
		return "default"
	}
	v := url.Values{}
	for k, val := range params {
		v.Set(k, val)
	}
	return v.Encode()
}

// splittable reports whether a job's runs have a fixed range of pages:
// the source gives a total and its pages are numbered.
func splittable(job etl.Job) bool {
	return job.TotalPath != "" && job.Pagination.Style != etl.StyleCursor
}

// StartETL starts a run of the ETL job named job, or finds the run that its
// parameters already have: an active or paused one is returned (an active
// one's chains enqueued again), a failed or timed-out one is resumed; after
// a completed or cancelled one a new run (the next generation) is created. A
// new run's first page is fetched and checked first, so that a wrong
// definition or an unreachable source is an error here and no run. Unknown
// jobs fail with ErrUnknownJob, bad parameters with ErrInput, and a source
// that cannot be read with its classified error (see package fault).
func (c *Control) StartETL(ctx context.Context, job string, opts ETLOptions) (Started, error) {
	src, params, err := c.etl.prepare(job, opts)
	if err != nil {
		return Started{}, err
	}
	if err := checkETLOptions(src.Job(), opts); err != nil {
		return Started{}, err
	}
	gen, supersedes := 1, int64(0)
	last, err := c.store.GetByKey(ctx, job, runKey(params))
	switch {
	case err == nil && last.Status.Active():
		return Started{Run: last, How: Found}, c.enqueueRunning(ctx, last.ID)
	case err == nil && last.Status == checkpoint.StatusPaused:
		// Paused by an operator, who resumes it: a start does not.
		return Started{Run: last, How: Found}, nil
	case err == nil && (last.Status == checkpoint.StatusFailed || last.Status == checkpoint.StatusTimedOut):
		run, err := c.retry(ctx, last.ID, opts.alone)
		if errors.Is(err, checkpoint.ErrState) {
			// Another start resumed it first.
			run, err = c.store.Get(ctx, last.ID)
			return Started{Run: run, How: Found}, err
		}
		return Started{Run: run, How: Resumed}, err
	case err == nil && !opts.claimed.IsZero() && !last.CreatedAt.Before(opts.claimed):
		// Completed or cancelled: this kick-off's earlier attempt started it.
		return Started{Run: last, How: Found}, nil
	case err == nil:
		gen, supersedes = last.Generation+1, last.ID
	case !errors.Is(err, checkpoint.ErrNotFound):
		return Started{}, err
	}
	return c.createETL(ctx, src, params, gen, supersedes, opts)
}

// checkETLOptions checks the options of a new run of job.
func checkETLOptions(def etl.Job, opts ETLOptions) error {
	if opts.Budget < 0 || opts.Partitions < 0 || opts.Partitions > etl.MaxPartitions {
		return fmt.Errorf("budget must be 0 or more and partitions 0 to %d, got %s and %d: %w",
			etl.MaxPartitions, opts.Budget, opts.Partitions, ErrInput)
	}
	if opts.Partitions > 1 && !splittable(def) {
		return fmt.Errorf("job %s cannot be split into %d partitions: only a source that gives a total (total_path) and numbers its pages can be: %w",
			def.Name, opts.Partitions, ErrInput)
	}
	return nil
}

// createETL creates generation gen of the run of src's job with params, in
// the place of run supersedes (0: none), after fetching and checking its
// first page, and enqueues its tasks.
func (c *Control) createETL(ctx context.Context, src *etl.Source, params map[string]string, gen int, supersedes int64, opts ETLOptions) (Started, error) {
	def := src.Job()
	size := def.Pagination.PageSize
	first, err := fetchPatiently(ctx, src, params, size, etl.At{})
	if err != nil {
		return Started{}, fmt.Errorf("job %s: the first page does not check out, no run was started: %w", def.Name, err)
	}
	if err := checkPageSize(ctx, src, params, size, first); err != nil {
		return Started{}, err
	}
	prefix, _ := def.KeyPrefix(params) // checked by checkParams
	budget := cmp.Or(opts.Budget, def.Timeout, c.etl.defaultBudget)
	spec := checkpoint.NewRun{
		Job: def.Name, RunKey: runKey(params), Generation: gen, Supersedes: supersedes, Params: params, Unit: checkpoint.UnitPages,
		BatchSize: size, Partitions: cmp.Or(opts.Partitions, def.Partitions), Budget: budget, Open: true,
		KeyPrefix: prefix, Alone: opts.alone,
	}
	if splittable(def) {
		spec.Open = false
		spec.Total = *first.Total
		spec.Pages = max(1, (spec.Total+int64(size)-1)/int64(size))
	}
	if err := etl.EnsureTable(ctx, c.pool, def); err != nil {
		return Started{}, err
	}
	run, created, err := c.store.CreateRun(ctx, spec)
	if err != nil {
		return Started{}, err
	}
	how := Created
	if !created {
		how = Found // another start created it first
	}
	if run.Status.Active() {
		err = c.enqueueRunning(ctx, run.ID)
	}
	return Started{Run: run, How: how}, err
}

// restartETL starts run over from zero as the next generation of its job
// and parameters, with its time budget and partitions.
func (c *Control) restartETL(ctx context.Context, run checkpoint.Run) (checkpoint.Run, error) {
	var opts ETLOptions
	if err := json.Unmarshal(run.Params, &opts.Params); err != nil {
		return checkpoint.Run{}, fmt.Errorf("run %d: read its params: %w", run.ID, err)
	}
	src, params, err := c.etl.prepare(run.Job, opts)
	if err != nil {
		return checkpoint.Run{}, fmt.Errorf("run %d: %w", run.ID, err)
	}
	if run.BudgetMS != nil {
		opts.Budget = time.Duration(*run.BudgetMS) * time.Millisecond
	}
	if splittable(src.Job()) {
		opts.Partitions = run.Partitions
	}
	started, err := c.createETL(ctx, src, params, run.Generation+1, run.ID, opts)
	return started.Run, err
}

// checkPageSize refuses a job whose source answers fewer records than the
// page size while it has more: an offset or page walk would step past the
// records in between (or, without a total, take the short page for the last
// one) and lose them without a word.
func checkPageSize(ctx context.Context, src *etl.Source, params map[string]string, size int, first etl.Page) error {
	def := src.Job()
	n := len(first.Records) + len(first.Rejected)
	if def.Pagination.Style == etl.StyleCursor || n >= size || n == 0 {
		return nil
	}
	more := first.Total != nil && *first.Total > int64(n)
	if first.Total == nil {
		second, err := fetchPatiently(ctx, src, params, size, etl.At{Index: 1})
		if err != nil {
			return fmt.Errorf("job %s: the second page does not check out, no run was started: %w", def.Name, err)
		}
		more = len(second.Records)+len(second.Rejected) > 0
	}
	if !more {
		return nil
	}
	return fmt.Errorf("job %s: the source answered %d records for a page of %d and has more: it caps its pages below the job's page size, "+
		"so the walk would skip records; set pagination.page_size to %d or less: %w", def.Name, n, size, n, ErrInput)
}

// fetchAttempts is how many times a start or a dry run asks for a page while
// the source answers with transient errors or short rate limits: the person
// at the CLI should not see one 502 of a flaky source as the job's failure.
const fetchAttempts = 4

// fetchPatiently fetches a page outside a batch task (which has asynq's
// retries), asking again after a transient error or a rate limit of up to
// 5 s, with a short backoff.
func fetchPatiently(ctx context.Context, src *etl.Source, params map[string]string, size int, at etl.At) (etl.Page, error) {
	for n := 1; ; n++ {
		page, err := src.Fetch(ctx, params, size, at)
		class := fault.ClassOf(err)
		if err == nil || n == fetchAttempts || ctx.Err() != nil || (class != fault.Transient && class != fault.RateLimited) {
			return page, err
		}
		wait := 200 * time.Millisecond << (n - 1)
		if d, ok := fault.RetryAfter(err); ok {
			if d > 5*time.Second {
				return page, err
			}
			wait = d
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return page, err
		case <-t.C:
		}
	}
}

// maxDryRunPages bounds a dry run of a source that does not end.
const maxDryRunPages = 100_000

// DryRunETL fetches and checks every page of job as a run with opts would,
// and reports what it would load; it writes nothing. Its errors are those
// of StartETL, and the first page that does not check out.
func (c *Control) DryRunETL(ctx context.Context, job string, opts ETLOptions) (DryRun, error) {
	start := time.Now()
	src, params, err := c.etl.prepare(job, opts)
	if err != nil {
		return DryRun{}, err
	}
	def := src.Job()
	size := def.Pagination.PageSize
	report := DryRun{Job: job, Params: params}
	keys := map[string]bool{}
	at := etl.At{}
	pages := int64(-1) // unknown until the first page gives the total
	for {
		if report.Pages >= maxDryRunPages {
			report.Warnings = append(report.Warnings, fmt.Sprintf("stopped after %d pages", maxDryRunPages))
			break
		}
		page, err := fetchPatiently(ctx, src, params, size, at)
		if err != nil {
			return DryRun{}, fmt.Errorf("job %s: %w", job, err)
		}
		report.Pages++
		report.Records += int64(len(page.Records) + len(page.Rejected))
		report.Rejected += int64(len(page.Rejected))
		if len(page.Rejected) > 0 {
			report.Warnings = append(report.Warnings, fmt.Sprintf("page %d: %d records would be rejected, the first: %s",
				at.Index, len(page.Rejected), page.Rejected[0]))
		}
		for _, r := range page.Records {
			keys[r.Key] = true
		}
		if page.Total != nil {
			if report.Total != nil && *report.Total != *page.Total {
				report.Warnings = append(report.Warnings, fmt.Sprintf("the source's total changed from %d to %d before page %d",
					*report.Total, *page.Total, at.Index))
			}
			report.Total = page.Total
		}
		if pages < 0 && splittable(def) {
			pages = max(1, (*page.Total+int64(size)-1)/int64(size))
		}
		end, warning := pageEnds(def, size, pages, at, page)
		if warning != "" {
			report.Warnings = append(report.Warnings, warning)
		}
		if end {
			break
		}
		at = etl.At{Index: at.Index + 1, Token: page.Next}
	}
	report.Keys = int64(len(keys))
	if d := report.Records - report.Rejected - report.Keys; d > 0 {
		report.Warnings = append(report.Warnings, fmt.Sprintf("%d records repeat a key of another record; a run lands %d rows", d, report.Keys))
	}
	report.DurationMS = time.Since(start).Milliseconds()
	return report, nil
}

// pageEnds says whether page, at at, is the last of a walk of job's source
// with pages pages (-1: unknown), and what it noticed.
func pageEnds(job etl.Job, size int, pages int64, at etl.At, page etl.Page) (last bool, warning string) {
	got := len(page.Records) + len(page.Rejected)
	short := got < size
	switch {
	case job.Pagination.Style == etl.StyleCursor:
		return page.Next == "", ""
	case pages < 0:
		// No total: the walk ends at the first page that is not full.
		return short, ""
	case at.Index+1 >= pages:
		return true, ""
	case short:
		return false, fmt.Sprintf("page %d has %d records, fewer than the page size %d, before the last page %d: the source shrank during the run",
			at.Index, got, size, pages-1)
	}
	return false, ""
}

// etlJob is the Job of an ETL job: each batch is one page.
type etlJob struct {
	src *etl.Source
}

// Fetch fetches the partition's next page and lands its records.
func (j *etlJob) Fetch(ctx context.Context, b Batch) (Fetched, error) {
	def := j.src.Job()
	var params map[string]string
	if err := json.Unmarshal(b.Run.Params, &params); err != nil {
		return Fetched{}, fault.Wrap(fault.RunFatal, fmt.Errorf("run %d: bad params %s: %w", b.Run.ID, b.Run.Params, err))
	}
	p := b.Partition
	at := etl.At{Index: p.Cursor, Token: p.PageToken}
	if def.Pagination.Style == etl.StyleCursor && at.Index > 0 && at.Token == "" {
		return Fetched{}, fault.Wrap(fault.RunFatal, fmt.Errorf("run %d partition %d: no cursor token for page %d", b.Run.ID, p.Index, at.Index))
	}
	size := b.Run.BatchSize
	page, err := j.src.Fetch(ctx, params, size, at)
	if err != nil {
		return Fetched{}, err
	}
	if page.Next != "" && page.Next == at.Token {
		return Fetched{}, fault.Wrap(fault.RunFatal, fmt.Errorf("page %d: the source gave the page's own cursor as the next one; following it would never end", at.Index))
	}
	// The run's own shape decides, not today's definition: a job given a
	// total_path since its run started still walks that run to its end.
	pages := int64(-1)
	if !p.Open() {
		pages = max(1, (b.Run.Total+int64(size)-1)/int64(size))
	}
	last, warning := pageEnds(def, size, pages, at, page)
	// The run's prefix, as it was created: a change of the job's
	// key_params since then does not re-key it half-way.
	etl.WithKeyPrefix(page.Records, b.Run.KeyPrefix)
	recs, dropped := etl.Dedupe(page.Records)
	f := Fetched{
		Counts: &checkpoint.Counts{Processed: len(page.Records) + len(page.Rejected), Succeeded: len(recs),
			Failed: len(page.Rejected)},
		Records:     len(recs),
		Last:        last && p.EndPos > at.Index+1, // an open partition, or one the source ended early
		PageToken:   page.Next,
		SourceTotal: page.Total,
	}
	if warning != "" {
		f.Warnings = append(f.Warnings, warning)
	}
	if dropped > 0 {
		f.Warnings = append(f.Warnings, fmt.Sprintf("page %d repeats %d keys; the last record of each was landed", at.Index, dropped))
	}
	if n := len(page.Rejected); n > 0 {
		f.Warnings = append(f.Warnings, fmt.Sprintf("page %d: %d records rejected and not landed, the first: %s", at.Index, n, page.Rejected[0]))
		f.Rejected = make([]checkpoint.Rejected, n)
		for i, r := range page.Rejected {
			f.Rejected[i] = checkpoint.Rejected{Item: r.Item, Error: r.Reason}
		}
	}
	runID := b.Run.ID
	f.Queue = func(q *pgx.Batch) { etl.QueueUpsert(q, def, runID, recs) }
	return f, nil
}
