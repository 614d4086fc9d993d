// Package simulator is a deterministic fake of the HTTP quotes provider that
// syncworker syncs daily stock prices from. The demo, the tests and
// docker-compose use it in place of the real provider.
//
// The simulator implements the provider's contract exactly:
//
//	GET /v1/quotes/{SYMBOL}?date=YYYY-MM-DD
//
// answers 200 with a JSON Quote, 404 for an unknown symbol, 400 for a
// malformed symbol or date, 401 without the configured bearer API key, 429
// with a Retry-After header when rate-limited, 500, 502 or 503 for server
// errors and 405 for methods other than GET. Every error body is a JSON object
// {"error": "..."}. GET /healthz answers "ok" and GET /stats answers the Stats
// counters as JSON.
//
// For the ETL job kind it also serves a dataset of Config.Records records
// (see RecordAt), paged in three styles:
//
//	GET /v1/records?skip=S&take=T          {"items":[...],"total":N}
//	GET /v1/records-paged?page=P&size=Z    {"items":[...],"total":N,"page":P}
//	GET /v1/records-cursor?cursor=C&limit=L {"items":[...],"next":"C2"}
//
// Each item is a Record {"id":"r000042","name":"...","value":123,
// "updated":"YYYY-MM-DD"}, in the dataset's fixed order. T, Z and L are in
// 1..1000 (default 100), S >= 0 (default 0) and P >= 1 (default 1); a page past
// the end has no items, and "items" is never null. A cursor page has "next",
// an opaque token for the following page, unless it is the last one; no cursor
// starts at the front. A malformed, out-of-range or non-integer parameter, or a
// cursor the server did not issue, is answered 400. Page requests get the same
// API key check, rate limit, latency and injected faults as quote requests; a
// garbage page is a truncated {"items":[... body.
//
// With Config.Drift > 0 the dataset drifts: every page request after the first
// Drift ones inserts one record at the front before it is answered (see
// DriftRecord), so total grows and offset or page pagination sees items
// shift (repeated items); a cursor names a record, not a position, so cursor
// pagination neither repeats nor skips a record it started before.
//
// Prices are a pure function of the symbol and the day (see Price), the
// unknown symbols of the symbol (see Known) and records of their index (see
// RecordAt), so every run serves the same data. Faults
// (latency, server errors, rate limiting, slow and garbage answers) are
// injected at the rates set in Config, by dice seeded with Config.Seed.
package simulator

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Config configures the faults of a Server. The zero value is a perfect, fast
// provider: no latency, no faults, no rate limit, every symbol known except
// those starting with "XX", no API key, and DefaultRecords records that do not
// drift.
//
// Each fault and delay applies to page requests as to quote requests. Each
// fault rate is the probability that the fault fires on a request that
// reaches it; the dice are rolled in the order RateLimitedRate, ErrorRate,
// SlowRate, GarbageRate, and a request that got an injected 429 or 5xx goes no
// further. The flag of cmd/sourcesim that sets each field is given in
// parentheses.
type Config struct {
	// Latency is added to every request (--latency).
	Latency time.Duration
	// Jitter adds a uniformly random extra latency in [0, Jitter) to every
	// request (--jitter).
	Jitter time.Duration
	// ErrorRate is the fraction of requests answered 500, 502 or 503,
	// chosen at random (--error-rate).
	ErrorRate float64
	// RateLimitedRate is the fraction of requests answered 429 with a
	// Retry-After of RetryAfter (--rate-limited-rate).
	RateLimitedRate float64
	// RetryAfter is the Retry-After of the 429s injected by RateLimitedRate,
	// rounded up to whole seconds, at least 1s (--retry-after).
	RetryAfter time.Duration
	// RateLimit is the number of requests per second accepted, enforced
	// by a token bucket with a burst of RateLimit; requests in excess are
	// answered 429 with "Retry-After: 1". 0 means unlimited (--rate-limit).
	RateLimit int
	// SlowRate is the fraction of requests answered only after an extra
	// SlowDelay, to exceed a client's timeout; the answer itself is then
	// normal (--slow-rate).
	SlowRate float64
	// SlowDelay is the extra delay of the slow requests (--slow-delay).
	SlowDelay time.Duration
	// GarbageRate is the fraction of requests answered 200 with a body
	// that is not valid JSON (a truncated quote or page) (--garbage-rate).
	GarbageRate float64
	// UnknownRate is the fraction of symbols that are unknown (404), chosen
	// deterministically by a hash of the symbol; see Known (--unknown-rate).
	UnknownRate float64
	// APIKey, when set, is required as "Authorization: Bearer <APIKey>" on
	// every request; without it the answer is 401 (--api-key).
	APIKey string
	// Seed seeds the fault dice; 0 means a time-based seed. With a fixed seed
	// and requests made one at a time, the faults fire in the same order on
	// every run (--seed).
	Seed int64
	// Records is the number of records of the paged dataset, at most
	// MaxRecords; 0 means DefaultRecords (--records).
	Records int
	// Drift, when positive, makes every page request after the first Drift
	// ones insert one record at the front of the dataset; 0 means a fixed
	// dataset (--drift).
	Drift int64
}

