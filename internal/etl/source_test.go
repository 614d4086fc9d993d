package etl

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/fault"
)

func mustJob(t *testing.T, yaml string) Job {
	t.Helper()
	jobs, err := Parse([]byte(yaml), func(string) (string, bool) { return "s3cret", true })
	if err != nil {
		t.Fatal(err)
	}
	return jobs[0]
}

// Each style asks for its page with its own parameters, the job's query
// (with run parameters filled in) and nothing else.
func TestPageURLs(t *testing.T) {
	tests := []struct {
		pagination string
		at         At
		want       string
	}{
		{"{style: offset, page_size: 50}", At{Index: 3}, "http://src/v1/x?region=eu&skip=150&take=50"},
		{"{style: offset, skip_param: from, take_param: n, page_size: 50}", At{}, "http://src/v1/x?from=0&n=50&region=eu"},
		{"{style: page, page_size: 50}", At{Index: 3}, "http://src/v1/x?page=4&region=eu&size=50"},
		{"{style: page, first_page: 0, page_param: p, size_param: s, page_size: 50}", At{Index: 3}, "http://src/v1/x?p=3&region=eu&s=50"},
		{"{style: cursor, next_path: next, page_size: 50}", At{}, "http://src/v1/x?limit=50&region=eu"},
		{"{style: cursor, next_path: next, page_size: 50}", At{Index: 2, Token: "a b&c"}, "http://src/v1/x?cursor=a+b%26c&limit=50&region=eu"},
		{"{style: cursor, next_link: true, page_size: 50}", At{Index: 2, Token: "http://src/v1/x?after=9"}, "http://src/v1/x?after=9"},
	}
	for _, tt := range tests {
		job := mustJob(t, "jobs:\n  - name: j\n    url: http://src/v1/x\n    items_path: items\n    key: id\n    params: [region]\n"+
			"    query: {region: \"{region}\"}\n    pagination: "+tt.pagination+"\n")
		got, err := NewSource(job, nil, nil).URL(map[string]string{"region": "eu"}, 50, tt.at)
		if err != nil || got != tt.want {
			t.Errorf("%s at %+v = %q, %v; want %q", tt.pagination, tt.at, got, err, tt.want)
		}
	}
	job := mustJob(t, "jobs:\n  - name: j\n    url: http://src/v1/x\n    items_path: items\n    key: id\n    pagination: {style: cursor, next_link: true}\n")
	if _, err := NewSource(job, nil, nil).URL(nil, 50, At{Index: 1, Token: "http://elsewhere/steal"}); fault.ClassOf(err) != fault.RunFatal {
		t.Errorf("a next link to another host = %v, want a run-fatal error", err)
	}
}

