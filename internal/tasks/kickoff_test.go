package tasks

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDecodeKickoff(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	daily := Kickoff{Entry: "daily", Job: JobDailySync, Fire: time.Date(2026, 11, 20, 18, 30, 0, 0, ny), Date: "2026-11-20", Overlap: "skip"}
	if id := daily.TaskID(); id != "kickoff:daily:20261120T233000Z" {
		t.Errorf("TaskID = %s", id)
	}
	holiday := true
	daily.Holiday = &holiday
	b, _ := json.Marshal(daily)
	got, err := DecodeKickoff(b)
	if err != nil || !got.Fire.Equal(daily.Fire) || got.TaskID() != daily.TaskID() || got.Date != daily.Date ||
		got.Holiday == nil || !*got.Holiday {
		t.Errorf("round trip of %s = %+v, %v", b, got, err)
	}
	etl := Kickoff{Entry: "p", Job: "patients", Fire: daily.Fire, Params: map[string]string{"region": "eu"}, Overlap: "allow"}
	b, _ = json.Marshal(etl)
	if got, err := DecodeKickoff(b); err != nil || !reflect.DeepEqual(got.Params, etl.Params) {
		t.Errorf("round trip of %s = %+v, %v", b, got, err)
	}

	tests := []struct{ name, in, wantErr string }{
		{"empty", ``, "decode kickoff payload"},
		{"unknown field", `{"entry":"e","job":"x","fire":"2026-11-20T23:30:00Z","overlap":"skip","evil":1}`, "unknown field"},
		{"trailing data", `{"entry":"e","job":"x","fire":"2026-11-20T23:30:00Z","overlap":"skip"}{}`, "data after"},
		{"no entry", `{"job":"x","fire":"2026-11-20T23:30:00Z","overlap":"skip"}`, "needs entry, job and fire"},
		{"bad overlap", `{"entry":"e","job":"x","fire":"2026-11-20T23:30:00Z","overlap":"never"}`, `overlap "never"`},
		{"daily without a date", `{"entry":"e","job":"daily-sync","fire":"2026-11-20T23:30:00Z","overlap":"skip"}`, `date ""`},
		{"daily with params", `{"entry":"e","job":"daily-sync","fire":"2026-11-20T23:30:00Z","date":"2026-11-20","params":{"a":"b"},"overlap":"skip"}`, "has params"},
		{"etl with a date", `{"entry":"e","job":"x","fire":"2026-11-20T23:30:00Z","date":"2026-11-20","overlap":"skip"}`, "only daily-sync takes one"},
		{"etl with holiday", `{"entry":"e","job":"x","fire":"2026-11-20T23:30:00Z","holiday":false,"overlap":"skip"}`, "has holiday; only daily-sync"},
	}
	for _, tt := range tests {
		if _, err := DecodeKickoff([]byte(tt.in)); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: DecodeKickoff(%s) = %v, want an error with %q", tt.name, tt.in, err, tt.wantErr)
		}
	}
}