// Validate reports every invalid field of c: rates outside [0, 1], negative
// durations, a negative RateLimit or Drift and Records outside [0, MaxRecords]. Each error names the field and its flag.
func (c Config) Validate() error {
	var errs []error
	checkRate := func(field, flag string, v float64) {
		if !(v >= 0 && v <= 1) { // also rejects NaN
			errs = append(errs, fmt.Errorf("%s (--%s) must be in [0, 1], got %v", field, flag, v))
		}
	}
	checkDuration := func(field, flag string, d time.Duration) {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s (--%s) must not be negative, got %v", field, flag, d))
		}
	}
	checkDuration("Latency", "latency", c.Latency)
	checkDuration("Jitter", "jitter", c.Jitter)
	checkRate("ErrorRate", "error-rate", c.ErrorRate)
	checkRate("RateLimitedRate", "rate-limited-rate", c.RateLimitedRate)
	checkDuration("RetryAfter", "retry-after", c.RetryAfter)
	if c.RateLimit < 0 {
		errs = append(errs, fmt.Errorf("RateLimit (--rate-limit) must not be negative, got %d", c.RateLimit))
	}
	checkRate("SlowRate", "slow-rate", c.SlowRate)
	checkDuration("SlowDelay", "slow-delay", c.SlowDelay)
	checkRate("GarbageRate", "garbage-rate", c.GarbageRate)
	checkRate("UnknownRate", "unknown-rate", c.UnknownRate)
	if c.Records < 0 || c.Records > MaxRecords {
		errs = append(errs, fmt.Errorf("Records (--records) must be in [0, %d], got %d", MaxRecords, c.Records))
	}
	if c.Drift < 0 {
		errs = append(errs, fmt.Errorf("Drift (--drift) must not be negative, got %d", c.Drift))
	}
	return errors.Join(errs...)
}

// Stats counts the API requests (quote and page requests) of a Server by
// outcome. Requests counts every API request, and Pages the page requests
// among them; a request that got a 405, or whose context ended during a delay
// (see ServeHTTP), is counted in Requests (and Pages) only. Slow requests are
// counted in Slow and again by their final outcome.
type Stats struct {
	// Requests is the number of API requests received, quotes and pages.
	Requests int64 `json:"requests"`
	// OK is the number of 200 answers with a valid quote or page.
	OK int64 `json:"ok"`
	// NotFound is the number of 404 answers for unknown symbols.
	NotFound int64 `json:"not_found"`
	// BadRequest is the number of 400 answers for a malformed symbol or date,
	// or an invalid page parameter.
	BadRequest int64 `json:"bad_request"`
	// Unauthorized is the number of 401 answers.
	Unauthorized int64 `json:"unauthorized"`
	// RateLimited is the number of 429 answers injected by RateLimitedRate.
	RateLimited int64 `json:"rate_limited"`
	// Throttled is the number of 429 answers of the RateLimit token bucket.
	Throttled int64 `json:"throttled"`
	// ServerErrors is the number of injected 500, 502 and 503 answers.
	ServerErrors int64 `json:"server_errors"`
	// Slow is the number of requests delayed by SlowDelay.
	Slow int64 `json:"slow"`
	// Garbage is the number of 200 answers with an unreadable body.
	Garbage int64 `json:"garbage"`
	// Pages is the number of page requests received, counted in Requests
	// too.
	Pages int64 `json:"pages"`
}

// counters are the atomic counterparts of Stats.
type counters struct {
	requests, ok, notFound, badRequest, unauthorized atomic.Int64
	rateLimited, throttled, serverErrors, slow       atomic.Int64
	garbage, pages                                   atomic.Int64
}

