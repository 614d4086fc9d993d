package etl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/syncworker/syncworker/internal/fault"
)

// maxPageBody bounds the size of a page's body.
const maxPageBody = 64 << 20

// Limiter hands out the permission to make one request.
type Limiter interface {
	Wait(ctx context.Context) error
}

// Metrics receive what a source's requests did, for monitoring.
type Metrics interface {
	// Fetched observes one page request that took d and failed with err
	// (nil: succeeded); err is classified (package fault).
	Fetched(d time.Duration, err error)
}

// At is where a page is: its index from 0 (offset and page styles; the
// number of pages before it for the cursor style) and, for the cursor style,
// the token of the page (empty for the first).
type At struct {
	Index int64
	Token string
}

// Record is one record of a page: its key and its JSON, as the source sent it.
type Record struct {
	Key     string
	Payload json.RawMessage
}

// Page is one page of a source, checked against the job's definition.
type Page struct {
	Records []Record
	// Total is the source's total number of records, when the job has a
	// total_path.
	Total *int64
	// Next is the token of the next page (cursor style); empty at the end.
	Next string
	// Rejected says why each record that could not be landed was left out
	// (a record without its key, one Postgres cannot store), in order: a
	// malformed record fails alone, the page goes on.
	Rejected []Reject
}

// Reject is a record of a page left out, and why.
type Reject struct {
	// Item is the record's place in the page, from 0.
	Item int
	// Reason says what is wrong with it, starting with "record <Item>".
	Reason string
}

// String returns the reason.
func (r Reject) String() string { return r.Reason }

// Source fetches the pages of one job's source.
type Source struct {
	job     Job
	http    *http.Client
	limiter Limiter
	metrics Metrics
}

// NewSource returns the source of job; limiter may be nil (no rate limit),
// and client nil for a default client.
func NewSource(job Job, limiter Limiter, client *http.Client) *Source {
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 16
		client = &http.Client{Transport: tr, CheckRedirect: sameHost}
	}
	return &Source{job: job, http: client, limiter: limiter}
}

// WithMetrics makes s report its requests to m, and returns s.
func (s *Source) WithMetrics(m Metrics) *Source {
	s.metrics = m
	return s
}

// errRedirect means the source redirected a page request to another host.
var errRedirect = errors.New("redirect to another host refused")

// sameHost is the CheckRedirect of a source's client: the job's headers
// (its credentials) are meant for its own host, and Go's client would send
// any header but Authorization and Cookie along to wherever a redirect
// points.
func sameHost(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if req.URL.Host != via[0].URL.Host {
		return fmt.Errorf("%w: %s is not %s, whose credentials the job holds", errRedirect, req.URL.Host, via[0].URL.Host)
	}
	return nil
}

// Job returns the definition of the source's job.
func (s *Source) Job() Job { return s.job }

