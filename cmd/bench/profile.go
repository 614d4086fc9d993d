package main

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/pprof/profile"
)

// fetchProfile takes a CPU profile of window from a worker's admin HTTP at
// addr (/debug/pprof/profile, see http.pprof).
func fetchProfile(ctx context.Context, addr string, window time.Duration) (*profile.Profile, error) {
	secs := max(1, int(window.Round(time.Second)/time.Second))
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	body, err := fetch(ctx, http.DefaultClient, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs))
	if err != nil {
		return nil, fmt.Errorf("profile the worker: %w", err)
	}
	p, err := profile.ParseData(body)
	if err != nil {
		return nil, fmt.Errorf("profile the worker: parse: %w", err)
	}
	return p, nil
}

// Share is the CPU time a function or a group of them used in a profile.
type Share struct {
	Name string
	CPU  time.Duration
}

// ProfileSummary is what a worker's CPU profile says: how much CPU the
// worker used in the window and where it went.
type ProfileSummary struct {
	// Scenario names the run the profile was taken in.
	Scenario string
	// Window is the profile's duration, CPU the CPU time sampled in it.
	Window, CPU time.Duration
	// Steps are the CPU time by what the worker was doing (see
	// batchSteps), Groups by the package of the function that ran (the
	// leaf of each sample), Top the functions by their own (flat) CPU
	// time; each most first, and each sample in exactly one of Steps and
	// of Groups.
	Steps, Groups, Top []Share
}

// packageGroups name the groups of ProfileSummary.Groups: the first whose
// prefix the leaf function's name has.
var packageGroups = []struct{ prefix, name string }{
	{"internal/runtime/syscall", "system calls (sockets)"},
	{"syscall.", "system calls (sockets)"},
	{"internal/poll.", "system calls (sockets)"},
	{"runtime.gc", "Go runtime: garbage collection"},
	{"runtime.scan", "Go runtime: garbage collection"},
	{"runtime.mark", "Go runtime: garbage collection"},
	{"runtime.greyobject", "Go runtime: garbage collection"},
	{"runtime.findObject", "Go runtime: garbage collection"},
	{"runtime.tryDeferToSpanScan", "Go runtime: garbage collection"},
	{"runtime.(*gcWork)", "Go runtime: garbage collection"},
	{"runtime.wbBuf", "Go runtime: garbage collection"},
	{"runtime.malloc", "Go runtime: allocation"},
	{"runtime.nextFreeFast", "Go runtime: allocation"},
	{"runtime.newobject", "Go runtime: allocation"},
	{"runtime.makeslice", "Go runtime: allocation"},
	{"runtime.growslice", "Go runtime: allocation"},
	{"runtime.heapSetType", "Go runtime: allocation"},
	{"runtime.(*mspan)", "Go runtime: allocation"},
	{"runtime.(*mcache)", "Go runtime: allocation"},
	{"runtime.memclr", "Go runtime: allocation"},
	{"runtime.", "Go runtime: scheduler, timers, locks, copying"},
	{"internal/runtime/", "Go runtime: scheduler, timers, locks, copying"},
	{"encoding/json.", "encoding/json"},
	{"github.com/jackc/", "pgx (Postgres protocol, encoding)"},
	{"github.com/redis/", "go-redis and asynq"},
	{"github.com/hibiken/", "go-redis and asynq"},
	{"net/http.", "net/http"},
	{"net.", "net/http"},
	{"github.com/syncworker/syncworker/", "syncworker"},
}

// A step of batchSteps is what a sample was doing: the innermost frame of
// its stack that has one of the prefixes names it (a sample in an
// allocation under a page's parsing is the parsing's). A sample none of
// whose frames has one is the Go runtime's, named by its outermost frame.
const (
	stepCheckpoint = "commit: the checkpoint statement"
	stepRuntime    = "Go runtime: scheduler, idle, the rest"
	stepGC         = "Go runtime: background garbage collection"
	stepOther      = "other"
)

