package simulator

import (
	"encoding/base64"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The paths of the three page styles of the records API.
const (
	recordsPath       = "/v1/records"
	recordsPagedPath  = "/v1/records-paged"
	recordsCursorPath = "/v1/records-cursor"
)

const (
	// DefaultRecords is the number of records of a Config with Records 0.
	DefaultRecords = 50000
	// MaxRecords is the largest Config.Records: record ids keep six digits.
	MaxRecords = 1_000_000
	// MaxPageSize is the largest take, size and limit of a page request.
	MaxPageSize = 1000
	// DefaultPageSize is the take, size or limit of a page request that gives
	// none.
	DefaultPageSize = 100
)

// pageGarbage is the body of a garbage page: a truncated page, not valid
// JSON.
const pageGarbage = `{"items":[{"id":"r`

// recordEpoch is the earliest Record.Updated.
var recordEpoch = time.Date(2016, 1, 1, 0, 0, 0, 0, time.UTC)

// Record is one item of the paged records API.
type Record struct {
	// ID is "r%06d" of the record's index, or "n%06d" of a record inserted
	// by drift (see DriftRecord).
	ID string `json:"id"`
	// Name is "Item " and three letters.
	Name string `json:"name"`
	// Value is in [0, 1000000).
	Value int64 `json:"value"`
	// Updated is a day in 2016..2025, formatted as DateLayout.
	Updated string `json:"updated"`
}

// RecordAt returns record i of the dataset, i from 0: a pure function of i.
// Without drift, the dataset of a Server is RecordAt(0) to RecordAt(N-1) in
// that order.
func RecordAt(i int) Record {
	return makeRecord(fmt.Sprintf("r%06d", i))
}

// DriftRecord returns the j-th record inserted at the front of the dataset by
// drift, j from 1: a pure function of j. After k insertions the dataset is
// DriftRecord(k), ..., DriftRecord(1), RecordAt(0), ..., RecordAt(N-1).
func DriftRecord(j int64) Record {
	return makeRecord(fmt.Sprintf("n%06d", j))
}

// makeRecord returns the record with the given id, its fields derived from a
// hash of the id.
func makeRecord(id string) Record {
	st := stream{state: hashParts("record", id)}
	return Record{
		ID:      id,
		Name:    "Item " + base26(st.intn(26*26*26), 3),
		Value:   int64(st.intn(1_000_000)),
		Updated: recordEpoch.AddDate(0, 0, st.intn(3653)).Format(DateLayout),
	}
}

// dataset is the dataset as one page request sees it: inserted drift records
// at the front, then the base records. Each record has a key that does not
// change as records are inserted: -j for DriftRecord(j), i for RecordAt(i).
// The record at position p (from 0) has key p - inserted.
type dataset struct {
	base, inserted int64
}

func (d dataset) total() int64 { return d.base + d.inserted }

// page returns the records at positions [from, from+n), cut at the end.
// It returns an empty, non-nil slice past the end.
func (d dataset) page(from, n int64) []Record {
	from = min(max(from, 0), d.total())
	end := min(from+n, d.total())
	items := make([]Record, 0, end-from)
	for p := from; p < end; p++ {
		if key := p - d.inserted; key < 0 {
			items = append(items, DriftRecord(-key))
		} else {
			items = append(items, RecordAt(int(key)))
		}
	}
	return items
}

// offsetPage is the answer of GET /v1/records.
type offsetPage struct {
	Items []Record `json:"items"`
	Total int64    `json:"total"`
}

// numberedPage is the answer of GET /v1/records-paged.
type numberedPage struct {
	Items []Record `json:"items"`
	Total int64    `json:"total"`
	Page  int64    `json:"page"`
}

// cursorPage is the answer of GET /v1/records-cursor.
type cursorPage struct {
	Items []Record `json:"items"`
	Next  string   `json:"next,omitempty"`
}

// servePage answers a page request of one of the three styles. The order of
// the checks is that of quote requests: method, API key, rate limit, latency,
// injected faults, then the parameters.
func (s *Server) servePage(w http.ResponseWriter, r *http.Request, path string) {
	c := &s.stats
	c.requests.Add(1)
	n := c.pages.Add(1)
	d := dataset{base: int64(s.records)}
	if s.cfg.Drift > 0 {
		d.inserted = max(n-s.cfg.Drift, 0)
	}
	if !s.gate(w, r, pageGarbage) {
		return
	}
	var (
		body any
		err  error
	)
	q := r.URL.Query()
	switch path {
	case recordsPath:
		body, err = offsetAnswer(d, q)
	case recordsPagedPath:
		body, err = numberedAnswer(d, q)
	default:
		body, err = cursorAnswer(d, q)
	}
	if err != nil {
		c.badRequest.Add(1)
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	c.ok.Add(1)
	writeJSON(w, http.StatusOK, body)
}

// offsetAnswer answers skip=S&take=T.
func offsetAnswer(d dataset, q url.Values) (any, error) {
	skip, err := intParam(q, "skip", 0, 0, math.MaxInt64)
	if err != nil {
		return nil, err
	}
	take, err := intParam(q, "take", DefaultPageSize, 1, MaxPageSize)
	if err != nil {
		return nil, err
	}
	return offsetPage{Items: d.page(skip, take), Total: d.total()}, nil
}

// numberedAnswer answers page=P&size=Z, P from 1.
func numberedAnswer(d dataset, q url.Values) (any, error) {
	page, err := intParam(q, "page", 1, 1, math.MaxInt64)
	if err != nil {
		return nil, err
	}
	size, err := intParam(q, "size", DefaultPageSize, 1, MaxPageSize)
	if err != nil {
		return nil, err
	}
	from := d.total() // past the end, unless the product fits
	if page-1 <= d.total()/size {
		from = min((page-1)*size, d.total())
	}
	return numberedPage{Items: d.page(from, size), Total: d.total(), Page: page}, nil
}

// cursorAnswer answers cursor=C&limit=L; no cursor, or an empty one, starts
// at the front.
func cursorAnswer(d dataset, q url.Values) (any, error) {
	limit, err := intParam(q, "limit", DefaultPageSize, 1, MaxPageSize)
	if err != nil {
		return nil, err
	}
	from := int64(0)
	if token := q.Get("cursor"); token != "" {
		key, ok := decodeCursor(token)
		// Keys run from -inserted (the front) to base-1 (the last record).
		if !ok || key < -d.inserted || key >= d.base {
			return nil, fmt.Errorf("invalid cursor %q", truncate(token, 64))
		}
		from = key + d.inserted
	}
	items := d.page(from, limit)
	answer := cursorPage{Items: items}
	if end := from + int64(len(items)); end < d.total() {
		answer.Next = encodeCursor(end - d.inserted)
	}
	return answer, nil
}

// encodeCursor returns the opaque cursor of the page starting at the record
// with the given key: the unpadded URL-safe base64 of "k<key>".
func encodeCursor(key int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("k" + strconv.FormatInt(key, 10)))
}

// decodeCursor returns the key of a cursor made by encodeCursor, and false
// for any other string.
func decodeCursor(token string) (int64, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return 0, false
	}
	digits, ok := strings.CutPrefix(string(raw), "k")
	if !ok {
		return 0, false
	}
	key, err := strconv.ParseInt(digits, 10, 64)
	// Only the canonical form is valid, so that each page has one cursor.
	if err != nil || encodeCursor(key) != token {
		return 0, false
	}
	return key, true
}

// intParam returns the integer query parameter name, def when it is absent,
// or an error when it is not a decimal integer in [lo, hi].
func intParam(q url.Values, name string, def, lo, hi int64) (int64, error) {
	values, ok := q[name]
	if !ok {
		return def, nil
	}
	v, err := strconv.ParseInt(values[0], 10, 64)
	if err != nil || v < lo || v > hi {
		if hi == math.MaxInt64 {
			return 0, fmt.Errorf("%s must be an integer >= %d, got %q", name, lo, truncate(values[0], 64))
		}
		return 0, fmt.Errorf("%s must be an integer in [%d, %d], got %q", name, lo, hi, truncate(values[0], 64))
	}
	return v, nil
}

// truncate returns s cut to at most n bytes, for quoting client input in an
// error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
