// Package audit checks that a daily-sync run against the quotes simulator
// did every item exactly once, from what Postgres holds: the run and its
// counters, its items, the price rows, its partitions and the batch ledger.
// It reports every problem it finds, not only the first, and the figures the
// ledger gives (batches, and how long each partition went without progress).
package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/simulator"
)

// The checks a Problem can come from.
const (
	// CheckStatus: the run is not completed.
	CheckStatus = "status"
	// CheckCounters: the run's counters do not add up, or do not match the
	// rows (items, prices) they count.
	CheckCounters = "counters"
	// CheckItem: an item's outcome is not what the simulator makes it (a
	// known symbol that did not succeed, an unknown one that did not fail as
	// unknown), or the run's items are not its total.
	CheckItem = "item"
	// CheckPrice: a price row is missing, has other values than the
	// simulator's, belongs to another run, or should not exist.
	CheckPrice = "price"
	// CheckLedger: the ledger is not a gapless, non-overlapping cover of
	// every partition, one row per batch, or a partition is not completed
	// where its ledger ends.
	CheckLedger = "ledger"
	// CheckLedgerSums: the ledger's counts do not match the run's counters
	// or the outcomes of the items of its batches.
	CheckLedgerSums = "ledger sums"
)

// unknownError is what a failed unknown symbol's error must contain.
const unknownError = "404 Not Found"

// Problem is one thing the audit found wrong.
type Problem struct {
	// Check is the check that found it (one of the Check constants).
	Check string
	// Detail says what is wrong.
	Detail string
}

// String returns the problem as "check: detail".
func (p Problem) String() string { return p.Check + ": " + p.Detail }

// Batch is one row of the batch ledger: one committed batch.
type Batch struct {
	Partition int
	Seq       int64
	Attempt   int
	// Redrive is the batch's pass: 0 for the run's first pass over its
	// items, above 0 for a redrive of its failed items.
	Redrive            int
	From, To           int64
	Items, OK, Failed  int
	Records            int
	TaskID             string
	Worker             string
	Started, Committed time.Time
}

// Partition holds the ledger's figures of one partition.
type Partition struct {
	Index int
	// Batches is the number of committed batches.
	Batches int
	// Workers is the number of distinct workers that committed them.
	Workers int
	// MaxGap is the longest time the partition went without progress: the
	// longest of the times from the run's start to the first commit, between
	// consecutive commits, and from the last commit to the partition's end
	// (the last commit when it completed, else the run's end or the audit).
	MaxGap time.Duration
	// GapFrom is when the longest gap began.
	GapFrom time.Time
}

// Report is what Run found.
type Report struct {
	// Run is the run as it was read.
	Run checkpoint.Run
	// Ledger is the run's batch ledger by partition and seq.
	Ledger []Batch
	// Partitions are the figures of each partition, by index.
	Partitions []Partition
	// Problems is every problem found; none means the run did every item
	// exactly once.
	Problems []Problem
}

// OK reports whether the audit found no problem.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// Has reports whether a problem of check was found.
func (r Report) Has(check string) bool {
	for _, p := range r.Problems {
		if p.Check == check {
			return true
		}
	}
	return false
}

// MaxGap returns the longest time any partition went without progress, and
// that partition's index (-1 when the run has no partition).
func (r Report) MaxGap() (time.Duration, int) {
	gap, index := time.Duration(0), -1
	for _, p := range r.Partitions {
		if index < 0 || p.MaxGap > gap {
			gap, index = p.MaxGap, p.Index
		}
	}
	return gap, index
}

// auditor collects the problems of one audit.
type auditor struct {
	problems []Problem
}

func (a *auditor) add(check, format string, args ...any) {
	a.problems = append(a.problems, Problem{Check: check, Detail: fmt.Sprintf(format, args...)})
}

