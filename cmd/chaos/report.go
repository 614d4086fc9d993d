package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/syncworker/syncworker/internal/audit"
	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/simulator"
)

// Kill is a SIGKILL of a worker, with how long the partitions it held went
// without progress after it.
type Kill struct {
	// At is the time since the run's start, Time the wall-clock time.
	At     time.Duration
	Time   time.Time
	Worker string
	PID    int
	// Held are the partitions (of either run) whose lease the worker held
	// at the kill (see holdings).
	Held []Part
	// Takeovers are the partitions it held (Held or, when none was seen,
	// those whose last commit before the kill was its own) that had work
	// left, with the time until another worker committed a batch of them.
	Takeovers []Takeover
}

// Takeover is how a partition of a killed worker went on: TakenOver is the
// time from the kill to the sweeper's takeover of its lapsed lease, and
// Running the time until a worker ran it again under the new task (each -1
// when not logged: the worker's tasks were picked up otherwise, such as
// after a Redis flush); Resumed is the time to the start of the next batch
// that committed, and After the time to that batch's commit.
type Takeover struct {
	Part
	TakenOver time.Duration
	Running   time.Duration
	Resumed   time.Duration
	After     time.Duration
	By        string
}

// MaxTakeover returns the longest time until a partition of the kill
// committed again, or -1 when it held no partition that had work left.
func (k Kill) MaxTakeover() time.Duration {
	return k.longest(func(t Takeover) time.Duration { return t.After })
}

// MaxResume returns the longest time until a partition of the kill resumed,
// or -1 when it held no partition that had work left.
func (k Kill) MaxResume() time.Duration {
	return k.longest(func(t Takeover) time.Duration { return t.Resumed })
}

// MaxTakenOver returns the longest time until a partition of the kill was
// taken over, or -1 when no takeover of them was logged.
func (k Kill) MaxTakenOver() time.Duration {
	return k.longest(func(t Takeover) time.Duration { return t.TakenOver })
}

// MaxRunning returns the longest time until a partition of the kill ran
// again under its takeover task, or -1 when none was logged.
func (k Kill) MaxRunning() time.Duration {
	return k.longest(func(t Takeover) time.Duration { return t.Running })
}

// longest returns the largest of of over the kill's takeovers, or -1.
func (k Kill) longest(of func(Takeover) time.Duration) time.Duration {
	d := time.Duration(-1)
	for _, t := range k.Takeovers {
		d = max(d, of(t))
	}
	return d
}

// Term is a SIGTERM of a worker.
type Term struct {
	At     time.Duration
	Worker string
	PID    int
	// Held are the partitions (of either run) whose lease the worker held.
	Held []Part
	// Stopped is true when it exited within the shutdown grace.
	Stopped  bool
	ExitCode int
	StopTime time.Duration
	// Interrupted is the number of tasks it stopped for the shutdown.
	Interrupted int
	log         string
}

// BackendKill is one pg_terminate_backend of the workers' backends.
type BackendKill struct {
	At         time.Duration
	Terminated int
}

// LogCounts are what the workers' JSON logs say happened.
type LogCounts struct {
	// Retries counts the task errors asynq retries, by class; Failed those
	// that failed for good.
	Retries, Failed map[string]int
	// ShutdownStops counts tasks stopped for a shutdown, Revoked tasks
	// dropped on their last attempt, Stale batches whose commit found the
	// chain moved on, and Requeued chains the sweeper put back on the queue.
	ShutdownStops, Revoked, Stale, Requeued int
	// Other counts every other warning or error by message.
	Other map[string]int
	// TakenOver are the times the sweepers took each partition over, and
	// Resumed the times a worker ran a taken-over partition again.
	TakenOver, Resumed map[Part][]time.Time
	// LeaseLost counts tasks that stopped because their lease was taken,
	// LeaseHeld deliveries turned away by a lease another held.
	LeaseLost, LeaseHeld int
	// Crashes are lines of panics, fatal errors and data races.
	Crashes []string
}

// Figures are what the scenario did and measured.
type Figures struct {
	Seed      int64
	RateLimit int
	LogDir    string
	// Run is the daily sync as the audit read it, and Wall the time from
	// the scenario's start to its end.
	Run     checkpoint.Run
	Wall    time.Duration
	ETL     ETLFigures
	Workers int // worker processes started
	// Lease and TakeoverInterval are the workers' settings.
	Lease, TakeoverInterval time.Duration
	Kills                   []Kill
	Terms                   []Term
	Flushes                 []time.Duration
	Backends                []BackendKill
	// Skipped are the faults not injected because the run had ended.
	Skipped []string
	Log     LogCounts
	Sim     simulator.Stats
	// Problems are the scenario's own findings (the audit's are in the
	// report): a run that did not end, faults that did not happen, workers
	// that crashed or did not stop cleanly, commits by a killed worker.
	Problems []string
}

