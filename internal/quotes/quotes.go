// Package quotes is the client of the quotes provider, the source of the daily
// stock sync. The provider's contract:
//
//	GET {base}/v1/quotes/{SYMBOL}?date=YYYY-MM-DD
//	200 {"symbol","date","open","high","low","close","volume"}
//	200 JSON but wrong (see Parse)      item-permanent
//	200 larger than 64 KiB              item-permanent
//	404 unknown symbol                  item-permanent
//	429 with Retry-After (seconds)      rate-limited
//	401, 403 bad credentials            run-fatal
//	5xx, timeouts, bodies not JSON      transient
//
// The client classifies every error with package fault, retries transient
// ones a bounded number of times, waits out short Retry-After answers in
// place, and takes every request from a rate limiter shared by all workers.
package quotes

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/syncworker/syncworker/internal/fault"
)

// DateLayout is the layout of dates in the contract.
const DateLayout = "2006-01-02"

// ErrLimiter marks a failure of the rate limiter itself (its Redis does not
// answer): no request was made, so it is the batch's error, not the item's.
var ErrLimiter = errors.New("rate limiter")

// maxBody bounds the size of a response body the client reads.
const maxBody = 64 << 10

// minRetryAfterPause is the least a fetch waits after a 429, even one that
// says Retry-After: 0, so as not to hammer a provider that is shedding load.
const minRetryAfterPause = 100 * time.Millisecond

// maxInPlaceWaits bounds how many short Retry-After answers one fetch waits
// out before it hands the batch back to the queue.
const maxInPlaceWaits = 8

// Quote is one symbol's prices on one trading day. Prices are decimal text,
// exactly as the provider sent them, so that no float rounding creeps in.
type Quote struct {
	Symbol string
	Date   string
	Open   string
	High   string
	Low    string
	Close  string
	Volume int64
}

// Limiter hands out the permission to make one request.
type Limiter interface {
	Wait(ctx context.Context) error
}

// Metrics receive what the client's requests did, for monitoring.
type Metrics interface {
	// Fetched observes one request that took d and failed with err (nil:
	// succeeded); err is classified (package fault).
	Fetched(d time.Duration, err error)
}

// Options configure a Client.
type Options struct {
	// BaseURL is the provider's base URL.
	BaseURL string
	// APIKey, when set, is sent as a bearer token.
	APIKey string
	// Timeout bounds one request.
	Timeout time.Duration
	// MaxAttempts is how many times a quote is requested while the provider
	// answers with transient errors.
	MaxAttempts int
	// MaxRetryAfter is the longest Retry-After waited out in place; a longer
	// one is returned as a rate-limited error.
	MaxRetryAfter time.Duration
	// Limiter, when set, is waited on before every request.
	Limiter Limiter
	// Metrics, when set, observe every request.
	Metrics Metrics
	// HTTPClient is used for requests; nil means a client with sane
	// transport limits.
	HTTPClient *http.Client
	// Backoff returns the pause before transient retry n (1-based); nil means
	// exponential from 100ms with jitter.
	Backoff func(n int) time.Duration
}

// Client fetches quotes from the provider.
type Client struct {
	base          *url.URL
	apiKey        string
	timeout       time.Duration
	maxAttempts   int
	maxRetryAfter time.Duration
	limiter       Limiter
	metrics       Metrics
	http          *http.Client
	backoff       func(n int) time.Duration
}

// NewClient returns a client for the provider at opts.BaseURL.
func NewClient(opts Options) (*Client, error) {
	base, err := url.Parse(opts.BaseURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("quotes base url %q must be an http(s) URL with a host", opts.BaseURL)
	}
	if opts.MaxAttempts < 1 {
		return nil, fmt.Errorf("quotes max attempts must be at least 1, got %d", opts.MaxAttempts)
	}
	if opts.Timeout <= 0 {
		return nil, fmt.Errorf("quotes timeout must be positive, got %s", opts.Timeout)
	}
	hc := opts.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		hc = &http.Client{Transport: tr}
	}
	backoff := opts.Backoff
	if backoff == nil {
		backoff = func(n int) time.Duration {
			d := 100 * time.Millisecond << min(n-1, 6)
			return d/2 + rand.N(d/2+1)
		}
	}
	return &Client{
		base:          base,
		apiKey:        opts.APIKey,
		timeout:       opts.Timeout,
		maxAttempts:   opts.MaxAttempts,
		maxRetryAfter: opts.MaxRetryAfter,
		limiter:       opts.Limiter,
		metrics:       opts.Metrics,
		http:          hc,
		backoff:       backoff,
	}, nil
}

