package tasks

import "testing"

// BenchmarkPayloadEncode encodes a task payload, as every enqueue does.
func BenchmarkPayloadEncode(b *testing.B) {
	p := Payload{Run: 123456, Partition: 3, Attempt: 2, Epoch: 7, Seq: 4021}
	b.ReportAllocs()
	b.SetBytes(int64(len(p.Encode())))
	for b.Loop() {
		_ = p.Encode()
	}
}

// BenchmarkPayloadDecode decodes and checks a task payload, as every
// delivery does.
func BenchmarkPayloadDecode(b *testing.B) {
	raw := Payload{Run: 123456, Partition: 3, Attempt: 2, Epoch: 7, Seq: 4021}.Encode()
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := DecodePayload(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPayloadTaskID derives a task's ID, as every enqueue does.
func BenchmarkPayloadTaskID(b *testing.B) {
	p := Payload{Run: 123456, Partition: 3, Attempt: 2, Epoch: 7, Seq: 4021}
	b.ReportAllocs()
	for b.Loop() {
		_ = p.TaskID()
	}
}
