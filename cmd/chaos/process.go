package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Packages of the binaries the scenario runs.
const (
	workerPkg = "github.com/syncworker/syncworker/cmd/worker"
	simPkg    = "github.com/syncworker/syncworker/cmd/sourcesim"
)

// build builds the worker and the simulator into dir with `go build` (with
// the race detector when race is set) and returns their paths. It must run
// inside this module's tree.
func build(ctx context.Context, dir string, race bool) (workerBin, simBin string, err error) {
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, workerPkg, simPkg)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go build the worker and the simulator (run inside the module, or pass --worker-bin and --sim-bin): %w\n%s", err, out)
	}
	return filepath.Join(dir, "worker"), filepath.Join(dir, "sourcesim"), nil
}

// process is a child process whose output goes to a log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	started time.Time

	done     chan struct{} // closed when the process has exited
	mu       sync.Mutex
	exitCode int // valid once done; -1 when killed by a signal
	signal   syscall.Signal
	exited   time.Time
	expected bool // the scenario signalled it, so its exit is no surprise
}

// startProcess starts bin with args and env, its stdout and stderr going to
// logDir/name.log.
func startProcess(name, bin string, args, env []string, logDir string) (*process, error) {
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, started: time.Now(), done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.exited = time.Now()
		p.exitCode = 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			p.exitCode = exit.ExitCode()
			if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				p.signal = ws.Signal()
			}
		} else if err != nil {
			p.exitCode = -1
		}
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// pid returns the process's id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// alive reports whether the process has not exited.
func (p *process) alive() bool { return !closed(p.done) }

// send sends sig to the process, marking its exit as expected.
func (p *process) send(sig syscall.Signal) error {
	p.mu.Lock()
	p.expected = true
	p.mu.Unlock()
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s to %s (pid %d): %w", sig, p.name, p.pid(), err)
	}
	return nil
}

// wait waits up to timeout for the process to exit and reports whether it did.
func (p *process) wait(timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs; it reports whether
// the process stopped within grace.
func (p *process) stop(grace time.Duration) bool {
	if !p.alive() {
		return true
	}
	_ = p.send(syscall.SIGTERM)
	if p.wait(grace) {
		return true
	}
	_ = p.send(syscall.SIGKILL)
	p.wait(10 * time.Second)
	return false
}

// exit returns how the process exited: its code (-1 for a signal), the
// signal, when, and whether the scenario had signalled it.
func (p *process) exit() (code int, sig syscall.Signal, at time.Time, expected bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitCode, p.signal, p.exited, p.expected
}

// listenAddr matches the address in the simulator's start-up log line.
var listenAddr = regexp.MustCompile(`sourcesim listening"? addr=(\S+)`)

// simAddress waits until the simulator logged its address and answers
// /healthz, and returns its base URL.
func simAddress(ctx context.Context, p *process, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if addr := findInFile(p.logPath, listenAddr); addr != "" {
			url := "http://" + addr
			if healthy(ctx, url+"/healthz") {
				return url, nil
			}
		}
		if !p.alive() {
			return "", fmt.Errorf("the simulator exited at start; its log: %s", p.logPath)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("the simulator did not answer within %s; its log: %s", timeout, p.logPath)
		}
		if err := pause(ctx, 50*time.Millisecond); err != nil {
			return "", err
		}
	}
}

// findInFile returns the first submatch of re in the file at path, or "".
func findInFile(path string, re *regexp.Regexp) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			return m[1]
		}
	}
	return ""
}

// healthy reports whether GET url answers 200.
func healthy(ctx context.Context, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// pause waits for d or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// workerSuffix is how a worker's ledger name (hostname:pid) ends.
func workerSuffix(pid int) string { return ":" + strconv.Itoa(pid) }
