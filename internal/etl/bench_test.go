package etl

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/syncworker/syncworker/internal/simulator"
)

// benchJob is the offset-style job of configs/jobs.yaml.
const benchJob = `jobs:
  - name: patients
    url: http://src/v1/records
    pagination: {style: offset, skip_param: skip, take_param: take, page_size: 500}
    items_path: items
    total_path: total
    key: id
`

// mustBenchJob returns benchJob's job.
func mustBenchJob(b *testing.B) Job {
	b.Helper()
	jobs, err := Parse([]byte(benchJob), func(string) (string, bool) { return "", false })
	if err != nil {
		b.Fatal(err)
	}
	return jobs[0]
}

// benchPage returns the body of a page of n simulator records, as the
// simulator serves it.
func benchPage(b *testing.B, n int) []byte {
	b.Helper()
	recs := make([]simulator.Record, n)
	for i := range recs {
		recs[i] = simulator.RecordAt(i)
	}
	body, err := json.Marshal(map[string]any{"items": recs, "total": 200_000})
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// BenchmarkSourceParse checks a page of 500 records against the job's
// definition, as every ETL batch does.
func BenchmarkSourceParse(b *testing.B) {
	src := NewSource(mustBenchJob(b), nil, nil)
	body := benchPage(b, 500)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		page, err := src.Parse(body, http.Header{})
		if err != nil || len(page.Records) != 500 {
			b.Fatalf("Parse = %d records, %v", len(page.Records), err)
		}
	}
	b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "records/s")
}
