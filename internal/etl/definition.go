// Package etl holds syncworker's second kind of job: pulls of paginated REST
// APIs into Postgres. This file is its job definitions, declared in a jobs
// file (configs/jobs.yaml) and checked on load, with errors that name the
// job and the key.
package etl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The pagination styles a source can have.
const (
	// StyleOffset asks for skip/take windows.
	StyleOffset = "offset"
	// StylePage asks for numbered pages of a size.
	StylePage = "page"
	// StyleCursor follows a next token from the body or a Link header.
	StyleCursor = "cursor"
)

// Limits of a definition.
const (
	// DefaultPageSize is the page size of a job that names none.
	DefaultPageSize = 100
	// MaxPageSize bounds the page size.
	MaxPageSize = 10_000
	// DefaultPageTimeout bounds one page fetch of a job that names no
	// page_timeout.
	DefaultPageTimeout = 30 * time.Second
)

// Pagination says how a job walks its source's pages.
type Pagination struct {
	// Style is offset, page or cursor.
	Style string `yaml:"style"`
	// PageSize is the number of records asked for per page (default 100).
	PageSize int `yaml:"page_size"`
	// SkipParam and TakeParam name the offset style's query parameters
	// (default skip and take).
	SkipParam string `yaml:"skip_param"`
	TakeParam string `yaml:"take_param"`
	// PageParam and SizeParam name the page style's query parameters
	// (default page and size); FirstPage is the number of the first page
	// (default 1).
	PageParam string `yaml:"page_param"`
	SizeParam string `yaml:"size_param"`
	FirstPage *int   `yaml:"first_page"`
	// CursorParam and LimitParam name the cursor style's query parameters
	// (default cursor and limit). The next token is read from NextPath in
	// the body, or from the Link header's rel="next" when NextLink is set.
	CursorParam string `yaml:"cursor_param"`
	LimitParam  string `yaml:"limit_param"`
	NextPath    string `yaml:"next_path"`
	NextLink    bool   `yaml:"next_link"`
}

// Job is one ETL job as declared.
type Job struct {
	// Name identifies the job: lower case letters, digits, - and _.
	Name string `yaml:"name"`
	// URL is the source's endpoint; Query and Headers are added to every
	// request. A header value may be ${VAR}, read from the environment on
	// load (for secrets, which are never logged); a query value may use a
	// run parameter as {name}.
	URL     string            `yaml:"url"`
	Query   map[string]string `yaml:"query"`
	Headers map[string]string `yaml:"headers"`
	// Pagination says how to walk the pages.
	Pagination Pagination `yaml:"pagination"`
	// ItemsPath is the dotted JSON path of the page's records, TotalPath
	// that of the total number of records (empty when the API gives none),
	// and Key the field of a record that identifies it.
	ItemsPath string `yaml:"items_path"`
	TotalPath string `yaml:"total_path"`
	Key       string `yaml:"key"`
	// Params are the names of the job's run parameters; a run's identity is
	// the job and its parameters' values.
	Params []string `yaml:"params"`
	// KeyParams are the params whose values are part of each record's key,
	// for a source whose keys are unique only under them (each tenant's
	// IDs, which other tenants reuse): the record lands under the run's
	// KeyPrefix, then the key field, as tenant-a/17. Without them a record
	// is its key field alone, whatever run pulled it.
	KeyParams []string `yaml:"key_params"`
	// RateLimit is the job's requests per second to its source, shared by
	// every worker; 0 means unlimited.
	RateLimit int `yaml:"rate_limit"`
	// Timeout is the time budget of one attempt of a run (0: the default
	// of etl.default_timeout_seconds); PageTimeout bounds one page fetch
	// (default 30s).
	Timeout     time.Duration `yaml:"timeout"`
	PageTimeout time.Duration `yaml:"page_timeout"`
	// Table is the table the records land in; empty means etl_records.
	Table string `yaml:"table"`
	// Partitions is the number of chains a run is split into, each a range
	// of pages pulled by its own worker (default 1). Only a source that
	// gives a total can be split; a cursor walk is one chain.
	Partitions int `yaml:"partitions"`
}

// MaxKeyPrefix bounds the bytes a run's key prefix takes (see KeyPrefix):
// with a key field of at most MaxKey bytes, a record's key stays within
// what a Postgres index entry holds (2,704 bytes).
const MaxKeyPrefix = 1024

