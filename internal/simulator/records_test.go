package simulator_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/simulator"
)

// The wire shapes of the three page styles; decoded strictly, so that an
// unexpected field fails the test.
type (
	offsetPage struct {
		Items []simulator.Record `json:"items"`
		Total int64              `json:"total"`
	}
	numberedPage struct {
		Items []simulator.Record `json:"items"`
		Total int64              `json:"total"`
		Page  int64              `json:"page"`
	}
	cursorPage struct {
		Items []simulator.Record `json:"items"`
		Next  string             `json:"next"`
	}
)

// getPage GETs base+target over HTTP, wants 200 and decodes the body into v,
// rejecting unknown fields and a null items list. It returns the raw body.
func getPage(t *testing.T, base, target string, v any) []byte {
	t.Helper()
	resp, err := http.Get(base + target)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("GET %s: read body: %v", target, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d %s, want 200", target, resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: Content-Type = %q, want application/json", target, ct)
	}
	if bytes.Contains(body, []byte(`"items":null`)) {
		t.Errorf("GET %s: items is null in %s", target, body)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("GET %s: body %s: %v", target, body, err)
	}
	return body
}

// walk reads the whole dataset of a server with n records in one page style,
// checking every page on the way, and returns the items in the order read.
type walk func(t *testing.T, base string, n, size int64) []simulator.Record

func walkOffset(t *testing.T, base string, n, size int64) []simulator.Record {
	var all []simulator.Record
	for skip := int64(0); skip <= n; {
		var p offsetPage
		getPage(t, base, fmt.Sprintf("/v1/records?skip=%d&take=%d", skip, size), &p)
		if p.Total != n {
			t.Fatalf("skip=%d: total %d, want %d", skip, p.Total, n)
		}
		if want := min(size, n-skip); int64(len(p.Items)) != want {
			t.Fatalf("skip=%d: %d items, want %d", skip, len(p.Items), want)
		}
		if len(p.Items) == 0 {
			break
		}
		all = append(all, p.Items...)
		skip += int64(len(p.Items))
	}
	return all
}

func walkPaged(t *testing.T, base string, n, size int64) []simulator.Record {
	var all []simulator.Record
	for page := int64(1); page <= n+1; page++ {
		var p numberedPage
		getPage(t, base, fmt.Sprintf("/v1/records-paged?page=%d&size=%d", page, size), &p)
		if p.Total != n || p.Page != page {
			t.Fatalf("page=%d: total %d, page %d; want %d, %d", page, p.Total, p.Page, n, page)
		}
		if want := max(min(size, n-(page-1)*size), 0); int64(len(p.Items)) != want {
			t.Fatalf("page=%d: %d items, want %d", page, len(p.Items), want)
		}
		if len(p.Items) == 0 {
			break
		}
		all = append(all, p.Items...)
	}
	return all
}

func walkCursor(t *testing.T, base string, n, size int64) []simulator.Record {
	var all []simulator.Record
	cursor := ""
	for range n + 1 {
		target := fmt.Sprintf("/v1/records-cursor?limit=%d", size)
		if cursor != "" {
			target += "&cursor=" + url.QueryEscape(cursor)
		}
		var p cursorPage
		body := getPage(t, base, target, &p)
		all = append(all, p.Items...)
		if p.Next == "" {
			if bytes.Contains(body, []byte(`"next"`)) {
				t.Errorf("last page %s: want no next", body)
			}
			if int64(len(all)) != n {
				t.Fatalf("no next after %d items, want %d", len(all), n)
			}
			return all
		}
		if int64(len(p.Items)) != size {
			t.Fatalf("page with a next has %d items, want %d", len(p.Items), size)
		}
		cursor = p.Next
	}
	t.Fatalf("cursor walk did not end after %d pages", n+1)
	return nil
}

