package tasks

import (
	"strings"
	"testing"
)

func TestDecodePayload(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Payload
		wantErr string
	}{
		{name: "valid", in: `{"run":7,"partition":2,"attempt":1,"seq":40}`, want: Payload{Run: 7, Partition: 2, Attempt: 1, Seq: 40}},
		{name: "with epoch", in: `{"run":7,"partition":2,"attempt":1,"epoch":3,"seq":40}`, want: Payload{Run: 7, Partition: 2, Attempt: 1, Epoch: 3, Seq: 40}},
		{name: "negative epoch", in: `{"run":7,"partition":2,"attempt":1,"epoch":-1,"seq":40}`, wantErr: "epoch -1"},
		{name: "field order does not matter", in: `{"seq":0,"attempt":3,"partition":0,"run":1}`, want: Payload{Run: 1, Attempt: 3}},
		{name: "empty", in: ``, wantErr: "decode payload"},
		{name: "not json", in: `run=7`, wantErr: "decode payload"},
		{name: "array", in: `[1,2,3,4]`, wantErr: "decode payload"},
		{name: "missing seq", in: `{"run":7,"partition":2,"attempt":1}`, wantErr: "needs run, partition, attempt and seq"},
		{name: "null field", in: `{"run":null,"partition":2,"attempt":1,"seq":0}`, wantErr: "needs run"},
		{name: "unknown field", in: `{"run":7,"partition":2,"attempt":1,"seq":0,"evil":true}`, wantErr: "unknown field"},
		{name: "string run", in: `{"run":"7","partition":2,"attempt":1,"seq":0}`, wantErr: "decode payload"},
		{name: "fractional seq", in: `{"run":7,"partition":2,"attempt":1,"seq":1.5}`, wantErr: "decode payload"},
		{name: "zero run", in: `{"run":0,"partition":2,"attempt":1,"seq":0}`, wantErr: "run 0"},
		{name: "negative partition", in: `{"run":7,"partition":-1,"attempt":1,"seq":0}`, wantErr: "partition -1"},
		{name: "zero attempt", in: `{"run":7,"partition":0,"attempt":0,"seq":0}`, wantErr: "attempt 0"},
		{name: "negative seq", in: `{"run":7,"partition":0,"attempt":1,"seq":-3}`, wantErr: "seq -3"},
		{name: "overflowing run", in: `{"run":99999999999999999999,"partition":0,"attempt":1,"seq":0}`, wantErr: "decode payload"},
		{name: "trailing data", in: `{"run":7,"partition":0,"attempt":1,"seq":0}{}`, wantErr: "data after"},
		{name: "oversized", in: `{"run":7,"partition":0,"attempt":1,"seq":0,"pad":"` + strings.Repeat("x", 2000) + `"}`, wantErr: "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodePayload([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("DecodePayload(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodePayload(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("DecodePayload(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestPayloadRoundTripAndID(t *testing.T) {
	p := Payload{Run: 12, Partition: 3, Attempt: 2, Epoch: 4, Seq: 9}
	got, err := DecodePayload(p.Encode())
	if err != nil || got != p {
		t.Fatalf("round trip = %+v, %v; want %+v", got, err, p)
	}
	if id := p.TaskID(); id != "batch:12:3:2:4:9" {
		t.Errorf("TaskID = %q, want batch:12:3:2:4:9", id)
	}
	if n := p.Next(); n.Seq != 10 || n.TaskID() != "batch:12:3:2:4:10" {
		t.Errorf("Next = %+v (%s)", n, n.TaskID())
	}
	// The attempt is part of the ID, so a retried run does not collide with
	// an archived task of its earlier attempt; the epoch, so a takeover does
	// not collide with the dead holder's task.
	q := p
	q.Attempt++
	if q.TaskID() == p.TaskID() {
		t.Errorf("attempts %d and %d share the task ID %s", p.Attempt, q.Attempt, p.TaskID())
	}
	q = p
	q.Epoch++
	if q.TaskID() == p.TaskID() {
		t.Errorf("epochs %d and %d share the task ID %s", p.Epoch, q.Epoch, p.TaskID())
	}
}
