package tasks_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/simulator"
	"github.com/syncworker/syncworker/internal/tasks"
)

// payloadWith returns p's encoding changed by change, which gets it as a
// map: the cases below name only the field they break, whatever the others.
func payloadWith(t *testing.T, p tasks.Payload, change func(map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(p.Encode(), &m); err != nil {
		t.Fatal(err)
	}
	change(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A bad task delivered by Redis to a real worker (asynq server, router,
// handler) is archived at once with its reason, without a retry, and
// changes nothing in Postgres; the worker goes on serving good tasks.
func TestBadTasksAreArchivedByAWorkerWithTheirReason(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 5})
	h.StartWorker("w")
	done := h.StartDailySync(date, 5, 1)
	if r := h.WaitEnded(done.ID, 30*time.Second); r.Status != checkpoint.StatusCompleted {
		t.Fatalf("run = %+v, want completed", r)
	}
	before := h.Fingerprint()

	// The payload of a real chain, whatever fields a payload has; each case
	// breaks one of them.
	_, part, err := h.Store.Load(context.Background(), done.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	valid := tasks.ChainPayload(part)
	set := func(key string, v any) []byte {
		return payloadWith(t, valid, func(m map[string]any) { m[key] = v })
	}
	tests := []struct {
		name    string
		typ     string
		payload []byte
		want    string
	}{
		{"not json", "", []byte("run=1"), "decode payload"},
		{"empty", "", []byte{}, "decode payload"},
		{"json array", "", []byte("[1,0,1,0]"), "decode payload"},
		{"oversized", "", set("pad", strings.Repeat("x", 4096)), "larger than"},
		{"unknown field", "", set("evil", true), `unknown field "evil"`},
		{"missing field", "", payloadWith(t, valid, func(m map[string]any) { delete(m, "seq") }), "needs"},
		{"null field", "", set("run", nil), "needs"},
		{"negative run", "", set("run", -1), "run -1"},
		{"zero run", "", set("run", 0), "run 0"},
		{"negative partition", "", set("partition", -1), "partition -1"},
		{"zero attempt", "", set("attempt", 0), "attempt 0"},
		{"negative seq", "", set("seq", -3), "seq -3"},
		{"fractional seq", "", set("seq", 0.5), "decode payload"},
		{"overflowing run", "", set("run", 1e30), "decode payload"},
		{"number as text", "", set("run", "1"), "decode payload"},
		{"sql in a field", "", set("run", "1; DROP TABLE runs;--"), "decode payload"},
		{"trailing data", "", append(valid.Encode(), "{}"...), "data after"},
		{"unknown run", "", set("run", 987654), "run 987654 partition 0: not found"},
		{"unknown partition", "", set("partition", 7), "partition 7: not found"},
		{"unknown task type", "sync:evil", valid.Encode(), `unknown task type "sync:evil"`},
		{"kickoff not json", tasks.TypeKickoff, []byte("daily"), "malformed task payload: decode kickoff payload"},
		{"kickoff without a fire", tasks.TypeKickoff, []byte(`{"entry":"e","job":"daily-sync","date":"2026-11-20","overlap":"skip"}`), "needs entry, job and fire"},
		{"kickoff with a bad date", tasks.TypeKickoff, []byte(`{"entry":"e","job":"daily-sync","fire":"2026-11-20T23:30:00Z","date":"2026-11-31","overlap":"skip"}`), `date "2026-11-31"`},
		{"kickoff of an unknown job", tasks.TypeKickoff, []byte(`{"entry":"e","job":"nope","fire":"2026-11-20T23:30:00Z","overlap":"skip"}`), `scheduled start of nope refused: job "nope" is not defined`},
	}
	client := asynq.NewClientFromRedisClient(h.Redis.Client)
	for _, tt := range tests {
		typ := tt.typ
		if typ == "" {
			typ = tasks.TypeBatch
		}
		// With retries to spare: only SkipRetry archives such a task at once.
		if _, err := client.Enqueue(asynq.NewTask(typ, tt.payload), asynq.Queue(tasks.Queue),
			asynq.TaskID("bad:"+tt.name), asynq.MaxRetry(5)); err != nil {
			t.Fatalf("enqueue %s: %v", tt.name, err)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := waitArchived(t, h, "bad:"+tt.name, 30*time.Second)
			if info.Retried != 0 || !strings.Contains(info.LastErr, tt.want) {
				t.Errorf("archived task: retried %d, last error %q; want no retry and an error with %q", info.Retried, info.LastErr, tt.want)
			}
			if tt.typ == "" && !strings.Contains(info.LastErr, "malformed task payload") && !strings.Contains(info.LastErr, "not found") {
				t.Errorf("last error %q does not say what is wrong with the task", info.LastErr)
			}
		})
	}

	h.VerifyUnchanged(before, "bad tasks")
	if strings.Contains(h.Log.String(), "class=transient") {
		t.Error("the worker logged a bad task as a transient failure")
	}
	q, err := h.Inspector.GetQueueInfo(tasks.Queue)
	if err != nil {
		t.Fatal(err)
	}
	if q.Archived != len(tests) || q.Pending+q.Active+q.Scheduled+q.Retry != 0 {
		t.Errorf("queue after the bad tasks: %+v; want just the %d archived", q, len(tests))
	}

	// The worker survived them all.
	next := h.StartDailySync("2026-11-19", 5, 1)
	h.WaitEnded(next.ID, 30*time.Second)
	h.VerifyExactlyOnce(next.ID)
}

// waitArchived waits until the task id is archived; a retry fails the test
// at once, since a bad task must not be retried.
func waitArchived(t *testing.T, h *harness.Harness, id string, timeout time.Duration) *asynq.TaskInfo {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		info, err := h.Inspector.GetTaskInfo(tasks.Queue, id)
		switch {
		case err != nil:
			t.Fatalf("task %s: %v", id, err)
		case info.State == asynq.TaskStateArchived:
			return info
		case info.State == asynq.TaskStateRetry || info.Retried > 0:
			t.Fatalf("task %s is retried (%s, %d retries, last error %q); want it archived at once", id, info.State, info.Retried, info.LastErr)
		case time.Now().After(deadline):
			t.Fatalf("task %s is %s after %s; want archived", id, info.State, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A provider that answers some symbols wrongly fails exactly those symbols,
// each with the reason, writes no price for them, and completes the run
// with every other symbol written: nothing wrong is written, nothing right
// is lost. The reasons reach Postgres intact however odd the provider's
// text (a NUL or a cut multi-byte character would make the commit fail).
func TestBadQuotesFailOnlyTheirSymbol(t *testing.T) {
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	good := func(sym string) string {
		b, err := json.Marshal(simulator.Price(sym, day))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// edit returns sym's good quote with the field key's value replaced.
	edit := func(sym, key, value string) string {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(good(sym)), &m); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		b.WriteString("{")
		for _, k := range []string{"symbol", "date", "open", "high", "low", "close", "volume"} {
			v := string(m[k])
			if k == key {
				v = value
			}
			if b.Len() > 1 {
				b.WriteString(",")
			}
			b.WriteString(`"` + k + `":` + v)
		}
		return b.String() + "}"
	}
	type answer struct {
		status int
		body   string
	}
	bad := []struct {
		name    string
		answer  func(sym string) answer
		wantErr string
	}{
		{"not json", func(string) answer { return answer{200, `{"symbol":"AA`} }, "unreadable response body"},
		{"another symbol", func(s string) answer { return answer{200, good("ZZZ")} }, `symbol "ZZZ", asked for`},
		{"sql-looking symbol", func(s string) answer { return answer{200, edit(s, "symbol", `"x'); DROP TABLE stock_prices;--"`)} }, `symbol "x'); DROP TABLE stock_prices;--"`},
		{"another date", func(s string) answer { return answer{200, edit(s, "date", `"2026-11-19"`)} }, `date "2026-11-19", asked for "2026-11-20"`},
		{"NaN close", func(s string) answer { return answer{200, edit(s, "close", `NaN`)} }, `close is "NaN"`},
		{"Infinity high", func(s string) answer { return answer{200, edit(s, "high", `Infinity`)} }, `high is "Infinity"`},
		{"negative open", func(s string) answer { return answer{200, edit(s, "open", `-12.5`)} }, "open is -12.5"},
		{"price as text", func(s string) answer { return answer{200, edit(s, "low", `"1.00"`)} }, `low is "1.00"`},
		{"low above high", func(s string) answer { return answer{200, edit(s, "low", `999999`)} }, "above high"},
		{"close above high", func(s string) answer { return answer{200, edit(s, "close", `999999`)} }, "close 999999 outside"},
		{"fractional volume", func(s string) answer { return answer{200, edit(s, "volume", `1.5`)} }, "volume is 1.5"},
		{"body over 64 KiB", func(s string) answer { return answer{200, edit(s, "symbol", `"`+strings.Repeat("x", 70_000)+`"`)} }, "larger than"},
		{"404 with a NUL and cut characters", func(string) answer {
			return answer{404, `{"error":"nicht gefunden\u0000 ` + strings.Repeat("ü", 150) + `"}`}
		}, "404 Not Found: nicht gefunden"},
	}
	syms := simulator.Universe(len(bad)+7, 0)
	answers := map[string]answer{}
	wantErr := map[string]string{}
	for i, b := range bad {
		answers[syms[i]] = b.answer(syms[i])
		wantErr[syms[i]] = b.wantErr
	}
	h := harness.New(t, harness.Options{Symbols: len(syms),
		Configure: func(c *config.Config) { c.Sync.MaxRetry = 1 },
		Wrap: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				a, ok := answers[strings.TrimPrefix(r.URL.Path, "/v1/quotes/")]
				if !ok {
					next.ServeHTTP(w, r)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(a.status)
				_, _ = w.Write([]byte(a.body))
			})
		}})
	h.StartWorker("w")
	run := h.StartDailySync(date, len(syms), 1)
	r := h.WaitEnded(run.ID, 60*time.Second)
	if r.Status != checkpoint.StatusCompleted || r.Failed != int64(len(bad)) || r.Succeeded != int64(len(syms)-len(bad)) {
		t.Fatalf("run = %+v; want completed with %d failed and %d succeeded", r, len(bad), len(syms)-len(bad))
	}
	items, err := h.Store.Items(context.Background(), run.ID, 0, r.Total)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		want, isBad := wantErr[it.Key]
		switch {
		case isBad && (it.Status != checkpoint.ItemFailed || !strings.Contains(it.Error, want)):
			t.Errorf("%s is %s with error %q; want failed with %q", it.Key, it.Status, it.Error, want)
		case !isBad && it.Status != checkpoint.ItemSucceeded:
			t.Errorf("%s is %s (%s); want succeeded", it.Key, it.Status, it.Error)
		}
	}
	if n := h.Count(`SELECT count(*) FROM stock_prices WHERE symbol = ANY($1)`, syms[:len(bad)]); n != 0 {
		t.Errorf("%d prices written for symbols the provider answered wrongly", n)
	}
	if n := h.Count(`SELECT count(*) FROM stock_prices WHERE trade_date = $1`, date); n != int64(len(syms)-len(bad)) {
		t.Errorf("%d prices written, want %d", n, len(syms)-len(bad))
	}
}

// A task ahead of its chain (a later attempt, epoch or seq than the
// partition's) was not made by syncworker, which enqueues a task only after
// the state that names it has committed: it is dropped (asynq.RevokeTask),
// not archived, and changes nothing.
func TestTaskAheadOfItsChainIsRefused(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 4})
	run := h.StartDailySync(date, 2, 1)
	before := h.Fingerprint()
	for _, p := range []tasks.Payload{
		{Run: run.ID, Attempt: 2},
		{Run: run.ID, Attempt: 1, Epoch: 3},
		{Run: run.ID, Attempt: 1, Seq: 1},
	} {
		err := deliver(h.Handler("w", nil), p)
		if !errors.Is(err, asynq.RevokeTask) || !strings.Contains(err.Error(), "ahead of its chain") {
			t.Errorf("delivery of %+v = %v, want it dropped with RevokeTask", p, err)
		}
	}
	h.VerifyUnchanged(before, "tasks ahead of their chain")
}

