package simulator_test

import (
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/simulator"
)

// priceText is the text of a price: at most two decimals, no trailing zeros.
var priceText = regexp.MustCompile(`^[1-9][0-9]{0,2}(\.[0-9]?[1-9])?$`)

// cents parses a price of the form checked by priceText into cents.
func cents(t *testing.T, n json.Number) int64 {
	t.Helper()
	s := string(n)
	if !priceText.MatchString(s) {
		t.Fatalf("price %q: want 1 to 3 integer digits and at most 2 decimals without trailing zeros", s)
	}
	whole, frac, _ := strings.Cut(s, ".")
	frac = (frac + "00")[:2]
	v, err := strconv.ParseInt(whole+frac, 10, 64)
	if err != nil {
		t.Fatalf("price %q: %v", s, err)
	}
	return v
}

func TestPriceGolden(t *testing.T) {
	// The demo's data depends on these exact values: changing the price
	// model must be deliberate.
	got := simulator.Price("AAPL", time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC))
	want := simulator.Quote{
		Symbol: "AAPL", Date: "2026-11-20",
		Open: "118.99", High: "119.11", Low: "114.96", Close: "116.52",
		Volume: 1534100,
	}
	if got != want {
		t.Errorf("Price(AAPL, 2026-11-20) = %+v, want %+v", got, want)
	}
}

func TestPriceDeterministic(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		ny = time.FixedZone("EST", -5*60*60)
	}
	for _, sym := range []string{"AAPL", "MSFT", "BRK.B", "A"} {
		day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
		want := simulator.Price(sym, day)
		// The same calendar day at another time or in another location
		// gives the same quote.
		for _, d := range []time.Time{
			day,
			day.Add(23*time.Hour + 59*time.Minute),
			time.Date(2026, 11, 20, 23, 30, 0, 0, ny),
		} {
			if got := simulator.Price(sym, d); got != want {
				t.Errorf("Price(%s, %v) = %+v, want %+v", sym, d, got, want)
			}
		}
		if next := simulator.Price(sym, day.AddDate(0, 0, 1)); next == want {
			t.Errorf("Price(%s) is the same on two days: %+v", sym, next)
		}
	}
	if a, b := simulator.Price("AAPL", time.Now()), simulator.Price("MSFT", time.Now()); a.Close == b.Close && a.Volume == b.Volume {
		t.Errorf("AAPL and MSFT have the same quote: %+v, %+v", a, b)
	}
}

func TestPriceInvariants(t *testing.T) {
	symbols := append(simulator.Universe(60, 0), "AAPL", "MSFT", "BRK.B", "0", "Z9-9")
	start := time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC) // before 1970 too
	distinctCloses := map[int64]bool{}
	for _, sym := range symbols {
		for i := 0; i < 40_000; i += 211 {
			day := start.AddDate(0, 0, i)
			q := simulator.Price(sym, day)
			if q.Symbol != sym || q.Date != day.Format(simulator.DateLayout) {
				t.Fatalf("Price(%s, %v) = %+v: wrong symbol or date", sym, day, q)
			}
			open, high, low, closing := cents(t, q.Open), cents(t, q.High), cents(t, q.Low), cents(t, q.Close)
			if !(100 <= low && low <= min(open, closing) && max(open, closing) <= high && high <= 99_999) {
				t.Fatalf("Price(%s, %v) = %+v: want 1.00 <= low <= open, close <= high <= 999.99", sym, day, q)
			}
			if q.Volume < 1000 || q.Volume > 10_000_000 {
				t.Fatalf("Price(%s, %v) volume %d out of [1000, 10000000]", sym, day, q.Volume)
			}
			distinctCloses[closing] = true
		}
	}
	if len(distinctCloses) < 1000 {
		t.Errorf("only %d distinct closes over all symbols and days: prices barely vary", len(distinctCloses))
	}
}

