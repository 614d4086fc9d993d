// Package tasks holds the batch task of syncworker: its payload and
// deterministic ID, the idempotent enqueue of a chain's next task, the
// handler that runs batches of a partition, the jobs it runs (the daily stock
// sync), and the operations that start, retry and cancel runs.
package tasks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/syncworker/syncworker/internal/checkpoint"
)

// TypeBatch is the asynq task type of a batch task.
const TypeBatch = "sync:batch"

// Queue is the asynq queue batch tasks go to.
const Queue = "sync"

// maxPayload bounds the size of a payload; a real one is under 100 bytes.
const maxPayload = 1 << 10

// Payload names the chain and the place in it that a batch task owns: the
// partition of a run, the run's attempt, the chain's epoch (its takeovers)
// and the seq the chain had when the task was created. The task runs the
// partition's batches from its checkpoint for as long as it owns the chain.
type Payload struct {
	Run       int64 `json:"run"`
	Partition int   `json:"partition"`
	Attempt   int   `json:"attempt"`
	Epoch     int64 `json:"epoch"`
	Seq       int64 `json:"seq"`
}

// TaskID is the task's deterministic ID. Two enqueues of the same chain
// position collide (asynq.ErrTaskIDConflict) and so create one task. The
// attempt is part of it so that a retried run is not swallowed by an archived
// task of its earlier attempt, and the epoch so that a takeover is not
// swallowed by the dead holder's task, which asynq keeps active until its
// own lease runs out.
func (p Payload) TaskID() string {
	return fmt.Sprintf("batch:%d:%d:%d:%d:%d", p.Run, p.Partition, p.Attempt, p.Epoch, p.Seq)
}

// Ref returns the chain identity the payload names.
func (p Payload) Ref() checkpoint.TaskRef {
	return checkpoint.TaskRef{RunID: p.Run, Partition: p.Partition, Attempt: p.Attempt, Epoch: p.Epoch, TaskSeq: p.Seq}
}

// Next returns the payload of the chain's next task after a handover.
func (p Payload) Next() Payload {
	p.Seq++
	return p
}

// Encode returns the payload as JSON.
func (p Payload) Encode() []byte {
	b, _ := json.Marshal(p) // cannot fail: five numbers
	return b
}

// DecodePayload parses and checks a task payload. Every field but epoch is
// required (a task of a worker from before the lease has none: epoch 0),
// unknown fields are refused, and values must be in range.
func DecodePayload(b []byte) (Payload, error) {
	if len(b) > maxPayload {
		return Payload{}, fmt.Errorf("payload of %d bytes is larger than %d", len(b), maxPayload)
	}
	var raw struct {
		Run       *int64 `json:"run"`
		Partition *int   `json:"partition"`
		Attempt   *int   `json:"attempt"`
		Epoch     int64  `json:"epoch"`
		Seq       *int64 `json:"seq"`
	}
	if err := decodeStrict(b, &raw); err != nil {
		return Payload{}, fmt.Errorf("decode payload: %w", err)
	}
	switch {
	case raw.Run == nil || raw.Partition == nil || raw.Attempt == nil || raw.Seq == nil:
		return Payload{}, errors.New("payload needs run, partition, attempt and seq")
	case *raw.Run < 1:
		return Payload{}, fmt.Errorf("payload run %d: want a run id of 1 or more", *raw.Run)
	case *raw.Partition < 0:
		return Payload{}, fmt.Errorf("payload partition %d: want 0 or more", *raw.Partition)
	case *raw.Attempt < 1:
		return Payload{}, fmt.Errorf("payload attempt %d: want 1 or more", *raw.Attempt)
	case raw.Epoch < 0:
		return Payload{}, fmt.Errorf("payload epoch %d: want 0 or more", raw.Epoch)
	case *raw.Seq < 0:
		return Payload{}, fmt.Errorf("payload seq %d: want 0 or more", *raw.Seq)
	}
	return Payload{Run: *raw.Run, Partition: *raw.Partition, Attempt: *raw.Attempt, Epoch: raw.Epoch, Seq: *raw.Seq}, nil
}

// decodeStrict decodes the one JSON object of b into v, refusing unknown
// fields and anything after the object.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON object")
	}
	return nil
}
