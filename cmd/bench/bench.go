package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
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
	// BaselineNew and BaselineUpdate are the baseline's rows/s;
	// Checkpointed the same new rows inside the checkpoint's commit.
	BaselineNew, BaselineUpdate, Checkpointed float64
	// PairedBare is the rows/s of the bare batches paired with the
	// checkpointed ones (see checkpointed).
	PairedBare float64
	// BaselineParallel is the new rows' rows/s on 4 connections at once.
	BaselineParallel float64
	// ETL and Sync are the end-to-end rows/s on 1 and 2 workers.
	ETL, Sync [2]float64
	// ETLBatchMS and ETLGapMS are the batch durations and gaps of the ETL
	// run on 1 worker; ETLFirst the time to its first batch.
	ETLBatchMS, ETLGapMS []float64
	ETLFirst             time.Duration
	// ETLBusy is the machine's CPU busy share during the ETL runs.
	ETLBusy [2]float64
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

	// 1. The baseline, and the same inside the checkpoint's commit.
	day := syncDate.AddDate(0, 0, -1)
	dNew, err := baseline(ctx, pool, o.Records, o.Batch, 1, day, 0)
	if err != nil {
		return nil, err
	}
	dUpd, err := baseline(ctx, pool, o.Records, o.Batch, 1, day, 1)
	if err != nil {
		return nil, err
	}
	// The same new rows on 4 connections at once, as the 4 partitions of
	// the end-to-end runs write.
	dPar, err := baseline(ctx, pool, o.Records, o.Batch, 4, day.AddDate(0, 0, -2), 0)
	if err != nil {
		return nil, err
	}
	dCkpt, dBare, err := checkpointed(ctx, pool, o.Records, o.Batch, day.AddDate(0, 0, -3))
	if err != nil {
		return nil, err
	}
	n := int64(o.Records)
	res.BaselineNew, res.BaselineUpdate, res.Checkpointed = Rate(n, dNew), Rate(n, dUpd), Rate(n, dCkpt)
	res.BaselineParallel, res.PairedBare = Rate(n, dPar), Rate(n, dBare)
	res.Rows = append(res.Rows,
		Row{Scenario: "1 baseline COPY upsert, new rows", Units: n, Wall: dNew, Rate: res.BaselineNew, VsBaseline: 1},
		Row{Scenario: "1 baseline COPY upsert, updates", Units: n, Wall: dUpd, Rate: res.BaselineUpdate, VsBaseline: res.BaselineUpdate / res.BaselineNew},
		Row{Scenario: "1 baseline, new rows, 4 connections", Units: n, Wall: dPar, Rate: res.BaselineParallel,
			VsBaseline: res.BaselineParallel / res.BaselineNew, Note: "as 4 partitions write"},
		Row{Scenario: "1 same inside checkpoint.Commit", Units: n, Wall: dCkpt, Rate: res.Checkpointed, VsBaseline: res.Checkpointed / res.BaselineNew,
			Note: fmt.Sprintf("one run of pages, one partition, no queue; paired bare batches %.0f rows/s", res.PairedBare)})
	b.log.Info("baseline", "new_per_s", int(res.BaselineNew), "update_per_s", int(res.BaselineUpdate), "checkpointed_per_s", int(res.Checkpointed))

	sys := &system{pool: pool, rdb: rdb, store: checkpoint.New(pool), dbURL: dbURL, redisURL: redisURL,
		workerBin: b.workerBin, simBin: b.simBin, logDir: b.logDir, batch: o.Batch, timeout: o.Timeout, log: b.log}
	var rss []int64

	// 2. End to end at zero latency, 1 and 2 workers.
	for i, w := range []int{1, 2} {
		out, err := sys.execute(ctx, spec{name: fmt.Sprintf("etl-%dw", w), workers: w, records: o.Records, job: etlJob})
		if err != nil {
			return nil, err
		}
		res.ETL[i] = Rate(out.units, out.wall)
		rss = append(rss, out.rss...)
		res.ETLBusy[i] = out.busy
		if w == 1 {
			res.ETLBatchMS, res.ETLGapMS, res.ETLFirst = durationsMS(out.ledger), Millis(Gaps(out.ledger)), out.firstBatch
		}
		res.Rows = append(res.Rows, Row{Scenario: "2 ETL page job, 0 ms source", Workers: w, Units: out.units, Wall: out.wall,
			Rate: res.ETL[i], VsBaseline: res.ETL[i] / res.BaselineNew, Note: fmt.Sprintf("page %d, 4 partitions; %s", o.Batch, out.cpuNote())})
	}
	for i, w := range []int{1, 2} {
		out, err := sys.execute(ctx, spec{name: fmt.Sprintf("sync-%dw", w), workers: w, symbols: o.Symbols, partitions: 4})
		if err != nil {
			return nil, err
		}
		res.Sync[i] = Rate(out.units, out.wall)
		rss = append(rss, out.rss...)
		res.Rows = append(res.Rows, Row{Scenario: "2 daily sync, 0 ms source", Workers: w, Units: out.units, Wall: out.wall,
			Rate: res.Sync[i], VsBaseline: res.Sync[i] / res.BaselineNew, Note: fmt.Sprintf("batch %d, 4 partitions, 1 request/symbol; %s", o.Batch, out.cpuNote())})
	}

	// 3. Per-batch overhead: small pages, one partition, one worker, defaults.
	out, err := sys.execute(ctx, spec{name: "overhead", workers: 1, records: o.OverheadRecords, job: overheadJob})
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
