package tasks

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func day(s string) time.Time {
	d, err := time.Parse("2006-01-02", s)
	if err != nil {
		panic(err)
	}
	return d
}

func TestBackfillRange(t *testing.T) {
	today := day("2026-11-20")
	tests := []struct {
		name, from, to string
		want           int
		wantErr        string
	}{
		{name: "one day", from: "2026-11-16", to: "2026-11-16", want: 1},
		{name: "a week, weekend included", from: "2026-11-12", to: "2026-11-18", want: 7},
		{name: "up to today", from: "2026-11-20", to: "2026-11-20", want: 1},
		{name: "the longest", from: "2025-11-20", to: "2026-11-20", want: 366},
		{name: "across a leap day", from: "2024-02-27", to: "2024-03-02", want: 5},
		{name: "to before from", from: "2026-11-18", to: "2026-11-12", wantErr: "--to 2026-11-12 is before --from 2026-11-18"},
		{name: "too long", from: "2025-11-19", to: "2026-11-20", wantErr: "is 367 days; a backfill takes at most 366"},
		{name: "years of typo", from: "2016-11-19", to: "2026-11-20", wantErr: "at most 366"},
		{name: "into the future", from: "2026-11-19", to: "2026-11-21", wantErr: "--to 2026-11-21 is after today (2026-11-20)"},
		{name: "before the earliest date", from: "0026-11-19", to: "0026-11-20", wantErr: "before 1900-01-01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			days, err := BackfillRange(day(tt.from), day(tt.to), today)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInput) {
					t.Fatalf("BackfillRange = %d days, %v; want an input error with %q", len(days), err, tt.wantErr)
				}
				return
			}
			if err != nil || len(days) != tt.want {
				t.Fatalf("BackfillRange = %d days, %v; want %d", len(days), err, tt.want)
			}
			if days[0].Format("2006-01-02") != tt.from || days[len(days)-1].Format("2006-01-02") != tt.to {
				t.Errorf("days run %s to %s, want %s to %s", days[0], days[len(days)-1], tt.from, tt.to)
			}
		})
	}
}