// Run audits daily-sync run id: the run completed; its counters add up and
// equal the rows they count; every known symbol (known reports which are)
// succeeded and has exactly one price row with the simulator's values, and
// every unknown symbol failed as unknown and has none; and the ledger covers
// every partition from start to end in consecutive batches, once, with
// counts that match the items and the counters. The error is for what
// stopped the audit (a query that failed), not for what it found.
func Run(ctx context.Context, pool *pgxpool.Pool, id int64, known func(symbol string) bool) (Report, error) {
	rep, parts, a, err := begin(ctx, pool, id)
	if err != nil {
		return Report{}, err
	}
	run := rep.Run
	if run.Processed != run.Total || run.Succeeded+run.Failed != run.Processed || run.Records != run.Succeeded {
		a.add(CheckCounters, "run %d counters do not add up: total %d, processed %d, succeeded %d, failed %d, records %d",
			id, run.Total, run.Processed, run.Succeeded, run.Failed, run.Records)
	}
	items, err := checkpoint.New(pool).Items(ctx, id, 0, math.MaxInt64)
	if err != nil {
		return Report{}, fmt.Errorf("audit run %d: %w", id, err)
	}
	auditItems(a, run, items, known)
	if err := auditPrices(ctx, a, pool, run, items, known); err != nil {
		return Report{}, fmt.Errorf("audit run %d: %w", id, err)
	}
	auditLedger(a, run, parts, rep.Ledger, items)
	return finish(rep, parts, a), nil
}

// begin reads what every audit of run id needs (the run, its partitions
// and its ledger) and checks that the run completed.
func begin(ctx context.Context, pool *pgxpool.Pool, id int64) (Report, []checkpoint.Partition, *auditor, error) {
	store := checkpoint.New(pool)
	run, err := store.Get(ctx, id)
	if err != nil {
		return Report{}, nil, nil, fmt.Errorf("audit run %d: %w", id, err)
	}
	rep := Report{Run: run}
	a := &auditor{}
	if run.Status != checkpoint.StatusCompleted {
		a.add(CheckStatus, "run %d is %s, want completed (last error %q)", id, run.Status, run.LastError)
	}
	if rep.Ledger, err = Ledger(ctx, pool, id); err != nil {
		return Report{}, nil, nil, err
	}
	parts, err := store.Partitions(ctx, id)
	if err != nil {
		return Report{}, nil, nil, fmt.Errorf("audit run %d: %w", id, err)
	}
	return rep, parts, a, nil
}

// finish completes rep with the partitions' figures and what a found.
func finish(rep Report, parts []checkpoint.Partition, a *auditor) Report {
	rep.Partitions = Figures(rep.Run, parts, rep.Ledger, time.Now())
	rep.Problems = a.problems
	return rep
}

// auditItems checks the items' outcomes and that the counters equal them.
func auditItems(a *auditor, run checkpoint.Run, items []checkpoint.Item, known func(string) bool) {
	if int64(len(items)) != run.Total {
		a.add(CheckItem, "run %d has %d items, total %d", run.ID, len(items), run.Total)
	}
	var succeeded, failed, wantOK int64
	for _, it := range items {
		switch it.Status {
		case checkpoint.ItemSucceeded:
			succeeded++
		case checkpoint.ItemFailed:
			failed++
		}
		if known(it.Key) {
			wantOK++
			if it.Status != checkpoint.ItemSucceeded {
				a.add(CheckItem, "known symbol %s (pos %d) is %s (%s)", it.Key, it.Pos, it.Status, it.Error)
			}
		} else if it.Status != checkpoint.ItemFailed || !strings.Contains(it.Error, unknownError) {
			a.add(CheckItem, "unknown symbol %s (pos %d) is %s with error %q, want failed as unknown", it.Key, it.Pos, it.Status, it.Error)
		}
	}
	if run.Succeeded != succeeded || run.Failed != failed || run.Processed != succeeded+failed {
		a.add(CheckCounters, "run %d counts processed %d, succeeded %d, failed %d; its items: %d done, %d succeeded, %d failed",
			run.ID, run.Processed, run.Succeeded, run.Failed, succeeded+failed, succeeded, failed)
	}
	if run.Succeeded != wantOK {
		a.add(CheckCounters, "run %d succeeded = %d, want %d (its known symbols)", run.ID, run.Succeeded, wantOK)
	}
}

// priceRow is a row of stock_prices as text.
type priceRow struct {
	quote simulator.Quote
	runID *int64
}

