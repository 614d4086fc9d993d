package tasks

import (
	"context"
	"errors"
	"time"

	"github.com/syncworker/syncworker/internal/checkpoint"
)

// ErrUnknownJob means no ETL job of that name is defined.
var ErrUnknownJob = errors.New("unknown job")

// ETLOptions describe an ETL run to start.
type ETLOptions struct {
	// Params are the run's parameters: exactly the job's declared params.
	// They are the run's identity: the same parameters find the same
	// unfinished run.
	Params map[string]string
	// Budget overrides the time budget of each attempt of a new run; 0
	// means the job's timeout, else etl.default_timeout_seconds.
	Budget time.Duration
	// Partitions overrides the job's partitions for a new run; 0 means the
	// job's. Only a source that gives a total can be split.
	Partitions int
}

// How says what StartETL did.
type How string

// What StartETL can do.
const (
	// Created: a new run was created.
	Created How = "created"
	// Found: the job has an active run with these parameters; its chains
	// were enqueued again (which changes nothing where they exist).
	Found How = "found"
	// Resumed: the job's last run with these parameters had stopped
	// (failed or timed out); it was retried from its checkpoints.
	Resumed How = "resumed"
)

// Started is the run StartETL started, found or resumed.
type Started struct {
	Run checkpoint.Run `json:"run"`
	How How            `json:"how"`
}

// DryRun is what a dry run of an ETL job found: the pages it fetched and
// checked, and what a run would load. Nothing is written.
type DryRun struct {
	Job    string            `json:"job"`
	Params map[string]string `json:"params"`
	// Pages and Records are what was fetched; Keys the distinct record
	// keys among them (what a run would land).
	Pages   int64 `json:"pages"`
	Records int64 `json:"records"`
	Keys    int64 `json:"keys"`
	// Total is the source's total, when it gives one.
	Total *int64 `json:"total,omitempty"`
	// Warnings are what a run would notice, such as duplicate keys.
	Warnings   []string `json:"warnings,omitempty"`
	DurationMS int64    `json:"duration_ms"`
}

// StartETL starts a run of the ETL job named job, or finds the run that its
// parameters already have: an active one is returned (its chains enqueued
// again), a failed or timed-out one is resumed; after a completed or
// cancelled one a new run is created. Unknown jobs fail with ErrUnknownJob,
// bad parameters with ErrInput, and a source that cannot be read with its
// classified error (see package fault); nothing is written then.
func (c *Control) StartETL(ctx context.Context, job string, opts ETLOptions) (Started, error) {
	return Started{}, errors.New("not implemented yet")
}

// DryRunETL fetches and checks every page of job as a run with opts would,
// and reports what it would load; it writes nothing.
func (c *Control) DryRunETL(ctx context.Context, job string, opts ETLOptions) (DryRun, error) {
	return DryRun{}, errors.New("not implemented yet")
}
