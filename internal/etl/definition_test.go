package etl

import (
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func noEnv(string) (string, bool) { return "", false }

// The jobs file in configs/ loads as it is, with its defaults filled in.
func TestShippedJobsFileLoads(t *testing.T) {
	_, here, _, _ := runtime.Caller(0)
	jobs, err := LoadFile(filepath.Join(filepath.Dir(here), "..", "..", "configs", "jobs.yaml"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 {
		t.Fatalf("%d jobs, want 2", len(jobs))
	}
	p, v := jobs[0], jobs[1]
	if p.Name != "patients" || p.Pagination.Style != StyleOffset || p.Pagination.PageSize != 500 ||
		p.Pagination.SkipParam != "skip" || p.Pagination.TakeParam != "take" || p.ItemsPath != "items" ||
		p.TotalPath != "total" || p.Key != "id" || p.Timeout != time.Hour || p.PageTimeout != DefaultPageTimeout {
		t.Errorf("patients = %+v", p)
	}
	if v.Name != "visits" || v.Pagination.Style != StyleCursor || v.Pagination.NextPath != "next" ||
		v.Pagination.CursorParam != "cursor" || v.Pagination.LimitParam != "limit" || v.Timeout != 0 {
		t.Errorf("visits = %+v", v)
	}
}

func TestParseFillsDefaults(t *testing.T) {
	jobs, err := Parse([]byte(`
jobs:
  - name: pages
    url: https://api.example.com/v2/things
    pagination: {style: page}
    items_path: data.things
    key: id
    params: [since]
    query: {updated_since: "{since}"}
    headers: {Authorization: "Bearer ${API_TOKEN}"}
`), func(name string) (string, bool) { return "s3cret", name == "API_TOKEN" })
	if err != nil {
		t.Fatal(err)
	}
	j := jobs[0]
	if j.Pagination.PageParam != "page" || j.Pagination.SizeParam != "size" || *j.Pagination.FirstPage != 1 ||
		j.Pagination.PageSize != DefaultPageSize || j.Headers["Authorization"] != "Bearer s3cret" {
		t.Errorf("job = %+v", j)
	}
}

// Every bad definition is refused with an error naming the job and the key.
func TestBadDefinitionsAreRefused(t *testing.T) {
	const base = `
  - name: ok
    url: http://127.0.0.1:8081/v1/records
    pagination: {style: offset}
    items_path: items
    key: id
`
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"no jobs", "jobs: []\n", []string{"no job is defined"}},
		{"empty file", "", []string{"no job is defined"}},
		{"not yaml", "jobs: [\n", []string{"yaml"}},
		{"unknown key", "jobs:\n  - name: a\n    url: http://x/y\n    pagination: {style: offset}\n    items_path: items\n    key: id\n    itmes: 1\n",
			[]string{"field itmes not found"}},
		{"wrong type", "jobs:\n  - name: a\n    url: http://x/y\n    pagination: {style: offset, page_size: many}\n    items_path: items\n    key: id\n",
			[]string{"page_size", "many"}},
		{"bare number for a duration", "jobs:\n  - name: a\n    url: http://x/y\n    pagination: {style: offset}\n    items_path: items\n    key: id\n    timeout: 10\n",
			[]string{"timeout"}},
		{"missing fields", "jobs:\n  - name: a\n    url: http://x/y\n",
			[]string{`job "a": items_path: is required`, `job "a": key: is required`, `job "a": pagination.style: is required`}},
		{"no name", "jobs:\n  - url: http://x/y\n    pagination: {style: offset}\n    items_path: items\n    key: id\n",
			[]string{`job 1: name: must be`}},
		{"sql-looking name", "jobs:\n  - name: \"x'; DROP TABLE runs;--\"\n    url: http://x/y\n    pagination: {style: offset}\n    items_path: items\n    key: id\n",
			[]string{`name: must be 1 to 63 lower case letters`}},
		{"duplicate name", "jobs:" + base + base, []string{`job "ok": name: defined twice`}},
		{"bad url", "jobs:\n  - name: a\n    url: ftp://x/y\n    pagination: {style: offset}\n    items_path: items\n    key: id\n",
			[]string{`job "a": url: must be an http(s) URL`}},
		{"unknown style", "jobs:\n  - name: a\n    url: http://x/y\n    pagination: {style: links}\n    items_path: items\n    key: id\n",
			[]string{`pagination.style: must be offset, page or cursor, got "links"`}},
		{"cursor without next", "jobs:\n  - name: a\n    url: http://x/y\n    pagination: {style: cursor}\n    items_path: items\n    key: id\n",
			[]string{`pagination.next_path: is required for the cursor style`}},
		{"cursor with both nexts", "jobs:\n  - name: a\n    url: http://x/y\n    pagination: {style: cursor, next_path: next, next_link: true}\n    items_path: items\n    key: id\n",
			[]string{`contradictory`}},
		{"cursor with a total", "jobs:\n  - name: a\n    url: http://x/y\n    pagination: {style: cursor, next_path: next}\n    items_path: items\n    total_path: total\n    key: id\n",
			[]string{`total_path: does not apply to the cursor style`}},
		{"offset with a cursor key", "jobs:\n  - name: a\n    url: http://x/y\n    pagination: {style: offset, next_path: next}\n    items_path: items\n    key: id\n",
			[]string{`pagination.next_path: does not apply to the offset style`}},
		{"page size", "jobs:\n  - name: a\n    url: http://x/y\n    pagination: {style: offset, page_size: 20000}\n    items_path: items\n    key: id\n",
			[]string{`pagination.page_size: must be between 1 and 10000, got 20000`}},
		{"bad json path", "jobs:\n  - name: a\n    url: http://x/y\n    pagination: {style: offset}\n    items_path: \"items[0]\"\n    key: id\n",
			[]string{`items_path: must be a dotted JSON path`}},
		{"query uses an undeclared param", "jobs:\n  - name: a\n    url: http://x/y\n    pagination: {style: offset}\n    items_path: items\n    key: id\n    query: {since: \"{since}\"}\n",
			[]string{`query.since: uses {since}, which is not one of the job's params`}},
		{"query shadows pagination", "jobs:\n  - name: a\n    url: http://x/y\n    pagination: {style: offset}\n    items_path: items\n    key: id\n    query: {skip: \"5\"}\n",
			[]string{`query.skip: is the pagination's own parameter`}},
		{"missing secret", "jobs:\n  - name: a\n    url: http://x/y\n    pagination: {style: offset}\n    items_path: items\n    key: id\n    headers: {Authorization: \"Bearer ${NO_SUCH_TOKEN}\"}\n",
			[]string{`headers.Authorization: refers to $NO_SUCH_TOKEN, which is not set`}},
		{"bad table", "jobs:\n  - name: a\n    url: http://x/y\n    pagination: {style: offset}\n    items_path: items\n    key: id\n    table: \"records; DROP TABLE runs\"\n",
			[]string{`table: must be a table name`}},
		{"built-in name", "jobs:\n  - name: daily-sync\n    url: http://x/y\n    pagination: {style: offset}\n    items_path: items\n    key: id\n",
			[]string{`job "daily-sync": name: "daily-sync" is the name of a built-in job`}},
		{"own table", "jobs:\n  - name: a\n    url: http://x/y\n    pagination: {style: offset}\n    items_path: items\n    key: id\n    table: runs\n",
			[]string{`table: "runs" is one of syncworker's own tables`}},
		{"partitions without a total", "jobs:\n  - name: a\n    url: http://x/y\n    pagination: {style: offset}\n    items_path: items\n    key: id\n    partitions: 4\n",
			[]string{`partitions: needs total_path`}},
		{"too many partitions", "jobs:\n  - name: a\n    url: http://x/y\n    pagination: {style: offset}\n    items_path: items\n    total_path: total\n    key: id\n    partitions: 65\n",
			[]string{`partitions: must be between 1 and 64, got 65`}},
		{"key param that is no param", "jobs:\n  - name: a\n    url: http://x/y\n    pagination: {style: offset}\n    items_path: items\n    key: id\n    params: [tenant]\n    key_params: [tenant, region]\n",
			[]string{`job "a": key_params: "region" is not one of the job's params`}},
		{"key param twice", "jobs:\n  - name: a\n    url: http://x/y\n    pagination: {style: offset}\n    items_path: items\n    key: id\n    params: [tenant]\n    key_params: [tenant, tenant]\n",
			[]string{`job "a": key_params: "tenant" is listed twice`}},
		{"negative rate limit", "jobs:\n  - name: a\n    url: http://x/y\n    pagination: {style: offset}\n    items_path: items\n    key: id\n    rate_limit: -1\n",
			[]string{`rate_limit: must be between 0`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jobs, err := Parse([]byte(tt.yaml), noEnv)
			if err == nil {
				t.Fatalf("Parse = %+v, want an error", jobs)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

// A secret in a header is never part of an error.
func TestSecretsStayOutOfErrors(t *testing.T) {
	_, err := Parse([]byte("jobs:\n  - name: a\n    url: http://x/y\n    pagination: {style: offset}\n    items_path: items\n    key: id\n    headers: {Authorization: \"Bearer ${TOKEN}\\r\\nX: y\"}\n"),
		func(string) (string, bool) { return "hunter2", true })
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "headers.Authorization: has a line break") {
		t.Errorf("error = %v", err)
	}
}

func TestKeyPrefix(t *testing.T) {
	tests := []struct {
		name      string
		keyParams []string
		params    map[string]string
		want      string
		wantErr   string
	}{
		{"no key params", nil, map[string]string{"tenant": "a"}, "", ""},
		{"one", []string{"tenant"}, map[string]string{"tenant": "acme", "since": "2026-01-01"}, "acme/", ""},
		{"in their order", []string{"tenant", "region"}, map[string]string{"region": "eu", "tenant": "acme"}, "acme/eu/", ""},
		{"a slash is no separator", []string{"tenant", "region"}, map[string]string{"tenant": "a/b", "region": "c"}, "a%2Fb/c/", ""},
		{"empty value", []string{"tenant"}, map[string]string{"tenant": ""}, "", "key param tenant has no value"},
		{"missing value", []string{"tenant"}, nil, "", "key param tenant has no value"},
		{"too long", []string{"a", "b"}, map[string]string{"a": strings.Repeat("é", 100), "b": strings.Repeat("x", 500)}, "",
			"make a key prefix of 1102 bytes, more than 1024"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := (Job{KeyParams: tt.keyParams}).KeyPrefix(tt.params)
			if got != tt.want || (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("KeyPrefix = %q, %v; want %q, %q", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
