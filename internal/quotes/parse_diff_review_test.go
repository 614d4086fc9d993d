package quotes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"testing"

	"github.com/syncworker/syncworker/internal/fault"
)

// oldDecimal and oldParse are Parse as it was before it scanned a body once (9ae2485): the oracle of FuzzParseAsBefore.
var oldDecimal = regexp.MustCompile(`^\d{1,15}(\.\d{1,10})?$`)

func oldParse(body []byte, symbol, day string) (Quote, error) {
	var raw struct {
		Symbol *string          `json:"symbol"`
		Date   *string          `json:"date"`
		Open   *json.RawMessage `json:"open"`
		High   *json.RawMessage `json:"high"`
		Low    *json.RawMessage `json:"low"`
		Close  *json.RawMessage `json:"close"`
		Volume *json.RawMessage `json:"volume"`
	}
	if !json.Valid(body) {
		// Quoted, a non-finite number is a string where a number belongs,
		// which the checks below name.
		quoted := nonFinite.ReplaceAll(body, []byte(`$1"$2"`))
		if !json.Valid(quoted) {
			return Quote{}, fault.Wrap(fault.Transient, fmt.Errorf("quote %s: unreadable response body", symbol))
		}
		body = quoted
	}
	bad := func(format string, args ...any) (Quote, error) {
		return Quote{}, fault.Wrap(fault.ItemPermanent, fmt.Errorf("quote %s: invalid response: %s", symbol, fmt.Sprintf(format, args...)))
	}
	if trimmed := bytes.TrimLeft(body, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
		return bad("%s, want a JSON object", truncate(string(body)))
	}
	if err := json.Unmarshal(body, &raw); err != nil {
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
		if !oldDecimal.MatchString(text) {
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

// FuzzParseAsBefore checks that Parse classifies every body as it did
// before: the same quote, or an error of the same class and text.
func FuzzParseAsBefore(f *testing.F) {
	for _, s := range []string{
		`{"symbol":"AAPL","date":"2026-03-03","open":"1.5","high":"2","low":"1","close":"1.5","volume":10}`,
		`{"symbol":"AAPL","date":"2026-03-03","open":NaN,"high":"2","low":"1","close":"1.5","volume":10}`,
		`{"symbol":1}`, `[1]`, `null`, ``, `{`, `"x"`, ` {"open": [1,2]} `, `{"volume": Infinity}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		q1, e1 := oldParse(body, "AAPL", "2026-03-03")
		q2, e2 := Parse(body, "AAPL", "2026-03-03")
		if q1 != q2 || (e1 == nil) != (e2 == nil) || (e1 != nil && (e1.Error() != e2.Error() || fault.ClassOf(e1) != fault.ClassOf(e2))) {
			t.Fatalf("Parse(%q) = %+v, %v; before %+v, %v", body, q2, e2, q1, e1)
		}
	})
}
