package quotes

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/syncworker/syncworker/internal/fault"
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
		{name: "html is transient", replies: []reply{{status: 200, body: `<html><body>Gateway</body></html>`}}, wantClass: fault.Transient, wantRequests: 3, wantErr: "unreadable"},
		{name: "empty body is transient", replies: []reply{{status: 200}}, wantClass: fault.Transient, wantRequests: 3, wantErr: "unreadable"},
		{name: "garbled once, then ok", replies: []reply{{status: 200, body: `{"symbol":"AA`}, {status: 200, body: goodBody}}, wantOK: true, wantRequests: 2},
		{name: "other date is asked once", replies: []reply{{status: 200, body: body("2026-11-20", "2026-11-21")}}, wantClass: fault.ItemPermanent, wantRequests: 1, wantErr: `date "2026-11-21"`},
		{name: "bare NaN is asked once", replies: []reply{{status: 200, body: body(`124.5`, `NaN`)}}, wantClass: fault.ItemPermanent, wantRequests: 1, wantErr: `close is "NaN"`},
		{name: "wrong type", replies: []reply{{status: 200, body: body(`"AAPL"`, `["AAPL"]`)}}, wantClass: fault.ItemPermanent, wantRequests: 1, wantErr: "symbol is a JSON array"},
		{name: "high below low", replies: []reply{{status: 200, body: body(`125.1`, `1`)}}, wantClass: fault.ItemPermanent, wantRequests: 1, wantErr: "above high"},
		{name: "body over 64 KiB", replies: []reply{{status: 200, body: body(`"volume"`, `"pad":"`+strings.Repeat("x", maxBody)+`","volume"`)}}, wantClass: fault.ItemPermanent, wantRequests: 1, wantErr: "larger than 65536 bytes"},
		{name: "404 with NUL and escapes in its message", replies: []reply{{status: 404, body: `{"error":"unknown\u0000 \u001b[31msymbol"}`}}, wantClass: fault.ItemPermanent, wantRequests: 1, wantErr: "404 Not Found: unknown   [31msymbol"},
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

// body returns goodBody with each pair of old, new replaced once.
func body(oldnew ...string) string {
	return strings.NewReplacer(oldnew...).Replace(goodBody)
}