// URL returns the address of the page at at, of pageSize records, with the
// run's params.
func (s *Source) URL(params map[string]string, pageSize int, at At) (string, error) {
	p := s.job.Pagination
	if p.Style == StyleCursor && p.NextLink && at.Token != "" {
		// The token is the next page's whole address, from a Link header;
		// it must stay on the job's host, which its headers are meant for.
		next, err := url.Parse(at.Token)
		base, _ := url.Parse(s.job.URL)
		if err != nil || next.Host != base.Host || (next.Scheme != "http" && next.Scheme != "https") {
			return "", fault.Wrap(fault.RunFatal, fmt.Errorf("next link %q does not stay on %s", fault.Sanitize(at.Token, 200), base.Host))
		}
		return next.String(), nil
	}
	u, err := url.Parse(s.job.URL)
	if err != nil {
		return "", fault.Wrap(fault.RunFatal, fmt.Errorf("job %s: url: %w", s.job.Name, err))
	}
	q := u.Query()
	for k, v := range s.job.Query {
		q.Set(k, paramRef.ReplaceAllStringFunc(v, func(ref string) string {
			return params[paramRef.FindStringSubmatch(ref)[1]]
		}))
	}
	size := strconv.Itoa(pageSize)
	switch p.Style {
	case StyleOffset:
		q.Set(p.SkipParam, strconv.FormatInt(at.Index*int64(pageSize), 10))
		q.Set(p.TakeParam, size)
	case StylePage:
		q.Set(p.PageParam, strconv.FormatInt(int64(*p.FirstPage)+at.Index, 10))
		q.Set(p.SizeParam, size)
	case StyleCursor:
		if at.Token != "" {
			q.Set(p.CursorParam, at.Token)
		}
		q.Set(p.LimitParam, size)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// Fetch fetches and checks the page at at. Its errors are classified:
//
//	429 with Retry-After                  rate-limited
//	401, 403                              run-fatal (credentials)
//	other 4xx                             run-fatal (the request is wrong)
//	5xx, timeouts, connection errors      transient
//	200 not JSON, or not the definition's shape   transient (a cut-off or
//	                                       stray answer); StartETL checks the
//	                                       first page, so a wrong definition
//	                                       fails before a run exists
//
// A fetch takes at most the job's page timeout.
func (s *Source) Fetch(ctx context.Context, params map[string]string, pageSize int, at At) (Page, error) {
	where := s.where(pageSize, at)
	addr, err := s.URL(params, pageSize, at)
	if err != nil {
		return Page{}, err
	}
	if s.limiter != nil {
		if err := s.limiter.Wait(ctx); err != nil {
			return Page{}, fmt.Errorf("%s: rate limit: %w", where, err)
		}
	}
	start := time.Now()
	page, err := s.get(ctx, addr, where)
	if s.metrics != nil && ctx.Err() == nil {
		// A request cut short by the batch's end is nobody's failure.
		s.metrics.Fetched(time.Since(start), err)
	}
	return page, err
}

// get requests the page at addr, named where in errors, and checks it.
func (s *Source) get(ctx context.Context, addr, where string) (Page, error) {
	pctx, cancel := context.WithTimeout(ctx, s.job.PageTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, addr, nil)
	if err != nil {
		return Page{}, fault.Wrap(fault.RunFatal, fmt.Errorf("%s: %w", where, err))
	}
	req.Header.Set("Accept", "application/json")
	for k, v := range s.job.Headers {
		req.Header.Set(k, v)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return Page{}, s.requestError(ctx, pctx, where, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPageBody+1))
	if err != nil {
		return Page{}, s.requestError(ctx, pctx, where, err)
	}
	switch c := resp.StatusCode; {
	case c == http.StatusOK:
	case c == http.StatusTooManyRequests:
		d := fault.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		return Page{}, fault.Limited(fmt.Errorf("%s: rate limited by the source (429), retry after %s", where, d), d)
	case c == http.StatusUnauthorized || c == http.StatusForbidden:
		return Page{}, fault.Wrap(fault.RunFatal, fmt.Errorf("%s: the source refused the credentials (%d)%s", where, c, excerpt(body)))
	case c >= 500 || c == http.StatusRequestTimeout:
		return Page{}, fault.Wrap(fault.Transient, fmt.Errorf("%s: source error %d%s", where, c, excerpt(body)))
	default:
		return Page{}, fault.Wrap(fault.RunFatal, fmt.Errorf("%s: the source refused the request (%d)%s", where, c, excerpt(body)))
	}
	if len(body) > maxPageBody {
		return Page{}, fault.Wrap(fault.Transient, fmt.Errorf("%s: body larger than %d bytes", where, maxPageBody))
	}
	page, err := s.Parse(body, resp.Header)
	if err != nil {
		return Page{}, fault.Wrap(fault.Transient, fmt.Errorf("%s: %w", where, err))
	}
	return page, nil
}

// where names a page in errors.
func (s *Source) where(pageSize int, at At) string {
	p := s.job.Pagination
	switch p.Style {
	case StyleOffset:
		return fmt.Sprintf("page %d (%s=%d)", at.Index, p.SkipParam, at.Index*int64(pageSize))
	case StylePage:
		return fmt.Sprintf("page %d (%s=%d)", at.Index, p.PageParam, int64(*p.FirstPage)+at.Index)
	default:
		if at.Token == "" {
			return fmt.Sprintf("page %d (first)", at.Index)
		}
		return fmt.Sprintf("page %d (%s=%s)", at.Index, p.CursorParam, fault.Sanitize(at.Token, 80))
	}
}

// requestError classifies the failure of a request: the end of ctx is
// returned as it is (a shutdown, a task's deadline), a page that took longer
// than its timeout is transient, and so is anything else on the wire.
func (s *Source) requestError(ctx, pctx context.Context, where string, err error) error {
	// The URL of a *url.Error may hold secrets (a query value, a next link's
	// token); where names the page instead.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	switch {
	case errors.Is(err, errRedirect):
		return fault.Wrap(fault.RunFatal, fmt.Errorf("%s: %w", where, err))
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w", where, ctx.Err())
	case errors.Is(pctx.Err(), context.DeadlineExceeded):
		return fault.Wrap(fault.Transient, fmt.Errorf("%s: no answer within the page timeout of %s", where, s.job.PageTimeout))
	default:
		return fault.Wrap(fault.Transient, fmt.Errorf("%s: %w", where, err))
	}
}

// excerpt is the start of an error body, safe to keep.
func excerpt(body []byte) string {
	b := bytes.TrimSpace(body)
	if len(b) == 0 {
		return ""
	}
	return ": " + fault.Sanitize(string(b), 200)
}

// Parse checks a page's body against the job's definition: JSON, with an
// array of objects at items_path, each with a key (a non-empty string or an
// integer) at key; a total at total_path that is a whole number of 0 or more;
// a next token at next_path that is a string, null or absent. The next token
// of a next_link job comes from the Link header.
func (s *Source) Parse(body []byte, header http.Header) (Page, error) {
	if !json.Valid(body) {
		return Page{}, fmt.Errorf("the response is not JSON: %s", fault.Sanitize(string(body), 80))
	}
	var page Page
	raw, err := lookup(body, s.job.ItemsPath)
	if err != nil {
		return Page{}, fmt.Errorf("items_path %q: %w", s.job.ItemsPath, err)
	}
	if len(raw) == 0 || raw[0] != '[' {
		return Page{}, fmt.Errorf("items_path %q is %s, want an array of records", s.job.ItemsPath, kind(raw))
	}
	items := elements(raw)
	page.Records = make([]Record, 0, len(items))
	for i, item := range items {
		rec, err := s.record(item)
		if err != nil {
			sep := ": "
			if strings.HasPrefix(err.Error(), "is ") || strings.HasPrefix(err.Error(), "holds ") {
				sep = " " // "record 3 is a number, want an object"
			}
			page.Rejected = append(page.Rejected, Reject{Item: i, Reason: fmt.Sprintf("record %d%s%s", i, sep, err)})
			continue
		}
		page.Records = append(page.Records, rec)
	}
	if len(items) > 0 && len(page.Records) == 0 {
		// Not one record fits the definition: the answer is not what the
		// job expects (a stray page, a wrong key), not a few bad records.
		return Page{}, fmt.Errorf("none of the page's %d records can be landed; the first: %s", len(items), page.Rejected[0])
	}
	if s.job.TotalPath != "" {
		raw, err := lookup(body, s.job.TotalPath)
		if err != nil {
			return Page{}, fmt.Errorf("total_path %q: %w", s.job.TotalPath, err)
		}
		var n json.Number
		total, err := strconv.ParseInt(string(raw), 10, 64)
		if json.Unmarshal(raw, &n) != nil || err != nil || total < 0 {
			return Page{}, fmt.Errorf("total_path %q is %s, want a whole number of 0 or more", s.job.TotalPath, kind(raw))
		}
		page.Total = &total
	}
	p := s.job.Pagination
	switch {
	case p.Style == StyleCursor && p.NextLink:
		page.Next = nextLink(header.Values("Link"))
	case p.Style == StyleCursor:
		raw, err := lookup(body, p.NextPath)
		if errors.Is(err, errMissing) {
			break
		}
		if err != nil {
			return Page{}, fmt.Errorf("next_path %q: %w", p.NextPath, err)
		}
		if string(raw) == "null" {
			break
		}
		if err := json.Unmarshal(raw, &page.Next); err != nil {
			return Page{}, fmt.Errorf("next_path %q is %s, want a string or null", p.NextPath, kind(raw))
		}
		if len(page.Next) > 4096 {
			return Page{}, fmt.Errorf("next_path %q is a token of %d bytes, more than 4096", p.NextPath, len(page.Next))
		}
	}
	return page, nil
}

// record checks one record of a page and returns it; its error says what
// is wrong with it, after "record N".
func (s *Source) record(item json.RawMessage) (Record, error) {
	if len(item) == 0 || item[0] != '{' {
		return Record{}, fmt.Errorf("is %s, want an object", kind(item))
	}
	if !utf8.Valid(item) {
		return Record{}, errors.New("is not valid UTF-8")
	}
	k, err := lookup(item, s.job.Key)
	if err != nil {
		return Record{}, fmt.Errorf("key %q: %w", s.job.Key, err)
	}
	key, err := keyText(k)
	if err != nil {
		return Record{}, fmt.Errorf("key %q %w", s.job.Key, err)
	}
	payload, err := compact(item)
	if err != nil {
		return Record{}, err
	}
	if bytes.Contains(payload, []byte(`\u0000`)) {
		return Record{}, errors.New(`holds a \u0000 character, which Postgres cannot store`)
	}
	return Record{Key: key, Payload: payload}, nil
}

// compact returns the valid JSON value v without insignificant white space:
// v itself when it has none (as a JSON encoder writes it), else a compacted
// copy.
func compact(v []byte) ([]byte, error) {
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"':
			i = skipString(v, i) - 1
		case ' ', '\t', '\n', '\r':
			var buf bytes.Buffer
			if err := json.Compact(&buf, v); err != nil {
				return nil, err
			}
			return buf.Bytes(), nil
		}
	}
	return v, nil
}