func TestKnown(t *testing.T) {
	tests := []struct {
		symbol string
		rate   float64
		want   bool
	}{
		{"AAPL", 0, true},
		{"AAPL", 1, false},
		{"XX", 0, false},
		{"XXFOO", 0, false},
		{"XX0001", 0, false},
		{"XAPL", 0, true},
	}
	for _, tt := range tests {
		if got := simulator.Known(tt.symbol, tt.rate); got != tt.want {
			t.Errorf("Known(%q, %v) = %v, want %v", tt.symbol, tt.rate, got, tt.want)
		}
	}

	symbols := simulator.Universe(4000, 0)
	for _, rate := range []float64{0.1, 0.3, 0.5} {
		unknown := 0
		for _, s := range symbols {
			if !simulator.Known(s, rate) {
				unknown++
				// Monotonic: unknown at a rate, unknown at every higher rate.
				if simulator.Known(s, rate+0.1) {
					t.Fatalf("%s unknown at rate %v but known at %v", s, rate, rate+0.1)
				}
			}
		}
		if got := float64(unknown) / float64(len(symbols)); got < rate-0.05 || got > rate+0.05 {
			t.Errorf("unknown fraction at rate %v = %.3f, want within 0.05", rate, got)
		}
	}
}

func TestUniverse(t *testing.T) {
	symbolPattern := regexp.MustCompile(`^[A-Z0-9][A-Z0-9.\-]{0,19}$`)
	tests := []struct {
		n, unknown int
		first      string
	}{
		{0, 0, ""},
		{1, 0, "AAA"},
		{10, 3, "AAA"},
		{2000, 10, "AAA"},
		{17_550, 0, "AAA"},     // every 3-letter symbol not starting with XX
		{17_551, 0, "AAAA"},    // one more needs 4 letters
		{0, 12_345, "XX00001"}, // more digits for many unknowns
		{-5, -1, ""},
	}
	for _, tt := range tests {
		got := simulator.Universe(tt.n, tt.unknown)
		wantLen := max(tt.n, 0) + max(tt.unknown, 0)
		if len(got) != wantLen {
			t.Errorf("Universe(%d, %d) has %d symbols, want %d", tt.n, tt.unknown, len(got), wantLen)
			continue
		}
		if tt.first != "" && got[0] != tt.first {
			t.Errorf("Universe(%d, %d)[0] = %q, want %q", tt.n, tt.unknown, got[0], tt.first)
		}
		if !slices.IsSorted(got) {
			t.Errorf("Universe(%d, %d) is not sorted", tt.n, tt.unknown)
		}
		if len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Errorf("Universe(%d, %d) has duplicates", tt.n, tt.unknown)
		}
		var known, unknown int
		for _, s := range got {
			if !symbolPattern.MatchString(s) {
				t.Fatalf("Universe(%d, %d) has malformed symbol %q", tt.n, tt.unknown, s)
			}
			if strings.HasPrefix(s, simulator.UnknownPrefix) {
				unknown++
				if simulator.Known(s, 0) {
					t.Errorf("unknown symbol %q is Known", s)
				}
			} else {
				known++
				if !simulator.Known(s, 0) {
					t.Errorf("symbol %q is not Known at rate 0", s)
				}
			}
		}
		if known != max(tt.n, 0) || unknown != max(tt.unknown, 0) {
			t.Errorf("Universe(%d, %d) has %d known and %d unknown symbols", tt.n, tt.unknown, known, unknown)
		}
	}
	if a, b := simulator.Universe(50, 5), simulator.Universe(50, 5); !slices.Equal(a, b) {
		t.Errorf("Universe(50, 5) differs between calls: %v, %v", a, b)
	}
	if got := simulator.Universe(3, 2); !slices.Equal(got, []string{"AAA", "AAB", "AAC", "XX0001", "XX0002"}) {
		t.Errorf("Universe(3, 2) = %v", got)
	}
}