// KeyPrefix returns what the keys of the records of a run with params start
// with: the values of the job's KeyParams, each escaped as a path segment
// (so that no value's "/" can pass for the separator) and followed by "/";
// empty for a job without KeyParams. A run freezes it when it is created. A
// value that is missing or empty, or a prefix longer than MaxKeyPrefix, is
// an error.
func (j Job) KeyPrefix(params map[string]string) (string, error) {
	var b strings.Builder
	for _, name := range j.KeyParams {
		v := params[name]
		if v == "" {
			return "", fmt.Errorf("key param %s has no value", name)
		}
		b.WriteString(url.PathEscape(v))
		b.WriteByte('/')
	}
	if b.Len() > MaxKeyPrefix {
		return "", fmt.Errorf("the values of key_params make a key prefix of %d bytes, more than %d", b.Len(), MaxKeyPrefix)
	}
	return b.String(), nil
}

// ReservedNames are job names a jobs file may not use: syncworker's own jobs.
var ReservedNames = []string{"daily-sync"}

// ownTables are syncworker's tables, which no job may land records in
// (TestOwnTablesAreRefused keeps the list in step with the migrations).
var ownTables = []string{"runs", "run_partitions", "run_items", "batch_ledger", "run_attempts",
	"run_rejects", "kickoffs", "stocks", "stock_prices", "schema_migrations"}

// MaxPartitions bounds a job's partitions.
const MaxPartitions = 64

// file is the layout of a jobs file; each job is decoded on its own, so
// that its errors can name it.
type file struct {
	Jobs []yaml.Node `yaml:"jobs"`
}