// A task ahead of its chain, served by a real worker, does not hold its ID
// once refused: when the chain gets there, its own task is enqueued under
// that ID and the run completes (an archived task would have swallowed it
// and failed the run).
func TestTaskAheadOfItsChainDoesNotSwallowIt(t *testing.T) {
	g := newGate()
	h := harness.New(t, harness.Options{Symbols: 20, Wrap: g.wrap,
		Configure: func(c *config.Config) { c.Sync.TaskSlice = 0 }})
	t.Cleanup(g.release)
	run := h.StartDailySync(date, 10, 1)
	h.StartWorker("w")
	g.waitArrived(t) // seq 0 is in its fetch
	ahead := tasks.Payload{Run: run.ID, Attempt: 1, Seq: 1}
	if _, err := h.Enqueuer.Enqueue(context.Background(), ahead); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := h.Inspector.GetTaskInfo(tasks.Queue, ahead.TaskID()); errors.Is(err, asynq.ErrTaskNotFound) {
			break // refused and gone
		}
		if time.Now().After(deadline) {
			t.Fatal("the task ahead of its chain is still held")
		}
		time.Sleep(10 * time.Millisecond)
	}
	g.release()
	if r := h.WaitEnded(run.ID, 30*time.Second); r.Status != checkpoint.StatusCompleted {
		t.Fatalf("run = %+v, want completed", r)
	}
	h.VerifyExactlyOnce(run.ID)
}