// ETLFigures are what the ETL run did.
type ETLFigures struct {
	// Run is the run as the audit read it.
	Run checkpoint.Run
	// Records is the size of the source's dataset; PageSize and RateLimit
	// are the job's (see etlPacing).
	Records, PageSize, RateLimit int
	// Wall is the time from the scenario's start to the run's end.
	Wall time.Duration
	// TakenOver counts the lapsed leases of its partitions taken over.
	TakenOver int
}

// Result is the verdict of a scenario.
type Result struct {
	// Report is the audit of the daily sync, ETL that of the ETL run.
	Report, ETL audit.Report
	Figures     Figures
}

// Pass reports whether both runs completed, the daily sync with every item
// done exactly once and the ETL run with exactly the source's records, and
// the scenario found nothing wrong.
func (r Result) Pass() bool { return r.Report.OK() && r.ETL.OK() && len(r.Figures.Problems) == 0 }

// analyse derives the figures from the ledgers and the logs once the runs
// are over.
func (s *scenario) analyse(rep, etlRep audit.Report) {
	f := &s.figures
	f.Workers = len(s.logPaths())
	f.Problems = append(f.Problems, takeovers(f.Kills, map[int64][]audit.Batch{s.runID: rep.Ledger, s.etlRunID: etlRep.Ledger})...)
	var err error
	if f.Log, err = countLogs(s.logPaths()); err != nil {
		f.Problems = append(f.Problems, err.Error())
	}
	takenOver(f.Kills, f.Log.TakenOver, f.Log.Resumed)
	for part, times := range f.Log.TakenOver {
		if part.Run == s.etlRunID {
			f.ETL.TakenOver += len(times)
		}
	}
	// The dataset does not drift, so anything the ETL run noticed on its
	// way (a total that changed, a short page, a repeated key) is wrong.
	for _, w := range f.ETL.Run.Warnings {
		f.Problems = append(f.Problems, "the etl run warned: "+w)
	}
	for _, c := range f.Log.Crashes {
		f.Problems = append(f.Problems, "crash in a worker log: "+c)
	}
	for i, t := range f.Terms {
		c, err := countLogs([]string{t.log})
		switch {
		case err != nil:
			f.Problems = append(f.Problems, err.Error())
		case c.ShutdownStops == 0:
			f.Problems = append(f.Problems, fmt.Sprintf("SIGTERM %d found no batch under way on %s (pid %d): no task stopped for shutdown in %s",
				i+1, t.Worker, t.PID, t.log))
		}
		f.Terms[i].Interrupted = c.ShutdownStops
		if !t.Stopped || t.ExitCode != 0 {
			f.Problems = append(f.Problems, fmt.Sprintf("%s (pid %d) did not stop cleanly on SIGTERM: exit code %d after %s",
				t.Worker, t.PID, t.ExitCode, t.StopTime.Round(time.Millisecond)))
		}
	}
	s.mu.Lock()
	procs := slices.Clone(s.workers)
	s.mu.Unlock()
	for _, p := range procs {
		if code, sig, at, expected := p.exit(); !p.alive() && !expected {
			f.Problems = append(f.Problems, fmt.Sprintf("%s (pid %d) exited by itself after %s with code %d (signal %v); its log: %s",
				p.name, p.pid(), at.Sub(s.start).Round(100*time.Millisecond), code, sig, p.logPath))
		}
	}
	if len(f.Skipped) > 0 {
		f.Problems = append(f.Problems, fmt.Sprintf("the run ended before these faults: %s (lower --rate-limit or shorten --faults)",
			strings.Join(f.Skipped, ", ")))
	}
}

