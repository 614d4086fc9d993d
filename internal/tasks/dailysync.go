package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/fault"
	"github.com/syncworker/syncworker/internal/quotes"
	"github.com/syncworker/syncworker/internal/stocks"
)

// JobDailySync is the job name of the daily stock-price sync.
const JobDailySync = "daily-sync"

// DailyParams are the parameters of a daily sync run.
type DailyParams struct {
	// Date is the trading date, YYYY-MM-DD; it is also the run key.
	Date string `json:"date"`
}

// QuoteSource fetches one symbol's quote for a day, saying how many requests
// it took; its errors are classified with package fault.
type QuoteSource interface {
	Fetch(ctx context.Context, symbol string, date time.Time) (quotes.Quote, int, error)
}

// DailySync is the job of a daily sync: for each symbol of a batch it fetches
// the day's quote, concurrently up to a bound, and upserts the prices.
type DailySync struct {
	source      QuoteSource
	concurrency int
}

// NewDailySync returns the daily sync job, fetching from source with up to
// concurrency requests in flight per batch.
func NewDailySync(source QuoteSource, concurrency int) *DailySync {
	return &DailySync{source: source, concurrency: max(concurrency, 1)}
}

type fetchResult struct {
	quote    quotes.Quote
	requests int
	err      error
}

// batchLevel reports whether a fetch error stops the whole batch rather than
// failing its item: a run-fatal error, a rate limit longer than a fetch waits
// in place, a broken rate limiter, or the end of the batch's context (the
// client returns the context's own error then, unclassified).
func batchLevel(err error) bool {
	if errors.Is(err, quotes.ErrLimiter) {
		return true
	}
	var fe *fault.Error
	if errors.As(err, &fe) {
		return fe.Class == fault.RunFatal || fe.Class == fault.RateLimited
	}
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// Fetch fetches the quotes of the batch's symbols.
func (d *DailySync) Fetch(ctx context.Context, b Batch) (Fetched, error) {
	var params DailyParams
	if err := json.Unmarshal(b.Run.Params, &params); err != nil {
		return Fetched{}, fault.Wrap(fault.RunFatal, fmt.Errorf("run %d: bad params %s: %w", b.Run.ID, b.Run.Params, err))
	}
	date, err := time.Parse(quotes.DateLayout, params.Date)
	if err != nil {
		return Fetched{}, fault.Wrap(fault.RunFatal, fmt.Errorf("run %d: bad date in params: %w", b.Run.ID, err))
	}

	results := make([]fetchResult, len(b.Items))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(d.concurrency)
	for i, it := range b.Items {
		g.Go(func() error {
			q, n, err := d.source.Fetch(gctx, it.Key, date)
			results[i] = fetchResult{quote: q, requests: n, err: err}
			if err != nil && batchLevel(err) {
				return err
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return Fetched{}, err
	}
	if err := ctx.Err(); err != nil {
		return Fetched{}, err
	}

	out := Fetched{Outcomes: make([]checkpoint.Outcome, len(b.Items))}
	prices := make([]stocks.Price, 0, len(b.Items))
	var transient int
	var lastErr error
	for i, r := range results {
		o := checkpoint.Outcome{Pos: b.Items[i].Pos, Attempts: r.requests}
		if r.err != nil {
			o.Err = r.err.Error()
			lastErr = r.err
			class := fault.ClassOf(r.err)
			if class == fault.Transient {
				transient++
			}
			if b.Log != nil {
				b.Log.Debug("quote failed", "symbol", b.Items[i].Key, "class", class.String(), "error", r.err)
			}
		} else {
			o.OK = true
			q := r.quote
			prices = append(prices, stocks.Price{Symbol: q.Symbol, Date: q.Date,
				Open: q.Open, High: q.High, Low: q.Low, Close: q.Close, Volume: q.Volume})
		}
		out.Outcomes[i] = o
	}
	// A quote that failed for a passing reason (after the client's own
	// attempts) is asked again with the whole batch, from the unchanged
	// cursor, until the task's last attempt. Then, if the source answered
	// some of the batch, the symbols it still fails on are recorded failed
	// with their errors and the run goes on; if it answered none, the source
	// is down: the batch's error fails the partition and the run, which a
	// retry resumes.
	if transient > 0 && (!b.Final || transient == len(b.Items)) {
		return Fetched{}, fmt.Errorf("%d of %d quotes of the batch failed, the last with: %w", transient, len(b.Items), lastErr)
	}
	out.Records = len(prices)
	runID := b.Run.ID
	out.Queue = func(q *pgx.Batch) { stocks.QueueUpsertPrices(q, runID, prices) }
	return out, nil
}
