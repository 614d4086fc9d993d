package simulator_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/simulator"
)

const quotePath = "/v1/quotes/AAPL?date=2026-11-20"

// serve sends one request to h and returns the recorded answer.
func serve(t *testing.T, h http.Handler, method, target string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func bearer(key string) http.Header {
	return http.Header{"Authorization": {"Bearer " + key}}
}

// errorMessage decodes an error body and returns its message.
func errorMessage(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var body struct {
		Error *string `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error == nil {
		t.Fatalf("error body %q: want {\"error\": ...} (%v)", rec.Body.String(), err)
	}
	return *body.Error
}

func TestServeHTTPStatus(t *testing.T) {
	tests := []struct {
		name    string
		cfg     simulator.Config
		method  string
		target  string
		header  http.Header
		want    int
		wantErr string // substring of the error message, for error answers
		check   func(t *testing.T, rec *httptest.ResponseRecorder)
	}{
		{
			name: "ok", target: quotePath, want: http.StatusOK,
			check: func(t *testing.T, rec *httptest.ResponseRecorder) {
				checkQuote(t, rec, "AAPL", time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC))
			},
		},
		{
			name: "ok with dots and dashes", target: "/v1/quotes/BRK.B-1?date=2024-02-29", want: http.StatusOK,
			check: func(t *testing.T, rec *httptest.ResponseRecorder) {
				checkQuote(t, rec, "BRK.B-1", time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC))
			},
		},
		{name: "unknown XX symbol", target: "/v1/quotes/XXFOO?date=2026-11-20", want: http.StatusNotFound, wantErr: "unknown symbol XXFOO"},
		{name: "unknown by hash", cfg: simulator.Config{UnknownRate: 1}, target: quotePath, want: http.StatusNotFound, wantErr: "unknown symbol AAPL"},
		{name: "missing date", target: "/v1/quotes/AAPL", want: http.StatusBadRequest, wantErr: "date"},
		{name: "empty date", target: "/v1/quotes/AAPL?date=", want: http.StatusBadRequest, wantErr: "date"},
		{name: "compact date", target: "/v1/quotes/AAPL?date=20261120", want: http.StatusBadRequest, wantErr: "date"},
		{name: "short date", target: "/v1/quotes/AAPL?date=2026-1-2", want: http.StatusBadRequest, wantErr: "date"},
		{name: "impossible date", target: "/v1/quotes/AAPL?date=2026-02-30", want: http.StatusBadRequest, wantErr: "date"},
		{name: "date with time", target: "/v1/quotes/AAPL?date=2026-11-20T00:00:00Z", want: http.StatusBadRequest, wantErr: "date"},
		{name: "lower-case symbol", target: "/v1/quotes/aapl?date=2026-11-20", want: http.StatusBadRequest, wantErr: "symbol"},
		{name: "symbol with bad character", target: "/v1/quotes/A$B?date=2026-11-20", want: http.StatusBadRequest, wantErr: "symbol"},
		{name: "symbol starting with dot", target: "/v1/quotes/.A?date=2026-11-20", want: http.StatusBadRequest, wantErr: "symbol"},
		{name: "symbol too long", target: "/v1/quotes/" + strings.Repeat("A", 21) + "?date=2026-11-20", want: http.StatusBadRequest, wantErr: "symbol"},
		{name: "empty symbol", target: "/v1/quotes/?date=2026-11-20", want: http.StatusBadRequest, wantErr: "symbol"},
		{name: "nested path", target: "/v1/quotes/AAPL/x?date=2026-11-20", want: http.StatusBadRequest, wantErr: "symbol"},
		{name: "bad symbol checked before unknown", cfg: simulator.Config{UnknownRate: 1}, target: "/v1/quotes/xx?date=2026-11-20", want: http.StatusBadRequest, wantErr: "symbol"},
		{name: "no API key", cfg: simulator.Config{APIKey: "k3y"}, target: quotePath, want: http.StatusUnauthorized, wantErr: "API key"},
		{name: "wrong API key", cfg: simulator.Config{APIKey: "k3y"}, target: quotePath, header: bearer("nope"), want: http.StatusUnauthorized, wantErr: "API key"},
		{name: "API key without Bearer", cfg: simulator.Config{APIKey: "k3y"}, target: quotePath, header: http.Header{"Authorization": {"k3y"}}, want: http.StatusUnauthorized},
		{name: "right API key", cfg: simulator.Config{APIKey: "k3y"}, target: quotePath, header: bearer("k3y"), want: http.StatusOK},
		{name: "auth checked before syntax", cfg: simulator.Config{APIKey: "k3y"}, target: "/v1/quotes/aapl", want: http.StatusUnauthorized},
		{name: "API key ignored when not configured", target: quotePath, header: bearer("whatever"), want: http.StatusOK},
		{name: "POST", method: http.MethodPost, target: quotePath, want: http.StatusMethodNotAllowed, check: func(t *testing.T, rec *httptest.ResponseRecorder) {
			if got := rec.Header().Get("Allow"); got != "GET" {
				t.Errorf("Allow = %q, want GET", got)
			}
		}},
		{name: "method checked before auth", method: http.MethodDelete, cfg: simulator.Config{APIKey: "k3y"}, target: quotePath, want: http.StatusMethodNotAllowed},
		{name: "injected 429", cfg: simulator.Config{RateLimitedRate: 1, RetryAfter: 2500 * time.Millisecond}, target: quotePath, want: http.StatusTooManyRequests, check: retryAfter("3")},
		{name: "injected 429 minimum Retry-After", cfg: simulator.Config{RateLimitedRate: 1}, target: quotePath, want: http.StatusTooManyRequests, check: retryAfter("1")},
		{name: "injected 429 before 5xx", cfg: simulator.Config{RateLimitedRate: 1, ErrorRate: 1, RetryAfter: 7 * time.Second}, target: quotePath, want: http.StatusTooManyRequests, check: retryAfter("7")},
		{name: "auth before injected faults", cfg: simulator.Config{APIKey: "k3y", ErrorRate: 1}, target: quotePath, want: http.StatusUnauthorized},
		{name: "injected 5xx", cfg: simulator.Config{ErrorRate: 1}, target: quotePath, want: 0 /* any 5xx */, wantErr: "server error"},
		{name: "faults before syntax", cfg: simulator.Config{ErrorRate: 1}, target: "/v1/quotes/bad?date=x", want: 0 /* any 5xx */},
		{
			name: "garbage", cfg: simulator.Config{GarbageRate: 1}, target: quotePath, want: http.StatusOK,
			check: func(t *testing.T, rec *httptest.ResponseRecorder) {
				var q simulator.Quote
				if err := json.Unmarshal(rec.Body.Bytes(), &q); err == nil {
					t.Errorf("garbage body %q decodes as %+v, want an error", rec.Body.String(), q)
				}
			},
		},
		{name: "healthz", target: "/healthz", want: http.StatusOK, check: func(t *testing.T, rec *httptest.ResponseRecorder) {
			if got := rec.Body.String(); got != "ok" {
				t.Errorf("body = %q, want ok", got)
			}
		}},
		{name: "healthz POST", method: http.MethodPost, target: "/healthz", want: http.StatusMethodNotAllowed},
		{name: "stats", target: "/stats", want: http.StatusOK},
		{name: "unknown route", target: "/v2/quotes/AAPL", want: http.StatusNotFound, wantErr: "no route"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			rec := serve(t, simulator.New(tt.cfg), method, tt.target, tt.header)
			switch tt.want {
			case 0:
				if s := rec.Code; s != 500 && s != 502 && s != 503 {
					t.Fatalf("status = %d, want 500, 502 or 503; body %q", s, rec.Body.String())
				}
			default:
				if rec.Code != tt.want {
					t.Fatalf("status = %d, want %d; body %q", rec.Code, tt.want, rec.Body.String())
				}
			}
			if tt.wantErr != "" {
				if msg := errorMessage(t, rec); !strings.Contains(msg, tt.wantErr) {
					t.Errorf("error = %q, want it to contain %q", msg, tt.wantErr)
				}
			}
			if rec.Code >= 400 && tt.wantErr == "" {
				errorMessage(t, rec) // Every error answer has a JSON error body.
			}
			if tt.check != nil {
				tt.check(t, rec)
			}
		})
	}
}

// checkQuote checks that rec holds the quote of symbol on day, with prices
// written as exact decimals.
func checkQuote(t *testing.T, rec *httptest.ResponseRecorder, symbol string, day time.Time) {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatalf("body %q: %v", rec.Body.String(), err)
	}
	want := simulator.Price(symbol, day)
	wantRaw := map[string]string{
		"symbol": `"` + symbol + `"`,
		"date":   `"` + day.Format("2006-01-02") + `"`,
		"open":   string(want.Open),
		"high":   string(want.High),
		"low":    string(want.Low),
		"close":  string(want.Close),
		"volume": "",
	}
	if len(raw) != len(wantRaw) {
		t.Errorf("body %s has fields %v, want exactly %v", rec.Body.String(), keys(raw), keys(wantRaw))
	}
	for k, w := range wantRaw {
		got := string(raw[k])
		switch k {
		case "volume":
			var v int64
			if err := json.Unmarshal(raw[k], &v); err != nil || v != want.Volume {
				t.Errorf("volume = %s, want the integer %d", got, want.Volume)
			}
		case "open", "high", "low", "close":
			cents(t, json.Number(got)) // Checks the decimal text.
			fallthrough
		default:
			if got != w {
				t.Errorf("%s = %s, want %s", k, got, w)
			}
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func retryAfter(want string) func(*testing.T, *httptest.ResponseRecorder) {
	return func(t *testing.T, rec *httptest.ResponseRecorder) {
		t.Helper()
		if got := rec.Header().Get("Retry-After"); got != want {
			t.Errorf("Retry-After = %q, want %q", got, want)
		}
	}
}

func TestServerErrorCodes(t *testing.T) {
	s := simulator.New(simulator.Config{ErrorRate: 1, Seed: 1})
	seen := map[int]int{}
	for range 300 {
		seen[serve(t, s, http.MethodGet, quotePath, nil).Code]++
	}
	for _, code := range []int{500, 502, 503} {
		if seen[code] == 0 {
			t.Errorf("status %d never answered in 300 requests: %v", code, seen)
		}
	}
	if len(seen) != 3 {
		t.Errorf("statuses = %v, want only 500, 502 and 503", seen)
	}
}

func TestFaultRates(t *testing.T) {
	s := simulator.New(simulator.Config{ErrorRate: 0.2, GarbageRate: 0.25, Seed: 42})
	const n = 4000
	for range n {
		serve(t, s, http.MethodGet, quotePath, nil)
	}
	st := s.Stats()
	// ErrorRate applies to all requests, GarbageRate to those that got no 5xx.
	if got := float64(st.ServerErrors) / n; got < 0.17 || got > 0.23 {
		t.Errorf("server error fraction = %.3f, want about 0.2", got)
	}
	if got := float64(st.Garbage) / float64(n-st.ServerErrors); got < 0.22 || got > 0.28 {
		t.Errorf("garbage fraction = %.3f, want about 0.25", got)
	}
	if st.OK+st.Garbage+st.ServerErrors != n {
		t.Errorf("stats %+v do not add up to %d requests", st, n)
	}
}

func TestSeedDeterministic(t *testing.T) {
	run := func(seed int64) []int {
		s := simulator.New(simulator.Config{ErrorRate: 0.3, RateLimitedRate: 0.2, GarbageRate: 0.2, Seed: seed})
		var codes []int
		for range 200 {
			codes = append(codes, serve(t, s, http.MethodGet, quotePath, nil).Code)
		}
		return codes
	}
	a, b, c := run(7), run(7), run(8)
	if !slices.Equal(a, b) {
		t.Errorf("two servers with seed 7 answered differently:\n%v\n%v", a, b)
	}
	if slices.Equal(a, c) {
		t.Errorf("seeds 7 and 8 answered the same: %v", a)
	}
}

func TestRateLimit(t *testing.T) {
	// The burst passes, the rest is throttled.
	const burst = 3
	s := simulator.New(simulator.Config{RateLimit: burst})
	var codes []int
	for range 10 {
		rec := serve(t, s, http.MethodGet, quotePath, nil)
		codes = append(codes, rec.Code)
		if rec.Code == http.StatusTooManyRequests {
			if got := rec.Header().Get("Retry-After"); got != "1" {
				t.Errorf("Retry-After = %q, want 1", got)
			}
			if msg := errorMessage(t, rec); msg == "" {
				t.Errorf("empty error message")
			}
		}
	}
	// Refill is 3 tokens/s; 10 in-memory requests take far less than 1/3 s,
	// so at most one token can come back.
	ok := 0
	for _, c := range codes {
		if c == http.StatusOK {
			ok++
		}
	}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 200 || codes[3] != 429 || ok > burst+1 {
		t.Errorf("statuses = %v, want %d × 200 then 429s", codes, burst)
	}
	st := s.Stats()
	if st.Throttled != int64(10-ok) || st.RateLimited != 0 || st.OK != int64(ok) || st.Requests != 10 {
		t.Errorf("stats = %+v, want %d throttled, %d ok, 0 rate limited", st, 10-ok, ok)
	}

	// Unauthorized requests take no token.
	s = simulator.New(simulator.Config{RateLimit: 1, APIKey: "k"})
	for range 5 {
		serve(t, s, http.MethodGet, quotePath, nil)
	}
	if rec := serve(t, s, http.MethodGet, quotePath, bearer("k")); rec.Code != http.StatusOK {
		t.Errorf("first authorized request after 401s: status %d, want 200", rec.Code)
	}
}

func TestStats(t *testing.T) {
	s := simulator.New(simulator.Config{APIKey: "k"})
	auth := bearer("k")
	requests := []struct {
		method, target string
		header         http.Header
	}{
		{"GET", quotePath, auth},
		{"GET", "/v1/quotes/MSFT?date=2026-11-20", auth},
		{"GET", "/v1/quotes/XX1?date=2026-11-20", auth},
		{"GET", "/v1/quotes/aapl?date=2026-11-20", auth},
		{"GET", "/v1/quotes/AAPL?date=bad", auth},
		{"GET", quotePath, nil},
		{"POST", quotePath, auth},
		{"GET", "/v1/records?take=2", auth},
		{"GET", "/v1/records-cursor?limit=0", auth},
		{"GET", "/healthz", nil}, // not an API request
	}
	for _, r := range requests {
		serve(t, s, r.method, r.target, r.header)
	}
	want := simulator.Stats{Requests: 9, OK: 3, NotFound: 1, BadRequest: 3, Unauthorized: 1, Pages: 2}
	if got := s.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}

	rec := serve(t, s, http.MethodGet, "/stats", nil)
	var raw map[string]int64
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatalf("/stats body %q: %v", rec.Body.String(), err)
	}
	wantRaw := map[string]int64{
		"requests": 9, "ok": 3, "not_found": 1, "bad_request": 3, "unauthorized": 1,
		"rate_limited": 0, "throttled": 0, "server_errors": 0, "slow": 0, "garbage": 0,
		"pages": 2,
	}
	if len(raw) != len(wantRaw) {
		t.Errorf("/stats = %v, want %v", raw, wantRaw)
	}
	for k, v := range wantRaw {
		if got, ok := raw[k]; !ok || got != v {
			t.Errorf("/stats[%q] = %d (present %v), want %d", k, got, ok, v)
		}
	}
}

func TestConcurrentStats(t *testing.T) {
	s := simulator.New(simulator.Config{
		ErrorRate: 0.2, RateLimitedRate: 0.1, GarbageRate: 0.1, SlowRate: 0.1,
		SlowDelay: time.Millisecond, Jitter: time.Millisecond, UnknownRate: 0.3, RateLimit: 100_000,
	})
	srv := httptest.NewServer(s)
	defer srv.Close()
	symbols := simulator.Universe(50, 5)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 40 {
				resp, err := srv.Client().Get(srv.URL + "/v1/quotes/" + symbols[(g*40+i)%len(symbols)] + "?date=2026-11-20")
				if err != nil {
					t.Errorf("GET: %v", err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	st := s.Stats()
	sum := st.OK + st.NotFound + st.BadRequest + st.Unauthorized + st.RateLimited + st.Throttled + st.ServerErrors + st.Garbage
	if st.Requests != 320 || sum != st.Requests {
		t.Errorf("stats %+v: want 320 requests, each with one outcome (sum %d)", st, sum)
	}
	if st.NotFound == 0 || st.OK == 0 || st.ServerErrors == 0 || st.Slow == 0 {
		t.Errorf("stats %+v: want some of every outcome", st)
	}
}

func TestSlow(t *testing.T) {
	const delay = 150 * time.Millisecond
	s := simulator.New(simulator.Config{SlowRate: 1, SlowDelay: delay, Latency: 20 * time.Millisecond})
	srv := httptest.NewServer(s)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	resp := get(ctx, t, srv.URL+quotePath)
	elapsed := time.Since(start)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200; body %q", resp.StatusCode, body)
	}
	var q simulator.Quote
	if err := json.Unmarshal(body, &q); err != nil || q.Symbol != "AAPL" {
		t.Errorf("body %q: want a quote of AAPL (%v)", body, err)
	}
	if elapsed < delay+20*time.Millisecond {
		t.Errorf("slow answer took %v, want at least %v", elapsed, delay+20*time.Millisecond)
	}
	if st := s.Stats(); st.Slow != 1 || st.OK != 1 {
		t.Errorf("stats = %+v, want 1 slow and 1 ok", st)
	}
}

func get(ctx context.Context, t *testing.T, url string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp
}

func TestDelaysAbortWhenClientGoes(t *testing.T) {
	tests := []struct {
		name string
		cfg  simulator.Config
	}{
		{"slow", simulator.Config{SlowRate: 1, SlowDelay: time.Hour}},
		{"latency", simulator.Config{Latency: time.Hour}},
		{"jitter", simulator.Config{Jitter: time.Hour, Seed: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name+" handler", func(t *testing.T) {
			s := simulator.New(tt.cfg)
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
			defer cancel()
			req := httptest.NewRequestWithContext(ctx, http.MethodGet, quotePath, nil)
			rec := httptest.NewRecorder()
			done := make(chan struct{})
			var recovered any
			go func() {
				defer close(done)
				defer func() { recovered = recover() }()
				s.ServeHTTP(rec, req)
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("ServeHTTP still running 5s after the request's context ended")
			}
			if recovered != http.ErrAbortHandler {
				t.Errorf("ServeHTTP recovered %v, want a panic with http.ErrAbortHandler", recovered)
			}
			if rec.Body.Len() != 0 || rec.Header().Get("Content-Type") != "" {
				t.Errorf("answer %q written for a gone client", rec.Body.String())
			}
		})

		t.Run(tt.name+" client timeout", func(t *testing.T) {
			s := simulator.New(tt.cfg)
			done := make(chan struct{}, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				defer func() { done <- struct{}{} }() // Also when aborted.
				s.ServeHTTP(w, r)
			}))
			defer srv.Close()

			ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+quotePath, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(req)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("GET answered %d, want the client's timeout", resp.StatusCode)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("GET error = %v, want context.DeadlineExceeded", err)
			}
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("handler still running 5s after the client went away")
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  simulator.Config
		want []string // substrings of the error; none means valid
	}{
		{name: "zero", cfg: simulator.Config{}},
		{name: "all set", cfg: simulator.Config{
			Latency: time.Millisecond, Jitter: time.Millisecond, ErrorRate: 1, RateLimitedRate: 0.5,
			RetryAfter: time.Second, RateLimit: 10, SlowRate: 0.1, SlowDelay: time.Second,
			GarbageRate: 0, UnknownRate: 1, APIKey: "k", Seed: -1,
		}},
		{name: "error rate", cfg: simulator.Config{ErrorRate: 1.5}, want: []string{"ErrorRate", "--error-rate", "1.5"}},
		{name: "negative rate", cfg: simulator.Config{RateLimitedRate: -0.1}, want: []string{"--rate-limited-rate"}},
		{name: "slow rate", cfg: simulator.Config{SlowRate: 2}, want: []string{"--slow-rate"}},
		{name: "garbage rate", cfg: simulator.Config{GarbageRate: 2}, want: []string{"--garbage-rate"}},
		{name: "unknown rate", cfg: simulator.Config{UnknownRate: 2}, want: []string{"--unknown-rate"}},
		{name: "NaN", cfg: simulator.Config{ErrorRate: math.NaN()}, want: []string{"--error-rate"}},
		{name: "latency", cfg: simulator.Config{Latency: -time.Second}, want: []string{"Latency", "--latency"}},
		{name: "jitter", cfg: simulator.Config{Jitter: -1}, want: []string{"--jitter"}},
		{name: "retry after", cfg: simulator.Config{RetryAfter: -1}, want: []string{"--retry-after"}},
		{name: "slow delay", cfg: simulator.Config{SlowDelay: -1}, want: []string{"--slow-delay"}},
		{name: "rate limit", cfg: simulator.Config{RateLimit: -1}, want: []string{"RateLimit", "--rate-limit"}},
		{name: "several", cfg: simulator.Config{ErrorRate: 3, SlowDelay: -1}, want: []string{"--error-rate", "--slow-delay"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error naming %v", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}
