package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/syncworker/syncworker/internal/testenv"
)

type env struct {
	store *Store
	pool  *pgxpool.Pool
}

func setup(t *testing.T) *env {
	t.Helper()
	db := testenv.Postgres(t)
	if _, err := db.Pool.Exec(context.Background(), `CREATE TABLE probe (run_id bigint, seq bigint)`); err != nil {
		t.Fatal(err)
	}
	return &env{store: New(db.Pool), pool: db.Pool}
}

func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("K%04d", i)
	}
	return out
}

func (e *env) create(t *testing.T, key string, n, batch, parts int) Run {
	t.Helper()
	run, created, err := e.store.CreateRun(context.Background(), NewRun{
		Job: "test", RunKey: key, Params: map[string]string{"k": key}, BatchSize: batch, Partitions: parts, Keys: keys(n),
	})
	if err != nil || !created {
		t.Fatalf("CreateRun = created %v, %v", created, err)
	}
	return run
}

// age makes run id look as if it had ended (status) ago: ended long ago
// for an ended status, or created long ago and still going otherwise.
func (e *env) age(t *testing.T, id int64, status Status, ago time.Duration) {
	t.Helper()
	if _, err := e.pool.Exec(t.Context(), `UPDATE runs SET status = $2,
			created_at = now() - $3 * interval '1 second' - interval '1 hour',
			updated_at = now() - $3 * interval '1 second',
			finished_at = CASE WHEN $2 IN ('completed', 'failed', 'cancelled', 'timed_out') THEN now() - $3 * interval '1 second' END
		WHERE id = $1`, id, status, ago.Seconds()); err != nil {
		t.Fatal(err)
	}
}

// generation creates generation gen of job test's run key, in place of
// supersedes.
func (e *env) generation(t *testing.T, key string, gen int, supersedes int64) Run {
	t.Helper()
	run, created, err := e.store.CreateRun(t.Context(), NewRun{Job: "test", RunKey: key, Generation: gen,
		Supersedes: supersedes, BatchSize: 2, Partitions: 1, Keys: keys(4)})
	if err != nil || !created {
		t.Fatalf("CreateRun(%s gen %d) = created %v, %v", key, gen, created, err)
	}
	return run
}