// Fetch returns the quote of symbol on date and the number of requests it
// took. Its error is classified (package fault); when ctx ends it returns
// ctx's error, which is nobody's failure.
func (c *Client) Fetch(ctx context.Context, symbol string, date time.Time) (Quote, int, error) {
	requests, transient, waits := 0, 0, 0
	for {
		if c.limiter != nil {
			if err := c.limiter.Wait(ctx); err != nil {
				if ctx.Err() != nil {
					return Quote{}, requests, ctx.Err()
				}
				return Quote{}, requests, fmt.Errorf("%w: %w", ErrLimiter, err)
			}
		}
		requests++
		start := time.Now()
		q, err := c.once(ctx, symbol, date)
		if err != nil && ctx.Err() != nil {
			// Cut short by the batch's end: nobody's failure, not measured.
			return Quote{}, requests, ctx.Err()
		}
		if c.metrics != nil {
			c.metrics.Fetched(time.Since(start), err)
		}
		if err == nil {
			return q, requests, nil
		}
		var pause time.Duration
		switch fault.ClassOf(err) {
		case fault.RateLimited:
			d, _ := fault.RetryAfter(err)
			waits++
			if d > c.maxRetryAfter || waits > maxInPlaceWaits {
				return Quote{}, requests, err
			}
			pause = max(d, minRetryAfterPause)
		case fault.Transient:
			transient++
			if transient >= c.maxAttempts {
				return Quote{}, requests, fmt.Errorf("after %d attempts: %w", transient, err)
			}
			pause = c.backoff(transient)
		default:
			return Quote{}, requests, err
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return Quote{}, requests, ctx.Err()
		case <-t.C:
		}
	}
}

// once makes one request and classifies its outcome.
func (c *Client) once(ctx context.Context, symbol string, date time.Time) (Quote, error) {
	day := date.Format(DateLayout)
	u := c.base.JoinPath("v1", "quotes", symbol)
	u.RawQuery = url.Values{"date": {day}}.Encode()

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Quote{}, fault.Wrap(fault.ItemPermanent, fmt.Errorf("build request for %s: %w", symbol, err))
	}
	req.Header.Set("Accept", "application/json")
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return Quote{}, fault.Wrap(fault.Transient, fmt.Errorf("get quote %s: %w", symbol, err))
	}
	defer resp.Body.Close()
	body, readErr := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))

	switch code := resp.StatusCode; {
	case code == http.StatusOK:
		if readErr != nil {
			return Quote{}, fault.Wrap(fault.Transient, fmt.Errorf("read quote %s: %w", symbol, readErr))
		}
		if len(body) > maxBody {
			return Quote{}, fault.Wrap(fault.ItemPermanent, fmt.Errorf("quote %s: response larger than %d bytes", symbol, maxBody))
		}
		return Parse(body, symbol, day)
	case code == http.StatusNotFound:
		return Quote{}, fault.Wrap(fault.ItemPermanent, fmt.Errorf("quote %s: provider answered 404 Not Found%s", symbol, detail(body)))
	case code == http.StatusTooManyRequests:
		d := fault.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		return Quote{}, fault.Limited(fmt.Errorf("quote %s: provider answered 429, retry after %s", symbol, d), d)
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return Quote{}, fault.Wrap(fault.RunFatal, fmt.Errorf("quotes provider refused the credentials: %d %s%s", code, http.StatusText(code), detail(body)))
	case code >= 500 || code == http.StatusRequestTimeout || code == http.StatusTooEarly:
		return Quote{}, fault.Wrap(fault.Transient, fmt.Errorf("quote %s: provider answered %d %s", symbol, code, http.StatusText(code)))
	default:
		return Quote{}, fault.Wrap(fault.ItemPermanent, fmt.Errorf("quote %s: provider answered %d %s%s", symbol, code, http.StatusText(code), detail(body)))
	}
}

// detail returns the provider's error message from a JSON error body, if
// any, made safe to store and show (see clean).
func detail(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		return ""
	}
	return ": " + fault.Sanitize(e.Error, 200)
}

// isDecimal reports whether s is a non-negative decimal number of 1 to 15
// digits, then optionally a point and 1 to 10 digits: what
// ^\d{1,15}(\.\d{1,10})?$ matches, without a regexp (it runs for every price
// of every quote).
func isDecimal(s string) bool {
	whole, frac, point := strings.Cut(s, ".")
	return digits(whole, 15) && (!point || digits(frac, 10))
}