// Every way a 200 body can be wrong gets its class and a reason that names
// what is wrong; the right ones are taken exactly as sent.
func TestParse(t *testing.T) {
	const lowBy25thDigit = `"open":123456789012345.0000000002,"high":123456789012345.0000000002,"low":123456789012345.0000000003,"close":123456789012345.0000000002`
	tests := []struct {
		name      string
		body      string
		want      Quote
		wantClass fault.Class
		wantErr   string
	}{
		{name: "valid", body: goodBody,
			want: Quote{Symbol: "AAPL", Date: "2026-11-20", Open: "123.45", High: "125.1", Low: "122.07", Close: "124.5", Volume: 1234567}},
		{name: "extra field ignored, zero volume, all prices equal",
			body: `{"symbol":"AAPL","date":"2026-11-20","open":2,"high":2.0,"low":2.00,"close":2,"volume":0,"extra":"ignored"}`,
			want: Quote{Symbol: "AAPL", Date: "2026-11-20", Open: "2", High: "2.0", Low: "2.00", Close: "2"}},
		{name: "prices kept exactly to the 25th digit",
			body: `{"symbol":"AAPL","date":"2026-11-20","open":123456789012345.0000000001,"high":123456789012345.0000000002,"low":123456789012345.0000000001,"close":123456789012345.0000000002,"volume":1}`,
			want: Quote{Symbol: "AAPL", Date: "2026-11-20", Open: "123456789012345.0000000001", High: "123456789012345.0000000002",
				Low: "123456789012345.0000000001", Close: "123456789012345.0000000002", Volume: 1}},

		// Not JSON: a cut-off or garbled answer, worth asking again.
		{name: "html", body: `<html>`, wantClass: fault.Transient, wantErr: "unreadable"},
		{name: "truncated", body: `{"symbol":"AAPL"`, wantClass: fault.Transient, wantErr: "unreadable"},
		{name: "empty", body: ``, wantClass: fault.Transient, wantErr: "unreadable"},
		{name: "garbage around a NaN", body: `{"open": NaN, oops}`, wantClass: fault.Transient, wantErr: "unreadable"},

		// JSON, but not a quote.
		{name: "array", body: `[1]`, wantClass: fault.ItemPermanent, wantErr: "[1], want a JSON object"},
		{name: "null", body: `null`, wantClass: fault.ItemPermanent, wantErr: "want a JSON object"},
		{name: "string", body: `"AAPL"`, wantClass: fault.ItemPermanent, wantErr: "want a JSON object"},
		{name: "no symbol", body: `{"date":"2026-11-20"}`, wantClass: fault.ItemPermanent, wantErr: "no symbol"},
		{name: "number symbol", body: body(`"AAPL"`, `42`), wantClass: fault.ItemPermanent, wantErr: "symbol is a JSON number, want a string"},
		{name: "other symbol", body: body(`"AAPL"`, `"MSFT"`), wantClass: fault.ItemPermanent, wantErr: `symbol "MSFT", asked for "AAPL"`},
		{name: "symbol in another case", body: body(`"AAPL"`, `"aapl"`), wantClass: fault.ItemPermanent, wantErr: `symbol "aapl"`},
		{name: "sql-looking symbol", body: body(`"AAPL"`, `"AAPL'; DROP TABLE stock_prices;--"`), wantClass: fault.ItemPermanent, wantErr: `symbol "AAPL'; DROP TABLE`},
		{name: "no date", body: body(`"date":"2026-11-20",`, ``), wantClass: fault.ItemPermanent, wantErr: "no date"},
		{name: "other date", body: body("2026-11-20", "2026-11-19"), wantClass: fault.ItemPermanent, wantErr: `date "2026-11-19", asked for "2026-11-20"`},
		{name: "date with a time", body: body("2026-11-20", "2026-11-20T00:00:00Z"), wantClass: fault.ItemPermanent, wantErr: `date "2026-11-20T00:00:00Z"`},
		{name: "number date", body: body(`"2026-11-20"`, `20261120`), wantClass: fault.ItemPermanent, wantErr: "date is a JSON number, want a string"},
		{name: "string price", body: body(`123.45`, `"123.45"`), wantClass: fault.ItemPermanent, wantErr: `open is "123.45", want a non-negative decimal number`},
		{name: "bool price", body: body(`123.45`, `true`), wantClass: fault.ItemPermanent, wantErr: "open is true"},
		{name: "object price", body: body(`123.45`, `{"v":1}`), wantClass: fault.ItemPermanent, wantErr: `open is {"v":1}`},
		{name: "quoted NaN", body: body(`123.45`, `"NaN"`), wantClass: fault.ItemPermanent, wantErr: `open is "NaN"`},
		{name: "bare NaN", body: body(`124.5`, `NaN`), wantClass: fault.ItemPermanent, wantErr: `close is "NaN"`},
		{name: "bare Infinity", body: body(`125.1`, `Infinity`), wantClass: fault.ItemPermanent, wantErr: `high is "Infinity"`},
		{name: "bare -Infinity", body: body(`122.07`, `-Infinity`), wantClass: fault.ItemPermanent, wantErr: `low is "-Infinity"`},
		{name: "NaN volume", body: body(`1234567`, `NaN`), wantClass: fault.ItemPermanent, wantErr: `volume is "NaN"`},
		{name: "negative price", body: body(`123.45`, `-1`), wantClass: fault.ItemPermanent, wantErr: "open is -1"},
		{name: "negative zero price", body: body(`123.45`, `-0`), wantClass: fault.ItemPermanent, wantErr: "open is -0"},
		{name: "exponent price", body: body(`123.45`, `1e400`), wantClass: fault.ItemPermanent, wantErr: "open is 1e400"},
		{name: "eleven decimals", body: body(`123.45`, `123.45000000001`), wantClass: fault.ItemPermanent, wantErr: "open is 123.45000000001"},
		{name: "sixteen digits", body: body(`125.1`, `1000000000000000`), wantClass: fault.ItemPermanent, wantErr: "high is 1000000000000000"},
		{name: "null close", body: body(`124.5`, `null`), wantClass: fault.ItemPermanent, wantErr: "no close"},
		{name: "missing volume", body: body(`,"volume":1234567`, ``), wantClass: fault.ItemPermanent, wantErr: "no volume"},
		{name: "fractional volume", body: body(`1234567`, `12.5`), wantClass: fault.ItemPermanent, wantErr: "volume is 12.5"},
		{name: "negative volume", body: body(`1234567`, `-5`), wantClass: fault.ItemPermanent, wantErr: "volume is -5"},
		{name: "volume past int64", body: body(`1234567`, `9223372036854775808`), wantClass: fault.ItemPermanent, wantErr: "volume is 9223372036854775808"},
		{name: "low above high", body: body(`"low":122.07`, `"low":200`), wantClass: fault.ItemPermanent, wantErr: "low 200 above high 125.1"},
		{name: "low above high by the 25th digit", body: body(`"open":123.45,"high":125.1,"low":122.07,"close":124.5`, lowBy25thDigit),
			wantClass: fault.ItemPermanent, wantErr: "above high"},
		{name: "open below low", body: body(`123.45`, `100`), wantClass: fault.ItemPermanent, wantErr: "open 100 outside low 122.07 .. high 125.1"},
		{name: "close above high", body: body(`124.5`, `130`), wantClass: fault.ItemPermanent, wantErr: "close 130 outside"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := Parse([]byte(tt.body), "AAPL", "2026-11-20")
			if tt.wantErr == "" {
				if err != nil || q != tt.want {
					t.Fatalf("Parse = %+v, %v; want %+v", q, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse succeeded with %+v", q)
			}
			if c := fault.ClassOf(err); c != tt.wantClass {
				t.Errorf("class = %s, want %s (%v)", c, tt.wantClass, err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

// Text from the provider reaches Postgres (the item's error) and an
// operator's terminal: it is made valid UTF-8, without control characters,
// and cut short at a character boundary.
func TestProviderTextIsMadeSafe(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"plain", "unknown symbol AAPL", "unknown symbol AAPL"},
		{"NUL and escapes", "bad\x00 \x1b[2Jsymbol\n", "bad   [2Jsymbol "},
		{"invalid UTF-8", "caf\xe9", "caf\uFFFD"},
		{"cut at a character", strings.Repeat("€", 20), strings.Repeat("€", 13) + "..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fault.Sanitize(tt.in, 40)
			if got != tt.want || !utf8.ValidString(got) {
				t.Errorf("clean(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	long := `{"error":"` + strings.Repeat("é", 150) + `\u0000"}`
	if d := detail([]byte(long)); !utf8.ValidString(d) || strings.ContainsRune(d, 0) || len(d) > 210 {
		t.Errorf("detail of a long error with a NUL = %q", d)
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
		if got := fault.ParseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("retryAfter(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