// errMissing means a path is not in a document.
var errMissing = errors.New("missing from the response")

// lookup returns the value at the dotted path in the JSON document doc,
// which must be valid JSON (Parse checks the body; a record is part of it).
// A member that repeats counts by its last value, as decoding into a map
// would have it. It scans doc in place, without decoding it: a page's
// records are looked up one by one, and decoding each into a map was most of
// the cost of a page (see BenchmarkSourceParse).
func lookup(doc json.RawMessage, path string) (json.RawMessage, error) {
	cur := doc
	for seg := range strings.SplitSeq(path, ".") {
		if len(cur) == 0 || cur[0] != '{' {
			return nil, fmt.Errorf("%w (%q is inside %s, not an object)", errMissing, seg, kind(cur))
		}
		v, ok := member(cur, seg)
		if !ok {
			return nil, errMissing
		}
		cur = v
	}
	return cur, nil
}

// member returns the value of the last member called name of obj, a valid
// JSON object, and whether it has one.
func member(obj []byte, name string) (json.RawMessage, bool) {
	var found json.RawMessage
	ok := false
	i := skipSpace(obj, 1)
	for i < len(obj) && obj[i] == '"' {
		end := skipString(obj, i)
		key := obj[i:end]
		i = skipSpace(obj, end)
		if i >= len(obj) || obj[i] != ':' {
			break // not valid JSON: nothing more to find
		}
		i = skipSpace(obj, i+1)
		vend := skipValue(obj, i)
		if keyIs(key, name) {
			found, ok = obj[i:vend:vend], true
		}
		i = skipSpace(obj, vend)
		if i < len(obj) && obj[i] == ',' {
			i = skipSpace(obj, i+1)
		}
	}
	return found, ok
}

