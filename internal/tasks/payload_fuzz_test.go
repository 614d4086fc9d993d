package tasks

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

// FuzzDecodePayload feeds DecodePayload arbitrary bytes. It never panics;
// an error says what is wrong; an accepted payload was at most maxPayload
// bytes, encodes deterministically, decodes from its encoding to the same
// value, and has a deterministic task ID that its successor does not share.
//
// CI runs it briefly (scripts/dev test); run it longer with
//
//	go test -run '^$' -fuzz '^FuzzDecodePayload$' -fuzztime 2000000x ./internal/tasks
func FuzzDecodePayload(f *testing.F) {
	for _, p := range []Payload{
		{Run: 1, Attempt: 1},
		{Run: 7, Partition: 2, Attempt: 3, Seq: 40},
		{Run: math.MaxInt64, Partition: math.MaxInt32, Attempt: math.MaxInt32, Seq: math.MaxInt64},
	} {
		f.Add(p.Encode())
	}
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `"run"`, `run=1`,
		`{"run":1,"partition":0,"attempt":1,"seq":0}`,
		`{"run":1,"partition":0,"attempt":1,"seq":0,"evil":true}`,
		`{"run":1,"partition":0,"attempt":1,"seq":0}{}`,
		`{"run":-1,"partition":-1,"attempt":0,"seq":-1}`,
		`{"run":1e3,"partition":0.5,"attempt":"1","seq":null}`,
		`{"RUN":1,"Partition":0,"attempt":1,"seq":0}`,
		`{"run":1,"run":2,"partition":0,"attempt":1,"seq":0}`,
		`{"run":99999999999999999999,"partition":0,"attempt":1,"seq":0}`,
		`{"run":1,"partition":0,"attempt":1,"seq":0,"pad":"` + strings.Repeat("x", maxPayload) + `"}`,
	} {
		f.Add([]byte(s))
	}

	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePayload(b)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("DecodePayload failed with an empty error")
			}
			return
		}
		if len(b) > maxPayload {
			t.Fatalf("DecodePayload accepted %d bytes, more than %d", len(b), maxPayload)
		}
		enc := p.Encode()
		if !bytes.Equal(enc, p.Encode()) {
			t.Fatalf("Encode of %+v is not deterministic", p)
		}
		q, err := DecodePayload(enc)
		if err != nil || q != p {
			t.Fatalf("%q decoded to %+v, whose encoding %s decodes to %+v, %v", b, p, enc, q, err)
		}
		if !bytes.Equal(q.Encode(), enc) {
			t.Fatalf("re-encoding %+v gives %s, then %s", p, enc, q.Encode())
		}
		id := p.TaskID()
		if id == "" || id != p.TaskID() || id != q.TaskID() {
			t.Fatalf("TaskID of %+v is not deterministic: %q, %q, %q", p, id, p.TaskID(), q.TaskID())
		}
		if p.Next().TaskID() == id {
			t.Fatalf("%+v and its successor share the task ID %q", p, id)
		}
	})
}