// probeWrite records in the probe table that a batch's write ran.
func probeWrite(runID, seq int64) WriteFunc {
	return func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO probe VALUES ($1, $2)`, runID, seq)
		return err
	}
}

func (e *env) count(t *testing.T, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := e.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// testOwner holds the leases of the tests' commits.
const testOwner = "test#1"

// batchOf returns the next batch of partition p under testOwner's lease,
// with every item succeeding.
func batchOf(run Run, p Partition, handover bool) Batch {
	to := min(p.Cursor+int64(run.BatchSize), p.EndPos)
	b := Batch{RunID: run.ID, Partition: p.Index, Attempt: p.Attempt, Seq: p.Seq,
		Epoch: p.Epoch, Owner: testOwner, LeaseTTL: time.Minute, From: p.Cursor, To: to,
		Handover: handover, TaskID: "test", Worker: "test", StartedAt: time.Now()}
	for pos := p.Cursor; pos < to; pos++ {
		b.Outcomes = append(b.Outcomes, Outcome{Pos: pos, OK: pos%3 != 0, Attempts: 1, Err: "boom"})
		b.Records++
	}
	return b
}

// withRange moves b to [from, to), with an outcome for each position.
func withRange(b Batch, from, to int64) Batch {
	b.From, b.To, b.Outcomes = from, to, nil
	for pos := from; pos < to; pos++ {
		b.Outcomes = append(b.Outcomes, Outcome{Pos: pos, OK: true, Attempts: 1})
	}
	return b
}

// lease takes the lease of partition idx of run runID for testOwner and
// returns the partition.
func (e *env) lease(t *testing.T, runID int64, idx int) Partition {
	t.Helper()
	p, err := e.store.Acquire(context.Background(), e.partition(t, runID, idx).Ref(), testOwner, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (e *env) partition(t *testing.T, runID int64, idx int) Partition {
	t.Helper()
	_, p, err := e.store.Load(context.Background(), runID, idx)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSplit(t *testing.T) {
	tests := []struct {
		n           int64
		parts       int
		starts, end []int64
	}{
		{10, 3, []int64{0, 3, 6}, []int64{3, 6, 10}},
		{2, 4, []int64{0, 1}, []int64{1, 2}},
		{1, 1, []int64{0}, []int64{1}},
		{7, 1, []int64{0}, []int64{7}},
		{8, 4, []int64{0, 2, 4, 6}, []int64{2, 4, 6, 8}},
	}
	for _, tt := range tests {
		s, e := split(tt.n, tt.parts)
		if !reflect.DeepEqual(s, tt.starts) || !reflect.DeepEqual(e, tt.end) {
			t.Errorf("split(%d, %d) = %v %v, want %v %v", tt.n, tt.parts, s, e, tt.starts, tt.end)
		}
	}
}

func TestCreateRunFreezesItemsAndPartitions(t *testing.T) {
	e := setup(t)
	run := e.create(t, "2026-01-02", 10, 3, 3)
	if run.Status != StatusPending || run.Total != 10 || run.Partitions != 3 || run.Attempt != 1 || run.BatchSize != 3 {
		t.Fatalf("new run = %+v", run)
	}
	parts, err := e.store.Partitions(context.Background(), run.ID)
	if err != nil {
		t.Fatal(err)
	}
	var covered int64
	for i, p := range parts {
		if p.Index != i || p.Status != PartitionRunning || p.Cursor != p.StartPos || p.Seq != 0 || p.TaskSeq != 0 {
			t.Errorf("partition %d = %+v", i, p)
		}
		covered += p.EndPos - p.StartPos
	}
	if covered != 10 {
		t.Errorf("partitions cover %d positions, want 10", covered)
	}
	items, err := e.store.Items(context.Background(), run.ID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for i, it := range items {
		if it.Pos != int64(i) || it.Key != keys(10)[i] || it.Status != ItemPending {
			t.Errorf("item %d = %+v", i, it)
		}
	}
}

func TestCreateRunIsIdempotent(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	first := e.create(t, "2026-01-02", 10, 3, 2)

	// Concurrent starts of the same run key: one run, the first one.
	var wg sync.WaitGroup
	results := make([]Run, 8)
	createdFlags := make([]bool, 8)
	errs := make([]error, 8)
	for i := range results {
		wg.Go(func() {
			results[i], createdFlags[i], errs[i] = e.store.CreateRun(ctx, NewRun{
				Job: "test", RunKey: "2026-01-02", BatchSize: 99, Partitions: 5, Keys: keys(50),
			})
		})
	}
	wg.Wait()
	for i := range results {
		if errs[i] != nil || createdFlags[i] || results[i].ID != first.ID {
			t.Errorf("start %d = run %d created %v err %v; want run %d, not created", i, results[i].ID, createdFlags[i], errs[i], first.ID)
		}
		if results[i].Total != 10 || results[i].BatchSize != 3 || results[i].Partitions != 2 {
			t.Errorf("start %d changed the frozen run: %+v", i, results[i])
		}
	}
	if n := e.count(t, `SELECT count(*) FROM run_items WHERE run_id = $1`, first.ID); n != 10 {
		t.Errorf("run has %d items, want 10", n)
	}
	if n := e.count(t, `SELECT count(*) FROM runs`); n != 1 {
		t.Errorf("%d runs, want 1", n)
	}
}

func TestConcurrentFirstStartsCreateOneRun(t *testing.T) {
	e := setup(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	created, ids := 0, map[int64]bool{}
	for range 8 {
		wg.Go(func() {
			run, c, err := e.store.CreateRun(context.Background(), NewRun{Job: "test", RunKey: "k", BatchSize: 1, Partitions: 1, Keys: keys(3)})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			ids[run.ID] = true
			if c {
				created++
			}
		})
	}
	wg.Wait()
	if created != 1 || len(ids) != 1 {
		t.Errorf("created %d runs with ids %v, want exactly one", created, ids)
	}
}

func TestCreateRunRejectsBadSpecs(t *testing.T) {
	e := setup(t)
	tests := []struct {
		name string
		spec NewRun
	}{
		{"no items", NewRun{Job: "j", RunKey: "k", BatchSize: 1, Partitions: 1}},
		{"no job", NewRun{RunKey: "k", BatchSize: 1, Partitions: 1, Keys: keys(1)}},
		{"zero batch", NewRun{Job: "j", RunKey: "k", BatchSize: 0, Partitions: 1, Keys: keys(1)}},
		{"zero partitions", NewRun{Job: "j", RunKey: "k", BatchSize: 1, Partitions: 0, Keys: keys(1)}},
		{"duplicate keys", NewRun{Job: "j", RunKey: "k", BatchSize: 1, Partitions: 1, Keys: []string{"A", "A"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := e.store.CreateRun(context.Background(), tt.spec); err == nil {
				t.Fatal("CreateRun succeeded")
			}
			if n := e.count(t, `SELECT count(*) FROM runs`); n != 0 {
				t.Errorf("a rejected spec left %d runs", n)
			}
		})
	}
}

func TestCommitAdvancesOnce(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	run := e.create(t, "k", 5, 2, 1)
	p := e.lease(t, run.ID, 0)
	b := batchOf(run, p, false)

	res, err := e.store.Commit(ctx, b, probeWrite(run.ID, b.Seq))
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Partition; got.Cursor != 2 || got.Seq != 1 || got.TaskSeq != 0 || got.Status != PartitionRunning {
		t.Fatalf("after commit partition = %+v", got)
	}
	after, _ := e.store.Get(ctx, run.ID)
	if after.Status != StatusRunning || after.Processed != 2 || after.Succeeded != 1 || after.Failed != 1 || after.Records != 2 {
		t.Fatalf("after commit run = %+v", after)
	}

	// The same batch again, and stale or foreign variants: nothing changes.
	stale := []struct {
		name string
		b    Batch
	}{
		{"duplicate", b},
		{"older seq", func() Batch { x := batchOf(run, res.Partition, false); x.Seq = 0; return x }()},
		{"other attempt", func() Batch { x := batchOf(run, res.Partition, false); x.Attempt = 2; return x }()},
		{"wrong cursor", withRange(batchOf(run, res.Partition, false), 3, 4)},
		{"beyond the partition", withRange(batchOf(run, res.Partition, false), 2, 9)},
		{"another owner", func() Batch { x := batchOf(run, res.Partition, false); x.Owner = "zombie#2"; return x }()},
		{"other epoch", func() Batch { x := batchOf(run, res.Partition, false); x.Epoch = 1; return x }()},
	}
	for _, s := range stale {
		if _, err := e.store.Commit(ctx, s.b, probeWrite(run.ID, 99)); !errors.Is(err, ErrStale) {
			t.Errorf("%s: Commit = %v, want ErrStale", s.name, err)
		}
	}
	again, _ := e.store.Get(ctx, run.ID)
	if again.Processed != after.Processed || again.Succeeded != after.Succeeded || again.Records != after.Records {
		t.Errorf("stale commits changed the counters: %+v -> %+v", after, again)
	}
	if n := e.count(t, `SELECT count(*) FROM probe`); n != 1 {
		t.Errorf("the batch's write ran %d times, want 1", n)
	}
	if n := e.count(t, `SELECT count(*) FROM batch_ledger`); n != 1 {
		t.Errorf("ledger has %d rows, want 1", n)
	}
}

func TestCommitRefusesOutcomesThatDoNotCoverTheBatch(t *testing.T) {
	e := setup(t)
	run := e.create(t, "k", 4, 3, 1)
	b := batchOf(run, e.lease(t, run.ID, 0), false)
	tests := map[string][]Outcome{
		"too few":      b.Outcomes[:2],
		"duplicate":    {b.Outcomes[0], b.Outcomes[1], b.Outcomes[1]},
		"out of range": {b.Outcomes[0], b.Outcomes[1], {Pos: 3, OK: true}},
	}
	for name, outcomes := range tests {
		x := b
		x.Outcomes = outcomes
		if _, err := e.store.Commit(context.Background(), x, nil); err == nil || errors.Is(err, ErrStale) {
			t.Errorf("%s: Commit = %v, want a refusal", name, err)
		}
	}
	if n := e.count(t, `SELECT count(*) FROM batch_ledger`); n != 0 {
		t.Errorf("refused commits wrote %d ledger rows", n)
	}
}

func TestConcurrentDuplicateCommitsCommitOnce(t *testing.T) {
	e := setup(t)
	run := e.create(t, "k", 4, 4, 1)
	b := batchOf(run, e.lease(t, run.ID, 0), false)
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Go(func() { _, errs[i] = e.store.Commit(context.Background(), b, probeWrite(run.ID, b.Seq)) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrStale):
			t.Errorf("Commit = %v, want nil or ErrStale", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d concurrent deliveries committed, want 1", ok, len(errs))
	}
	if n := e.count(t, `SELECT count(*) FROM probe`); n != 1 {
		t.Errorf("the write ran %d times", n)
	}
	r, _ := e.store.Get(context.Background(), run.ID)
	if r.Processed != 4 || r.Status != StatusCompleted {
		t.Errorf("run = %+v, want 4 processed and completed", r)
	}
}

// The partitions of a run write their data at once: a commit locks the
// run's row (which every commit of the run updates) only after its data are
// written, so a partition whose write is slow holds up no other. With the
// run locked first, the second commit would wait for the first to end.
func TestPartitionsWriteAtOnce(t *testing.T) {
	e := setup(t)
	run := e.create(t, "k", 8, 4, 2)
	p0, p1 := e.lease(t, run.ID, 0), e.lease(t, run.ID, 1)
	writing, release := make(chan struct{}), make(chan struct{})
	slow := func(ctx context.Context, tx pgx.Tx) error {
		if err := probeWrite(run.ID, 0)(ctx, tx); err != nil {
			return err
		}
		close(writing)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	first := make(chan error, 1)
	go func() {
		_, err := e.store.Commit(context.Background(), batchOf(run, p0, false), slow)
		first <- err
	}()
	<-writing
	// Partition 0's transaction is open, its write done but not returned:
	// partition 1 commits meanwhile, or gives up after the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err := e.store.Commit(ctx, batchOf(run, p1, false), probeWrite(run.ID, 1))
	cancel()
	close(release)
	if err != nil {
		t.Errorf("commit of partition 1 while partition 0 writes = %v, want it to commit without waiting", err)
	}
	if err := <-first; err != nil {
		t.Fatalf("commit of partition 0 = %v", err)
	}
	r, _ := e.store.Get(context.Background(), run.ID)
	if n := e.count(t, `SELECT count(*) FROM probe`); n != 2 || r.Processed != 8 || r.Status != StatusCompleted {
		t.Errorf("after both commits: %d writes, run %+v; want 2 writes and 8 processed, completed", n, r)
	}
}

// A commit extends its lease only once less than half of it is left: the
// task's renewal keeps it longer than that, and a commit that leaves the
// expiry alone updates the partition's row in place.
func TestCommitExtendsAShortLease(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	run := e.create(t, "k", 12, 4, 1)
	p := e.lease(t, run.ID, 0) // a minute, as batchOf commits with
	before := *p.LeaseExpiresAt
	res, err := e.store.Commit(ctx, batchOf(run, p, false), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := *res.Partition.LeaseExpiresAt; !got.Equal(before) {
		t.Errorf("lease after a commit with a minute left = %v, want it left at %v", got, before)
	}
	if _, err := e.pool.Exec(ctx, `UPDATE run_partitions SET lease_expires_at = clock_timestamp() + interval '20 seconds'
		WHERE run_id = $1`, run.ID); err != nil {
		t.Fatal(err)
	}
	res, err = e.store.Commit(ctx, batchOf(run, e.partition(t, run.ID, 0), false), nil)
	if err != nil {
		t.Fatal(err)
	}
	if left := time.Until(*res.Partition.LeaseExpiresAt); left < 50*time.Second || !res.Partition.Leased {
		t.Errorf("lease after a commit with 20s of a minute left: %v left, leased %v; want about a minute", left, res.Partition.Leased)
	}
}

// A write runs before the compare-and-set, so a stale batch's write runs
// too; when it fails, the error still says the batch is stale, so that the
// caller drops the batch rather than retrying it. A current batch's failed
// write is no ErrStale.
func TestFailedWriteOfAStaleBatchIsStale(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	run := e.create(t, "k", 4, 2, 1)
	p := e.lease(t, run.ID, 0)
	boom := errors.New("check violated")
	failing := func(context.Context, pgx.Tx) error { return boom }
	if _, err := e.store.Commit(ctx, batchOf(run, p, false), failing); !errors.Is(err, boom) || errors.Is(err, ErrStale) {
		t.Fatalf("failed write of a current batch = %v, want its error and no ErrStale", err)
	}
	if _, _, err := e.store.Cancel(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	_, err := e.store.Commit(ctx, batchOf(run, p, false), failing)
	if !errors.Is(err, boom) || !errors.Is(err, ErrStale) {
		t.Errorf("failed write of a batch of a cancelled run = %v, want its error and ErrStale", err)
	}
}

// Data statements queued through QueueData go with the checkpoint in its
// round trip and commit or roll back with it: a batch's rows land with its
// advance; a failing statement or callback, or a stale batch, leaves
// nothing written.
func TestQueuedDataCommitsWithTheCheckpoint(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	run := e.create(t, "k", 8, 2, 1)
	p := e.lease(t, run.ID, 0)
	queue := func(seq int64, check func(pgconn.CommandTag) error) func(q *pgx.Batch) {
		return func(q *pgx.Batch) {
			q.Queue(`INSERT INTO probe VALUES ($1, $2)`, run.ID, seq).Exec(check)
		}
	}
	ok := func(pgconn.CommandTag) error { return nil }

	b := batchOf(run, p, false)
	b.QueueData = func(q *pgx.Batch) {
		queue(b.Seq, ok)(q)
		q.Queue(`SELECT pg_sleep(0.05)`) // a slow write, which the ledger's duration counts
	}
	res, err := e.store.Commit(ctx, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := e.count(t, `SELECT count(*) FROM probe WHERE seq = $1`, b.Seq); n != 1 || res.Partition.Seq != b.Seq+1 {
		t.Fatalf("after the commit: %d probe rows, seq %d; want 1 and %d", n, res.Partition.Seq, b.Seq+1)
	}
	if ms := e.count(t, `SELECT duration_ms FROM batch_ledger WHERE run_id = $1 AND seq = $2`, run.ID, b.Seq); ms < 50 {
		t.Errorf("ledger duration_ms = %d, want at least the 50 ms the data statements took", ms)
	}
	p = res.Partition

	boom := errors.New("wrong count")
	bad := []struct {
		name string
		b    func() Batch
		want error
	}{
		{"callback error", func() Batch {
			b := batchOf(run, p, false)
			b.QueueData = queue(b.Seq, func(pgconn.CommandTag) error { return boom })
			return b
		}, boom},
		{"statement error", func() Batch {
			b := batchOf(run, p, false)
			b.QueueData = func(q *pgx.Batch) { q.Queue(`INSERT INTO probe VALUES ('not a number', 1)`) }
			return b
		}, nil},
		{"stale batch", func() Batch {
			b := batchOf(run, p, false)
			b.Seq-- // the checkpoint this batch was computed from is gone
			b.QueueData = queue(99, ok)
			return b
		}, ErrStale},
	}
	for _, c := range bad {
		_, err := e.store.Commit(ctx, c.b(), nil)
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: Commit = %v, want an error wrapping %v", c.name, err, c.want)
		}
		if n := e.count(t, `SELECT count(*) FROM probe`); n != 1 {
			t.Errorf("%s: %d probe rows, want the first batch's only", c.name, n)
		}
		if got := e.partition(t, run.ID, 0); got.Seq != p.Seq || got.Cursor != p.Cursor {
			t.Errorf("%s: partition moved to seq %d cursor %d", c.name, got.Seq, got.Cursor)
		}
	}
}

func TestFailedWriteRollsBackEverything(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	run := e.create(t, "k", 4, 2, 1)
	p := e.lease(t, run.ID, 0)
	boom := errors.New("disk on fire")
	_, err := e.store.Commit(ctx, batchOf(run, p, true), func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO probe VALUES (1, 1)`); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Commit = %v, want the write's error", err)
	}
	if got := e.partition(t, run.ID, 0); !reflect.DeepEqual(got, p) {
		t.Errorf("partition moved: %+v -> %+v", p, got)
	}
	r, _ := e.store.Get(ctx, run.ID)
	if r.Processed != 0 || r.Status != StatusPending {
		t.Errorf("run changed: %+v", r)
	}
	for _, q := range []string{`SELECT count(*) FROM probe`, `SELECT count(*) FROM batch_ledger`,
		`SELECT count(*) FROM run_items WHERE status <> 'pending'`} {
		if n := e.count(t, q); n != 0 {
			t.Errorf("%s = %d, want 0", q, n)
		}
	}

	// A cancelled context rolls back the same way.
	cctx, cancel := context.WithCancel(ctx)
	_, err = e.store.Commit(cctx, batchOf(run, p, false), func(ctx context.Context, tx pgx.Tx) error {
		cancel()
		_, err := tx.Exec(ctx, `INSERT INTO probe VALUES (1, 1)`)
		return err
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit under a cancelled context = %v", err)
	}
	if n := e.count(t, `SELECT count(*) FROM probe`); n != 0 {
		t.Errorf("a cancelled commit wrote %d rows", n)
	}
}