// auditPrices checks the price rows of the run's trading date against the
// simulator and the items.
func auditPrices(ctx context.Context, a *auditor, pool *pgxpool.Pool, run checkpoint.Run, items []checkpoint.Item, known func(string) bool) error {
	date, err := time.Parse(simulator.DateLayout, run.RunKey)
	if err != nil {
		return fmt.Errorf("run key %q is not a date: %w", run.RunKey, err)
	}
	rows, err := pool.Query(ctx, `SELECT symbol, open::text, high::text, low::text, close::text, volume, run_id
		FROM stock_prices WHERE trade_date = $1 ORDER BY symbol`, date)
	if err != nil {
		return fmt.Errorf("read prices: %w", err)
	}
	prices, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (priceRow, error) {
		var p priceRow
		var o, hi, lo, c string
		err := r.Scan(&p.quote.Symbol, &o, &hi, &lo, &c, &p.quote.Volume, &p.runID)
		p.quote.Open, p.quote.High, p.quote.Low, p.quote.Close = json.Number(o), json.Number(hi), json.Number(lo), json.Number(c)
		return p, err
	})
	if err != nil {
		return fmt.Errorf("read prices: %w", err)
	}

	inRun := make(map[string]bool, len(items))
	for _, it := range items {
		inRun[it.Key] = true
	}
	seen := make(map[string]int, len(prices))
	for _, p := range prices {
		sym := p.quote.Symbol
		seen[sym]++
		switch {
		case !inRun[sym]:
			a.add(CheckPrice, "price row of %s, which is not in run %d", sym, run.ID)
			continue
		case !known(sym):
			a.add(CheckPrice, "price row of unknown symbol %s", sym)
			continue
		}
		want := simulator.Price(sym, date)
		want.Date = ""
		if p.quote != want {
			a.add(CheckPrice, "price row %+v, want the simulator's %+v", p.quote, want)
		}
		if p.runID == nil || *p.runID != run.ID {
			a.add(CheckPrice, "price row of %s has run_id %v, want %d", sym, deref(p.runID), run.ID)
		}
	}
	for _, it := range items {
		if known(it.Key) && seen[it.Key] == 0 {
			a.add(CheckPrice, "no price row of known symbol %s", it.Key)
		}
		if seen[it.Key] > 1 {
			a.add(CheckPrice, "%d price rows of %s", seen[it.Key], it.Key)
		}
	}
	if int64(len(prices)) != run.Records {
		a.add(CheckCounters, "run %d counts %d records, there are %d price rows for %s", run.ID, run.Records, len(prices), run.RunKey)
	}
	return nil
}

func deref(p *int64) any {
	if p == nil {
		return "NULL"
	}
	return *p
}

// auditLedger checks that the ledger covers every partition from its start
// to its end in consecutive batches, once per pass (the first pass over
// every item, then each redrive of the failed ones), and that its counts
// match the items and the run's counters. A redrive batch counts only the
// items that had failed, and each of its successes moves an item from
// failed to succeeded.
func auditLedger(a *auditor, run checkpoint.Run, parts []checkpoint.Partition, ledger []Batch, items []checkpoint.Item) {
	byPos := make(map[int64]checkpoint.Item, len(items))
	for _, it := range items {
		byPos[it.Pos] = it
	}
	byPart := map[int][]Batch{}
	for _, b := range ledger {
		byPart[b.Partition] = append(byPart[b.Partition], b)
	}
	var sumItems, sumOK, sumFailed, sumRecords int64
	for _, p := range parts {
		cursor, seq, pass := p.StartPos, int64(0), 0
		var partOK, partFailed int64 // the partition's outcomes, per the ledger
		for _, b := range byPart[p.Index] {
			if b.Redrive != pass {
				if cursor != p.EndPos || b.Redrive < pass {
					a.add(CheckLedger, "partition %d: pass %d starts at seq %d while pass %d covers only up to %d",
						p.Index, b.Redrive, b.Seq, pass, cursor)
				}
				cursor, pass = p.StartPos, b.Redrive
			}
			if b.Seq != seq || b.From != cursor || b.To < b.From ||
				(pass == 0 && (b.To == b.From || int64(b.Items) != b.To-b.From)) || int64(b.Items) > b.To-b.From {
				a.add(CheckLedger, "partition %d: batch seq %d (pass %d) [%d, %d) of %d items does not follow seq %d at cursor %d",
					p.Index, b.Seq, b.Redrive, b.From, b.To, b.Items, seq, cursor)
			}
			if b.OK+b.Failed != b.Items {
				a.add(CheckLedgerSums, "partition %d batch %d counts %d succeeded and %d failed of %d items",
					p.Index, b.Seq, b.OK, b.Failed, b.Items)
			}
			if p.Redrive == 0 {
				// Never redriven: the items hold the batch's outcomes.
				if ok, failed := outcomes(byPos, b.From, b.To); ok != int64(b.OK) || failed != int64(b.Failed) {
					a.add(CheckLedgerSums, "partition %d batch %d counts %d succeeded, %d failed of %d; its items: %d succeeded, %d failed",
						p.Index, b.Seq, b.OK, b.Failed, b.Items, ok, failed)
				}
			}
			if pass == 0 {
				sumItems += int64(b.Items)
				partFailed += int64(b.Failed)
			} else {
				partFailed -= int64(b.OK)
			}
			partOK += int64(b.OK)
			cursor, seq = max(cursor, b.To), b.Seq+1
			sumRecords += int64(b.Records)
		}
		if cursor != p.EndPos || p.Status != checkpoint.PartitionCompleted || p.Seq != int64(len(byPart[p.Index])) ||
			p.Cursor != p.EndPos || p.Redrive != pass {
			a.add(CheckLedger, "partition %d [%d, %d): the ledger covers up to %d in %d batches, pass %d; the partition is %s at cursor %d, seq %d, pass %d",
				p.Index, p.StartPos, p.EndPos, cursor, len(byPart[p.Index]), pass, p.Status, p.Cursor, p.Seq, p.Redrive)
		}
		if ok, failed := outcomes(byPos, p.StartPos, p.EndPos); ok != partOK || failed != partFailed {
			a.add(CheckLedgerSums, "partition %d: its ledger makes %d succeeded and %d failed; its items: %d succeeded, %d failed",
				p.Index, partOK, partFailed, ok, failed)
		}
		sumOK += partOK
		sumFailed += partFailed
		delete(byPart, p.Index)
	}
	for index, bs := range byPart {
		a.add(CheckLedger, "%d batches of partition %d, which run %d does not have", len(bs), index, run.ID)
	}
	if sumItems != run.Processed || sumOK != run.Succeeded || sumFailed != run.Failed || sumRecords != run.Records {
		a.add(CheckLedgerSums, "the ledger sums %d items, %d succeeded, %d failed, %d records; the run counts %d processed, %d succeeded, %d failed, %d records",
			sumItems, sumOK, sumFailed, sumRecords, run.Processed, run.Succeeded, run.Failed, run.Records)
	}
}

