package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/syncworker/syncworker/internal/config"
)

// fault is a kind of fault the scenario injects.
type fault int

const (
	// faultKill SIGKILLs a worker (a busy one where it can) and starts another.
	faultKill fault = iota
	// faultTerm SIGTERMs a busy worker and starts another.
	faultTerm
	// faultFlush flushes the scenario's Redis database: every task is lost.
	faultFlush
	// faultBackends terminates the workers' Postgres backends.
	faultBackends
)

// String names the fault as the verdict does.
func (f fault) String() string {
	switch f {
	case faultKill:
		return "SIGKILL"
	case faultTerm:
		return "SIGTERM"
	case faultFlush:
		return "Redis FLUSHDB"
	case faultBackends:
		return "pg_terminate_backend"
	default:
		return "fault(" + strconv.Itoa(int(f)) + ")"
	}
}

// event is a fault at a time after the run's start.
type event struct {
	at    time.Duration
	fault fault
}

// schedule returns the scenario's faults in time order: a SIGKILL every
// KillEvery up to the end of the fault window, and the other faults spread
// over the window: backend kills from 20% to 90% of it, flushes from 45% to
// 75%, and SIGTERMs from 10% (or half of KillEvery, if sooner: before the
// first SIGKILL leaves chains stuck on a dead worker, so that a live one
// is mid-batch) to 80%.
func schedule(o Options) []event {
	var ev []event
	if o.KillEvery > 0 {
		for at := o.KillEvery; at <= o.Faults; at += o.KillEvery {
			ev = append(ev, event{at, faultKill})
		}
	}
	spread := func(f fault, n int, from, to float64) {
		for i := range n {
			frac := from
			if n > 1 {
				frac = from + (to-from)*float64(i)/float64(n-1)
			}
			ev = append(ev, event{time.Duration(frac * float64(o.Faults)).Round(100 * time.Millisecond), f})
		}
	}
	spread(faultBackends, o.BackendKills, 0.2, 0.9)
	first := 0.1
	if o.KillEvery > 0 {
		first = min(first, float64(o.KillEvery)/2/float64(o.Faults))
	}
	spread(faultTerm, o.SIGTERMs, first, 0.8)
	spread(faultFlush, o.Flushes, 0.45, 0.75)
	slices.SortStableFunc(ev, func(a, b event) int { return int(a.at - b.at) })
	return ev
}

// inject injects the events at their times until the run ends (ended is
// closed) or ctx ends; the events it did not get to are noted as skipped.
func (s *scenario) inject(ctx context.Context, ended <-chan struct{}, events []event) {
	for i, e := range events {
		t := time.NewTimer(time.Until(s.start.Add(e.at)))
		select {
		case <-ctx.Done():
		case <-ended:
		case <-t.C:
		}
		t.Stop()
		if ctx.Err() != nil || closed(ended) {
			for _, e := range events[i:] {
				s.mu.Lock()
				s.figures.Skipped = append(s.figures.Skipped, fmt.Sprintf("%s at %s", e.fault, e.at))
				s.mu.Unlock()
			}
			return
		}
		var err error
		switch e.fault {
		case faultKill:
			err = s.kill(ctx)
		case faultTerm:
			err = s.term(ctx)
		case faultFlush:
			err = s.flush(ctx)
		case faultBackends:
			err = s.terminateBackends(ctx)
		}
		if err != nil && ctx.Err() == nil {
			s.problem("%s at %s: %v", e.fault, e.at, err)
		}
	}
}

// closed reports whether c is closed.
func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Part names a partition of one of the scenario's runs.
type Part struct {
	Run       int64
	Partition int
}

// String names the partition in the progress log as "r2.p3".
func (p Part) String() string { return fmt.Sprintf("r%d.p%d", p.Run, p.Partition) }

// holdings returns, by pid, the partitions of the daily sync and of the
// ETL run whose lease each worker holds now.
func (s *scenario) holdings(ctx context.Context) map[int][]Part {
	held := map[int][]Part{}
	rows, err := s.pool.Query(ctx, `SELECT lease_owner, run_id, partition FROM run_partitions
		WHERE run_id = ANY($1) AND lease_owner IS NOT NULL AND lease_expires_at > clock_timestamp()
		ORDER BY run_id, partition`, []int64{s.runID, s.etlRunID})
	if err != nil {
		return held
	}
	type lease struct {
		Owner     string
		Run       int64
		Partition int
	}
	leases, _ := pgx.CollectRows(rows, pgx.RowToStructByPos[lease])
	for _, l := range leases {
		// The owner is the worker's name (host:pid) and a token: host:pid#token.
		owner, _, _ := strings.Cut(l.Owner, "#")
		if i := strings.LastIndexByte(owner, ':'); i >= 0 {
			if pid, err := strconv.Atoi(owner[i+1:]); err == nil {
				held[pid] = append(held[pid], Part{Run: l.Run, Partition: l.Partition})
			}
		}
	}
	return held
}