func TestHandoverMovesTaskSeq(t *testing.T) {
	e := setup(t)
	run := e.create(t, "k", 6, 2, 1)
	p := e.lease(t, run.ID, 0)
	res, err := e.store.Commit(context.Background(), batchOf(run, p, false), nil)
	if err != nil || res.Partition.TaskSeq != 0 {
		t.Fatalf("without handover: task_seq %d, %v", res.Partition.TaskSeq, err)
	}
	res, err = e.store.Commit(context.Background(), batchOf(run, res.Partition, true), nil)
	if err != nil || res.Partition.TaskSeq != 2 || res.Partition.Seq != 2 {
		t.Fatalf("with handover: %+v, %v; want seq 2 task_seq 2", res.Partition, err)
	}
}

func TestLastPartitionsCompleteTheRunOnce(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	const parts = 8
	run := e.create(t, "k", parts*2, 2, parts)
	var wg sync.WaitGroup
	completions := make([]bool, parts)
	for i := range parts {
		p := e.lease(t, run.ID, i)
		wg.Go(func() {
			res, err := e.store.Commit(ctx, batchOf(run, p, false), nil)
			if err != nil {
				t.Error(err)
			}
			completions[i] = res.RunCompleted
		})
	}
	wg.Wait()
	n := 0
	for _, c := range completions {
		if c {
			n++
		}
	}
	r, _ := e.store.Get(ctx, run.ID)
	if n != 1 || r.Status != StatusCompleted || r.FinishedAt == nil || r.Processed != parts*2 {
		t.Errorf("%d commits completed the run; run = %+v", n, r)
	}
}