// elements returns the elements of arr, a valid JSON array.
func elements(arr []byte) []json.RawMessage {
	var out []json.RawMessage
	i := skipSpace(arr, 1)
	for i < len(arr) && arr[i] != ']' {
		end := skipValue(arr, i)
		if end == i {
			break // not valid JSON
		}
		out = append(out, arr[i:end:end])
		i = skipSpace(arr, end)
		if i < len(arr) && arr[i] == ',' {
			i = skipSpace(arr, i+1)
		}
	}
	return out
}

// keyIs says whether the member name key (a JSON string with its quotes)
// is name. A name with escapes or beyond ASCII is decoded as encoding/json
// decodes it (invalid UTF-8 becomes U+FFFD).
func keyIs(key []byte, name string) bool {
	if len(key) < 2 {
		return false // not valid JSON
	}
	inner := key[1 : len(key)-1]
	plain := true
	for _, c := range inner {
		if c == '\\' || c >= utf8.RuneSelf {
			plain = false
			break
		}
	}
	if plain {
		return string(inner) == name
	}
	var s string
	return json.Unmarshal(key, &s) == nil && s == name
}

// skipSpace returns the index of the first byte of b from i on that is not
// JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the JSON string that starts at b[i].
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// skipValue returns the index after the JSON value that starts at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); {
			switch b[j] {
			case '"':
				j = skipString(b, j)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
			j++
		}
		return len(b)
	default: // a number, true, false or null
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
			j++
		}
		return j
	}
}