// checkRecords reports the first place where got is not RecordAt(0..n-1).
func checkRecords(t *testing.T, got []simulator.Record, n int) {
	t.Helper()
	if len(got) != n {
		t.Errorf("%d records, want %d", len(got), n)
	}
	for i := range min(len(got), n) {
		if want := simulator.RecordAt(i); got[i] != want {
			t.Fatalf("record %d = %+v, want %+v", i, got[i], want)
		}
	}
}

func TestPagesWalkDataset(t *testing.T) {
	const n = 1234
	srv := httptest.NewServer(simulator.New(simulator.Config{Records: n}))
	defer srv.Close()
	styles := []struct {
		name string
		walk walk
	}{
		{"offset", walkOffset},
		{"paged", walkPaged},
		{"cursor", walkCursor},
	}
	for _, style := range styles {
		for _, size := range []int64{1, 97, 1000} { // none divides 1234
			t.Run(fmt.Sprintf("%s/size%d", style.name, size), func(t *testing.T) {
				checkRecords(t, style.walk(t, srv.URL, n, size), n)
			})
		}
	}
}

func TestRecordAt(t *testing.T) {
	for _, i := range []int{0, 1, 42, 999_999} {
		r := simulator.RecordAt(i)
		if want := fmt.Sprintf("r%06d", i); r.ID != want {
			t.Errorf("RecordAt(%d).ID = %q, want %q", i, r.ID, want)
		}
		if r != simulator.RecordAt(i) {
			t.Errorf("RecordAt(%d) differs between calls", i)
		}
		if !strings.HasPrefix(r.Name, "Item ") || r.Value < 0 || r.Value >= 1_000_000 {
			t.Errorf("RecordAt(%d) = %+v: want a name Item ... and a value in [0, 1000000)", i, r)
		}
		if _, err := time.Parse(simulator.DateLayout, r.Updated); err != nil {
			t.Errorf("RecordAt(%d).Updated = %q: %v", i, r.Updated, err)
		}
	}
	if a, b := simulator.RecordAt(1), simulator.RecordAt(2); a.Name == b.Name && a.Value == b.Value && a.Updated == b.Updated {
		t.Errorf("RecordAt(1) and RecordAt(2) have the same payload %+v", a)
	}
	if d := simulator.DriftRecord(3); d.ID != "n000003" {
		t.Errorf("DriftRecord(3).ID = %q, want n000003", d.ID)
	}
}

