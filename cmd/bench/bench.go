package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/config"
)

// bencher runs every measurement of one benchmark run.
type bencher struct {
	o                 Options
	log               *slog.Logger
	workerBin, simBin string
	logDir            string
	quick             bool
}

// Results are the figures of a benchmark run.
type Results struct {
	Options Options
	Quick   bool
	Machine Machine
	Rows    []Row
	// Rounds are the figures measured once a round (Options.Rounds): the
	// baseline's new rows, the checkpointed upsert and the ETL run on 1
	// worker, each round's side by side, so that a round's ratios see one
	// load of the machine.
	Rounds []Round
	// BaselineNew and BaselineUpdate are the baseline's rows/s;
	// Checkpointed the same new rows inside the checkpoint's commit. The
	// figures measured in rounds (BaselineNew, Checkpointed, PairedBare
	// and ETL[0]) are the medians of the rounds'.
	BaselineNew, BaselineUpdate, Checkpointed float64
	// PairedBare is the rows/s of the bare batches paired with the
	// checkpointed ones (see checkpointed).
	PairedBare float64
	// Wide is the checkpointed upsert and its paired bare batches at twice
	// the batch size, in the first round (zero when N is under two
	// batches): a cost fixed per batch is half the share there.
	Wide Round
	// Requests is the rows/s (requests/s) of the daily sync's limit, raw
	// quote requests (see rawRequests), RequestsSimCPU and
	// RequestsClientCPU the simulator's and the client's CPU time in them.
	Requests                          float64
	RequestsSimCPU, RequestsClientCPU time.Duration
	// SyncCPU is the workers' CPU time in the daily sync on 1 worker.
	SyncCPU time.Duration
	// ETLProfile and SyncProfile summarize the CPU profiles of the worker
	// taken during the ETL run (first round) and the sync on 1 worker.
	ETLProfile, SyncProfile ProfileSummary
	// BaselineParallel is the new rows' rows/s on 4 connections at once.
	BaselineParallel float64
	// ETL and Sync are the end-to-end rows/s on 1 and 2 workers.
	ETL, Sync [2]float64
	// ETLBatchMS and ETLGapMS are the batch durations and gaps of the ETL
	// run on 1 worker; ETLFirst the time to its first batch.
	ETLBatchMS, ETLGapMS []float64
	ETLFirst             time.Duration
	// ETLBusy is the machine's CPU busy share during the ETL runs;
	// ETLWorkerCPU and ETLSimCPU the CPU time of the worker and the
	// simulator in the first round's run on 1 worker, in ETLWall.
	ETLBusy                          [2]float64
	ETLWorkerCPU, ETLSimCPU, ETLWall time.Duration
	// GapsMS are the per-batch overheads of the overhead run, BatchMS its
	// batches' own durations.
	GapsMS, BatchMS []float64
	// RateUtil and Rate429 are the rate-limited sync's utilization and
	// 429s, on 1 and 3 workers.
	RateUtil [2]float64
	Rate429  [2]int64
	// Scale is the partitioned sync's symbols/s on 1, 2 and 4 workers;
	// ScaleFirst the time from each run's start to its first batch.
	Scale      [3]float64
	ScaleFirst [3]time.Duration
	// IdleBusy is the machine's CPU busy share during the latency-bound
	// sync on 1 worker, whose own processes used IdleOwnCPU in IdleWall:
	// how busy the rest of the machine was.
	IdleBusy             float64
	IdleOwnCPU, IdleWall time.Duration
	// RSSMB is the largest peak RSS of a worker at the default concurrency.
	RSSMB float64
	Wall  time.Duration
}

// Round is one round of the figures measured more than once: rows/s of the
// baseline's new rows, of the checkpointed upsert and its paired bare
// batches, and of the ETL run on 1 worker.
type Round struct {
	BaselineNew, Checkpointed, PairedBare, ETL float64
	// PairCostPct is the checkpoint's cost from the median pair (see
	// pairCostPct).
	PairCostPct float64
}