var (
	namePattern  = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	identPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	pathPattern  = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
	paramPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._~-]{0,63}$`)
	envRef       = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)
	paramRef     = regexp.MustCompile(`\{([a-z][a-z0-9_]*)\}`)
	runParam     = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
)

// DefaultJobsFile is the jobs file of the default configuration.
const DefaultJobsFile = "configs/jobs.yaml"

// LoadJobs reads the jobs file at path as LoadFile does, except that a
// missing file at the default path means no jobs: a worker started where
// no jobs file was ever written runs the daily sync alone.
func LoadJobs(path string, lookup func(string) (string, bool)) ([]Job, error) {
	if _, err := os.Stat(path); path == DefaultJobsFile && errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return LoadFile(path, lookup)
}

// LoadFile reads and checks the jobs file at path; lookup resolves the
// ${VAR} references of header values (os.LookupEnv in a process).
func LoadFile(path string, lookup func(string) (string, bool)) ([]Job, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("jobs file: %w", err)
	}
	jobs, err := Parse(b, lookup)
	if err != nil {
		return nil, fmt.Errorf("jobs file %s: %w", path, err)
	}
	return jobs, nil
}

// Parse reads and checks a jobs file's content: unknown keys and values of
// the wrong type are refused, defaults are filled in, and each bad value is
// an error naming the job and the key; all of them are returned together.
func Parse(b []byte, lookup func(string) (string, bool)) ([]Job, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f file
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(f.Jobs) == 0 {
		return nil, errors.New("jobs: no job is defined")
	}
	var errs []error
	var jobs []Job
	seen := map[string]bool{}
	for i, node := range f.Jobs {
		label := fmt.Sprintf("job %d", i+1)
		if name := field(&node, "name"); name != nil && name.Value != "" {
			label = fmt.Sprintf("job %q", name.Value)
		}
		var j Job
		if err := decodeStrict(&node, &j); err != nil {
			for _, e := range explain(&node, err) {
				errs = append(errs, fmt.Errorf("%s: %s", label, e))
			}
			continue
		}
		for _, err := range j.check(lookup) {
			errs = append(errs, fmt.Errorf("%s: %w", label, err))
		}
		if seen[j.Name] && j.Name != "" {
			errs = append(errs, fmt.Errorf("%s: name: defined twice", label))
		}
		seen[j.Name] = true
		jobs = append(jobs, j)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return jobs, nil
}

// decodeStrict decodes node into v, refusing unknown keys (a yaml.Node's
// own Decode does not).
func decodeStrict(node *yaml.Node, v any) error {
	b, err := reencode(node)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// reencode encodes node in block style, one key per line, so that the line
// of a decoding error names one key.
func reencode(node *yaml.Node) ([]byte, error) {
	var block func(n *yaml.Node)
	block = func(n *yaml.Node) {
		n.Style &^= yaml.FlowStyle
		for _, c := range n.Content {
			block(c)
		}
	}
	block(node)
	return yaml.Marshal(node)
}

// field returns the value of key in the mapping node n, or nil.
func field(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// explain turns a decoding error of a job into one message per problem,
// each naming its key: yaml reports lines of the re-encoded job, which
// match the keys' order, so the key is found by walking the same way.
func explain(job *yaml.Node, err error) []string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []string{err.Error()}
	}
	b, merr := reencode(job)
	var again yaml.Node
	if merr != nil || yaml.Unmarshal(b, &again) != nil || len(again.Content) == 0 {
		return te.Errors
	}
	keys := map[int]string{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := k.Value
			if prefix != "" {
				key = prefix + "." + key
			}
			keys[k.Line] = key
			walk(v, key)
		}
	}
	walk(again.Content[0], "")
	out := make([]string, 0, len(te.Errors))
	for _, msg := range te.Errors {
		var line int
		rest := msg
		if _, err := fmt.Sscanf(msg, "line %d:", &line); err == nil {
			rest = strings.TrimSpace(msg[strings.Index(msg, ":")+1:])
		}
		if key, ok := keys[line]; ok {
			out = append(out, key+": "+rest)
		} else {
			out = append(out, rest)
		}
	}
	return out
}

// check fills in j's defaults and returns what is wrong with it, each error
// naming its key.
func (j *Job) check(lookup func(string) (string, bool)) []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}

	if !namePattern.MatchString(j.Name) {
		bad("name", "must be 1 to 63 lower case letters, digits, - or _, starting with a letter, got %q", j.Name)
	}
	if slices.Contains(ReservedNames, j.Name) {
		bad("name", "%q is the name of a built-in job", j.Name)
	}
	if u, err := url.Parse(j.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("url", "must be an http(s) URL with a host, got %q", j.URL)
	}

	p := &j.Pagination
	size := &p.PageSize
	if *size == 0 {
		*size = DefaultPageSize
	}
	if *size < 1 || *size > MaxPageSize {
		bad("pagination.page_size", "must be between 1 and %d, got %d", MaxPageSize, *size)
	}
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	unused := func(style string, keys map[string]bool) {
		for key, set := range keys {
			if set {
				bad("pagination."+key, "does not apply to the %s style", style)
			}
		}
	}
	switch p.Style {
	case StyleOffset:
		def(&p.SkipParam, "skip")
		def(&p.TakeParam, "take")
		unused(p.Style, map[string]bool{"page_param": p.PageParam != "", "size_param": p.SizeParam != "",
			"first_page": p.FirstPage != nil, "cursor_param": p.CursorParam != "", "limit_param": p.LimitParam != "",
			"next_path": p.NextPath != "", "next_link": p.NextLink})
	case StylePage:
		def(&p.PageParam, "page")
		def(&p.SizeParam, "size")
		if p.FirstPage == nil {
			one := 1
			p.FirstPage = &one
		}
		if *p.FirstPage < 0 {
			bad("pagination.first_page", "must be 0 or more, got %d", *p.FirstPage)
		}
		unused(p.Style, map[string]bool{"skip_param": p.SkipParam != "", "take_param": p.TakeParam != "",
			"cursor_param": p.CursorParam != "", "limit_param": p.LimitParam != "",
			"next_path": p.NextPath != "", "next_link": p.NextLink})
	case StyleCursor:
		def(&p.CursorParam, "cursor")
		def(&p.LimitParam, "limit")
		switch {
		case p.NextPath == "" && !p.NextLink:
			bad("pagination.next_path", "is required for the cursor style (or next_link: true for a Link header)")
		case p.NextPath != "" && p.NextLink:
			bad("pagination.next_path", "and next_link are contradictory: the next token comes from one of them")
		case p.NextPath != "" && !pathPattern.MatchString(p.NextPath):
			bad("pagination.next_path", "must be a dotted JSON path such as meta.next, got %q", p.NextPath)
		}
		if j.TotalPath != "" {
			bad("total_path", "does not apply to the cursor style, whose pages are not counted")
		}
		unused(p.Style, map[string]bool{"skip_param": p.SkipParam != "", "take_param": p.TakeParam != "",
			"page_param": p.PageParam != "", "size_param": p.SizeParam != "", "first_page": p.FirstPage != nil})
	case "":
		bad("pagination.style", "is required: offset, page or cursor")
	default:
		bad("pagination.style", "must be offset, page or cursor, got %q", p.Style)
	}
	for key, v := range map[string]string{"skip_param": p.SkipParam, "take_param": p.TakeParam,
		"page_param": p.PageParam, "size_param": p.SizeParam, "cursor_param": p.CursorParam, "limit_param": p.LimitParam} {
		if v != "" && !paramPattern.MatchString(v) {
			bad("pagination."+key, "is not a query parameter name: %q", v)
		}
	}

	if j.ItemsPath == "" {
		bad("items_path", "is required: the dotted JSON path of the page's records, such as items or data.records")
	} else if !pathPattern.MatchString(j.ItemsPath) {
		bad("items_path", "must be a dotted JSON path such as data.records, got %q", j.ItemsPath)
	}
	if j.TotalPath != "" && !pathPattern.MatchString(j.TotalPath) {
		bad("total_path", "must be a dotted JSON path such as meta.total, got %q", j.TotalPath)
	}
	if j.Key == "" {
		bad("key", "is required: the field that identifies a record, such as id")
	} else if !pathPattern.MatchString(j.Key) {
		bad("key", "must be a field name or dotted path, got %q", j.Key)
	}

	for _, name := range j.Params {
		if !runParam.MatchString(name) {
			bad("params", "%q is not a parameter name (lower case letters, digits and _)", name)
		}
	}
	for i, name := range j.KeyParams {
		switch {
		case !slices.Contains(j.Params, name):
			bad("key_params", "%q is not one of the job's params", name)
		case slices.Index(j.KeyParams, name) != i:
			bad("key_params", "%q is listed twice", name)
		}
	}
	for k, v := range j.Query {
		if !paramPattern.MatchString(k) {
			bad("query", "%q is not a query parameter name", k)
		}
		for _, m := range paramRef.FindAllStringSubmatch(v, -1) {
			if !slices.Contains(j.Params, m[1]) {
				bad("query."+k, "uses {%s}, which is not one of the job's params", m[1])
			}
		}
		if k == p.SkipParam || k == p.TakeParam || k == p.PageParam || k == p.SizeParam ||
			k == p.CursorParam || k == p.LimitParam {
			bad("query."+k, "is the pagination's own parameter")
		}
	}
	for k, v := range j.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n") {
			bad("headers", "%q is not a header name", k)
			continue
		}
		resolved := envRef.ReplaceAllStringFunc(v, func(ref string) string {
			name := envRef.FindStringSubmatch(ref)[1]
			val, ok := lookup(name)
			if !ok {
				// The header's value may be a secret: name the variable only.
				bad("headers."+k, "refers to $%s, which is not set", name)
			}
			return val
		})
		if strings.ContainsAny(resolved, "\r\n") {
			bad("headers."+k, "has a line break in its value")
		}
		j.Headers[k] = resolved
	}

	if j.RateLimit < 0 || j.RateLimit > 1_000_000 {
		bad("rate_limit", "must be between 0 (unlimited) and 1000000 requests per second, got %d", j.RateLimit)
	}
	if j.Timeout < 0 || j.Timeout > 7*24*time.Hour {
		bad("timeout", "must be between 0 (the default) and 168h, got %s", j.Timeout)
	}
	if j.PageTimeout == 0 {
		j.PageTimeout = DefaultPageTimeout
	}
	if j.PageTimeout < time.Millisecond || j.PageTimeout > time.Hour {
		bad("page_timeout", "must be between 1ms and 1h, got %s", j.PageTimeout)
	}
	if j.Partitions == 0 {
		j.Partitions = 1
	}
	switch {
	case j.Partitions < 1 || j.Partitions > MaxPartitions:
		bad("partitions", "must be between 1 and %d, got %d", MaxPartitions, j.Partitions)
	case j.Partitions > 1 && j.TotalPath == "":
		bad("partitions", "needs total_path: only a source that gives a total can be split into page ranges")
	}
	if j.Table != "" && !identPattern.MatchString(j.Table) {
		bad("table", "must be a table name of lower case letters, digits and _, got %q", j.Table)
	}
	if slices.Contains(ownTables, j.Table) {
		bad("table", "%q is one of syncworker's own tables", j.Table)
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errs
}
