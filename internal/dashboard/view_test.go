package dashboard

import (
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/checkpoint"
)

func ptr[T any](v T) *T { return &v }

func TestProgressOf(t *testing.T) {
	running := checkpoint.Run{Status: checkpoint.StatusRunning, Unit: checkpoint.UnitItems, Total: 1000, Processed: 250}
	tests := []struct {
		name     string
		run      checkpoint.Run
		pace     *checkpoint.Pace
		percent  float64
		rate     float64
		mean     bool
		eta      time.Duration
		hasETA   bool
		unit     string
		knownTot bool
	}{
		{"running at 50/s", running, &checkpoint.Pace{Items: 1500, Window: 30 * time.Second},
			25, 50, false, 15 * time.Second, true, "items", true},
		{"running, window shorter than the attempt", running, &checkpoint.Pace{Items: 20, Window: 4 * time.Second},
			25, 5, false, 150 * time.Second, true, "items", true},
		{"running, nothing in the window: stalled", running, &checkpoint.Pace{Window: 30 * time.Second},
			25, 0, false, 0, false, "items", true},
		{"running, a window too short to tell", running, &checkpoint.Pace{Items: 10, Window: 200 * time.Millisecond},
			25, 0, false, 0, false, "items", true},
		{"running without a pace", running, nil, 25, 0, false, 0, false, "items", true},
		{"ETA rounds to the second", checkpoint.Run{Status: checkpoint.StatusRunning, Total: 10, Processed: 3},
			&checkpoint.Pace{Items: 3, Window: 2 * time.Second}, 30, 1.5, false, 5 * time.Second, true, "items", true},
		{"percent rounds down to a tenth", checkpoint.Run{Status: checkpoint.StatusRunning, Total: 3, Processed: 2},
			nil, 66.6, 0, false, 0, false, "items", true},
		{"more done than total (a redrive pass) stays at 100%", checkpoint.Run{Status: checkpoint.StatusRunning, Total: 10, Processed: 12},
			&checkpoint.Pace{Items: 10, Window: 10 * time.Second}, 100, 1, false, 0, false, "items", true},
		{"open walk of pages: no total, no ETA", checkpoint.Run{Status: checkpoint.StatusRunning, Unit: checkpoint.UnitPages, Processed: 700},
			&checkpoint.Pace{Items: 700, Window: 7 * time.Second}, 0, 100, false, 0, false, "records", false},
		{"completed open walk is full", checkpoint.Run{Status: checkpoint.StatusCompleted, Unit: checkpoint.UnitPages, Processed: 700, DurationMS: 3500},
			nil, 100, 200, true, 0, false, "records", false},
		{"completed: the mean rate over its running time", checkpoint.Run{Status: checkpoint.StatusCompleted, Total: 1000, Processed: 1000, DurationMS: 8000},
			&checkpoint.Pace{Items: 1, Window: time.Minute}, 100, 125, true, 0, false, "items", true},
		{"failed before it ran: no rate", checkpoint.Run{Status: checkpoint.StatusFailed, Total: 1000, DurationMS: 200},
			nil, 0, 0, false, 0, false, "items", true},
		{"paused: the mean rate, no ETA", checkpoint.Run{Status: checkpoint.StatusPaused, Total: 100, Processed: 40, DurationMS: 4000},
			nil, 40, 10, true, 0, false, "items", true},
		{"pending", checkpoint.Run{Status: checkpoint.StatusPending, Total: 100}, nil, 0, 0, false, 0, false, "items", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := progressOf(tt.run, tt.pace)
			if p.Percent != tt.percent || p.Rate != tt.rate || p.Mean != tt.mean || p.ETA != tt.eta || p.HasETA != tt.hasETA ||
				p.Unit != tt.unit || p.Known != tt.knownTot || p.Done != tt.run.Processed || p.Status != tt.run.Status {
				t.Errorf("progressOf = %+v, want %v%%, %v/s (mean %v), ETA %v (%v), %s, known total %v",
					p, tt.percent, tt.rate, tt.mean, tt.eta, tt.hasETA, tt.unit, tt.knownTot)
			}
		})
	}
}