// digits reports whether s is 1 to most ASCII digits.
func digits(s string, most int) bool {
	if len(s) == 0 || len(s) > most {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// nonFinite finds the NaN and Infinity literals that some JSON encoders
// (Python's, by default) write for numbers, which JSON does not have.
var nonFinite = regexp.MustCompile(`([:,\[]\s*)(-?(?:NaN|Infinity))\b`)

// isSyntaxError reports whether err is encoding/json's for text that is not
// JSON.
func isSyntaxError(err error) bool {
	var se *json.SyntaxError
	return errors.As(err, &se)
}

// rawQuote is a quote as the provider sent it, each field nil when absent.
type rawQuote struct {
	Symbol *string          `json:"symbol"`
	Date   *string          `json:"date"`
	Open   *json.RawMessage `json:"open"`
	High   *json.RawMessage `json:"high"`
	Low    *json.RawMessage `json:"low"`
	Close  *json.RawMessage `json:"close"`
	Volume *json.RawMessage `json:"volume"`
}

// Parse decodes and checks a 200 body for symbol on day. A body that is not
// JSON is transient (a cut-off answer). One that is JSON but wrong is
// item-permanent, as asking again would not make it right: another symbol or
// day, a missing field or one of the wrong type, a price that is not a finite
// non-negative decimal number (NaN and Infinity included, which are wrong
// values, not cut-off answers), a volume that is not a non-negative integer,
// low above high, or open or close outside low..high.
func Parse(body []byte, symbol, day string) (Quote, error) {
	var raw rawQuote
	// Unmarshal checks that the body is JSON before it decodes anything, so
	// a syntax error is all that an invalid body gets, and a valid one is
	// scanned once, not twice.
	err := json.Unmarshal(body, &raw)
	if err != nil && isSyntaxError(err) {
		// Quoted, a non-finite number is a string where a number belongs,
		// which the checks below name.
		quoted := nonFinite.ReplaceAll(body, []byte(`$1"$2"`))
		if !json.Valid(quoted) {
			return Quote{}, fault.Wrap(fault.Transient, fmt.Errorf("quote %s: unreadable response body", symbol))
		}
		body = quoted
		raw = rawQuote{}
		err = json.Unmarshal(body, &raw)
	}
	bad := func(format string, args ...any) (Quote, error) {
		return Quote{}, fault.Wrap(fault.ItemPermanent, fmt.Errorf("quote %s: invalid response: %s", symbol, fmt.Sprintf(format, args...)))
	}
	if trimmed := bytes.TrimLeft(body, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
		return bad("%s, want a JSON object", truncate(string(body)))
	}
	if err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return bad("%s is a JSON %s, want a %s", truncate(te.Field), te.Value, te.Type)
		}
		return bad("%s", truncate(err.Error()))
	}
	switch {
	case raw.Symbol == nil:
		return bad("no symbol")
	case *raw.Symbol != symbol:
		return bad("symbol %q, asked for %q", truncate(*raw.Symbol), symbol)
	case raw.Date == nil:
		return bad("no date")
	case *raw.Date != day:
		return bad("date %q, asked for %q", truncate(*raw.Date), day)
	}
	q := Quote{Symbol: symbol, Date: day}
	prices := []struct {
		name string
		raw  *json.RawMessage
		dst  *string
	}{{"open", raw.Open, &q.Open}, {"high", raw.High, &q.High}, {"low", raw.Low, &q.Low}, {"close", raw.Close, &q.Close}}
	for _, p := range prices {
		if p.raw == nil {
			return bad("no %s", p.name)
		}
		text := string(*p.raw)
		if !isDecimal(text) {
			return bad("%s is %s, want a non-negative decimal number", p.name, truncate(text))
		}
		*p.dst = text
	}
	if raw.Volume == nil {
		return bad("no volume")
	}
	v, err := strconv.ParseInt(string(*raw.Volume), 10, 64)
	if err != nil || v < 0 {
		return bad("volume is %s, want a non-negative integer", truncate(string(*raw.Volume)))
	}
	q.Volume = v
	if compareDecimal(q.Low, q.High) > 0 {
		return bad("low %s above high %s", q.Low, q.High)
	}
	for _, p := range []struct{ name, v string }{{"open", q.Open}, {"close", q.Close}} {
		if compareDecimal(p.v, q.Low) < 0 || compareDecimal(p.v, q.High) > 0 {
			return bad("%s %s outside low %s .. high %s", p.name, p.v, q.Low, q.High)
		}
	}
	return q, nil
}

// compareDecimal compares two numbers that match decimal exactly (floats
// would round digits past the 16th away): -1 when a < b, 0 when equal, +1
// when a > b.
func compareDecimal(a, b string) int {
	ai, af, _ := strings.Cut(a, ".")
	bi, bf, _ := strings.Cut(b, ".")
	ai, bi = strings.TrimLeft(ai, "0"), strings.TrimLeft(bi, "0")
	if c := cmp.Compare(len(ai), len(bi)); c != 0 {
		return c
	}
	if c := strings.Compare(ai, bi); c != 0 {
		return c
	}
	n := max(len(af), len(bf))
	return strings.Compare(af+strings.Repeat("0", n-len(af)), bf+strings.Repeat("0", n-len(bf)))
}

// truncate shortens provider text for an error message (see clean).
func truncate(s string) string { return fault.Sanitize(s, 40) }