// takeovers fills in the takeovers of each kill from the ledgers of the
// runs, by run id, and returns a problem for every batch a killed worker
// committed after its kill.
func takeovers(kills []Kill, ledgers map[int64][]audit.Batch) []string {
	byPart := map[Part][]audit.Batch{}
	for run, ledger := range ledgers {
		for _, b := range ledger {
			part := Part{Run: run, Partition: b.Partition}
			byPart[part] = append(byPart[part], b)
		}
	}
	parts := slices.SortedFunc(maps.Keys(byPart), func(a, b Part) int {
		return cmp.Or(cmp.Compare(a.Run, b.Run), cmp.Compare(a.Partition, b.Partition))
	})
	var zombies []string
	for i := range kills {
		k := &kills[i]
		suffix := workerSuffix(k.PID)
		k.Takeovers = nil
		for _, part := range parts {
			var last, next *audit.Batch
			for j, b := range byPart[part] {
				switch {
				case b.Committed.Before(k.Time):
					last = &byPart[part][j]
				case strings.HasSuffix(b.Worker, suffix):
					zombies = append(zombies, fmt.Sprintf("%s (pid %d) committed batch %d of partition %d of run %d %s after its SIGKILL",
						k.Worker, k.PID, b.Seq, part.Partition, part.Run, b.Committed.Sub(k.Time).Round(time.Millisecond)))
				case next == nil:
					next = &byPart[part][j]
				}
			}
			held := slices.Contains(k.Held, part) ||
				(len(k.Held) == 0 && last != nil && strings.HasSuffix(last.Worker, suffix))
			if !held || next == nil {
				continue
			}
			k.Takeovers = append(k.Takeovers, Takeover{Part: part, TakenOver: -1, Running: -1,
				Resumed: max(0, next.Started.Sub(k.Time)), After: next.Committed.Sub(k.Time), By: next.Worker})
		}
	}
	return zombies
}

// takenOver fills in, for each partition of each kill, the time until the
// first takeover of it logged after the kill and until a worker first ran
// it again after that. A takeover after the partition's next commit is not
// this kill's: the partition had gone on without one (its lease was given
// up just before the kill).
func takenOver(kills []Kill, takeovers, resumes map[Part][]time.Time) {
	first := func(times []time.Time, after, before time.Time) time.Duration {
		d := time.Duration(-1)
		for _, at := range times {
			if at.After(after) && at.Before(before) && (d < 0 || at.Sub(after) < d) {
				d = at.Sub(after)
			}
		}
		return d
	}
	for i := range kills {
		k := &kills[i]
		for j := range k.Takeovers {
			t := &k.Takeovers[j]
			committed := k.Time.Add(t.After)
			t.TakenOver = first(takeovers[t.Part], k.Time, committed)
			if t.TakenOver >= 0 {
				if d := first(resumes[t.Part], k.Time.Add(t.TakenOver), committed); d >= 0 {
					t.Running = t.TakenOver + d
				}
			}
		}
	}
}

// logLine is what the figures need of a worker's JSON log line.
type logLine struct {
	Time      time.Time `json:"time"`
	Level     string    `json:"level"`
	Msg       string    `json:"msg"`
	Class     string    `json:"class"`
	Run       int64     `json:"run"`
	Partition int       `json:"partition"`
}

// Messages of the workers' logs that the figures count.
const (
	msgRetried   = "task failed; asynq retries it"
	msgFailed    = "task failed for good"
	msgShutdown  = "task stopped for shutdown; it runs again"
	msgRevoked   = "task dropped on its last attempt without failing; the sweeper restores its chain"
	msgStale     = "batch not committed: the run stopped or the chain was taken over"
	msgRequeued  = "chain task was missing; enqueued it from the checkpoint"
	msgTakeover  = "partition's lease lapsed; took it over with a new task"
	msgLeaseLost = "stopped: the partition's lease was lost to a takeover"
	msgLeaseHeld = "not run: another delivery of the task holds the partition's lease"
	msgResumed   = "resuming a partition taken over from a lost worker"
)

// crashMarks start the lines of a crash in a log.
var crashMarks = []string{"panic:", "fatal error:", "WARNING: DATA RACE"}

// countLogs counts what the workers' JSON logs at paths say.
func countLogs(paths []string) (LogCounts, error) {
	c := LogCounts{Retries: map[string]int{}, Failed: map[string]int{}, Other: map[string]int{},
		TakenOver: map[Part][]time.Time{}, Resumed: map[Part][]time.Time{}}
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			return c, fmt.Errorf("read worker log: %w", err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			c.add(path, sc.Bytes())
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return c, fmt.Errorf("read worker log %s: %w", path, err)
		}
	}
	return c, nil
}