// cursorOf forges a cursor from the format the server uses, to test what it
// accepts.
func cursorOf(raw string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func TestPageParams(t *testing.T) {
	const n = 1234
	s := simulator.New(simulator.Config{Records: n})
	items := func(first string, count int) func(*testing.T, []byte) {
		return func(t *testing.T, body []byte) {
			var p struct {
				Items []simulator.Record `json:"items"`
				Total *int64             `json:"total"`
			}
			if err := json.Unmarshal(body, &p); err != nil || p.Items == nil {
				t.Fatalf("body %s: want items (%v)", body, err)
			}
			if len(p.Items) != count || (count > 0 && p.Items[0].ID != first) {
				t.Errorf("body %.200s: want %d items from %q", body, count, first)
			}
			if p.Total != nil && *p.Total != n {
				t.Errorf("total = %d, want %d", *p.Total, n)
			}
		}
	}
	tests := []struct {
		name    string
		target  string
		want    int
		wantErr string // substring of the error message, for 400s
		check   func(*testing.T, []byte)
	}{
		{name: "offset defaults", target: "/v1/records", want: 200, check: items("r000000", 100)},
		{name: "offset take max", target: "/v1/records?take=1000&skip=1", want: 200, check: items("r000001", 1000)},
		{name: "offset last", target: "/v1/records?skip=1233&take=5", want: 200, check: items("r001233", 1)},
		{name: "offset past the end", target: "/v1/records?skip=1234", want: 200, check: items("", 0)},
		{name: "offset far past the end", target: "/v1/records?skip=9223372036854775807", want: 200, check: items("", 0)},
		{name: "take zero", target: "/v1/records?take=0", want: 400, wantErr: "take"},
		{name: "take too big", target: "/v1/records?take=1001", want: 400, wantErr: "take"},
		{name: "take negative", target: "/v1/records?take=-5", want: 400, wantErr: "take"},
		{name: "take empty", target: "/v1/records?take=", want: 400, wantErr: "take"},
		{name: "take not a number", target: "/v1/records?take=ten", want: 400, wantErr: "take"},
		{name: "skip negative", target: "/v1/records?skip=-1", want: 400, wantErr: "skip"},
		{name: "skip fractional", target: "/v1/records?skip=1.5", want: 400, wantErr: "skip"},
		{name: "skip overflow", target: "/v1/records?skip=99999999999999999999", want: 400, wantErr: "skip"},

		{name: "paged defaults", target: "/v1/records-paged", want: 200, check: items("r000000", 100)},
		{name: "paged last", target: "/v1/records-paged?page=13&size=97", want: 200, check: items("r001164", 70)},
		{name: "paged past the end", target: "/v1/records-paged?page=14&size=97", want: 200, check: items("", 0)},
		{name: "paged far past the end", target: "/v1/records-paged?page=9223372036854775807&size=1000", want: 200, check: items("", 0)},
		{name: "page zero", target: "/v1/records-paged?page=0", want: 400, wantErr: "page"},
		{name: "page negative", target: "/v1/records-paged?page=-2", want: 400, wantErr: "page"},
		{name: "size zero", target: "/v1/records-paged?size=0", want: 400, wantErr: "size"},
		{name: "size too big", target: "/v1/records-paged?size=5000", want: 400, wantErr: "size"},

		{name: "cursor start", target: "/v1/records-cursor?limit=3", want: 200, check: items("r000000", 3)},
		{name: "cursor empty is start", target: "/v1/records-cursor?cursor=&limit=3", want: 200, check: items("r000000", 3)},
		{name: "cursor default limit", target: "/v1/records-cursor", want: 200, check: items("r000000", 100)},
		{name: "cursor issued", target: "/v1/records-cursor?limit=2&cursor=" + cursorOf("k1233"), want: 200, check: items("r001233", 1)},
		{name: "limit zero", target: "/v1/records-cursor?limit=0", want: 400, wantErr: "limit"},
		{name: "limit too big", target: "/v1/records-cursor?limit=1001", want: 400, wantErr: "limit"},
		{name: "cursor not base64", target: "/v1/records-cursor?cursor=%21%21%21", want: 400, wantErr: "invalid cursor"},
		{name: "cursor plain offset", target: "/v1/records-cursor?cursor=5", want: 400, wantErr: "invalid cursor"},
		{name: "cursor wrong prefix", target: "/v1/records-cursor?cursor=" + cursorOf("x5"), want: 400, wantErr: "invalid cursor"},
		{name: "cursor not canonical", target: "/v1/records-cursor?cursor=" + cursorOf("k05"), want: 400, wantErr: "invalid cursor"},
		{name: "cursor padded", target: "/v1/records-cursor?cursor=" + url.QueryEscape(base64.URLEncoding.EncodeToString([]byte("k5"))), want: 400, wantErr: "invalid cursor"},
		{name: "cursor at the end", target: "/v1/records-cursor?cursor=" + cursorOf("k1234"), want: 400, wantErr: "invalid cursor"},
		{name: "cursor before the front", target: "/v1/records-cursor?cursor=" + cursorOf("k-1"), want: 400, wantErr: "invalid cursor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := serve(t, s, http.MethodGet, tt.target, nil)
			if rec.Code != tt.want {
				t.Fatalf("GET %s = %d %s, want %d", tt.target, rec.Code, rec.Body, tt.want)
			}
			if tt.wantErr != "" {
				if msg := errorMessage(t, rec); !strings.Contains(msg, tt.wantErr) {
					t.Errorf("error %q does not contain %q", msg, tt.wantErr)
				}
			}
			if tt.check != nil {
				tt.check(t, rec.Body.Bytes())
			}
		})
	}
}