// Server is the simulated quotes provider. It implements http.Handler and is
// safe for concurrent use.
type Server struct {
	cfg        Config
	retryAfter string        // Retry-After of the injected 429s
	limiter    *rate.Limiter // nil when unlimited
	records    int           // cfg.Records, or DefaultRecords for 0

	mu  sync.Mutex // guards rng
	rng *rand.Rand

	stats counters
}

// New returns a Server with the given configuration. It does not validate
// cfg; call Config.Validate first. Out-of-range rates behave as if clamped to
// [0, 1], negative durations, rate limits and drifts as zero, and Records as
// if clamped to MaxRecords.
func New(cfg Config) *Server {
	seed := uint64(cfg.Seed)
	if cfg.Seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	secs := int64(math.Ceil(cfg.RetryAfter.Seconds()))
	s := &Server{
		cfg:        cfg,
		retryAfter: strconv.FormatInt(max(secs, 1), 10),
		rng:        rand.New(rand.NewPCG(seed, seed^0x5eed5eed5eed5eed)),
		records:    cfg.Records,
	}
	if s.records <= 0 {
		s.records = DefaultRecords
	}
	s.records = min(s.records, MaxRecords)
	if cfg.RateLimit > 0 {
		s.limiter = rate.NewLimiter(rate.Limit(cfg.RateLimit), cfg.RateLimit)
	}
	return s
}

// Stats returns a snapshot of the counters. The counters are read one by one,
// so a snapshot taken while requests are served may be slightly inconsistent.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		Requests:     c.requests.Load(),
		OK:           c.ok.Load(),
		NotFound:     c.notFound.Load(),
		BadRequest:   c.badRequest.Load(),
		Unauthorized: c.unauthorized.Load(),
		RateLimited:  c.rateLimited.Load(),
		Throttled:    c.throttled.Load(),
		ServerErrors: c.serverErrors.Load(),
		Slow:         c.slow.Load(),
		Garbage:      c.garbage.Load(),
		Pages:        c.pages.Load(),
	}
}

const quotesPrefix = "/v1/quotes/"

// symbolPattern is the syntax of a symbol.
var symbolPattern = regexp.MustCompile(`^[A-Z0-9][A-Z0-9.\-]{0,19}$`)

// serverErrorCodes are the statuses of the injected server errors.
var serverErrorCodes = [...]int{
	http.StatusInternalServerError,
	http.StatusBadGateway,
	http.StatusServiceUnavailable,
}

// ServeHTTP serves the quotes API, the paged records API, /healthz and
// /stats.
//
// Every delay of an API request ends early when the request's context is
// done. The request is then aborted with panic(http.ErrAbortHandler), which
// net/http handles by dropping the connection without an answer, so that a
// client never mistakes the cut-short request for an empty 200. A caller that
// invokes ServeHTTP directly with a context that may end must recover it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	switch {
	case strings.HasPrefix(path, quotesPrefix):
		s.serveQuote(w, r, strings.TrimPrefix(path, quotesPrefix))
	case path == recordsPath, path == recordsPagedPath, path == recordsCursorPath:
		s.servePage(w, r, path)
	case path == "/healthz":
		if allowGet(w, r) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprint(w, "ok")
		}
	case path == "/stats":
		if allowGet(w, r) {
			writeJSON(w, http.StatusOK, s.Stats())
		}
	default:
		writeError(w, http.StatusNotFound, fmt.Sprintf("no route for %s", path))
	}
}

// serveQuote answers a quote request. The order of the checks is part of the
// contract: method, API key, rate limit, latency, injected faults, syntax,
// unknown symbol.
func (s *Server) serveQuote(w http.ResponseWriter, r *http.Request, symbol string) {
	c := &s.stats
	c.requests.Add(1)
	if !s.gate(w, r, garbageBody(symbol)) {
		return
	}
	if !symbolPattern.MatchString(symbol) {
		c.badRequest.Add(1)
		writeError(w, http.StatusBadRequest, fmt.Sprintf("malformed symbol %q", symbol))
		return
	}
	dateText := r.URL.Query().Get("date")
	if dateText == "" {
		c.badRequest.Add(1)
		writeError(w, http.StatusBadRequest, "missing date: want date=YYYY-MM-DD")
		return
	}
	date, err := time.Parse(DateLayout, dateText)
	if err != nil || len(dateText) != len(DateLayout) {
		c.badRequest.Add(1)
		writeError(w, http.StatusBadRequest, fmt.Sprintf("malformed date %q: want YYYY-MM-DD", dateText))
		return
	}
	if !Known(symbol, s.cfg.UnknownRate) {
		c.notFound.Add(1)
		writeError(w, http.StatusNotFound, "unknown symbol "+symbol)
		return
	}
	c.ok.Add(1)
	writeJSON(w, http.StatusOK, Price(symbol, date))
}

