package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/harness"
)

func envFunc(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

func TestUniverse(t *testing.T) {
	tests := []struct {
		args        []string
		rows        int
		first, last []string
	}{
		{[]string{"universe", "-n", "3", "--unknown", "2"}, 5, []string{"AAA", "Simulated AAA Inc", "SIM"}, []string{"XX0002", "Simulated XX0002 Inc", "SIM"}},
		{[]string{"universe", "-n", "2000", "--unknown", "10"}, 2010, []string{"AAA", "Simulated AAA Inc", "SIM"}, []string{"XX0010", "Simulated XX0010 Inc", "SIM"}},
		{[]string{"universe", "--count=1"}, 1, []string{"AAA", "Simulated AAA Inc", "SIM"}, []string{"AAA", "Simulated AAA Inc", "SIM"}},
		{[]string{"universe"}, 100, []string{"AAA", "Simulated AAA Inc", "SIM"}, []string{"ADV", "Simulated ADV Inc", "SIM"}},
		{[]string{"universe", "-n", "0"}, 0, nil, nil},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			a := &app{stdout: &stdout, stderr: &stderr, getenv: envFunc(nil)}
			if err := a.execute(t.Context(), tt.args); err != nil {
				t.Fatalf("execute: %v", err)
			}
			records, err := csv.NewReader(&stdout).ReadAll()
			if err != nil {
				t.Fatalf("output is not CSV: %v", err)
			}
			if len(records) == 0 || strings.Join(records[0], ",") != "symbol,name,exchange" {
				t.Fatalf("header = %v, want symbol,name,exchange", records)
			}
			rows := records[1:]
			if len(rows) != tt.rows {
				t.Fatalf("%d rows, want %d", len(rows), tt.rows)
			}
			if tt.rows == 0 {
				return
			}
			if got := rows[0]; strings.Join(got, ",") != strings.Join(tt.first, ",") {
				t.Errorf("first row = %v, want %v", got, tt.first)
			}
			if got := rows[len(rows)-1]; strings.Join(got, ",") != strings.Join(tt.last, ",") {
				t.Errorf("last row = %v, want %v", got, tt.last)
			}
		})
	}
}

func TestInvalidArguments(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string // substrings of the error
	}{
		{"error rate too high", []string{"--error-rate", "1.5"}, nil, []string{"--error-rate"}},
		{"error rate not a number", []string{"--error-rate", "abc"}, nil, []string{"--error-rate"}},
		{"negative latency", []string{"--latency=-1s"}, nil, []string{"--latency"}},
		{"bad duration", []string{"--slow-delay", "soon"}, nil, []string{"--slow-delay"}},
		{"negative rate limit", []string{"--rate-limit=-1"}, nil, []string{"--rate-limit"}},
		{"unknown rate", []string{"--unknown-rate=2"}, nil, []string{"--unknown-rate"}},
		{"bad env", nil, map[string]string{"SOURCESIM_SEED": "x"}, []string{"SOURCESIM_SEED", "--seed"}},
		{"invalid env", nil, map[string]string{"SOURCESIM_GARBAGE_RATE": "7"}, []string{"SOURCESIM_GARBAGE_RATE", "--garbage-rate"}},
		{"env does not leak API key", []string{"--jitter=-1s"}, map[string]string{"SOURCESIM_API_KEY": "s3cret"}, []string{"--jitter", "SOURCESIM_API_KEY"}},
		{"negative records", []string{"--records=-1"}, nil, []string{"--records"}},
		{"too many records", []string{"--records", "1000001"}, nil, []string{"--records"}},
		{"negative drift", nil, map[string]string{"SOURCESIM_DRIFT": "-3"}, []string{"SOURCESIM_DRIFT", "--drift"}},
		{"unknown flag", []string{"--nope"}, nil, []string{"--nope"}},
		{"extra argument", []string{"serve-please"}, nil, []string{"serve-please"}},
		{"negative count", []string{"universe", "-n", "-1"}, nil, []string{"-n"}},
		{"negative unknown", []string{"universe", "--unknown=-1"}, nil, []string{"--unknown"}},
		{"server flag on universe", []string{"universe", "--error-rate=0.1"}, nil, []string{"--error-rate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			a := &app{
				stdout: &stdout, stderr: &stderr, getenv: envFunc(tt.env),
				listening: func(net.Addr) { t.Error("server started despite invalid arguments") },
			}
			ctx, cancel := context.WithCancel(t.Context())
			cancel() // Should the server start anyway, it stops at once.
			err := a.execute(ctx, tt.args)
			if err == nil {
				t.Fatalf("execute(%q) = nil, want an error", tt.args)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q leaks the API key", err)
			}
		})
	}
}

// startServer runs the server command with args and env until the returned
// stop function is called, and returns its base URL.
func startServer(t *testing.T, args []string, env map[string]string) (url string, logs *harness.SafeBuffer, stop func() error) {
	t.Helper()
	logs = &harness.SafeBuffer{}
	addrc := make(chan net.Addr, 1)
	a := &app{
		stdout: io.Discard, stderr: logs, getenv: envFunc(env),
		listening: func(addr net.Addr) { addrc <- addr },
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- a.execute(ctx, append([]string{"--addr", "127.0.0.1:0"}, args...)) }()

	deadline := time.After(5 * time.Second)
	select {
	case addr := <-addrc:
		url = "http://" + addr.String()
	case err := <-errc:
		cancel()
		t.Fatalf("server exited before listening: %v", err)
	case <-deadline:
		cancel()
		t.Fatal("server not listening after 5s")
	}
	stop = func() error {
		cancel()
		select {
		case err := <-errc:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("server still running 10s after cancel")
			return nil
		}
	}
	return url, logs, stop
}

