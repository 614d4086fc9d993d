// Package checkpoint owns the run model in Postgres: runs, their partitions
// (the checkpoints of the chains), their items and the batch ledger. It holds
// the one operation that moves a run forward, Commit, which writes a batch's
// data, item outcomes, ledger row and a compare-and-set advance of the
// partition's checkpoint in a single transaction, and the run state machine
// around it.
package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Status is the state of a run.
type Status string

// The states of a run. A run is created pending, is running once a worker
// picks up one of its batches, and ends completed, failed, cancelled or
// timed_out (an attempt used up its time budget); a failed, cancelled or
// timed-out run may be retried, which makes it running again. An operator
// may pause a pending or running run, which stops it at a batch boundary
// until it is resumed (or cancelled).
const (
	StatusPending   Status = "pending"
	StatusRunning   Status = "running"
	StatusPaused    Status = "paused"
	StatusCompleted Status = "completed"
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled"
	StatusTimedOut  Status = "timed_out"
)

// Active reports whether work of a run in this state goes on.
func (s Status) Active() bool { return s == StatusPending || s == StatusRunning }

// Ended reports whether a run in this state has stopped for good or until retried.
func (s Status) Ended() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCancelled || s == StatusTimedOut
}

// Resumable reports whether a run in this state can be retried from its checkpoints.
func (s Status) Resumable() bool {
	return s == StatusFailed || s == StatusCancelled || s == StatusTimedOut
}

// Unit is what the positions of a run's partitions count.
type Unit string

// The units of a run.
const (
	// UnitItems: the positions are the run's items (run_items), such as
	// the symbols of a daily sync.
	UnitItems Unit = "items"
	// UnitPages: the positions are the pages of a paginated source; a run
	// of pages has no items, and its counters count records.
	UnitPages Unit = "pages"
)

// PartitionStatus is the state of one partition of a run.
type PartitionStatus string

// The states of a partition.
const (
	PartitionRunning   PartitionStatus = "running"
	PartitionPaused    PartitionStatus = "paused"
	PartitionCompleted PartitionStatus = "completed"
	PartitionFailed    PartitionStatus = "failed"
	PartitionCancelled PartitionStatus = "cancelled"
	PartitionTimedOut  PartitionStatus = "timed_out"
)

// ItemStatus is the outcome of one item of a run.
type ItemStatus string

// The outcomes of an item.
const (
	ItemPending   ItemStatus = "pending"
	ItemSucceeded ItemStatus = "succeeded"
	ItemFailed    ItemStatus = "failed"
)

// Errors callers tell apart with errors.Is.
var (
	// ErrNotFound means the run does not exist.
	ErrNotFound = errors.New("not found")
	// ErrStale means a batch's compare-and-set matched no partition: another
	// delivery of the batch committed it first, or the chain moved on (a
	// newer attempt, a cancelled run). Nothing was written.
	ErrStale = errors.New("stale batch")
	// ErrState means the operation does not apply to the run in its current state.
	ErrState = errors.New("invalid run state")
	// ErrOverlap means a start that allows no overlap (NewRun.Alone,
	// RetryAlone, CheckAlone) started nothing: a run of its job for another
	// run key is unfinished. The error is an *OverlapError, which names that
	// run.
	ErrOverlap = errors.New("another run of the job is unfinished")
	// ErrLeased means another task holds the partition's lease, or the task
	// asking is no longer the one that owns the chain.
	ErrLeased = errors.New("partition is leased by another task")
	// ErrLeaseLost means the lease a task held was taken from it: it lapsed
	// and the chain was handed to a new task.
	ErrLeaseLost = errors.New("lease lost")
)

