package quotes

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/fault"
	"github.com/syncworker/syncworker/internal/testenv"
)

var day = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

const goodBody = `{"symbol":"AAPL","date":"2026-11-20","open":123.45,"high":125.1,"low":122.07,"close":124.5,"volume":1234567}`

// reply is one canned answer of the test provider.
type reply struct {
	status     int
	body       string
	retryAfter string
	delay      time.Duration
}

// provider answers requests with the replies in turn, repeating the last.
func provider(t *testing.T, replies ...reply) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		rep := replies[min(i, len(replies)-1)]
		if r.URL.Path != "/v1/quotes/AAPL" || r.URL.Query().Get("date") != "2026-11-20" {
			t.Errorf("request %s, want /v1/quotes/AAPL?date=2026-11-20", r.URL)
		}
		if rep.delay > 0 {
			select {
			case <-time.After(rep.delay):
			case <-r.Context().Done():
				return
			}
		}
		if rep.retryAfter != "" {
			w.Header().Set("Retry-After", rep.retryAfter)
		}
		w.WriteHeader(rep.status)
		_, _ = w.Write([]byte(rep.body))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func client(t *testing.T, url string) *Client {
	t.Helper()
	c, err := NewClient(Options{BaseURL: url, Timeout: 200 * time.Millisecond, MaxAttempts: 3,
		MaxRetryAfter: 2 * time.Second, Backoff: func(int) time.Duration { return time.Millisecond }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFetchClassifies(t *testing.T) {
	tests := []struct {
		name         string
		replies      []reply
		wantClass    fault.Class
		wantOK       bool
		wantRequests int
		wantErr      string
		wantRetry    time.Duration
	}{
		{name: "ok", replies: []reply{{status: 200, body: goodBody}}, wantOK: true, wantRequests: 1},
		{name: "5xx then ok", replies: []reply{{status: 503}, {status: 200, body: goodBody}}, wantOK: true, wantRequests: 2},
		{name: "5xx until attempts run out", replies: []reply{{status: 500}}, wantClass: fault.Transient, wantRequests: 3, wantErr: "after 3 attempts"},
		{name: "unreadable body is transient", replies: []reply{{status: 200, body: `{"symbol":"AA`}}, wantClass: fault.Transient, wantRequests: 3, wantErr: "unreadable"},
		{name: "timeout is transient", replies: []reply{{status: 200, body: goodBody, delay: time.Second}}, wantClass: fault.Transient, wantRequests: 3},
		{name: "404 is item-permanent", replies: []reply{{status: 404, body: `{"error":"unknown symbol AAPL"}`}}, wantClass: fault.ItemPermanent, wantRequests: 1, wantErr: "404 Not Found: unknown symbol AAPL"},
		{name: "400 is item-permanent", replies: []reply{{status: 400, body: `{"error":"bad date"}`}}, wantClass: fault.ItemPermanent, wantRequests: 1, wantErr: "bad date"},
		{name: "401 is run-fatal", replies: []reply{{status: 401}}, wantClass: fault.RunFatal, wantRequests: 1, wantErr: "credentials"},
		{name: "403 is run-fatal", replies: []reply{{status: 403}}, wantClass: fault.RunFatal, wantRequests: 1},
		{name: "short 429 is waited out", replies: []reply{{status: 429, retryAfter: "0"}, {status: 200, body: goodBody}}, wantOK: true, wantRequests: 2},
		{name: "long 429 goes back to the queue", replies: []reply{{status: 429, retryAfter: "60"}}, wantClass: fault.RateLimited, wantRequests: 1, wantRetry: time.Minute},
		{name: "endless short 429s go back to the queue", replies: []reply{{status: 429, retryAfter: "0"}}, wantClass: fault.RateLimited, wantRequests: maxInPlaceWaits + 1},
		{name: "429s do not use up attempts", replies: []reply{{status: 500}, {status: 429, retryAfter: "0"}, {status: 500}, {status: 200, body: goodBody}}, wantOK: true, wantRequests: 4},
		{name: "wrong symbol", replies: []reply{{status: 200, body: strings.Replace(goodBody, `"AAPL"`, `"MSFT"`, 1)}}, wantClass: fault.ItemPermanent, wantRequests: 1, wantErr: `symbol "MSFT"`},
		{name: "negative price", replies: []reply{{status: 200, body: strings.Replace(goodBody, `123.45`, `-1`, 1)}}, wantClass: fault.ItemPermanent, wantRequests: 1, wantErr: "open is -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, n := provider(t, tt.replies...)
			q, requests, err := client(t, srv.URL).Fetch(context.Background(), "AAPL", day)
			if requests != tt.wantRequests || int(n.Load()) != tt.wantRequests {
				t.Errorf("requests = %d (server saw %d), want %d", requests, n.Load(), tt.wantRequests)
			}
			if tt.wantOK {
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				want := Quote{Symbol: "AAPL", Date: "2026-11-20", Open: "123.45", High: "125.1", Low: "122.07", Close: "124.5", Volume: 1234567}
				if q != want {
					t.Errorf("quote = %+v, want %+v", q, want)
				}
				return
			}
			if err == nil {
				t.Fatal("Fetch succeeded, want an error")
			}
			if c := fault.ClassOf(err); c != tt.wantClass {
				t.Errorf("class = %s, want %s (error %v)", c, tt.wantClass, err)
			}
			if tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if tt.wantRetry > 0 {
				if d, ok := fault.RetryAfter(err); !ok || d != tt.wantRetry {
					t.Errorf("RetryAfter = %s, %v; want %s", d, ok, tt.wantRetry)
				}
			}
		})
	}
}

func TestFetchStopsWithItsContext(t *testing.T) {
	srv, _ := provider(t, reply{status: 200, body: goodBody, delay: 5 * time.Second})
	c, err := NewClient(Options{BaseURL: srv.URL, Timeout: 10 * time.Second, MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, _, err = c.Fetch(ctx, "AAPL", day)
	if !errors.Is(err, context.Canceled) || errors.As(err, new(*fault.Error)) {
		t.Fatalf("Fetch = %v, want the context's own error, unclassified", err)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		wantClass fault.Class
		wantErr   string
	}{
		{"not json", `<html>`, fault.Transient, "unreadable"},
		{"truncated", `{"symbol":"AAPL"`, fault.Transient, "unreadable"},
		{"array", `[1]`, fault.ItemPermanent, "invalid response"},
		{"no symbol", `{"date":"2026-11-20"}`, fault.ItemPermanent, "no symbol"},
		{"other date", strings.Replace(goodBody, "2026-11-20", "2026-11-19", 1), fault.ItemPermanent, `date "2026-11-19"`},
		{"string price", strings.Replace(goodBody, `123.45`, `"123.45"`, 1), fault.ItemPermanent, "open is"},
		{"NaN price", strings.Replace(goodBody, `123.45`, `"NaN"`, 1), fault.ItemPermanent, "open is"},
		{"exponent price", strings.Replace(goodBody, `123.45`, `1e400`, 1), fault.ItemPermanent, "open is"},
		{"null close", strings.Replace(goodBody, `124.5`, `null`, 1), fault.ItemPermanent, "no close"},
		{"missing volume", strings.Replace(goodBody, `,"volume":1234567`, ``, 1), fault.ItemPermanent, "no volume"},
		{"fractional volume", strings.Replace(goodBody, `1234567`, `12.5`, 1), fault.ItemPermanent, "volume is 12.5"},
		{"negative volume", strings.Replace(goodBody, `1234567`, `-5`, 1), fault.ItemPermanent, "volume is -5"},
		{"low above high", strings.Replace(goodBody, `"low":122.07`, `"low":200`, 1), fault.ItemPermanent, "above high"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.body), "AAPL", "2026-11-20")
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if c := fault.ClassOf(err); c != tt.wantClass {
				t.Errorf("class = %s, want %s", c, tt.wantClass)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
	q, err := Parse([]byte(`{"symbol":"AAPL","date":"2026-11-20","open":1,"high":2.5,"low":0.5,"close":2,"volume":0,"extra":"ignored"}`), "AAPL", "2026-11-20")
	if err != nil || q.Open != "1" || q.High != "2.5" || q.Volume != 0 {
		t.Errorf("Parse of a valid body with an extra field = %+v, %v", q, err)
	}
}

func TestRetryAfterHeader(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"3", 3 * time.Second},
		{"0", 0},
		{"", time.Second},
		{"soon", time.Second},
		{"-4", time.Second},
		{"999999", time.Hour},
		{now.Add(7 * time.Second).Format(http.TimeFormat), 7 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
	}
	for _, tt := range tests {
		if got := retryAfter(tt.in, now); got != tt.want {
			t.Errorf("retryAfter(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// The limiter holds a rate across every process that shares its Redis: two
// limiters on one key together stay within it.
func TestRedisLimiterIsShared(t *testing.T) {
	r := testenv.NewRedis(t)
	const perSecond, waits = 20, 60
	a := NewRedisLimiter(r.Client, "test:limit", perSecond)
	b := NewRedisLimiter(r.Client, "test:limit", perSecond)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range waits {
		l := a
		if i%2 == 1 {
			l = b
		}
		wg.Go(func() {
			if err := l.Wait(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// A burst of perSecond, then perSecond a second: 60 waits need at least
	// (60-20)/20 = 2 s. A lower bound, so a slow machine cannot fail it.
	if el, min := time.Since(start), time.Duration(waits-perSecond)*time.Second/perSecond; el < min-100*time.Millisecond {
		t.Errorf("%d waits at %d/s took %s, want at least %s", waits, perSecond, el, min)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait on a cancelled context = %v", err)
	}
}
