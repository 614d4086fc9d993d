package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/simulator"
	"github.com/syncworker/syncworker/migrations"
)

// execEnv makes the test binary run the worker's main instead of the tests,
// so that the tests can start real worker processes, signals and all.
const execEnv = "SYNCWORKER_TEST_EXEC_WORKER"

func TestMain(m *testing.M) {
	if os.Getenv(execEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// process is a worker process.
type process struct {
	cmd    *exec.Cmd
	stderr *harness.SafeBuffer
	done   chan error
}

// startProcess starts a worker process with h's configuration.
func startProcess(t *testing.T, h *harness.Harness, args ...string) *process {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), execEnv+"=1", config.FileEnv+"="+os.DevNull)
	cmd.Env = append(cmd.Env, h.Config.Environ()...)
	p := &process{cmd: cmd, stderr: &harness.SafeBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	cmd.Stdout = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("worker %d output:\n%s", cmd.Process.Pid, p.stderr.String())
		}
	})
	return p
}

// wait waits for the process to exit and returns its exit code.
func (p *process) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(timeout):
		t.Fatalf("worker %d did not exit within %s", p.cmd.Process.Pid, timeout)
		return -1
	}
}

// A worker killed with SIGKILL in the middle of a run: once the leases of
// its partitions lapse, they are taken over by new tasks (of epoch 1) and
// another worker finishes the run, every symbol written exactly once. asynq
// alone would give the killed worker's task back only once its own lease
// expired, a minute or more later.
func TestKilledWorkerIsReplaced(t *testing.T) {
	t.Parallel()
	h := harness.New(t, harness.Options{Symbols: 300, Unknown: 3,
		Sim: simulator.Config{Latency: 20 * time.Millisecond},
		Configure: func(c *config.Config) {
			c.Quotes.Concurrency = 2
			c.Worker.Concurrency = 2
			// Tasks hold their partitions to the end: the kill finds them
			// leased, not between a handover and the next task.
			c.Sync.TaskSlice = time.Minute
		}})
	run := h.StartDailySync("2026-11-20", 10, 2)

	a := startProcess(t, h)
	h.WaitServed(60, 60*time.Second)
	suffix := ":" + strconv.Itoa(a.cmd.Process.Pid) + "#%"
	if n := h.Count(`SELECT count(*) FROM run_partitions WHERE lease_owner LIKE '%' || $1`, suffix); n == 0 {
		t.Fatal("the worker holds no lease before the kill")
	}
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := a.wait(t, 10*time.Second); code != -1 && code != 137 && code != 0 {
		t.Logf("killed worker exited with %d", code)
	}
	killedAt := time.Now()
	processed, _ := h.Store.Get(context.Background(), run.ID)
	if processed.Status.Ended() {
		t.Fatalf("the run ended before the kill: %+v", processed)
	}

	startProcess(t, h)
	h.WaitEnded(run.ID, 3*time.Minute)
	ledger := h.VerifyExactlyOnce(run.ID)
	after, takenOver := 0, 0
	var resumed time.Time
	for _, l := range ledger {
		if l.Committed.After(killedAt) {
			after++
			if strings.HasSuffix(l.Worker, ":"+strconv.Itoa(a.cmd.Process.Pid)) {
				t.Errorf("batch %d/%d committed by the killed worker after the kill", l.Partition, l.Seq)
			}
			if !strings.Contains(l.TaskID, ":1:0:") { // batch:run:part:attempt:epoch:seq
				takenOver++
			}
			if resumed.IsZero() || l.Committed.Before(resumed) {
				resumed = l.Committed
			}
		}
	}
	if after == 0 || takenOver == 0 {
		t.Errorf("%d batches committed after the kill, %d of them by takeover tasks (epoch 1 or more); want some of each", after, takenOver)
	}
	t.Logf("lease %s: first commit %s after the kill, run completed %s after it",
		h.Config.Sync.Lease, resumed.Sub(killedAt).Round(time.Millisecond), time.Since(killedAt).Round(time.Millisecond))
}

// SIGTERM in the middle of a batch: the worker stops at once and exits 0,
// nothing of the interrupted batch commits, its task goes back to the queue
// without using up a retry, and another worker finishes the run.
func TestSIGTERMStopsMidBatch(t *testing.T) {
	t.Parallel()
	h := harness.New(t, harness.Options{Symbols: 30,
		Sim:       simulator.Config{Latency: 200 * time.Millisecond},
		Configure: func(c *config.Config) { c.Quotes.Concurrency = 1; c.Log.Level = "info" }})
	run := h.StartDailySync("2026-11-20", 5, 1)

	a := startProcess(t, h)
	h.WaitServed(7, 60*time.Second) // two requests into the second batch
	termAt := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := a.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("worker exited %d after SIGTERM, want 0", code)
	}
	out := a.stderr.String()
	for _, want := range []string{"shutting down", "worker stopped"} {
		if !strings.Contains(out, want) {
			t.Errorf("worker output lacks %q:\n%s", want, out)
		}
	}
	for _, l := range h.Ledger(run.ID) {
		if l.Committed.After(termAt) {
			t.Errorf("batch %d committed after SIGTERM", l.Seq)
		}
	}
	h.VerifyStoppedCleanly(run.ID, 5)

	startProcess(t, h)
	h.WaitEnded(run.ID, 60*time.Second)
	h.VerifyExactlyOnce(run.ID)
}