// add counts one log line.
func (c *LogCounts) add(path string, line []byte) {
	var l logLine
	if err := json.Unmarshal(line, &l); err != nil || l.Msg == "" {
		text := string(line)
		for _, m := range crashMarks {
			if strings.HasPrefix(text, m) {
				c.Crashes = append(c.Crashes, path+": "+text)
			}
		}
		return
	}
	switch l.Msg {
	case msgRetried:
		c.Retries[l.Class]++
	case msgFailed:
		c.Failed[l.Class]++
	case msgShutdown:
		c.ShutdownStops++
	case msgRevoked:
		c.Revoked++
	case msgStale:
		c.Stale++
	case msgRequeued:
		c.Requeued++
	case msgTakeover:
		part := Part{Run: l.Run, Partition: l.Partition}
		c.TakenOver[part] = append(c.TakenOver[part], l.Time)
	case msgResumed:
		part := Part{Run: l.Run, Partition: l.Partition}
		c.Resumed[part] = append(c.Resumed[part], l.Time)
	case msgLeaseLost:
		c.LeaseLost++
	case msgLeaseHeld:
		c.LeaseHeld++
	default:
		if l.Level == "WARN" || l.Level == "ERROR" {
			c.Other[l.Level+" "+l.Msg]++
		}
	}
}