func TestFailPartitionIsFenced(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	run := e.create(t, "k", 6, 1, 2)
	owner := e.partition(t, run.ID, 0).Ref()
	for name, ref := range map[string]TaskRef{
		"stale task":    {RunID: run.ID, Attempt: 1, TaskSeq: 5},
		"other attempt": {RunID: run.ID, Attempt: 2},
		"other epoch":   {RunID: run.ID, Attempt: 1, Epoch: 1},
	} {
		if failed, err := e.store.FailPartition(ctx, ref, name); err != nil || failed {
			t.Fatalf("FailPartition of %s = %v, %v; want no change", name, failed, err)
		}
	}
	if r, _ := e.store.Get(ctx, run.ID); r.Status != StatusPending {
		t.Fatalf("fenced failures changed the run: %+v", r)
	}
	failed, err := e.store.FailPartition(ctx, owner, "source exploded")
	if err != nil || !failed {
		t.Fatalf("FailPartition = %v, %v", failed, err)
	}
	r, _ := e.store.Get(ctx, run.ID)
	if r.Status != StatusFailed || r.LastError != "partition 0: source exploded" || r.FinishedAt == nil {
		t.Errorf("run = %+v", r)
	}
	parts, _ := e.store.Partitions(ctx, run.ID)
	for _, p := range parts {
		if p.Status != PartitionFailed {
			t.Errorf("partition %d is %s, want failed", p.Index, p.Status)
		}
	}
	if parts[0].LastError != "source exploded" {
		t.Errorf("partition 0 last error = %q", parts[0].LastError)
	}
	// Nothing commits on a failed run.
	if _, err := e.store.Commit(ctx, batchOf(r, parts[1], false), nil); !errors.Is(err, ErrStale) {
		t.Errorf("commit on a failed run = %v, want ErrStale", err)
	}
}