// runCmd runs the worker command in-process with args.
func runCmd(t *testing.T, h *harness.Harness, args ...string) (string, error) {
	t.Helper()
	for _, kv := range h.Config.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	t.Setenv(config.FileEnv, os.DevNull)
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func TestMigrateCommands(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 1})
	ups, err := fs.Glob(migrations.FS, "*.up.sql")
	if err != nil || len(ups) < 2 {
		t.Fatalf("migrations = %v, %v", ups, err)
	}
	latest := len(ups) // numbered from 1 without a gap
	out, err := runCmd(t, h, "migrate", "version")
	if err != nil || !strings.Contains(out, fmt.Sprintf("database: %d (dirty: false)", latest)) ||
		!strings.Contains(out, fmt.Sprintf("binary:   %d", latest)) {
		t.Fatalf("migrate version = %q, %v; want both at %d", out, err, latest)
	}
	if out, err := runCmd(t, h, "migrate", "down"); err != nil || !strings.Contains(out, fmt.Sprintf("schema at version %d", latest-1)) {
		t.Fatalf("migrate down = %q, %v; want one step down", out, err)
	}
	if out, err := runCmd(t, h, "migrate", "down", strconv.Itoa(latest-1)); err != nil || !strings.Contains(out, "schema at version 0") {
		t.Fatalf("migrate down %d = %q, %v", latest-1, out, err)
	}
	if n := h.Count(`SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'runs'`); n != 0 {
		t.Fatalf("runs table still there after migrate down")
	}
	// A worker refuses to serve a schema it does not know.
	if _, err := runCmd(t, h); err == nil || !strings.Contains(err.Error(), "run `worker migrate`") {
		t.Fatalf("worker on an unmigrated schema = %v, want a refusal that says to migrate", err)
	}
	if out, err := runCmd(t, h, "migrate"); err != nil || !strings.Contains(out, fmt.Sprintf("schema at version %d", latest)) {
		t.Fatalf("migrate = %q, %v", out, err)
	}
	if out, err := runCmd(t, h, "migrate", "up"); err != nil || !strings.Contains(out, fmt.Sprintf("schema at version %d", latest)) {
		t.Fatalf("migrate up again = %q, %v (want no change, no error)", out, err)
	}
	if _, err := runCmd(t, h, "migrate", "down", "zero"); err == nil || !strings.Contains(err.Error(), "invalid step count") {
		t.Errorf("migrate down zero = %v", err)
	}
}

// Bad command lines are refused with a message naming what is wrong, before
// anything is served or migrated.
func TestBadCommandLines(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 1})
	before := h.Fingerprint()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"negative step count", []string{"migrate", "down", "-1"}, `invalid step count "-1": want a whole number of 1 or more`},
		{"zero step count", []string{"migrate", "up", "0"}, `invalid step count "0"`},
		{"fractional step count", []string{"migrate", "up", "1.5"}, `invalid step count "1.5"`},
		{"two step counts", []string{"migrate", "up", "1", "2"}, "accepts at most 1 arg"},
		{"argument to serve", []string{"now"}, `unknown command "now" for "worker"`},
		{"concurrency not a number", []string{"--concurrency", "many"}, `invalid argument "many" for "--concurrency"`},
		{"negative concurrency", []string{"--concurrency", "-2"}, "worker.concurrency (--concurrency) must be between 1"},
		{"bad log level", []string{"--log-level", "loud"}, "log.level (--log-level) must be debug, info, warn or error"},
		{"bad redis url", []string{"--redis-url", "localhost:6379"}, "redis_url (--redis-url) must be a redis or rediss URL"},
		{"unknown flag", []string{"migrate", "--create-db"}, "unknown flag: --create-db"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := runCmd(t, h, tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("worker %v = %v, want an error with %q", tt.args, err, tt.want)
			}
		})
	}
	h.VerifyUnchanged(before, "a bad command line")
}

func TestInvalidConfigStopsStartup(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 1})
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), execEnv+"=1", config.FileEnv+"="+os.DevNull)
	cmd.Env = append(cmd.Env, h.Config.Environ()...)
	cmd.Env = append(cmd.Env, "SYNC_BATCH_SIZE=0", "WORKER_CONCURRENCY=lots")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("worker with a bad config: %v, want exit code 1", err)
	}
	if !strings.Contains(string(out), "worker.concurrency") {
		t.Errorf("output %q does not name the bad key", out)
	}
	if _, err := runCmd(t, h, "--concurrency", "0"); err == nil || !strings.Contains(err.Error(), "worker.concurrency (--concurrency)") {
		t.Errorf("--concurrency 0 = %v, want an error naming the flag", err)
	}
}