// A cursor walk that follows Link headers sends the job's headers, follows
// rel="next" and ends on a page without one; answers are classified.
func TestFetchFollowsLinksAndClassifies(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch r.URL.Query().Get("after") {
		case "":
			w.Header().Add("Link", fmt.Sprintf(`<%s/v1/x?after=2>; rel="next", <%s/v1/x>; rel="first"`, srv.URL, srv.URL))
			fmt.Fprint(w, `{"data":{"rows":[{"id":1},{"id":2}]}}`)
		case "2":
			fmt.Fprint(w, `{"data":{"rows":[{"id":"three"}]}}`)
		case "busy":
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
		case "down":
			w.WriteHeader(http.StatusBadGateway)
		case "gone":
			w.WriteHeader(http.StatusNotFound)
		case "slow":
			time.Sleep(300 * time.Millisecond)
		case "away":
			http.Redirect(w, r, "http://elsewhere.invalid/steal?token=abc", http.StatusFound)
		}
	}))
	defer srv.Close()
	job := mustJob(t, "jobs:\n  - name: j\n    url: "+srv.URL+"/v1/x\n    items_path: data.rows\n    key: id\n"+
		"    headers: {Authorization: \"Bearer ${TOKEN}\"}\n    page_timeout: 100ms\n    pagination: {style: cursor, next_link: true}\n")
	src := NewSource(job, nil, nil)
	ctx := context.Background()
	first, err := src.Fetch(ctx, nil, 100, At{})
	if err != nil || len(first.Records) != 2 || first.Records[1].Key != "2" || first.Next != srv.URL+"/v1/x?after=2" {
		t.Fatalf("first page = %+v, %v", first, err)
	}
	second, err := src.Fetch(ctx, nil, 100, At{Index: 1, Token: first.Next})
	if err != nil || len(second.Records) != 1 || second.Records[0].Key != "three" || second.Next != "" {
		t.Fatalf("second page = %+v, %v", second, err)
	}
	for _, tt := range []struct {
		after string
		class fault.Class
		want  string
	}{
		{"busy", fault.RateLimited, "rate limited by the source (429), retry after 7s"},
		{"down", fault.Transient, "source error 502"},
		{"gone", fault.RunFatal, "the source refused the request (404)"},
		{"slow", fault.Transient, "no answer within the page timeout of 100ms"},
		{"away", fault.RunFatal, "redirect to another host refused: elsewhere.invalid is not"},
	} {
		_, err := src.Fetch(ctx, nil, 100, At{Index: 1, Token: srv.URL + "/v1/x?after=" + tt.after})
		if fault.ClassOf(err) != tt.class || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "token=") {
			t.Errorf("after=%s: %v (%s), want %s with %q", tt.after, err, fault.ClassOf(err), tt.class, tt.want)
		}
	}
	noAuth := job
	noAuth.Headers = nil
	if _, err := NewSource(noAuth, nil, nil).Fetch(ctx, nil, 100, At{}); fault.ClassOf(err) != fault.RunFatal ||
		!strings.Contains(err.Error(), "refused the credentials (401)") {
		t.Errorf("without credentials: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := src.Fetch(cancelled, nil, 100, At{}); !errors.Is(err, context.Canceled) {
		t.Errorf("on a cancelled context: %v, want context.Canceled (a shutdown, not a failure)", err)
	}
}

func TestNextLink(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{[]string{`<https://a/x?p=2>; rel="next"`}, "https://a/x?p=2"},
		{[]string{`<https://a/x?p=1>; rel="prev", <https://a/x?p=3>; rel=next`}, "https://a/x?p=3"},
		{[]string{`<https://a/x?p=1>; rel="prev"`, `<https://a/x?p=3>; rel="next last"`}, "https://a/x?p=3"},
		{[]string{`<https://a/x?p=1>; rel="first"`}, ""},
		{nil, ""},
		{[]string{`garbage`}, ""},
	}
	for _, tt := range tests {
		if got := nextLink(tt.in); got != tt.want {
			t.Errorf("nextLink(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzParsePage feeds arbitrary bodies to the page parser: it never panics,
// and what it accepts has a key for every record.
func FuzzParsePage(f *testing.F) {
	for _, seed := range []string{`{"items":[{"id":"a"}],"total":1,"next":"n"}`, `{"items":[]}`, `{"items":[{"id":1.5}]}`,
		`{"items":null}`, `[]`, `{"items":[{"id":{"x":1}}],"total":-1}`, `not json`, `{"items":[{"id":"\u0000"}],"next":null}`} {
		f.Add([]byte(seed))
	}
	job := Job{Name: "fuzz", ItemsPath: "items", TotalPath: "total", Key: "id",
		Pagination: Pagination{Style: StyleCursor, NextPath: "next"}}
	src := NewSource(job, nil, nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		page, err := src.Parse(body, http.Header{})
		if err != nil {
			return
		}
		for i, r := range page.Records {
			if r.Key == "" || len(r.Payload) == 0 {
				t.Errorf("record %d accepted without a key or payload: %+v", i, r)
			}
		}
		if page.Total != nil && *page.Total < 0 {
			t.Errorf("negative total %d accepted", *page.Total)
		}
	})
}