func TestPageFaults(t *testing.T) {
	paths := []string{"/v1/records?take=2", "/v1/records-paged?size=2", "/v1/records-cursor?limit=2"}
	tests := []struct {
		name   string
		cfg    simulator.Config
		method string
		header http.Header
		check  func(t *testing.T, rec *httptest.ResponseRecorder)
		stats  simulator.Stats // of 2 requests
	}{
		{
			name: "server errors", cfg: simulator.Config{ErrorRate: 1},
			check: func(t *testing.T, rec *httptest.ResponseRecorder) {
				if rec.Code < 500 || rec.Code > 503 || errorMessage(t, rec) == "" {
					t.Errorf("status %d %s, want 500, 502 or 503 with an error", rec.Code, rec.Body)
				}
			},
			stats: simulator.Stats{Requests: 2, Pages: 2, ServerErrors: 2},
		},
		{
			name: "rate limited", cfg: simulator.Config{RateLimitedRate: 1, RetryAfter: 3 * time.Second},
			check: func(t *testing.T, rec *httptest.ResponseRecorder) {
				if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "3" {
					t.Errorf("status %d, Retry-After %q; want 429, 3", rec.Code, rec.Header().Get("Retry-After"))
				}
			},
			stats: simulator.Stats{Requests: 2, Pages: 2, RateLimited: 2},
		},
		{
			name: "throttled", cfg: simulator.Config{RateLimit: 1},
			check: func(*testing.T, *httptest.ResponseRecorder) {}, // one 200, one 429, by stats
			stats: simulator.Stats{Requests: 2, Pages: 2, OK: 1, Throttled: 1},
		},
		{
			name: "garbage", cfg: simulator.Config{GarbageRate: 1},
			check: func(t *testing.T, rec *httptest.ResponseRecorder) {
				if rec.Code != http.StatusOK || json.Valid(rec.Body.Bytes()) {
					t.Errorf("status %d %q, want 200 with invalid JSON", rec.Code, rec.Body)
				}
			},
			stats: simulator.Stats{Requests: 2, Pages: 2, Garbage: 2},
		},
		{
			name: "slow", cfg: simulator.Config{SlowRate: 1, SlowDelay: time.Millisecond},
			check: func(t *testing.T, rec *httptest.ResponseRecorder) {
				if rec.Code != http.StatusOK {
					t.Errorf("status %d, want 200", rec.Code)
				}
			},
			stats: simulator.Stats{Requests: 2, Pages: 2, Slow: 2, OK: 2},
		},
		{
			name: "no API key", cfg: simulator.Config{APIKey: "k", ErrorRate: 1},
			check: func(t *testing.T, rec *httptest.ResponseRecorder) {
				if rec.Code != http.StatusUnauthorized {
					t.Errorf("status %d, want 401", rec.Code)
				}
			},
			stats: simulator.Stats{Requests: 2, Pages: 2, Unauthorized: 2},
		},
		{
			name: "API key", cfg: simulator.Config{APIKey: "k"}, header: bearer("k"),
			check: func(t *testing.T, rec *httptest.ResponseRecorder) {
				if rec.Code != http.StatusOK {
					t.Errorf("status %d, want 200", rec.Code)
				}
			},
			stats: simulator.Stats{Requests: 2, Pages: 2, OK: 2},
		},
		{
			name: "POST", method: http.MethodPost,
			check: func(t *testing.T, rec *httptest.ResponseRecorder) {
				if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET" {
					t.Errorf("status %d, Allow %q; want 405, GET", rec.Code, rec.Header().Get("Allow"))
				}
			},
			stats: simulator.Stats{Requests: 2, Pages: 2},
		},
	}
	for _, tt := range tests {
		for _, path := range paths {
			t.Run(tt.name+path, func(t *testing.T) {
				s := simulator.New(tt.cfg)
				method := tt.method
				if method == "" {
					method = http.MethodGet
				}
				for range 2 {
					tt.check(t, serve(t, s, method, path, tt.header))
				}
				if got := s.Stats(); got != tt.stats {
					t.Errorf("Stats() = %+v, want %+v", got, tt.stats)
				}
			})
		}
	}
}

