package main

import (
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

func TestStepOf(t *testing.T) {
	const sw = "github.com/syncworker/syncworker/internal/"
	tests := []struct {
		name   string
		frames []string // leaf first
		want   string
	}{
		{"allocation under a page's parsing is the parsing's",
			[]string{"runtime.mallocgc", sw + "etl.(*Source).Parse", sw + "etl.(*Source).Fetch", sw + "tasks.(*Handler).ProcessTask", "github.com/hibiken/asynq.(*processor).exec.func1"},
			"source: parse and check a page"},
		{"pgx under the checkpoint statement",
			[]string{"github.com/jackc/pgx/v5/pgconn.(*PgConn).ExecBatch", sw + "checkpoint.sendCheckpoint", sw + "checkpoint.(*Store).Commit.func1", sw + "checkpoint.(*Store).Commit"},
			stepCheckpoint},
		{"the upsert inside Commit is the upsert's",
			[]string{"github.com/jackc/pgx/v5.(*Conn).Exec", sw + "etl.Upsert", sw + "tasks.(*ETL).Fetch.func1", sw + "checkpoint.(*Store).Commit"},
			"commit: the records' upsert"},
		{"a request under the quote client",
			[]string{"net/http.(*Client).do", sw + "quotes.(*Client).once", sw + "quotes.(*Client).Fetch"},
			"source: a quote's HTTP request"},
		{"a syscall of a connection's write loop",
			[]string{"internal/runtime/syscall/linux.Syscall6", "net.(*conn).Write", "net/http.(*persistConn).writeLoop"},
			"source: the HTTP connections' read and write loops"},
		{"asynq outside the handler",
			[]string{"github.com/redis/go-redis/v9.(*Client).Process", "github.com/hibiken/asynq.(*heartbeater).beat"},
			"asynq: processor, heartbeat, enqueue, Redis"},
		{"background GC", []string{"runtime.scanobject", "runtime.gcDrain", "runtime.gcBgMarkWorker"}, stepGC},
		{"the scheduler", []string{"runtime.findRunnable", "runtime.schedule", "runtime.mcall"}, stepRuntime},
		{"no frames", nil, stepOther},
		{"unknown root", []string{"main.main"}, stepOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stepOf(tt.frames); got != tt.want {
				t.Errorf("stepOf(%v) = %q, want %q", tt.frames, got, tt.want)
			}
		})
	}
}

func TestGroupOf(t *testing.T) {
	tests := map[string]string{
		"internal/runtime/syscall/linux.Syscall6":                  "system calls (sockets)",
		"runtime.tryDeferToSpanScan":                               "Go runtime: garbage collection",
		"runtime.mallocgcSmallScanNoHeader":                        "Go runtime: allocation",
		"runtime.selectgo":                                         "Go runtime: scheduler, timers, locks, copying",
		"encoding/json.checkValid":                                 "encoding/json",
		"github.com/jackc/pgx/v5/pgproto3.(*chunkReader).Next":     "pgx (Postgres protocol, encoding)",
		"github.com/syncworker/syncworker/internal/etl.skipString": "syncworker",
		"net/http.(*Transport).roundTrip":                          "net/http",
		"bufio.(*Reader).fill":                                     "standard library and the rest",
	}
	for fn, want := range tests {
		if got := groupOf(fn); got != want {
			t.Errorf("groupOf(%q) = %q, want %q", fn, got, want)
		}
	}
}

// summarize puts each sample's CPU time in one step and one group, and
// the functions in order of their own time.
func TestSummarize(t *testing.T) {
	fn := func(id uint64, name string) *profile.Function { return &profile.Function{ID: id, Name: name} }
	loc := func(id uint64, f *profile.Function) *profile.Location {
		return &profile.Location{ID: id, Line: []profile.Line{{Function: f}}}
	}
	parse, alloc, sched := fn(1, "github.com/syncworker/syncworker/internal/etl.(*Source).Parse"), fn(2, "runtime.mallocgc"), fn(3, "runtime.schedule")
	lParse, lAlloc, lSched := loc(1, parse), loc(2, alloc), loc(3, sched)
	p := &profile.Profile{
		SampleType:    []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		DurationNanos: int64(2 * time.Second),
		Sample: []*profile.Sample{
			{Location: []*profile.Location{lAlloc, lParse}, Value: []int64{3, 30e6}},
			{Location: []*profile.Location{lParse}, Value: []int64{1, 10e6}},
			{Location: []*profile.Location{lSched}, Value: []int64{2, 20e6}},
		},
		Function: []*profile.Function{parse, alloc, sched},
		Location: []*profile.Location{lParse, lAlloc, lSched},
	}
	s := summarize("test", p, 2)
	if s.CPU != 60*time.Millisecond || s.Window != 2*time.Second {
		t.Errorf("CPU %v in %v, want 60ms in 2s", s.CPU, s.Window)
	}
	if got := s.Share("source: parse and check a page"); got != 40*time.Millisecond {
		t.Errorf("parse step = %v, want 40ms (its own and the allocation under it)", got)
	}
	if got := s.Share(stepRuntime); got != 20*time.Millisecond {
		t.Errorf("runtime step = %v, want 20ms", got)
	}
	if got := s.Share("Go runtime: allocation"); got != 30*time.Millisecond {
		t.Errorf("allocation group = %v, want 30ms", got)
	}
	if len(s.Top) != 2 || s.Top[0].Name != alloc.Name || s.Top[1].Name != sched.Name {
		t.Errorf("Top = %v, want mallocgc then schedule (2 kept)", s.Top)
	}
}