// outcomes counts the succeeded and failed items at positions [from, to).
func outcomes(byPos map[int64]checkpoint.Item, from, to int64) (ok, failed int64) {
	for pos := from; pos < to; pos++ {
		switch byPos[pos].Status {
		case checkpoint.ItemSucceeded:
			ok++
		case checkpoint.ItemFailed:
			failed++
		}
	}
	return ok, failed
}

// Ledger returns the batch ledger of run id by partition and seq.
func Ledger(ctx context.Context, pool *pgxpool.Pool, id int64) ([]Batch, error) {
	rows, err := pool.Query(ctx, `SELECT partition, seq, attempt, redrive, cursor_from, cursor_to,
		items, succeeded, failed, records, task_id, worker, started_at, committed_at
		FROM batch_ledger WHERE run_id = $1 ORDER BY partition, seq`, id)
	if err != nil {
		return nil, fmt.Errorf("read ledger of run %d: %w", id, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Batch, error) {
		var b Batch
		err := r.Scan(&b.Partition, &b.Seq, &b.Attempt, &b.Redrive, &b.From, &b.To, &b.Items, &b.OK, &b.Failed,
			&b.Records, &b.TaskID, &b.Worker, &b.Started, &b.Committed)
		return b, err
	})
	if err != nil {
		return nil, fmt.Errorf("read ledger of run %d: %w", id, err)
	}
	return out, nil
}

// Figures returns each partition's figures from the ledger (sorted by
// partition and seq); now ends the gap of a partition that is still open in
// a run that has not ended.
func Figures(run checkpoint.Run, parts []checkpoint.Partition, ledger []Batch, now time.Time) []Partition {
	start := run.CreatedAt
	if run.StartedAt != nil {
		start = *run.StartedAt
	}
	end := now
	if run.FinishedAt != nil {
		end = *run.FinishedAt
	}
	out := make([]Partition, 0, len(parts))
	for _, p := range parts {
		f := Partition{Index: p.Index}
		workers := map[string]bool{}
		last := start
		gap := func(from, to time.Time) {
			if d := to.Sub(from); d > f.MaxGap {
				f.MaxGap, f.GapFrom = d, from
			}
		}
		pass := 0
		for _, b := range ledger {
			if b.Partition != p.Index {
				continue
			}
			if b.Redrive != pass {
				// The time between the passes is not a stall.
				pass, last = b.Redrive, b.Started
			}
			f.Batches++
			workers[b.Worker] = true
			gap(last, b.Committed)
			last = b.Committed
		}
		if p.Status != checkpoint.PartitionCompleted {
			gap(last, end)
		}
		f.Workers = len(workers)
		out = append(out, f)
	}
	return out
}
