package worker_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/worker"
)

// getRuns lists the runs on the runs API at addr.
func getRuns(t *testing.T, addr string) []checkpoint.Run {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/api/runs")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Runs []checkpoint.Run `json:"runs"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &list) != nil {
		t.Fatalf("GET http://%s/api/runs = %d %s, want 200 with the runs", addr, resp.StatusCode, body)
	}
	return list.Runs
}

// A worker serves the runs API on the address it is given (here port 0, so
// the one it logs), and a second worker of the host that finds the address
// taken serves none, says so, and works on as any worker. The listener
// closes when the worker stops.
func TestWorkerServesTheRunsAPI(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 60, Unknown: 2})
	if h.Config.HTTP.Addr != "127.0.0.1:0" {
		t.Fatalf("harness workers serve admin HTTP on %q, want 127.0.0.1:0", h.Config.HTTP.Addr)
	}
	run := h.StartDailySync(date, 5, 2)
	w1 := h.StartWorker("w1")
	addr := h.AdminAddr("w1")

	h.Config.HTTP.Addr = addr // taken by w1
	w2 := h.StartWorker("w2")
	h.WaitWorkers(2, 30*time.Second)
	if !strings.Contains(h.Log.String(), `level=WARN msg="admin HTTP address in use (another worker on this host?); this worker serves no admin HTTP" worker=w2 addr=`+addr) {
		t.Errorf("worker w2 did not warn that %s is taken; log:\n%s", addr, h.Log.String())
	}

	h.WaitEnded(run.ID, 60*time.Second)
	h.VerifyExactlyOnce(run.ID)
	runs := getRuns(t, addr)
	if len(runs) != 1 || runs[0].ID != run.ID || runs[0].Status != checkpoint.StatusCompleted || runs[0].Processed != 62 {
		t.Errorf("GET /api/runs = %+v, want the completed run %d", runs, run.ID)
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz = %d, want 200", resp.StatusCode)
	}

	if err := w2.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := getRuns(t, addr); len(got) != 1 {
		t.Errorf("after w2 stopped, w1 lists %d runs, want 1", len(got))
	}
	if err := w1.Stop(); err != nil {
		t.Fatal(err)
	}
	if conn, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after its worker stopped", addr)
	}
}

// An admin address that cannot be listened on for any reason but another
// process holding it stops start-up, naming the key.
func TestBadAdminAddressStopsStartup(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 1})
	for _, addr := range []string{"127.0.0.1:99999", "203.0.113.1:8080"} { // no such port; not this host's address
		t.Run(addr, func(t *testing.T) {
			cfg := h.Config
			cfg.HTTP.Addr = addr
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := worker.Run(ctx, cfg, worker.Options{Name: "bad", Logger: h.Logger("bad")})
			if err == nil || !strings.Contains(err.Error(), "http.addr: listen on "+addr) {
				t.Errorf("worker.Run with http.addr %s = %v, want an error naming http.addr", addr, err)
			}
			if ctx.Err() != nil {
				t.Errorf("worker.Run with http.addr %s ran until its context ended", addr)
			}
		})
	}
	if servers, err := h.Inspector.Servers(); err != nil || len(servers) != 0 {
		t.Errorf("%d asynq servers registered (%v), want none: the worker must not start", len(servers), err)
	}
}
