package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/tasks"
	"github.com/syncworker/syncworker/internal/worker"
)

// getRuns lists the runs on the runs API at addr.
func getRuns(t *testing.T, addr string) []checkpoint.Run {
	t.Helper()
	code, body := get(t, "http://"+addr+"/api/runs", false)
	var list struct {
		Runs []checkpoint.Run `json:"runs"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &list) != nil {
		t.Fatalf("GET http://%s/api/runs = %d %s, want 200 with the runs", addr, code, body)
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
			cfg.HTTP.AdminToken = adminToken // so that the address beyond loopback gets as far as listening
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

// adminToken is the admin token of the tests that set one.
const adminToken = "worker-test-admin-token-0123"

// get sends GET url with the admin token when bearer is set, and returns
// the status code and the body.
func get(t *testing.T, url string, bearer bool) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bearer {
		req.Header.Set("Authorization", "Bearer "+adminToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// A worker with an admin token serves health and readiness to anyone, and
// the runs API and asynqmon (on the worker's own Redis) only with the token.
func TestWorkerAdminNeedsTheToken(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 20,
		Configure: func(c *config.Config) {
			c.HTTP.AdminToken = adminToken
			c.HTTP.TrustedProxies = []string{"127.0.0.1", "::1"}
		}})
	run := h.StartDailySync(date, 5, 2)
	h.StartWorker("w")
	base := "http://" + h.AdminAddr("w")
	h.WaitEnded(run.ID, 60*time.Second)

	tests := []struct {
		path             string
		bearer           bool
		wantCode         int
		wantBodyContains string
	}{
		{"/healthz", false, http.StatusOK, "ok"},
		{"/readyz", false, http.StatusOK, `"status":"ready"`},
		{"/api/runs", false, http.StatusUnauthorized, "authentication required"},
		{"/api/runs", true, http.StatusOK, fmt.Sprintf(`"id":%d`, run.ID)},
		{"/monitoring/", false, http.StatusUnauthorized, "authentication required"},
		{"/monitoring/", true, http.StatusOK, `window.FLAG_READ_ONLY="false"`},
		{"/monitoring/api/queues", false, http.StatusUnauthorized, "authentication required"},
		{"/monitoring/api/queues", true, http.StatusOK, `"queue":"` + tasks.Queue + `"`},
	}
	for _, tt := range tests {
		code, body := get(t, base+tt.path, tt.bearer)
		if code != tt.wantCode || !strings.Contains(body, tt.wantBodyContains) {
			t.Errorf("GET %s (token %t) = %d %s, want %d with %s", tt.path, tt.bearer, code, body, tt.wantCode, tt.wantBodyContains)
		}
	}
	// The test's requests come from 127.0.0.1, a trusted proxy here: a
	// client it names that guesses wrong is held up, and only that one.
	from := func(client, token string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/api/runs", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("X-Forwarded-For", client)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for range 10 {
		from("198.51.100.1", "wrong-"+adminToken)
	}
	if a, b := from("198.51.100.1", adminToken), from("198.51.100.2", adminToken); a != http.StatusTooManyRequests || b != http.StatusOK {
		t.Errorf("after 10 wrong tokens from one client behind the proxy: its right token = %d, another's = %d; want 429, 200", a, b)
	}
	if strings.Contains(h.Log.String(), adminToken) {
		t.Errorf("the worker logged the admin token:\n%s", h.Log.String())
	}
}

// An admin address beyond loopback without a token stops start-up with an
// error that says how to fix it, unless http.allow_public; with a token it
// serves, behind the token.
func TestPublicAdminBind(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 1})
	for _, addr := range []string{"0.0.0.0:0", ":0"} {
		t.Run("refused "+addr, func(t *testing.T) {
			cfg := h.Config
			cfg.HTTP.Addr = addr
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := worker.Run(ctx, cfg, worker.Options{Name: "public", Logger: h.Logger("public")})
			for _, want := range []string{"http.addr (HTTP_ADDR) " + strconv.Quote(addr), "beyond loopback", "ADMIN_TOKEN", "HTTP_ALLOW_PUBLIC=true"} {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("worker.Run with http.addr %s and no token = %v, want an error saying %q", addr, err, want)
				}
			}
			if ctx.Err() != nil {
				t.Errorf("worker.Run with http.addr %s ran until its context ended", addr)
			}
		})
	}
	if servers, err := h.Inspector.Servers(); err != nil || len(servers) != 0 {
		t.Fatalf("%d asynq servers registered (%v), want none: a refused worker must not start", len(servers), err)
	}

	tests := []struct {
		name        string
		token       string
		allowPublic bool
		wantRuns    int // GET /api/runs without the token
	}{
		{"allow_public", "", true, http.StatusOK},
		{"token", adminToken, false, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.Config.HTTP.Addr = "0.0.0.0:0"
			h.Config.HTTP.AdminToken = tt.token
			h.Config.HTTP.AllowPublic = tt.allowPublic
			w := h.StartWorker(tt.name)
			_, port, err := net.SplitHostPort(h.AdminAddr(tt.name))
			if err != nil {
				t.Fatal(err)
			}
			base := "http://127.0.0.1:" + port
			if code, _ := get(t, base+"/healthz", false); code != http.StatusOK {
				t.Errorf("GET /healthz = %d, want 200", code)
			}
			if code, body := get(t, base+"/api/runs", false); code != tt.wantRuns {
				t.Errorf("GET /api/runs without the token = %d %s, want %d", code, body, tt.wantRuns)
			}
			if code, body := get(t, base+"/api/runs", true); code != http.StatusOK {
				t.Errorf("GET /api/runs with the token = %d %s, want 200", code, body)
			}
			if err := w.Stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
	const warning = `level=WARN msg="admin HTTP serves beyond loopback without a token (http.allow_public): anyone who reaches it may use the runs API" worker=allow_public`
	if got := strings.Count(h.Log.String(), warning); got != 1 {
		t.Errorf("%d warnings of an open public bind, want 1 (the allow_public worker's); log:\n%s", got, h.Log.String())
	}
}