// Print writes the verdict and the figures.
func (r Result) Print(w io.Writer) {
	f, rep := r.Figures, r.Report
	verdict := "PASS"
	if !r.Pass() {
		verdict = "FAIL"
	}
	run := f.Run
	fmt.Fprintf(w, "chaos: %s\n", verdict)
	fmt.Fprintf(w, "  run %d (%s): %s; processed %d of %d (succeeded %d, failed %d), %d batches in %d partitions\n",
		run.ID, run.RunKey, run.Status, run.Processed, run.Total, run.Succeeded, run.Failed, len(rep.Ledger), len(rep.Partitions))
	fmt.Fprintf(w, "  wall time %s, %.1f items/s (rate limit %d req/s, seed %d)\n",
		f.Wall.Round(100*time.Millisecond), float64(run.Processed)/max(f.Wall.Seconds(), 1e-9), f.RateLimit, f.Seed)
	if gap, p := rep.MaxGap(); p >= 0 {
		fmt.Fprintf(w, "  max time without progress: %s (partition %d)\n", gap.Round(100*time.Millisecond), p)
	}
	e := f.ETL
	fmt.Fprintf(w, "  etl run %d (job %s): %s; %d of %d records landed, %d pages of %d records in %d partitions (rate limit %d page requests/s)\n",
		e.Run.ID, e.Run.Job, e.Run.Status, e.Run.Records, e.Records, len(r.ETL.Ledger), e.PageSize, e.Run.Partitions, e.RateLimit)
	fmt.Fprintf(w, "  etl wall time %s, %.1f records/s; %d lapsed leases of its partitions taken over",
		e.Wall.Round(100*time.Millisecond), float64(e.Run.Records)/max(e.Wall.Seconds(), 1e-9), e.TakenOver)
	if gap, p := r.ETL.MaxGap(); p >= 0 {
		fmt.Fprintf(w, "; max time without progress %s (partition %d)", gap.Round(100*time.Millisecond), p)
	}
	fmt.Fprintln(w)
	taken, running, n, etlN := time.Duration(-1), time.Duration(-1), 0, 0
	for _, k := range f.Kills {
		taken, running = max(taken, k.MaxTakenOver()), max(running, k.MaxRunning())
		for _, t := range k.Takeovers {
			if t.TakenOver >= 0 {
				n++
				if t.Run == e.Run.ID {
					etlN++
				}
			}
		}
	}
	if taken >= 0 {
		fmt.Fprintf(w, "  takeover: %d partitions of SIGKILLed workers taken over (%d of the etl run), each within %s of the kill and running again within %s (lease %s, takeover interval %s)\n",
			n, etlN, taken.Round(100*time.Millisecond), running.Round(100*time.Millisecond), f.Lease, f.TakeoverInterval)
	}
	terminated := 0
	for _, b := range f.Backends {
		terminated += b.Terminated
	}
	fmt.Fprintf(w, "  faults: %d SIGKILLs, %d SIGTERMs, %d Redis flushes, %d backend kills (%d backends); %d worker processes in all (pN: partition N of the daily sync, etl.pN: of the etl run)\n",
		len(f.Kills), len(f.Terms), len(f.Flushes), len(f.Backends), terminated, f.Workers)
	for i, k := range f.Kills {
		fmt.Fprintf(w, "    SIGKILL %d at %s: %s (pid %d, holding %s)", i+1, k.At.Round(100*time.Millisecond), k.Worker, k.PID, f.partitions(k.Held))
		if len(k.Takeovers) == 0 {
			fmt.Fprintf(w, ": no partition with work left\n")
			continue
		}
		logged := func(d time.Duration) string {
			if d < 0 {
				return "-"
			}
			return d.Round(100 * time.Millisecond).String()
		}
		parts := make([]string, len(k.Takeovers))
		for j, t := range k.Takeovers {
			parts[j] = fmt.Sprintf("%s %s/%s/%s/%s", f.partition(t.Part), logged(t.TakenOver), logged(t.Running),
				t.Resumed.Round(100*time.Millisecond), t.After.Round(100*time.Millisecond))
		}
		fmt.Fprintf(w, ": taken over within %s, running again within %s, committed again within %s (taken over/running/next committed batch started/committed: %s)\n",
			logged(k.MaxTakenOver()), logged(k.MaxRunning()), k.MaxTakeover().Round(100*time.Millisecond), strings.Join(parts, ", "))
	}
	for i, t := range f.Terms {
		fmt.Fprintf(w, "    SIGTERM %d at %s: %s (pid %d, holding %s) exited %d after %s, %d task(s) stopped mid-batch\n",
			i+1, t.At.Round(100*time.Millisecond), t.Worker, t.PID, f.partitions(t.Held), t.ExitCode, t.StopTime.Round(time.Millisecond), t.Interrupted)
	}
	for i, at := range f.Flushes {
		fmt.Fprintf(w, "    FLUSHDB %d at %s\n", i+1, at.Round(100*time.Millisecond))
	}
	for i, b := range f.Backends {
		fmt.Fprintf(w, "    pg_terminate_backend %d at %s: %d backends\n", i+1, b.At.Round(100*time.Millisecond), b.Terminated)
	}
	l := f.Log
	fmt.Fprintf(w, "  task retries by class: %s; failed for good: %s\n", classes(l.Retries), classes(l.Failed))
	takeovers := 0
	for _, ts := range l.TakenOver {
		takeovers += len(ts)
	}
	fmt.Fprintf(w, "  tasks stopped for shutdown %d, dropped on last attempt %d, stale commits refused %d, chains re-enqueued by the sweeper %d\n",
		l.ShutdownStops, l.Revoked, l.Stale, l.Requeued)
	fmt.Fprintf(w, "  leases: %d lapsed leases taken over, %d tasks stopped on losing theirs, %d duplicate deliveries turned away\n",
		takeovers, l.LeaseLost, l.LeaseHeld)
	for _, msg := range slices.Sorted(maps.Keys(l.Other)) {
		fmt.Fprintf(w, "  log: %d × %s\n", l.Other[msg], msg)
	}
	s := f.Sim
	fmt.Fprintf(w, "  simulator: %d requests (%d of them pages): %d ok, %d 404, injected %d 5xx, %d 429, %d slow, %d garbage\n",
		s.Requests, s.Pages, s.OK, s.NotFound, s.ServerErrors, s.RateLimited, s.Slow, s.Garbage)
	if r.Pass() {
		fmt.Fprintf(w, "  audit: run completed, every symbol once with the simulator's values, ledger gapless and once per batch, counters match\n")
		fmt.Fprintf(w, "  etl audit: run completed, exactly the source's %d records landed with their content, ledger a gapless cover of the pages once per page, counters match\n",
			e.Records)
		return
	}
	for _, p := range f.Problems {
		fmt.Fprintf(w, "  problem: %s\n", p)
	}
	printProblems(w, "audit", rep.Problems, 10)
	printProblems(w, "etl audit", r.ETL.Problems, 10)
	fmt.Fprintf(w, "  logs: %s\n", f.LogDir)
}

// printProblems prints an audit's problems under label, at most limit of
// each check.
func printProblems(w io.Writer, label string, problems []audit.Problem, limit int) {
	shown := map[string]int{}
	for _, p := range problems {
		shown[p.Check]++
		if shown[p.Check] <= limit {
			fmt.Fprintf(w, "  %s: %s\n", label, p)
		}
	}
	for _, check := range slices.Sorted(maps.Keys(shown)) {
		if n := shown[check]; n > limit {
			fmt.Fprintf(w, "  %s: ... and %d more %s problems\n", label, n-limit, check)
		}
	}
}

// partition names a partition as "p3" for the daily sync's and "etl.p3"
// for the ETL run's.
func (f Figures) partition(p Part) string {
	if p.Run == f.ETL.Run.ID && p.Run != f.Run.ID {
		return "etl.p" + strconv.Itoa(p.Partition)
	}
	return "p" + strconv.Itoa(p.Partition)
}

// partitions formats partitions as "p0 p3 etl.p1", "none seen" when there
// are none.
func (f Figures) partitions(parts []Part) string {
	if len(parts) == 0 {
		return "none seen"
	}
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = f.partition(p)
	}
	return strings.Join(out, " ")
}

// classes formats counts by class, "none" when there are none.
func classes(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