func TestPartProgress(t *testing.T) {
	items := checkpoint.Run{Unit: checkpoint.UnitItems}
	pages := checkpoint.Run{Unit: checkpoint.UnitPages}
	open := checkpoint.Partition{StartPos: 0, EndPos: 1 << 62, Cursor: 7, Status: checkpoint.PartitionRunning}
	tests := []struct {
		name    string
		run     checkpoint.Run
		part    checkpoint.Partition
		done    int64
		total   int64
		percent float64
		unit    string
	}{
		{"items", items, checkpoint.Partition{StartPos: 100, EndPos: 200, Cursor: 150}, 50, 100, 50, "items"},
		{"pages", pages, checkpoint.Partition{StartPos: 0, EndPos: 8, Cursor: 8}, 8, 8, 100, "pages"},
		{"open walk under way", pages, open, 7, 0, 0, "pages"},
		{"open walk completed", pages, func() checkpoint.Partition { p := open; p.Status = checkpoint.PartitionCompleted; return p }(), 7, 0, 100, "pages"},
	}
	for _, tt := range tests {
		p := partProgress(tt.run, tt.part)
		if p.Done != tt.done || p.Total != tt.total || p.Percent != tt.percent || p.Unit != tt.unit {
			t.Errorf("%s: partProgress = %+v, want %d of %d, %v%% %s", tt.name, p, tt.done, tt.total, tt.percent, tt.unit)
		}
	}
}

func TestAllowedFor(t *testing.T) {
	want := map[checkpoint.Status]allowed{
		checkpoint.StatusPending:   {Cancel: true, Pause: true},
		checkpoint.StatusRunning:   {Cancel: true, Pause: true},
		checkpoint.StatusPaused:    {Cancel: true, Resume: true},
		checkpoint.StatusCompleted: {Restart: true},
		checkpoint.StatusFailed:    {Retry: true, Restart: true},
		checkpoint.StatusCancelled: {Retry: true, Restart: true},
		checkpoint.StatusTimedOut:  {Retry: true, Restart: true},
	}
	for _, s := range checkpoint.Statuses() {
		w, ok := want[s]
		if !ok {
			t.Errorf("status %s: no expectation; add it", s)
		}
		if got := allowedFor(s); got != w {
			t.Errorf("allowedFor(%s) = %+v, want %+v", s, got, w)
		}
	}
}

func TestFormatting(t *testing.T) {
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	tests := []struct{ got, want string }{
		{num(0), "0"},
		{num(999), "999"},
		{num(1000), "1,000"},
		{num(1234567), "1,234,567"},
		{num(-45678), "-45,678"},
		{rateText(progress{}), "—"},
		{rateText(progress{Rate: 4.44}), "4.4/s"},
		{rateText(progress{Rate: 1234.5}), "1,235/s"},
		{etaText(progress{}), "—"},
		{etaText(progress{HasETA: true}), "< 1s"},
		{etaText(progress{HasETA: true, ETA: 95 * time.Second}), "1m35s"},
		{etaText(progress{HasETA: true, ETA: 2*time.Hour + 10*time.Minute + 31*time.Second}), "2h11m"},
		{durText(0), "0s"},
		{durText(850 * time.Millisecond), "850ms"},
		{durText(3 * time.Minute), "3m"},
		{ago(now, now.Add(-time.Second)), "just now"},
		{ago(now, now.Add(-42*time.Second)), "42s ago"},
		{ago(now, now.Add(-5*time.Minute-10*time.Second)), "5m ago"},
		{ago(now, now.Add(-30*time.Hour)), "30h ago"},
		{ago(now, now.Add(-72*time.Hour)), "3d ago"},
		{stamp(time.Date(2026, 3, 2, 15, 4, 5, 0, time.FixedZone("EST", -5*3600))), "2026-03-02 20:04:05 UTC"},
		{label(checkpoint.StatusTimedOut), "timed out"},
		{holder("w1#00ff00ff00ff00ff"), "w1"},
		{holder("host#1:42#00ff"), "host#1:42"},
		{holder("nobody"), "nobody"},
	}
	for i, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("case %d: got %q, want %q", i, tt.got, tt.want)
		}
	}
}