// MaxKey bounds the bytes of a record's key field.
const MaxKey = 1024

// keyText returns a record key as text: a non-empty string, or an integer.
func keyText(raw json.RawMessage) (string, error) {
	switch {
	case len(raw) > 0 && raw[0] == '"':
		var s string
		if inner := raw[1 : len(raw)-1]; bytes.IndexByte(inner, '\\') < 0 {
			s = string(inner) // nothing to decode; the checks below hold for it too
		} else if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("is not a valid string: %w", err)
		}
		if s == "" || len(s) > MaxKey {
			return "", fmt.Errorf("is a string of %d bytes, want 1 to %d", len(s), MaxKey)
		}
		if strings.ContainsRune(s, 0) || !utf8.ValidString(s) {
			return "", errors.New("is not text Postgres can store (a NUL, or invalid UTF-8)")
		}
		return s, nil
	default:
		if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
			return strconv.FormatInt(n, 10), nil
		}
		return "", fmt.Errorf("is %s, want a string or an integer", kind(raw))
	}
}

// kind describes a JSON value for an error message.
func kind(raw json.RawMessage) string {
	b := bytes.TrimSpace(raw)
	if len(b) == 0 {
		return "empty"
	}
	switch b[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string " + fault.Sanitize(string(b), 40)
	case 't', 'f':
		return "a bool"
	case 'n':
		return "null"
	default:
		return "the number " + fault.Sanitize(string(b), 40)
	}
}

// nextLink returns the target of the rel="next" link of Link headers.
func nextLink(values []string) string {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			target, params, ok := strings.Cut(strings.TrimSpace(part), ";")
			if !ok || !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
				continue
			}
			for param := range strings.SplitSeq(params, ";") {
				k, val, _ := strings.Cut(strings.TrimSpace(param), "=")
				if strings.EqualFold(k, "rel") && strings.Contains(" "+strings.Trim(val, `"`)+" ", " next ") {
					return target[1 : len(target)-1]
				}
			}
		}
	}
	return ""
}