func TestPageDeterministic(t *testing.T) {
	a := httptest.NewServer(simulator.New(simulator.Config{Records: 500}))
	defer a.Close()
	b := httptest.NewServer(simulator.New(simulator.Config{Records: 500}))
	defer b.Close()
	var first cursorPage
	getPage(t, a.URL, "/v1/records-cursor?limit=7", &first)
	targets := []string{
		"/v1/records?skip=13&take=50",
		"/v1/records-paged?page=3&size=40",
		"/v1/records-cursor?limit=7",
		"/v1/records-cursor?limit=9&cursor=" + url.QueryEscape(first.Next),
	}
	for _, target := range targets {
		var v any
		x := getPage(t, a.URL, target, &v)
		y := getPage(t, a.URL, target, &v)
		z := getPage(t, b.URL, target, &v)
		if !bytes.Equal(x, y) || !bytes.Equal(x, z) {
			t.Errorf("GET %s answered differently:\n%s\n%s\n%s", target, x, y, z)
		}
	}
}

func TestDrift(t *testing.T) {
	// Offset pagination drifts: from the third page request on, one record
	// is inserted at the front per request, so items shift and repeat.
	s := simulator.New(simulator.Config{Records: 10, Drift: 2})
	srv := httptest.NewServer(s)
	defer srv.Close()
	steps := []struct {
		target string
		total  int64
		ids    []string
	}{
		{"/v1/records?take=3", 10, []string{"r000000", "r000001", "r000002"}},
		{"/v1/records?skip=3&take=3", 10, []string{"r000003", "r000004", "r000005"}},
		{"/v1/records?skip=6&take=3", 11, []string{"r000005", "r000006", "r000007"}},
		{"/v1/records?take=3", 12, []string{"n000002", "n000001", "r000000"}},
	}
	for _, st := range steps {
		var p offsetPage
		getPage(t, srv.URL, st.target, &p)
		var ids []string
		for _, r := range p.Items {
			ids = append(ids, r.ID)
		}
		if p.Total != st.total || strings.Join(ids, ",") != strings.Join(st.ids, ",") {
			t.Errorf("GET %s = total %d, %v; want %d, %v", st.target, p.Total, ids, st.total, st.ids)
		}
	}
	var p offsetPage
	getPage(t, srv.URL, "/v1/records?take=1", &p)
	if want := simulator.DriftRecord(3); len(p.Items) != 1 || p.Items[0] != want {
		t.Errorf("front after 3 insertions = %+v, want %+v", p.Items, want)
	}

	// Cursor pagination does not: a walk started before the inserts reads
	// every record once, in order, although every page inserts one.
	s = simulator.New(simulator.Config{Records: 10, Drift: 1})
	srv2 := httptest.NewServer(s)
	defer srv2.Close()
	var all []simulator.Record
	cursor := ""
	for range 10 {
		var c cursorPage
		getPage(t, srv2.URL, "/v1/records-cursor?limit=3&cursor="+url.QueryEscape(cursor), &c)
		all = append(all, c.Items...)
		if cursor = c.Next; cursor == "" {
			break
		}
	}
	checkRecords(t, all, 10)
	if st := s.Stats(); st.Pages != 4 {
		t.Errorf("Pages = %d, want 4", st.Pages)
	}
	var c cursorPage
	getPage(t, srv2.URL, "/v1/records-cursor?limit=1", &c)
	if len(c.Items) != 1 || c.Items[0].ID != "n000004" {
		t.Errorf("front after 4 insertions = %+v, want n000004", c.Items)
	}
}