// Run is one run of a job, as stored.
type Run struct {
	ID     int64           `json:"id"`
	Job    string          `json:"job"`
	RunKey string          `json:"run_key"`
	Params json.RawMessage `json:"params"`
	Status Status          `json:"status"`
	// Unit is what the positions of the run's partitions count; a run of
	// pages counts records in Total, Processed, Succeeded and Failed.
	Unit Unit `json:"unit"`
	// Generation tells apart the runs of one job and run key: an ETL job
	// with the same parameters is pulled again once its last run completed.
	Generation int   `json:"generation"`
	BatchSize  int   `json:"batch_size"`
	Partitions int   `json:"partitions"`
	Total      int64 `json:"total"`
	Processed  int64 `json:"processed"`
	Succeeded  int64 `json:"succeeded"`
	Failed     int64 `json:"failed"`
	Records    int64 `json:"records"`
	Attempt    int   `json:"attempt"`
	// MaxFailures is how many items one attempt may fail before the run
	// fails early; nil means no limit. AttemptFailed counts the current
	// attempt's failures.
	MaxFailures   *int64 `json:"max_failures"`
	AttemptFailed int64  `json:"attempt_failed"`
	// Redrives counts the passes over the run's failed items after it completed.
	Redrives int `json:"redrives"`
	// Batches is the number of batches committed, over every attempt (the
	// pages of a run of pages).
	Batches int64 `json:"batches"`
	// BudgetMS is the time budget of one attempt in milliseconds, nil for
	// none; an attempt that uses it up stops the run timed_out.
	BudgetMS *int64 `json:"budget_ms"`
	// AttemptStartedAt is when the current attempt started running.
	AttemptStartedAt *time.Time `json:"attempt_started_at"`
	// DurationMS is the run's running time summed over its attempts,
	// including the current one so far.
	DurationMS int64 `json:"duration_ms"`
	// SourceTotal is the total the source reported last (a run of pages
	// whose source gives one); a change from Total is drift.
	SourceTotal *int64 `json:"source_total,omitempty"`
	// Warnings are what the run noticed on its way, such as drift.
	Warnings []string `json:"warnings,omitempty"`
	// KeyPrefix goes before the key of each record a run of pages lands,
	// frozen when it was created: its values of its job's key_params (see
	// etl.Job.KeyPrefix), or empty.
	KeyPrefix  string     `json:"key_prefix,omitempty"`
	LastError  string     `json:"last_error,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
}

// Partition is the checkpoint of one chain of a run: the positions
// [StartPos, EndPos) of the run's items are its work, Cursor the next position
// to process, Seq the number of batches committed, and (Attempt, Epoch,
// TaskSeq) the identity of the task that owns the chain now.
type Partition struct {
	RunID    int64           `json:"run_id"`
	Index    int             `json:"partition"`
	Status   PartitionStatus `json:"status"`
	Attempt  int             `json:"attempt"`
	StartPos int64           `json:"start_pos"`
	EndPos   int64           `json:"end_pos"`
	Cursor   int64           `json:"cursor"`
	Seq      int64           `json:"seq"`
	TaskSeq  int64           `json:"task_seq"`
	// Redrive is the redrive pass the partition is in; in a pass (above 0)
	// its batches run only the items of its range that had failed.
	Redrive int `json:"redrive"`
	// Epoch counts the takeovers of the chain: a sweeper that finds the
	// lease lapsed bumps it, which fences off the task that held it.
	Epoch int64 `json:"epoch"`
	// Takeovers counts the takeovers since the partition's last commit.
	Takeovers int `json:"takeovers"`
	// PageToken is the token of the next page of a cursor-style source.
	PageToken string `json:"page_token,omitempty"`
	// LeaseOwner is the holder of the lease, empty when none holds it;
	// Leased is true while the lease has not lapsed.
	LeaseOwner     string     `json:"lease_owner,omitempty"`
	Leased         bool       `json:"leased"`
	LeaseExpiresAt *time.Time `json:"lease_expires_at,omitempty"`
	LastError      string     `json:"last_error,omitempty"`
	LastProgressAt time.Time  `json:"last_progress_at"`
}

// Remaining returns the number of positions the partition has left.
func (p Partition) Remaining() int64 { return p.EndPos - p.Cursor }

// Open reports whether the partition is an open walk of pages, whose end is
// not known until its last page (see NewRun.Open).
func (p Partition) Open() bool { return p.EndPos >= openEnd }

// Ref returns the identity of the task that owns the partition's chain now.
func (p Partition) Ref() TaskRef {
	return TaskRef{RunID: p.RunID, Partition: p.Index, Attempt: p.Attempt, Epoch: p.Epoch, TaskSeq: p.TaskSeq}
}

// TaskRef identifies a task of a partition's chain: the run's attempt, the
// chain's epoch (its takeovers) and the seq the chain had when the task was
// created. A partition is owned by exactly one TaskRef at a time.
type TaskRef struct {
	RunID     int64
	Partition int
	Attempt   int
	Epoch     int64
	TaskSeq   int64
}

// Before reports whether r is an older task of the chain than o: of an
// earlier attempt, epoch or seq.
func (r TaskRef) Before(o TaskRef) bool {
	if r.Attempt != o.Attempt {
		return r.Attempt < o.Attempt
	}
	if r.Epoch != o.Epoch {
		return r.Epoch < o.Epoch
	}
	return r.TaskSeq < o.TaskSeq
}

// Item is one unit of a run's frozen work, such as a symbol of a stock run.
type Item struct {
	Pos      int64      `json:"pos"`
	Key      string     `json:"key"`
	Status   ItemStatus `json:"status"`
	Attempts int        `json:"attempts"`
	Error    string     `json:"error,omitempty"`
}

// Store reads and writes the run model through a pool.
type Store struct {
	pool *pgxpool.Pool
}

// New returns a Store on pool.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

func notFound(id int64) error { return fmt.Errorf("run %d: %w", id, ErrNotFound) }