// gate runs the checks and faults that come before the syntax checks of every
// API request, in the order of the contract: method, API key, rate limit,
// latency, injected 429, injected 5xx, slow, garbage (answered 200 with the
// given garbage body). It counts the outcome and returns false when it has
// answered the request; the caller then stops.
func (s *Server) gate(w http.ResponseWriter, r *http.Request, garbage string) bool {
	c := &s.stats
	if !allowGet(w, r) {
		return false
	}
	if s.cfg.APIKey != "" && !s.authorized(r) {
		c.unauthorized.Add(1)
		w.Header().Set("WWW-Authenticate", `Bearer realm="sourcesim"`)
		writeError(w, http.StatusUnauthorized, "missing or invalid API key")
		return false
	}
	if s.limiter != nil && !s.limiter.Allow() {
		c.throttled.Add(1)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "rate limit exceeded")
		return false
	}

	ctx := r.Context()
	d := s.roll()
	if sleep(ctx, s.cfg.Latency+d.jitter) != nil {
		abort()
	}
	if d.rateLimited {
		c.rateLimited.Add(1)
		w.Header().Set("Retry-After", s.retryAfter)
		writeError(w, http.StatusTooManyRequests, "too many requests")
		return false
	}
	if d.serverError != 0 {
		c.serverErrors.Add(1)
		writeError(w, d.serverError, "injected server error")
		return false
	}
	if d.slow {
		c.slow.Add(1)
		if sleep(ctx, s.cfg.SlowDelay) != nil {
			abort()
		}
	}
	if d.garbage {
		c.garbage.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, garbage)
		return false
	}
	return true
}

// garbageBody returns a truncated quote such as {"symbol":"AAP, which is not
// valid JSON.
func garbageBody(symbol string) string {
	if !symbolPattern.MatchString(symbol) {
		symbol = ""
	}
	return `{"symbol":"` + symbol[:max(len(symbol)-1, 0)]
}

// authorized reports whether r carries the configured API key as a bearer
// token.
func (s *Server) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.APIKey)) == 1
}

// dice is the outcome of the fault dice for one request.
type dice struct {
	jitter      time.Duration
	rateLimited bool
	serverError int // the status to answer, or 0
	slow        bool
	garbage     bool
}

// roll rolls the fault dice for one request. It always draws the same
// numbers, whatever fires, so that a seed gives a fixed sequence of outcomes.
func (s *Server) roll() dice {
	s.mu.Lock()
	defer s.mu.Unlock()
	var d dice
	if s.cfg.Jitter > 0 {
		d.jitter = time.Duration(s.rng.Int64N(int64(s.cfg.Jitter)))
	}
	d.rateLimited = s.rng.Float64() < s.cfg.RateLimitedRate
	serverError := s.rng.Float64() < s.cfg.ErrorRate
	code := serverErrorCodes[s.rng.IntN(len(serverErrorCodes))]
	if serverError {
		d.serverError = code
	}
	d.slow = s.rng.Float64() < s.cfg.SlowRate
	d.garbage = s.rng.Float64() < s.cfg.GarbageRate
	return d
}

// sleep waits for d or until ctx is done, whichever comes first, and returns
// ctx's error in the latter case.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// abort ends a request whose context ended during a delay (the client went
// away, or the server is shutting down) without answering it: net/http then
// drops the connection instead of sending an empty 200.
func abort() {
	panic(http.ErrAbortHandler)
}

// allowGet answers 405 and returns false unless r is a GET.
func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet {
		return true
	}
	w.Header().Set("Allow", http.MethodGet)
	writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed", r.Method))
	return false
}

// errorBody is the body of every error answer.
type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only the fixed types of this package are written, so this does not
		// happen; answer as a broken provider would.
		http.Error(w, fmt.Sprintf("encode %T: %v", v, err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// FetchStats returns the counters of the simulator served at base, read
// from its /stats endpoint: what the tools that drive one (cmd/chaos,
// cmd/bench) compare their figures with.
func FetchStats(ctx context.Context, base string) (Stats, error) {
	var st Stats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/stats", nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, fmt.Errorf("get %s/stats: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("get %s/stats: %s", base, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("decode %s/stats: %w", base, err)
	}
	return st, nil
}