func getStatus(t *testing.T, url, key string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestServeFlagsAndEnv(t *testing.T) {
	env := map[string]string{
		"SOURCESIM_API_KEY":      "envkey",
		"SOURCESIM_ERROR_RATE":   "1",   // overridden by the flag below
		"SOURCESIM_UNKNOWN_RATE": "1",   // applied: every symbol unknown
		"SOURCESIM_SLOW_RATE":    "",    // empty: ignored
		"SOURCESIM_ADDR":         "bad", // overridden by --addr
	}
	url, logs, stop := startServer(t, []string{"--api-key", "flagkey", "--error-rate", "0"}, env)

	if code, body := getStatus(t, url+"/healthz", ""); code != http.StatusOK || body != "ok" {
		t.Errorf("/healthz = %d %q, want 200 ok", code, body)
	}
	if code, body := getStatus(t, url+"/v1/quotes/AAPL?date=2026-11-20", "envkey"); code != http.StatusUnauthorized {
		t.Errorf("quote with the env's key = %d %s, want 401: the flag's key wins", code, body)
	}
	if code, body := getStatus(t, url+"/v1/quotes/AAPL?date=2026-11-20", "flagkey"); code != http.StatusNotFound {
		t.Errorf("quote with the flag's key = %d %s, want 404 (no 5xx from the env's error rate, unknown rate 1 from env)", code, body)
	}
	code, body := getStatus(t, url+"/stats", "")
	var stats map[string]int64
	if err := json.Unmarshal([]byte(body), &stats); code != http.StatusOK || err != nil {
		t.Fatalf("/stats = %d %q (%v)", code, body, err)
	}
	if stats["requests"] != 2 || stats["unauthorized"] != 1 || stats["not_found"] != 1 {
		t.Errorf("/stats = %v, want 2 requests, 1 unauthorized, 1 not found", stats)
	}

	if err := stop(); err != nil {
		t.Fatalf("server returned %v after cancel, want nil", err)
	}
	out := logs.String()
	for _, want := range []string{"sourcesim listening", "addr=127.0.0.1:", "config.error_rate=0 ", "config.unknown_rate=1 ", "config.api_key_set=true", "sourcesim stopped"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs do not contain %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{"flagkey", "envkey"} {
		if strings.Contains(out, secret) {
			t.Errorf("logs leak the API key %q:\n%s", secret, out)
		}
	}
}

func TestServeRecords(t *testing.T) {
	url, logs, stop := startServer(t, []string{"--records", "5"}, map[string]string{"SOURCESIM_DRIFT": "1"})
	// The first page request sees the 5 records, the second one more.
	for i, want := range []string{`"total":5}`, `"total":6}`} {
		code, body := getStatus(t, url+"/v1/records?take=10", "")
		if code != http.StatusOK || !strings.Contains(body, want) || !strings.Contains(body, `"id":"r000004"`) {
			t.Errorf("page request %d = %d %s, want 200 with %s", i+1, code, body, want)
		}
	}
	if code, body := getStatus(t, url+"/v1/records-cursor?cursor=nope", ""); code != http.StatusBadRequest {
		t.Errorf("invalid cursor = %d %s, want 400", code, body)
	}
	if err := stop(); err != nil {
		t.Fatalf("server returned %v after cancel, want nil", err)
	}
	out := logs.String()
	for _, want := range []string{"config.records=5 ", "config.drift=1\n", "requests=3 ", "pages=3\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs do not contain %q:\n%s", want, out)
		}
	}
}

func TestGracefulShutdown(t *testing.T) {
	const delay = 300 * time.Millisecond
	url, _, stop := startServer(t, []string{"--slow-rate", "1", "--slow-delay", delay.String()}, nil)

	type result struct {
		code int
		body string
		err  error
	}
	resc := make(chan result, 1)
	go func() {
		resp, err := http.Get(url + "/v1/quotes/AAPL?date=2026-11-20")
		if err != nil {
			resc <- result{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		resc <- result{code: resp.StatusCode, body: string(body), err: err}
	}()

	// Wait until the slow request is in flight.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(5 * time.Second)
	for inFlight := false; !inFlight; {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatal("slow request not in flight after 5s")
		}
		_, body := getStatus(t, url+"/stats", "")
		inFlight = strings.Contains(body, `"slow":1`)
	}

	start := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("server returned %v after cancel, want nil", err)
	}
	if elapsed := time.Since(start); elapsed > shutdownGrace {
		t.Errorf("shutdown took %v, want less than the grace period %v", elapsed, shutdownGrace)
	}
	select {
	case r := <-resc:
		var q struct{ Symbol string }
		if r.err != nil || r.code != http.StatusOK || json.Unmarshal([]byte(r.body), &q) != nil || q.Symbol != "AAPL" {
			t.Errorf("in-flight request during shutdown: status %d, body %q, error %v; want 200 with a quote", r.code, r.body, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight request not answered 5s after shutdown")
	}
}