func TestRetryResumesFromCheckpoints(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	run := e.create(t, "k", 6, 1, 2)
	p0 := e.lease(t, run.ID, 0)
	res, err := e.store.Commit(ctx, batchOf(run, p0, true), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.Retry(ctx, run.ID); !errors.Is(err, ErrState) {
		t.Fatalf("retry of a running run = %v, want ErrState", err)
	}
	if _, err := e.store.FailPartition(ctx, res.Partition.Ref(), "down"); err != nil {
		t.Fatal(err)
	}
	r, parts, err := e.store.Retry(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != StatusRunning || r.Attempt != 2 || r.LastError != "" || r.FinishedAt != nil || r.Processed != 1 {
		t.Errorf("retried run = %+v", r)
	}
	if len(parts) != 2 || parts[0].Cursor != 1 || parts[0].Seq != 1 || parts[0].TaskSeq != 1 || parts[0].Attempt != 2 {
		t.Fatalf("resumed partitions = %+v", parts)
	}
	// The old attempt's tasks are stale now; the new attempt's commit.
	leased := e.lease(t, run.ID, 0)
	old := batchOf(r, leased, false)
	old.Attempt = 1
	if _, err := e.store.Commit(ctx, old, nil); !errors.Is(err, ErrStale) {
		t.Errorf("commit of the old attempt = %v, want ErrStale", err)
	}
	if _, err := e.store.Commit(ctx, batchOf(r, leased, false), nil); err != nil {
		t.Errorf("commit of the new attempt: %v", err)
	}
	if n := e.count(t, `SELECT count(DISTINCT attempt) FROM batch_ledger WHERE run_id = $1`, run.ID); n != 2 {
		t.Errorf("ledger shows %d attempts, want 2", n)
	}
}

func TestCancel(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	run := e.create(t, "k", 4, 1, 2)
	p1 := e.lease(t, run.ID, 1)
	r, parts, err := e.store.Cancel(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != StatusCancelled || len(parts) != 2 || parts[0].Status != PartitionRunning {
		t.Fatalf("Cancel = %+v, %+v", r, parts)
	}
	if _, err := e.store.Commit(ctx, batchOf(run, p1, false), nil); !errors.Is(err, ErrStale) {
		t.Errorf("commit on a cancelled run = %v, want ErrStale", err)
	}
	if r2, parts2, err := e.store.Cancel(ctx, run.ID); err != nil || r2.Status != StatusCancelled || len(parts2) != 0 {
		t.Errorf("second Cancel = %+v, %v, %v", r2, parts2, err)
	}

	done := e.create(t, "done", 1, 1, 1)
	if _, err := e.store.Commit(ctx, batchOf(done, e.lease(t, done.ID, 0), false), nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.Cancel(ctx, done.ID); !errors.Is(err, ErrState) {
		t.Errorf("Cancel of a completed run = %v, want ErrState", err)
	}
}

func TestUnknownRun(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	calls := map[string]error{}
	_, calls["Get"] = e.store.Get(ctx, 999)
	_, _, calls["Load"] = e.store.Load(ctx, 999, 0)
	_, calls["Failures"] = e.store.Failures(ctx, 999)
	_, _, calls["Retry"] = e.store.Retry(ctx, 999)
	_, _, calls["Cancel"] = e.store.Cancel(ctx, 999)
	_, calls["GetByKey"] = e.store.GetByKey(ctx, "test", "nope")
	for name, err := range calls {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s(999) = %v, want ErrNotFound", name, err)
		}
	}
}

func TestLeaseIsExclusive(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	run := e.create(t, "k", 4, 1, 1)
	ref := e.partition(t, run.ID, 0).Ref()

	p, err := e.store.Acquire(ctx, ref, "a#1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if p.LeaseOwner != "a#1" || !p.Leased || p.LeaseExpiresAt == nil {
		t.Fatalf("acquired partition = %+v", p)
	}
	stale := ref
	stale.TaskSeq = 3
	for name, try := range map[string]func() error{
		"another delivery": func() error { _, err := e.store.Acquire(ctx, ref, "b#1", time.Minute); return err },
		"a stale task":     func() error { _, err := e.store.Acquire(ctx, stale, "b#1", time.Minute); return err },
	} {
		if err := try(); !errors.Is(err, ErrLeased) {
			t.Errorf("%s: Acquire = %v, want ErrLeased", name, err)
		}
	}
	if err := e.store.Renew(ctx, ref, "b#1", time.Minute); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("Renew by a non-holder = %v, want ErrLeaseLost", err)
	}
	if err := e.store.Renew(ctx, ref, "a#1", time.Minute); err != nil {
		t.Errorf("Renew by the holder: %v", err)
	}
	// Releasing another's lease changes nothing; the holder's release frees it.
	if err := e.store.Release(ctx, ref, "b#1"); err != nil {
		t.Fatal(err)
	}
	if got := e.partition(t, run.ID, 0); got.LeaseOwner != "a#1" {
		t.Fatalf("a non-holder's release freed the lease: %+v", got)
	}
	if err := e.store.Release(ctx, ref, "a#1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Acquire(ctx, ref, "b#1", time.Minute); err != nil {
		t.Errorf("Acquire after release: %v", err)
	}
}

// lapse waits until the lease of partition idx has lapsed.
func (e *env) lapse(t *testing.T, runID int64, idx int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.partition(t, runID, idx).Leased {
		if time.Now().After(deadline) {
			t.Fatal("lease did not lapse")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLapsedLeaseFencesItsHolder(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	run := e.create(t, "k", 6, 1, 2)
	p0 := e.partition(t, run.ID, 0)
	zombie, err := e.store.Acquire(ctx, p0.Ref(), "zombie#1", time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	live, err := e.store.Acquire(ctx, e.partition(t, run.ID, 1).Ref(), "live#1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	e.lapse(t, run.ID, 0)

	// Same epoch: another delivery of the task may take a lapsed lease, and
	// the holder that lapsed can no longer commit or renew.
	dup, err := e.store.Acquire(ctx, p0.Ref(), "dup#1", time.Millisecond)
	if err != nil {
		t.Fatalf("Acquire of a lapsed lease: %v", err)
	}
	zb := batchOf(run, zombie, false)
	zb.Owner = "zombie#1"
	if _, err := e.store.Commit(ctx, zb, probeWrite(run.ID, 0)); !errors.Is(err, ErrStale) {
		t.Errorf("commit by the lapsed holder = %v, want ErrStale", err)
	}
	if err := e.store.Renew(ctx, zombie.Ref(), "zombie#1", time.Minute); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("renew by the lapsed holder = %v, want ErrLeaseLost", err)
	}
	e.lapse(t, run.ID, 0)

	// The takeover moves the lapsed chain to the next epoch and leaves the
	// live lease alone.
	taken, _, err := e.store.TakeOver(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(taken) != 1 || taken[0].Index != 0 || taken[0].Epoch != 1 || taken[0].LeaseOwner != "" {
		t.Fatalf("TakeOver = %+v, want partition 0 at epoch 1, unleased", taken)
	}
	if again, _, err := e.store.TakeOver(ctx, 10); err != nil || len(again) != 0 {
		t.Errorf("second TakeOver = %+v, %v; want nothing", again, err)
	}
	db := batchOf(run, dup, false)
	db.Owner = "dup#1"
	if _, err := e.store.Commit(ctx, db, probeWrite(run.ID, 0)); !errors.Is(err, ErrStale) {
		t.Errorf("commit of the old epoch = %v, want ErrStale", err)
	}
	if _, err := e.store.Acquire(ctx, p0.Ref(), "late#1", time.Minute); !errors.Is(err, ErrLeased) {
		t.Errorf("Acquire for the old epoch = %v, want ErrLeased", err)
	}
	if n := e.count(t, `SELECT count(*) FROM probe`); n != 0 {
		t.Errorf("fenced commits wrote %d rows", n)
	}

	// The new epoch's task takes the lease and commits; the live partition
	// was not touched.
	p, err := e.store.Acquire(ctx, taken[0].Ref(), "new#1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	nb := batchOf(run, p, false)
	nb.Owner = "new#1"
	if _, err := e.store.Commit(ctx, nb, probeWrite(run.ID, 0)); err != nil {
		t.Errorf("commit of the new epoch: %v", err)
	}
	if got := e.partition(t, run.ID, 1); got.Epoch != 0 || got.LeaseOwner != "live#1" || !reflect.DeepEqual(got.LeaseExpiresAt, live.LeaseExpiresAt) {
		t.Errorf("live partition changed: %+v -> %+v", live, got)
	}
}

func TestLeaseEndsWithHandoverAndCompletion(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	run := e.create(t, "k", 3, 1, 1)
	p := e.lease(t, run.ID, 0)
	res, err := e.store.Commit(ctx, batchOf(run, p, false), nil)
	if err != nil || res.Partition.LeaseOwner != testOwner || !res.Partition.Leased {
		t.Fatalf("commit without handover: %+v, %v; want the lease kept", res.Partition, err)
	}
	res, err = e.store.Commit(ctx, batchOf(run, res.Partition, true), nil)
	if err != nil || res.Partition.LeaseOwner != "" || res.Partition.LeaseExpiresAt != nil {
		t.Fatalf("handover commit: %+v, %v; want the lease given up", res.Partition, err)
	}
	p = e.lease(t, run.ID, 0)
	res, err = e.store.Commit(ctx, batchOf(run, p, false), nil)
	if err != nil || res.Partition.Status != PartitionCompleted || res.Partition.LeaseOwner != "" {
		t.Fatalf("last commit: %+v, %v; want completed and unleased", res.Partition, err)
	}
	if taken, _, err := e.store.TakeOver(ctx, 10); err != nil || len(taken) != 0 {
		t.Errorf("TakeOver = %+v, %v; want nothing", taken, err)
	}
}

// complete commits every batch of every partition of run, with batchOf's
// outcomes (positions divisible by 3 fail).
func (e *env) complete(t *testing.T, run Run) {
	t.Helper()
	for i := range run.Partitions {
		p := e.lease(t, run.ID, i)
		for p.Status == PartitionRunning {
			res, err := e.store.Commit(context.Background(), batchOf(run, p, false), nil)
			if err != nil {
				t.Fatal(err)
			}
			p = res.Partition
		}
	}
}

func TestRedriveRunsOnlyTheFailedItems(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	run := e.create(t, "k", 12, 2, 3) // partitions [0,4) [4,8) [8,12); 0, 3, 6, 9 fail
	if _, _, err := e.store.Redrive(ctx, run.ID); !errors.Is(err, ErrState) {
		t.Fatalf("redrive of a pending run = %v, want ErrState", err)
	}
	e.complete(t, run)
	before, _ := e.store.Get(ctx, run.ID)
	if before.Status != StatusCompleted || before.Failed != 4 {
		t.Fatalf("run before the redrive = %+v", before)
	}

	r, parts, err := e.store.Redrive(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != StatusRunning || r.Attempt != 2 || r.Redrives != 1 || r.FinishedAt != nil || r.Processed != 12 {
		t.Errorf("redriven run = %+v", r)
	}
	if len(parts) != 3 {
		t.Fatalf("redriven partitions = %+v, want all three (each has a failed item)", parts)
	}
	for _, p := range parts {
		if p.Cursor != p.StartPos || p.Redrive != 1 || p.Attempt != 2 || p.TaskSeq != p.Seq {
			t.Errorf("redriven partition = %+v", p)
		}
	}
	if got, err := e.store.FailedItems(ctx, run.ID, 4, 8, 10); err != nil || len(got) != 1 || got[0].Pos != 6 {
		t.Errorf("FailedItems [4, 8) = %+v, %v; want position 6", got, err)
	}

	// Partition 0's pass: items 0 and 3 succeed now, in one batch of two
	// that ends the partition.
	p := e.lease(t, run.ID, 0)
	b := batchOf(r, p, false)
	b.Redrive, b.To = 1, p.EndPos
	b.Outcomes = []Outcome{{Pos: 0, OK: true, Attempts: 1}, {Pos: 3, OK: true, Attempts: 1}}
	res, err := e.store.Commit(ctx, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Partition.Status != PartitionCompleted {
		t.Errorf("partition after its redrive = %+v", res.Partition)
	}
	after, _ := e.store.Get(ctx, run.ID)
	if after.Processed != 12 || after.Succeeded != before.Succeeded+2 || after.Failed != 2 || after.AttemptFailed != 0 {
		t.Errorf("counters after the redrive batch: %+v", after)
	}
	// A redrive batch may only touch items that had failed.
	p1 := e.lease(t, run.ID, 1)
	bad := batchOf(r, p1, false)
	bad.Redrive, bad.To = 1, p1.EndPos
	bad.Outcomes = []Outcome{{Pos: 5, OK: true, Attempts: 1}}
	if _, err := e.store.Commit(ctx, bad, nil); err == nil || !strings.Contains(err.Error(), "had failed") {
		t.Errorf("redrive batch over an item that had not failed = %v, want a refusal", err)
	}
	if n := e.count(t, `SELECT count(*) FROM batch_ledger WHERE run_id = $1 AND redrive = 1`, run.ID); n != 1 {
		t.Errorf("%d redrive ledger rows, want 1", n)
	}

	done := e.create(t, "clean", 2, 2, 1)
	for _, p := range []Partition{e.lease(t, done.ID, 0)} {
		b := batchOf(done, p, false)
		b.Outcomes = []Outcome{{Pos: 0, OK: true}, {Pos: 1, OK: true}}
		if _, err := e.store.Commit(ctx, b, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := e.store.Redrive(ctx, done.ID); !errors.Is(err, ErrState) {
		t.Errorf("redrive of a run without failures = %v, want ErrState", err)
	}
}

func TestMaxFailures(t *testing.T) {
	tests := []struct {
		items   int64
		percent float64
		total   int64
		want    int64 // -1: no limit
	}{
		{0, 0, 1000, -1},
		{50, 0, 1000, 50},
		{0, 10, 1000, 100},
		{0, 10, 5, 0}, // one failure of five is more than 10 %
		{50, 10, 1000, 50},
		{500, 10, 1000, 100},
		{0, 100, 7, 7},
		{0, 4.6, 1500, 69}, // not 68: 4.6 * 1500 / 100 is 68.999... in floating point
		{0, 18.4, 375, 69},
	}
	for _, tt := range tests {
		got := NewRun{MaxFailedItems: tt.items, MaxFailedPercent: tt.percent}.maxFailures(tt.total)
		if (got == nil) != (tt.want < 0) || (got != nil && *got != tt.want) {
			t.Errorf("limit of %d items, %g%% of %d = %v, want %d", tt.items, tt.percent, tt.total, got, tt.want)
		}
	}
	// A limit frozen by an earlier run is kept as it is, 0 included.
	for _, frozen := range []int64{0, 7} {
		got := NewRun{MaxFailedItems: 50, MaxFailedPercent: 10, FailureLimit: &frozen}.maxFailures(1000)
		if got == nil || *got != frozen {
			t.Errorf("frozen limit %d = %v", frozen, got)
		}
	}
}

func TestFailureThresholdFailsTheRunEarly(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	run, _, err := e.store.CreateRun(ctx, NewRun{Job: "test", RunKey: "k", BatchSize: 3, Partitions: 2,
		Keys: keys(12), MaxFailedItems: 1})
	if err != nil {
		t.Fatal(err)
	}
	if run.MaxFailures == nil || *run.MaxFailures != 1 {
		t.Fatalf("max failures = %v, want 1", run.MaxFailures)
	}
	p1 := e.lease(t, run.ID, 1)
	// Batch [0, 3) fails position 0 (batchOf fails multiples of 3): within the limit.
	res, err := e.store.Commit(ctx, batchOf(run, e.lease(t, run.ID, 0), false), nil)
	if err != nil || res.RunFailed {
		t.Fatalf("first commit = %+v, %v", res, err)
	}
	// Batch [3, 6) fails position 3: two failures, one more than allowed.
	res, err = e.store.Commit(ctx, batchOf(run, res.Partition, false), nil)
	if err != nil || !res.RunFailed || res.Partition.Status == PartitionRunning {
		t.Fatalf("second commit = %+v, %v; want the run failed", res, err)
	}
	r, _ := e.store.Get(ctx, run.ID)
	if r.Status != StatusFailed || r.Processed != 6 || r.Failed != 2 ||
		!strings.Contains(r.LastError, "failure threshold exceeded: 2 items failed in attempt 1, more than the 1 allowed; last error: boom") {
		t.Errorf("run = %+v", r)
	}
	if _, err := e.store.Commit(ctx, batchOf(run, p1, false), nil); !errors.Is(err, ErrStale) {
		t.Errorf("commit on the other partition after the threshold = %v, want ErrStale", err)
	}
	// A retry starts the count of the new attempt from zero.
	r, _, err = e.store.Retry(ctx, run.ID)
	if err != nil || r.AttemptFailed != 0 || r.Failed != 2 {
		t.Fatalf("retry = %+v, %v", r, err)
	}
}

func TestThresholdDoesNotFailTheCommitThatCompletesTheRun(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	run, _, err := e.store.CreateRun(ctx, NewRun{Job: "test", RunKey: "k", BatchSize: 4, Partitions: 1,
		Keys: keys(4), MaxFailedItems: 1})
	if err != nil {
		t.Fatal(err)
	}
	// One batch of the whole run, positions 0 and 3 failing: over the
	// limit, but nothing is left to stop; the failures stay quarantined.
	res, err := e.store.Commit(ctx, batchOf(run, e.lease(t, run.ID, 0), false), nil)
	if err != nil || !res.RunCompleted || res.RunFailed {
		t.Fatalf("commit = %+v, %v; want the run completed", res, err)
	}
	if r, _ := e.store.Get(ctx, run.ID); r.Status != StatusCompleted || r.Failed != 2 {
		t.Errorf("run = %+v", r)
	}
}

func TestTakeOverFailsAPartitionThatKeepsLosingItsWorker(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	run := e.create(t, "k", 4, 2, 1)
	// The holder of each epoch dies before it commits.
	die := func() {
		t.Helper()
		if _, err := e.store.Acquire(ctx, e.partition(t, run.ID, 0).Ref(), "doomed#1", time.Millisecond); err != nil {
			t.Fatal(err)
		}
		e.lapse(t, run.ID, 0)
	}
	for want := 1; want <= 2; want++ {
		die()
		taken, failed, err := e.store.TakeOver(ctx, 2)
		if err != nil || failed != 0 || len(taken) != 1 || taken[0].Takeovers != want {
			t.Fatalf("takeover %d = %+v, %d failed, %v", want, taken, failed, err)
		}
	}
	// A commit is progress: the count starts again.
	p := e.lease(t, run.ID, 0)
	res, err := e.store.Commit(ctx, batchOf(run, p, false), nil)
	if err != nil || res.Partition.Takeovers != 0 {
		t.Fatalf("commit = %+v, %v; want takeovers reset", res.Partition, err)
	}
	if err := e.store.Release(ctx, p.Ref(), testOwner); err != nil {
		t.Fatal(err)
	}
	for want := 1; want <= 2; want++ {
		die()
		if taken, failed, err := e.store.TakeOver(ctx, 2); err != nil || failed != 0 || len(taken) != 1 {
			t.Fatalf("takeover %d after the commit = %+v, %d failed, %v", want, taken, failed, err)
		}
	}
	die()
	taken, failed, err := e.store.TakeOver(ctx, 2)
	if err != nil || failed != 1 || len(taken) != 0 {
		t.Fatalf("third takeover without progress = %+v, %d failed, %v; want the partition failed", taken, failed, err)
	}
	r, _ := e.store.Get(ctx, run.ID)
	if r.Status != StatusFailed || !strings.Contains(r.LastError, "partition 0: its batch at position 2 lost its worker 3 times in a row") {
		t.Errorf("run = %+v", r)
	}
	if _, parts, err := e.store.Retry(ctx, run.ID); err != nil || len(parts) != 1 || parts[0].Cursor != 2 {
		t.Errorf("retry = %+v, %v; want the partition resumed at its checkpoint", parts, err)
	}
}