// victim picks a random live worker, one that holds a partition when there
// is one, waiting up to wait for one to; it returns the partitions the
// victim holds. Among the busy workers it prefers one that holds
// partitions of both runs, then one that holds a partition of run prefer:
// the ETL run's chains hold their leases while they wait for their rate
// limit, and would otherwise draw the faults away from the daily sync.
func (s *scenario) victim(ctx context.Context, wait time.Duration, prefer int64) (*process, []Part) {
	deadline := time.Now().Add(wait)
	for {
		alive := s.alive()
		if len(alive) == 0 {
			return nil, nil
		}
		held := s.holdings(ctx)
		var both, preferred, busy []*process
		for _, p := range alive {
			parts := held[p.pid()]
			if len(parts) == 0 {
				continue
			}
			sync := slices.ContainsFunc(parts, func(x Part) bool { return x.Run == s.runID })
			etl := slices.ContainsFunc(parts, func(x Part) bool { return x.Run == s.etlRunID })
			if sync && etl {
				both = append(both, p)
			}
			if (sync && prefer == s.runID) || (etl && prefer == s.etlRunID) {
				preferred = append(preferred, p)
			}
			busy = append(busy, p)
		}
		for _, tier := range [][]*process{both, preferred, busy} {
			if len(tier) > 0 {
				p := tier[s.rng.IntN(len(tier))]
				return p, held[p.pid()]
			}
		}
		if time.Now().After(deadline) || pause(ctx, 250*time.Millisecond) != nil {
			return alive[s.rng.IntN(len(alive))], nil
		}
	}
}

// kill SIGKILLs a worker and starts another in its place; the kills
// prefer the holders of each run's partitions in turn (see victim).
func (s *scenario) kill(ctx context.Context) error {
	s.mu.Lock()
	prefer := s.runID
	if len(s.figures.Kills)%2 == 1 {
		prefer = s.etlRunID
	}
	s.mu.Unlock()
	p, held := s.victim(ctx, 0, prefer)
	if p == nil {
		return fmt.Errorf("no worker alive to kill")
	}
	at := time.Now()
	if err := p.send(syscall.SIGKILL); err != nil {
		return err
	}
	if !p.wait(10 * time.Second) {
		return fmt.Errorf("%s (pid %d) still runs 10s after SIGKILL", p.name, p.pid())
	}
	s.mu.Lock()
	s.figures.Kills = append(s.figures.Kills, Kill{At: at.Sub(s.start), Time: at, Worker: p.name, PID: p.pid(), Held: held})
	s.mu.Unlock()
	next, err := s.startWorker()
	if err != nil {
		return err
	}
	s.log.Info("SIGKILL", "at", at.Sub(s.start).Round(100*time.Millisecond), "killed", p.name, "pid", p.pid(), "held", held, "replacement", next.name)
	return nil
}

// term SIGTERMs a busy worker, waits for it to stop and starts another.
func (s *scenario) term(ctx context.Context) error {
	p, held := s.victim(ctx, 10*time.Second, s.runID)
	if p == nil {
		return fmt.Errorf("no worker alive to stop")
	}
	at := time.Now()
	if err := p.send(syscall.SIGTERM); err != nil {
		return err
	}
	grace := config.Default().Worker.ShutdownTimeout + 10*time.Second
	stopped := p.wait(grace)
	if !stopped {
		_ = p.send(syscall.SIGKILL)
		p.wait(10 * time.Second)
	}
	code, _, exited, _ := p.exit()
	s.mu.Lock()
	s.figures.Terms = append(s.figures.Terms, Term{At: at.Sub(s.start), Worker: p.name, PID: p.pid(), Held: held,
		Stopped: stopped, ExitCode: code, StopTime: exited.Sub(at), log: p.logPath})
	s.mu.Unlock()
	next, err := s.startWorker()
	if err != nil {
		return err
	}
	s.log.Info("SIGTERM", "at", at.Sub(s.start).Round(100*time.Millisecond), "stopped", p.name, "pid", p.pid(), "held", held,
		"exit_code", code, "stop_time", exited.Sub(at).Round(time.Millisecond), "replacement", next.name)
	return nil
}

// flush flushes the scenario's Redis database.
func (s *scenario) flush(ctx context.Context) error {
	at := time.Now()
	if err := s.rdb.FlushDB(ctx).Err(); err != nil {
		return fmt.Errorf("flushdb: %w", err)
	}
	s.mu.Lock()
	s.figures.Flushes = append(s.figures.Flushes, at.Sub(s.start))
	s.mu.Unlock()
	s.log.Info("Redis FLUSHDB", "at", at.Sub(s.start).Round(100*time.Millisecond))
	return nil
}

// terminateBackends terminates every Postgres backend of the workers, which
// connect with the scenario's application_name.
func (s *scenario) terminateBackends(ctx context.Context) error {
	at := time.Now()
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT pg_terminate_backend(pid) AS done
		FROM pg_stat_activity WHERE application_name = $1) t WHERE done`, s.appName).Scan(&n)
	if err != nil {
		return fmt.Errorf("terminate the workers' backends: %w", err)
	}
	s.mu.Lock()
	s.figures.Backends = append(s.figures.Backends, BackendKill{At: at.Sub(s.start), Terminated: n})
	s.mu.Unlock()
	s.log.Info("pg_terminate_backend", "at", at.Sub(s.start).Round(100*time.Millisecond), "backends", n, "took", time.Since(at))
	if n == 0 {
		return fmt.Errorf("no backend with application_name %s to terminate", s.appName)
	}
	return nil
}
