package fault

import (
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Sanitize makes text from a source safe to keep in an error, which ends up
// in Postgres and on an operator's terminal: valid UTF-8 (Postgres refuses
// anything else, and a whole batch's commit with it), no control characters
// (NUL is refused too; escapes would reach the terminal), at most limit bytes,
// cut at a character boundary.
func Sanitize(s string, limit int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// ParseRetryAfter parses a Retry-After header (seconds or an HTTP date); a missing
// or unreadable one means one second.
func ParseRetryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if s, err := strconv.Atoi(h); err == nil && s >= 0 {
		return time.Duration(min(s, 3600)) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return min(max(t.Sub(now), 0), time.Hour)
	}
	return time.Second
}
