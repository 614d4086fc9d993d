package simulator

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DateLayout is the layout of the date query parameter and of Quote.Date.
const DateLayout = "2006-01-02"

// UnknownPrefix starts every symbol that is always unknown, whatever the
// unknown rate, so that tests and demos can name unknown symbols.
const UnknownPrefix = "XX"

// Bounds of the simulated prices in cents and of the simulated volumes.
const (
	minCents  = 100    // 1.00
	maxCents  = 99_999 // 999.99
	minVolume = 1_000
	maxVolume = 10_000_000
)

// Quote is the daily price of one symbol as the provider returns it. Prices
// are json.Number values with at most two decimals, so that their text is
// exact (for example "123.45") and never carries float artifacts.
type Quote struct {
	// Symbol is the symbol as given in the request path.
	Symbol string `json:"symbol"`
	// Date is the trading day, formatted as DateLayout (YYYY-MM-DD).
	Date string `json:"date"`
	// Open is the opening price.
	Open json.Number `json:"open"`
	// High is the highest price of the day.
	High json.Number `json:"high"`
	// Low is the lowest price of the day.
	Low json.Number `json:"low"`
	// Close is the closing price.
	Close json.Number `json:"close"`
	// Volume is the number of shares traded.
	Volume int64 `json:"volume"`
}

// Price returns the simulated quote of symbol on the calendar day of date (in
// date's location). It is a pure function of the symbol and the day, computed
// with integer arithmetic only from an FNV-1a hash, so the same symbol and day
// give the same quote on every run and every platform.
//
// Every price lies in [1.00, 999.99] with at most two decimals, and
// Low <= min(Open, Close) <= max(Open, Close) <= High. Volume lies in
// [1000, 10000000]. Each symbol has its own base price, volume and two
// periodic trends, so that a series of days looks like a market.
func Price(symbol string, date time.Time) Quote {
	y, m, d := date.Date()
	day := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	dayText := day.Format(DateLayout)
	dayNum := floorDiv(day.Unix(), 24*60*60)

	sym := stream{state: hashParts("symbol", symbol)}
	base := 500 + int64(sym.intn(40_000)) // 5.00 .. 404.99
	// Two triangle waves in permille: a slow trend and a faster swing.
	factor := 1000 +
		triangle(dayNum, 120+int64(sym.intn(360)), int64(sym.intn(1000)), 50+int64(sym.intn(150))) +
		triangle(dayNum, 20+int64(sym.intn(40)), int64(sym.intn(1000)), 10+int64(sym.intn(40)))
	baseVolume := 20_000 + int64(sym.intn(2_000_000))
	mid := base * factor / 1000

	daily := stream{state: hashParts("day", symbol, dayText)}
	open := clamp(mid+mid*(int64(daily.intn(601))-300)/10_000, minCents, maxCents)    // ±3%
	closing := clamp(mid+mid*(int64(daily.intn(601))-300)/10_000, minCents, maxCents) // ±3%
	high := min(max(open, closing)+mid*int64(daily.intn(201))/10_000, maxCents)       // +0..2%
	low := max(min(open, closing)-mid*int64(daily.intn(201))/10_000, minCents)        // -0..2%
	volume := clamp(baseVolume*(300+int64(daily.intn(1401)))/1000, minVolume, maxVolume)

	return Quote{
		Symbol: symbol,
		Date:   dayText,
		Open:   centsNumber(open),
		High:   centsNumber(high),
		Low:    centsNumber(low),
		Close:  centsNumber(closing),
		Volume: volume,
	}
}

// Known reports whether the provider knows symbol when a fraction unknownRate
// of all symbols is unknown. Symbols starting with UnknownPrefix ("XX") are
// never known. Otherwise a symbol is unknown when the fraction in [0, 1)
// derived from a hash of the symbol is below unknownRate, so the answer for a
// symbol is the same on every run and grows monotonically with unknownRate.
func Known(symbol string, unknownRate float64) bool {
	if strings.HasPrefix(symbol, UnknownPrefix) {
		return false
	}
	return hashFraction(symbol) >= unknownRate
}

// Universe returns n distinct synthetic symbols that are Known at an unknown
// rate of 0, plus unknown symbols that start with UnknownPrefix, all sorted.
// The known symbols are the first n base-26 letter strings of a common width
// of at least three ("AAA", "AAB", ...), skipping those that start with "XX";
// the unknown ones are "XX0001", "XX0002", and so on. The result depends only
// on n and unknown. Negative counts are treated as zero.
func Universe(n, unknown int) []string {
	n, unknown = max(n, 0), max(unknown, 0)
	width := 3
	for letterCapacity(width) < n {
		width++
	}
	out := make([]string, 0, n+unknown)
	for i := 0; len(out) < n; i++ {
		s := base26(i, width)
		if strings.HasPrefix(s, UnknownPrefix) {
			continue
		}
		out = append(out, s)
	}
	digits := max(4, len(strconv.Itoa(unknown)))
	for i := 1; i <= unknown; i++ {
		out = append(out, fmt.Sprintf("%s%0*d", UnknownPrefix, digits, i))
	}
	slices.Sort(out)
	return out
}

// letterCapacity returns how many letter strings of the given width do not
// start with "XX", saturating at math.MaxInt.
func letterCapacity(width int) int {
	total := 1
	for range width {
		if total > math.MaxInt/26 {
			return math.MaxInt
		}
		total *= 26
	}
	return total - total/(26*26)
}

// base26 returns i written with the letters A to Z as digits, left-padded
// with "A" to width.
func base26(i, width int) string {
	b := make([]byte, width)
	for j := width - 1; j >= 0; j-- {
		b[j] = byte('A' + i%26)
		i /= 26
	}
	return string(b)
}

// centsNumber formats an amount of cents as a decimal number with at most two
// decimals and no trailing zeros after the point ("124.5", "100").
func centsNumber(cents int64) json.Number {
	s := fmt.Sprintf("%d.%02d", cents/100, cents%100)
	s = strings.TrimRight(s, "0")
	s = strings.TrimSuffix(s, ".")
	return json.Number(s)
}

// triangle returns a triangle wave of the given period in days, phase in
// permille of the period and amplitude, evaluated at day: it goes linearly
// from -amplitude to +amplitude and back once per period.
func triangle(day, period, phasePermille, amplitude int64) int64 {
	t := floorMod(day+period*phasePermille/1000, period)
	dist := 2*t - period // in [-period, period)
	if dist < 0 {
		dist = -dist
	}
	return amplitude - 2*amplitude*dist/period
}

func clamp(v, lo, hi int64) int64 { return min(max(v, lo), hi) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 { return ((a % b) + b) % b }

// hashParts returns the FNV-1a hash of the parts, separated by a zero byte,
// passed through the SplitMix64 finalizer so that similar inputs give
// unrelated hashes.
func hashParts(parts ...string) uint64 {
	h := fnv.New64a()
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{0})
		}
		h.Write([]byte(p))
	}
	return mix64(h.Sum64())
}

// hashFraction returns a fraction in [0, 1) derived from a hash of symbol.
func hashFraction(symbol string) float64 {
	return float64(hashParts("known", symbol)>>11) / (1 << 53)
}

// mix64 is the SplitMix64 finalizer.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// stream is a SplitMix64 sequence: a deterministic source of numbers derived
// from one hash.
type stream struct{ state uint64 }

func (s *stream) next() uint64 {
	s.state += 0x9e3779b97f4a7c15
	return mix64(s.state)
}

// intn returns a number in [0, n); n must be positive. Its modulo bias is
// negligible for the small n used here.
func (s *stream) intn(n int) int { return int(s.next() % uint64(n)) }