// batchSteps are the prefixes of the steps of ProfileSummary.Steps.
var batchSteps = []struct{ prefix, name string }{
	{"github.com/syncworker/syncworker/internal/checkpoint.sendCheckpoint", stepCheckpoint},
	{"github.com/syncworker/syncworker/internal/etl.Upsert", "commit: the records' upsert"},
	{"github.com/syncworker/syncworker/internal/stocks.UpsertPrices", "commit: the prices' upsert"},
	{"github.com/syncworker/syncworker/internal/checkpoint.(*Store).Commit", "commit: BEGIN, COMMIT, the rest"},
	{"github.com/syncworker/syncworker/internal/etl.(*Source).Parse", "source: parse and check a page"},
	{"github.com/syncworker/syncworker/internal/quotes.Parse", "source: parse and check a quote"},
	{"net/http.(*persistConn).readLoop", "source: the HTTP connections' read and write loops"},
	{"net/http.(*persistConn).writeLoop", "source: the HTTP connections' read and write loops"},
	{"github.com/syncworker/syncworker/internal/etl.(*Source)", "source: a page's HTTP request"},
	{"github.com/syncworker/syncworker/internal/quotes.(*Client)", "source: a quote's HTTP request"},
	{"github.com/syncworker/syncworker/internal/", "the worker's other code (lease, sweeper, scheduler, metrics, logs)"},
	{"github.com/hibiken/asynq", "asynq: processor, heartbeat, enqueue, Redis"},
	{"github.com/redis/go-redis", "asynq: processor, heartbeat, enqueue, Redis"},
}

// stepOf returns the step of a sample whose stack is frames, leaf first.
func stepOf(frames []string) string {
	for _, f := range frames {
		for _, st := range batchSteps {
			if strings.HasPrefix(f, st.prefix) {
				return st.name
			}
		}
	}
	if len(frames) == 0 {
		return stepOther
	}
	switch root := frames[len(frames)-1]; {
	case strings.HasPrefix(root, "runtime.gcBgMarkWorker"):
		return stepGC
	case strings.HasPrefix(root, "runtime."):
		return stepRuntime
	}
	return stepOther
}

// summarize reads p, a CPU profile, for the report; top is how many
// functions Top keeps.
func summarize(scenario string, p *profile.Profile, top int) ProfileSummary {
	s := ProfileSummary{Scenario: scenario, Window: time.Duration(p.DurationNanos)}
	vi := len(p.SampleType) - 1 // cpu/nanoseconds, after samples/count
	for i, st := range p.SampleType {
		if st.Type == "cpu" {
			vi = i
		}
	}
	steps, groups, flat := map[string]time.Duration{}, map[string]time.Duration{}, map[string]time.Duration{}
	for _, sm := range p.Sample {
		if vi >= len(sm.Value) {
			continue
		}
		d := time.Duration(sm.Value[vi])
		s.CPU += d
		var frames []string // leaf first
		for _, loc := range sm.Location {
			for _, ln := range loc.Line {
				if ln.Function != nil {
					frames = append(frames, ln.Function.Name)
				}
			}
		}
		steps[stepOf(frames)] += d
		if len(frames) == 0 {
			groups[stepOther] += d
			continue
		}
		flat[frames[0]] += d
		groups[groupOf(frames[0])] += d
	}
	s.Steps, s.Groups, s.Top = sortedShares(steps, 0), sortedShares(groups, 0), sortedShares(flat, top)
	return s
}

// Share returns the CPU time of the step or group name, 0 if none.
func (s ProfileSummary) Share(name string) time.Duration {
	for _, l := range [][]Share{s.Steps, s.Groups} {
		for _, sh := range l {
			if sh.Name == name {
				return sh.CPU
			}
		}
	}
	return 0
}

// groupOf returns the group of packageGroups that fn falls in, or "other".
func groupOf(fn string) string {
	for _, g := range packageGroups {
		if strings.HasPrefix(fn, g.prefix) {
			return g.name
		}
	}
	return "standard library and the rest"
}

// sortedShares returns m's entries by time, most first (then by name), at
// most n of them (n <= 0: all).
func sortedShares(m map[string]time.Duration, n int) []Share {
	out := make([]Share, 0, len(m))
	for k, v := range m {
		out = append(out, Share{k, v})
	}
	slices.SortFunc(out, func(a, b Share) int {
		if c := cmp.Compare(b.CPU, a.CPU); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}
