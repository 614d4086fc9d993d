package dashboard

import (
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/syncworker/syncworker/internal/checkpoint"
)

// minRateWindow is the shortest window a rate is taken over: a batch that
// commits a moment after its attempt started would otherwise read as a
// burst of thousands per second.
const minRateWindow = time.Second

// progress is how far a run has come and how fast it goes.
type progress struct {
	Status checkpoint.Status
	// Done and Total count Unit ("items", or "records" for a run of
	// pages); Known is false when the total is not known (an open walk
	// of pages), and then Percent says nothing.
	Done, Total int64
	Known       bool
	Percent     float64
	Unit        string
	// Rate is per second, 0 when unknown. For a running run it is the
	// pace of its recent window; for any other run (Mean) the run's mean
	// over its running time.
	Rate float64
	Mean bool
	// ETA is the time left at Rate, for a running run with a known total;
	// HasETA says whether there is one.
	ETA    time.Duration
	HasETA bool
}

// unitOf returns what a run's counters count.
func unitOf(u checkpoint.Unit) string {
	if u == checkpoint.UnitPages {
		return "records"
	}
	return "items"
}

// progressOf returns the progress of run; pace is its recent window (nil
// when it has none, as for a run that is not running).
func progressOf(run checkpoint.Run, pace *checkpoint.Pace) progress {
	p := progress{Status: run.Status, Done: run.Processed, Total: run.Total, Known: run.Total > 0, Unit: unitOf(run.Unit)}
	switch {
	case p.Known:
		p.Percent = min(100, math.Floor(float64(p.Done)*1000/float64(p.Total))/10)
	case run.Status == checkpoint.StatusCompleted:
		p.Percent = 100
	}
	if run.Status == checkpoint.StatusRunning {
		if pace != nil && pace.Window >= minRateWindow {
			p.Rate = float64(pace.Items) / pace.Window.Seconds()
		}
		if p.Known && p.Rate > 0 && p.Done < p.Total {
			p.ETA = time.Duration(float64(p.Total-p.Done) / p.Rate * float64(time.Second)).Round(time.Second)
			p.HasETA = true
		}
		return p
	}
	if run.DurationMS > 0 && run.Processed > 0 {
		p.Rate, p.Mean = float64(run.Processed)/(float64(run.DurationMS)/1000), true
	}
	return p
}

// partProgress returns the progress of a partition through its positions
// (the items, or the pages of a run of pages).
func partProgress(run checkpoint.Run, part checkpoint.Partition) progress {
	p := progress{Status: checkpoint.Status(part.Status), Done: part.Cursor - part.StartPos, Unit: "items"}
	if run.Unit == checkpoint.UnitPages {
		p.Unit = "pages"
	}
	if !part.Open() {
		p.Total, p.Known = part.EndPos-part.StartPos, true
		if p.Total > 0 {
			p.Percent = min(100, math.Floor(float64(p.Done)*1000/float64(p.Total))/10)
		}
	} else if part.Status == checkpoint.PartitionCompleted {
		p.Percent = 100
	}
	return p
}

// allowed says which actions a run's state lets an operator take.
type allowed struct {
	Retry, Cancel, Pause, Resume, Restart bool
}

// Any reports whether any action is allowed.
func (a allowed) Any() bool { return a.Retry || a.Cancel || a.Pause || a.Resume || a.Restart }

// allowedFor returns the actions allowed on a run in state s.
func allowedFor(s checkpoint.Status) allowed {
	return allowed{
		Retry:   s.Resumable(),
		Cancel:  s.Active() || s == checkpoint.StatusPaused,
		Pause:   s.Active(),
		Resume:  s == checkpoint.StatusPaused,
		Restart: s.Ended(),
	}
}

// funcs are the template functions of the pages.
var funcs = template.FuncMap{
	"num":    num,
	"rate":   rateText,
	"eta":    etaText,
	"dur":    durText,
	"ms":     func(n int64) string { return durText(time.Duration(n) * time.Millisecond) },
	"ago":    ago,
	"ts":     stamp,
	"label":  label,
	"deref":  func(t *time.Time) time.Time { return *t },
	"holder": holder,
	"pct":    func(p float64) string { return strconv.FormatFloat(p, 'f', -1, 64) + "%" },
	"f1":     func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
	"msf":    func(n float64) string { return durText(time.Duration(n * float64(time.Millisecond))) },
}

// num writes n with thousands separators: 12,345.
func num(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// rateText writes the rate of p: "1,234/s", "4.5/s", "—" when unknown.
func rateText(p progress) string {
	switch {
	case p.Rate <= 0:
		return "—"
	case p.Rate < 10:
		return strconv.FormatFloat(p.Rate, 'f', 1, 64) + "/s"
	default:
		return num(int64(math.Round(p.Rate))) + "/s"
	}
}

// etaText writes the time left of p, or "—".
func etaText(p progress) string {
	if !p.HasETA {
		return "—"
	}
	if p.ETA < time.Second {
		return "< 1s"
	}
	return durText(p.ETA)
}

// durText writes d briefly: 850ms, 42s, 3m5s, 2h10m.
func durText(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	if d >= time.Hour {
		d = d.Round(time.Minute)
	}
	return checkpoint.ShortDuration(d)
}

// ago writes how long before now t was: "just now", "42s ago", "5m ago",
// "3h ago", "2d ago".
func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 2*time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	default:
		return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
	}
}

// stamp writes t in UTC to the second.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// label writes a status for people: timed_out is "timed out".
func label(s any) string { return strings.ReplaceAll(fmt.Sprint(s), "_", " ") }

// holder returns the worker of a lease owner, "worker#token".
func holder(owner string) string {
	if i := strings.LastIndexByte(owner, '#'); i > 0 {
		return owner[:i]
	}
	return owner
}
