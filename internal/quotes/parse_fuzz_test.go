package quotes

import (
	"math/big"
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/syncworker/syncworker/internal/fault"
)

// FuzzParse feeds Parse arbitrary bodies, symbols and days. It never
// panics; an error is transient or item-permanent, and (for a symbol and
// day that are themselves clean) its message is text Postgres stores and a
// terminal shows as it is; an accepted quote is the one asked for, with
// finite non-negative decimal prices, low <= open, close <= high, and a
// non-negative volume. The order is checked with math/big, not with the
// code under test.
//
// CI runs it briefly (scripts/dev test); run it longer with
//
//	go test -run '^$' -fuzz '^FuzzParse$' -fuzztime 2000000x ./internal/quotes
func FuzzParse(f *testing.F) {
	for _, b := range []string{
		goodBody,
		`{"symbol":"AAPL","date":"2026-11-20","open":0,"high":0.0,"low":0,"close":0,"volume":0}`,
		`{"symbol":"AAPL","date":"2026-11-20","open":123456789012345.0000000001,"high":123456789012345.0000000002,"low":123456789012345.0000000001,"close":123456789012345.0000000002,"volume":1}`,
		body(`124.5`, `NaN`),
		body(`125.1`, `Infinity`),
		body(`122.07`, `-Infinity`),
		body(`123.45`, `-1`),
		body(`123.45`, `"123.45"`),
		body(`123.45`, `1e2`),
		body(`"low":122.07`, `"low":200`),
		body(`124.5`, `130`),
		body(`"AAPL"`, `"MSFT"`),
		body("2026-11-20", "2026-11-19"),
		body(`1234567`, `-0`),
		`{"symbol":"AAPL","symbol":"MSFT"}`,
		`{"SYMBOL":"AAPL"}`,
		`{"symbol":"AA`,
		`<html>`,
		`null`,
		`[1]`,
		``,
	} {
		f.Add([]byte(b), "AAPL", "2026-11-20")
	}
	f.Add([]byte(`{"error":"\u0000"}`), "AAPL'; DROP TABLE stock_prices;--", "2026-02-30")

	f.Fuzz(func(t *testing.T, body []byte, symbol, day string) {
		q, err := Parse(body, symbol, day)
		if err != nil {
			if c := fault.ClassOf(err); c != fault.Transient && c != fault.ItemPermanent {
				t.Fatalf("Parse error %v has class %s, want transient or item-permanent", err, c)
			}
			if msg := err.Error(); isClean(symbol) && isClean(day) && !isClean(msg) {
				t.Fatalf("Parse error %q is not clean text", msg)
			}
			return
		}
		if q.Symbol != symbol || q.Date != day {
			t.Fatalf("Parse(%q, %q) accepted the quote of %q on %q", symbol, day, q.Symbol, q.Date)
		}
		price := map[string]*big.Rat{}
		for name, text := range map[string]string{"open": q.Open, "high": q.High, "low": q.Low, "close": q.Close} {
			r, ok := new(big.Rat).SetString(text)
			if !ok || r.Sign() < 0 || strings.ContainsAny(text, "eE+-") || !decimalRE.MatchString(text) {
				t.Fatalf("Parse accepted %s %q from %q", name, text, body)
			}
			price[name] = r
		}
		low, high := price["low"], price["high"]
		for _, name := range []string{"open", "close"} {
			if price[name].Cmp(low) < 0 || price[name].Cmp(high) > 0 {
				t.Fatalf("Parse accepted %s %s outside low %s .. high %s", name, price[name], low, high)
			}
		}
		if low.Cmp(high) > 0 || q.Volume < 0 {
			t.Fatalf("Parse accepted %+v", q)
		}
	})
}

// isClean reports whether s is valid UTF-8 without control characters.
func isClean(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl)
}

// decimalRE is what isDecimal accepts, as a regular expression: the
// oracle of the tests.
var decimalRE = regexp.MustCompile(`^\d{1,15}(\.\d{1,10})?$`)

func TestIsDecimal(t *testing.T) {
	for _, s := range []string{
		"0", "7", "123.45", "000.5", "123456789012345", "1234567890123456", "1.1234567890", "1.12345678901",
		"", ".", "1.", ".5", "-1", "+1", "1e2", "1.2.3", " 1", "1 ", "١", "0x1", "1_000", "NaN", `"1"`,
	} {
		if got, want := isDecimal(s), decimalRE.MatchString(s); got != want {
			t.Errorf("isDecimal(%q) = %v, want %v", s, got, want)
		}
	}
}

// FuzzIsDecimal checks isDecimal against the regular expression it stands
// for.
func FuzzIsDecimal(f *testing.F) {
	for _, s := range []string{"123.45", "1.", "1234567890123456", "1.12345678901", "-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := isDecimal(s), decimalRE.MatchString(s); got != want {
			t.Fatalf("isDecimal(%q) = %v, want %v", s, got, want)
		}
	})
}