// E2E is the round's ETL rows/s ÷ its baseline's.
func (r Round) E2E() float64 { return r.ETL / r.BaselineNew }

// CkptCostPct is the round's checkpoint cost in % of throughput: 1 − the
// checkpointed rows/s ÷ the paired bare ones.
func (r Round) CkptCostPct() float64 { return 100 * (1 - r.Checkpointed/r.PairedBare) }

// batchCostMS is the checkpoint's cost in ms a batch of batch rows: a
// checkpointed batch's time less a paired bare one's.
func (r Round) batchCostMS(batch int) float64 {
	return 1000 * (float64(batch)/r.Checkpointed - float64(batch)/r.PairedBare)
}

// run sets up the database and Redis and runs every measurement in turn.
func (b *bencher) run(ctx context.Context, serverURL, dbName, redisServer string, redisDB int) (*Results, error) {
	began := time.Now()
	o := b.o
	dbURL, err := recreateDatabase(ctx, serverURL, dbName)
	if err != nil {
		return nil, err
	}
	redisURL, release, err := claimRedis(ctx, redisServer, redisDB)
	if err != nil {
		return nil, err
	}
	defer release()
	pool, err := openPool(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	ropt, err := redis.ParseURL(redisURL)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	rdb := redis.NewClient(ropt)
	defer rdb.Close()

	res := &Results{Options: o, Quick: b.quick, Machine: describeMachine(ctx, pool, rdb)}
	b.log.Info("machine", "cpu", res.Machine.CPU, "cores", res.Machine.Cores, "load", res.Machine.LoadStart)

	sys := &system{pool: pool, rdb: rdb, store: checkpoint.New(pool), dbURL: dbURL, redisURL: redisURL,
		workerBin: b.workerBin, simBin: b.simBin, logDir: b.logDir, batch: o.Batch, timeout: o.Timeout, log: b.log}
	var rss []int64
	n := int64(o.Records)

	// 1 and 2. In each round: the baseline, the same inside the
	// checkpoint's commit, and the ETL run end to end on 1 worker; in the
	// first also the updates and 4 connections, and a profile of the worker.
	var dUpd, dPar time.Duration
	var etl1 outcome
	for round := range o.Rounds {
		day := syncDate.AddDate(0, 0, -10*(round+1)) // every round's rows are new
		dNew, err := baseline(ctx, pool, o.Records, o.Batch, 1, day, 0)
		if err != nil {
			return nil, err
		}
		if round == 0 {
			if dUpd, err = baseline(ctx, pool, o.Records, o.Batch, 1, day, 1); err != nil {
				return nil, err
			}
			// The same new rows on 4 connections at once, as the 4
			// partitions of the end-to-end runs write.
			if dPar, err = baseline(ctx, pool, o.Records, o.Batch, 4, day.AddDate(0, 0, -1), 0); err != nil {
				return nil, err
			}
		}
		dCkpt, dBare, err := checkpointed(ctx, pool, o.Records, o.Batch, day.AddDate(0, 0, -2))
		if err != nil {
			return nil, err
		}
		rd := Round{BaselineNew: Rate(n, dNew), Checkpointed: Rate(n, sum(dCkpt)), PairedBare: Rate(n, sum(dBare)),
			PairCostPct: pairCostPct(dCkpt, dBare)}
		if round == 0 && 2*o.Batch <= o.Records {
			wideCkpt, wideBare, err := checkpointed(ctx, pool, o.Records, 2*o.Batch, day.AddDate(0, 0, -4))
			if err != nil {
				return nil, err
			}
			res.Wide = Round{Checkpointed: Rate(n, sum(wideCkpt)), PairedBare: Rate(n, sum(wideBare)),
				PairCostPct: pairCostPct(wideCkpt, wideBare)}
		}
		sp := spec{name: fmt.Sprintf("etl-1w-round%d", round+1), workers: 1, records: o.Records, job: etlJob}
		if round == 0 {
			// A profile of about the run, which takes about the
			// baseline's time.
			sp.profile = duration(n, rd.BaselineNew)
		}
		out, err := sys.execute(ctx, sp)
		if err != nil {
			return nil, err
		}
		rd.ETL = Rate(out.units, out.wall)
		rss = append(rss, out.rss...)
		if round == 0 {
			etl1 = out
			res.ETLProfile = summarize("ETL page job, 1 worker", out.profile, 12)
		}
		res.Rounds = append(res.Rounds, rd)
		b.log.Info("round", "round", round+1, "baseline_per_s", int(rd.BaselineNew), "ckpt_cost_pct", fmt.Sprintf("%.1f", rd.CkptCostPct()),
			"etl_per_s", int(rd.ETL), "e2e_vs_copy", fmt.Sprintf("%.3f", rd.E2E()))
	}
	res.BaselineNew = medianOf(res.Rounds, func(r Round) float64 { return r.BaselineNew })
	res.Checkpointed = medianOf(res.Rounds, func(r Round) float64 { return r.Checkpointed })
	res.PairedBare = medianOf(res.Rounds, func(r Round) float64 { return r.PairedBare })
	res.ETL[0] = medianOf(res.Rounds, func(r Round) float64 { return r.ETL })
	res.BaselineUpdate, res.BaselineParallel = Rate(n, dUpd), Rate(n, dPar)
	res.ETLBatchMS, res.ETLGapMS, res.ETLFirst = durationsMS(etl1.ledger), Millis(Gaps(etl1.ledger)), etl1.firstBatch
	res.ETLBusy[0], res.ETLWorkerCPU, res.ETLSimCPU, res.ETLWall = etl1.busy, etl1.workerCPU, etl1.simCPU, etl1.wall
	byRound := roundsNote(res.Rounds, func(r Round) float64 { return r.BaselineNew }, 0)
	res.Rows = append(res.Rows,
		Row{Scenario: "1 baseline COPY upsert, new rows", Units: n, Wall: duration(n, res.BaselineNew), Rate: res.BaselineNew, VsBaseline: 1, Note: "median of the rounds: " + byRound},
		Row{Scenario: "1 baseline COPY upsert, updates", Units: n, Wall: dUpd, Rate: res.BaselineUpdate, VsBaseline: res.BaselineUpdate / res.BaselineNew},
		Row{Scenario: "1 baseline, new rows, 4 connections", Units: n, Wall: dPar, Rate: res.BaselineParallel,
			VsBaseline: res.BaselineParallel / res.BaselineNew, Note: "as 4 partitions write"},
		Row{Scenario: "1 same inside checkpoint.Commit", Units: n, Wall: duration(n, res.Checkpointed), Rate: res.Checkpointed,
			VsBaseline: res.Checkpointed / res.BaselineNew,
			Note: fmt.Sprintf("one run of pages, one partition, no queue; paired bare batches %.0f rows/s; cost by round %s",
				res.PairedBare, roundsNote(res.Rounds, Round.CkptCostPct, 1))})
	if res.Wide.Checkpointed > 0 {
		res.Rows = append(res.Rows, Row{Scenario: fmt.Sprintf("1 same, batch %d", 2*o.Batch), Units: n, Wall: duration(n, res.Wide.Checkpointed),
			Rate: res.Wide.Checkpointed, VsBaseline: res.Wide.Checkpointed / res.BaselineNew,
			Note: fmt.Sprintf("first round; paired bare batches %.0f rows/s; cost %.1f%%, %.2f ms a batch",
				res.Wide.PairedBare, res.Wide.CkptCostPct(), res.Wide.batchCostMS(2*o.Batch))})
	}
	res.Rows = append(res.Rows,
		Row{Scenario: "2 ETL page job, 0 ms source", Workers: 1, Units: n, Wall: duration(n, res.ETL[0]), Rate: res.ETL[0],
			VsBaseline: res.e2eVsCopy(), Note: fmt.Sprintf("page %d, 4 partitions; ratio by round %s; first round: %s",
				o.Batch, roundsNote(res.Rounds, Round.E2E, 3), etl1.cpuNote())})
	b.log.Info("baseline", "new_per_s", int(res.BaselineNew), "update_per_s", int(res.BaselineUpdate), "checkpointed_per_s", int(res.Checkpointed))

	out, err := sys.execute(ctx, spec{name: "etl-2w", workers: 2, records: o.Records, job: etlJob})
	if err != nil {
		return nil, err
	}
	res.ETL[1], res.ETLBusy[1] = Rate(out.units, out.wall), out.busy
	rss = append(rss, out.rss...)
	res.Rows = append(res.Rows, Row{Scenario: "2 ETL page job, 0 ms source", Workers: 2, Units: out.units, Wall: out.wall,
		Rate: res.ETL[1], VsBaseline: res.ETL[1] / res.BaselineNew, Note: fmt.Sprintf("page %d, 4 partitions; %s", o.Batch, out.cpuNote())})

	// The daily sync's own limit: a request per symbol.
	cfg := config.Default()
	conc := 4 * cfg.Quotes.Concurrency
	dReq, simCPU, clientCPU, err := sys.rawRequests(ctx, o.Symbols, conc)
	if err != nil {
		return nil, err
	}
	res.Requests, res.RequestsSimCPU, res.RequestsClientCPU = Rate(int64(o.Symbols), dReq), simCPU, clientCPU
	res.Rows = append(res.Rows, Row{Scenario: "2 raw quote requests, 0 ms source", Units: int64(o.Symbols), Wall: dReq, Rate: res.Requests,
		VsBaseline: res.Requests / res.BaselineNew,
		Note: fmt.Sprintf("the sync's limit: 1 GET per symbol, %d at once (4 partitions × quotes.concurrency), no queue, no database; client %.1f s CPU, sim %.1f s",
			conc, clientCPU.Seconds(), simCPU.Seconds())})
	for i, w := range []int{1, 2} {
		sp := spec{name: fmt.Sprintf("sync-%dw", w), workers: w, symbols: o.Symbols, partitions: 4}
		if w == 1 {
			// Most of the run, which reaches about 0.4 of the raw requests.
			sp.profile = duration(int64(o.Symbols), res.Requests/0.4) * 8 / 10
		}
		out, err := sys.execute(ctx, sp)
		if err != nil {
			return nil, err
		}
		res.Sync[i] = Rate(out.units, out.wall)
		rss = append(rss, out.rss...)
		if w == 1 {
			res.SyncProfile = summarize("daily sync, 1 worker", out.profile, 12)
			res.SyncCPU = out.workerCPU
		}
		res.Rows = append(res.Rows, Row{Scenario: "2 daily sync, 0 ms source", Workers: w, Units: out.units, Wall: out.wall,
			Rate: res.Sync[i], VsBaseline: res.Sync[i] / res.BaselineNew,
			Note: fmt.Sprintf("batch %d, 4 partitions, 1 request/symbol; %.2f of the raw requests; %s", o.Batch, res.Sync[i]/res.Requests, out.cpuNote())})
	}

	// 3. Per-batch overhead: small pages, one partition, one worker, defaults.
	out, err = sys.execute(ctx, spec{name: "overhead", workers: 1, records: o.OverheadRecords, job: overheadJob})
	if err != nil {
		return nil, err
	}
	rss = append(rss, out.rss...)
	res.GapsMS, res.BatchMS = Millis(Gaps(out.ledger)), durationsMS(out.ledger)
	res.Rows = append(res.Rows, Row{Scenario: "3 per-batch overhead run", Workers: 1, Units: out.units, Wall: out.wall,
		Rate: Rate(out.units, out.wall), VsBaseline: math.NaN(),
		Note: fmt.Sprintf("%d pages of 100; gap p50 %.2f ms p99 %.2f ms; batch p50 %.0f ms", len(out.ledger),
			Percentile(res.GapsMS, 50), Percentile(res.GapsMS, 99), Percentile(res.BatchMS, 50)) + "; " + out.cpuNote()})

	// 4. Rate-limited sync: the limit on the workers and the simulator.
	for i, w := range []int{1, 3} {
		limit := o.RateLimit
		out, err := sys.execute(ctx, spec{name: fmt.Sprintf("ratelimit-%dw", w), workers: w, symbols: o.RateSymbols,
			partitions: 4, latency: 20 * time.Millisecond, rateLimit: limit,
			tune: func(c *config.Config) { c.Quotes.RateLimit = limit }})
		if err != nil {
			return nil, err
		}
		rss = append(rss, out.rss...)
		reqRate := Rate(out.sim.Requests, out.wall)
		res.RateUtil[i] = reqRate / float64(limit)
		res.Rate429[i] = out.sim.Throttled + out.sim.RateLimited
		res.Rows = append(res.Rows, Row{Scenario: fmt.Sprintf("4 daily sync, 20 ms, %d req/s limit", limit), Workers: w,
			Units: out.units, Wall: out.wall, Rate: Rate(out.units, out.wall), VsBaseline: math.NaN(),
			Note: fmt.Sprintf("%d requests, %.0f req/s, utilization %.3f, %d × 429", out.sim.Requests, reqRate, res.RateUtil[i], res.Rate429[i])})
	}

	// 5. Scaling: partitioned sync against a 50 ms source, one task per worker.
	for i, w := range []int{1, 2, 4} {
		out, err := sys.execute(ctx, spec{name: fmt.Sprintf("scale-%dw", w), workers: w, symbols: o.ScaleSymbols,
			partitions: 4, latency: 50 * time.Millisecond, tune: func(c *config.Config) { c.Worker.Concurrency = 1 }})
		if err != nil {
			return nil, err
		}
		res.Scale[i], res.ScaleFirst[i] = Rate(out.units, out.wall), out.firstBatch
		if w == 1 {
			res.IdleBusy, res.IdleOwnCPU, res.IdleWall = out.busy, out.workerCPU+out.simCPU, out.wall
		}
		res.Rows = append(res.Rows, Row{Scenario: "5 partitioned sync, 50 ms source", Workers: w, Units: out.units, Wall: out.wall,
			Rate: res.Scale[i], VsBaseline: math.NaN(),
			Note: fmt.Sprintf("4 partitions, worker concurrency 1; speed-up %.2f; first batch after %d ms; %s", res.Scale[i]/res.Scale[0], out.firstBatch.Milliseconds(), out.cpuNote())})
	}

	// 6. Peak RSS at the default concurrency (every run but the scaling one).
	res.RSSMB = float64(slices.Max(rss)) / (1 << 20)
	res.Machine.LoadEnd = loadAvg()
	res.Wall = time.Since(began)
	return res, nil
}

// medianOf returns the median of f over the rounds.
func medianOf(rounds []Round, f func(Round) float64) float64 {
	xs := make([]float64, len(rounds))
	for i, r := range rounds {
		xs[i] = f(r)
	}
	return Percentile(xs, 50)
}

// roundsNote lists f of each round with digits decimals, "a, b, c".
func roundsNote(rounds []Round, f func(Round) float64, digits int) string {
	parts := make([]string, len(rounds))
	for i, r := range rounds {
		parts[i] = strconv.FormatFloat(f(r), 'f', digits, 64)
	}
	return strings.Join(parts, ", ")
}

// duration returns the time n units take at rate per second.
func duration(n int64, rate float64) time.Duration {
	return time.Duration(float64(n) / rate * float64(time.Second))
}

// sum returns the sum of ds.
func sum(ds []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t
}

// pairCostPct is the checkpoint's cost in % from its pairs of batches: 1 −
// the median of bare ÷ checkpointed over the pairs. Unlike the ratio of the
// sums it does not move with the few batches that a stall of the machine
// (a checkpoint of Postgres's, a burst of another session's) made ten
// times slower.
func pairCostPct(ckpt, bare []time.Duration) float64 {
	ratios := make([]float64, min(len(ckpt), len(bare)))
	for i := range ratios {
		ratios[i] = bare[i].Seconds() / ckpt[i].Seconds()
	}
	return 100 * (1 - Percentile(ratios, 50))
}
