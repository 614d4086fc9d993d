package dashboard_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/harness"
)

// chromiumPath returns Debian's chromium (or $CHROMIUM), and fails the test
// with how to install it when there is none: a browser test that skips
// would pass on a machine that never ran it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	const install = "the dashboard's browser test drives headless Chromium: install Debian's package with " +
		"`apt-get install -y chromium` (scripts/dev test does it when run as root), or point CHROMIUM at a chromium binary"
	if p := os.Getenv("CHROMIUM"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("CHROMIUM=%s is not an executable (%v); %s", p, err, install)
		}
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not installed; " + install)
	return ""
}

// artifactsDir returns where the test saves its screenshots:
// $TEST_ARTIFACTS_DIR, else artifacts/ at the repository's root.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TEST_ARTIFACTS_DIR")
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		for dir = wd; ; dir = filepath.Dir(dir) {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				break
			}
			if filepath.Dir(dir) == dir {
				t.Fatalf("no go.mod above %s to put artifacts/ beside", wd)
			}
		}
		dir = filepath.Join(dir, "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser is a headless Chromium tab on a worker's dashboard.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	dir  string
}

// newBrowser starts Chromium with the flags this machine's closed network
// needs (no background networking, no QUIC, no component updates) and a
// fresh profile, on a tab of 1360×900.
func newBrowser(t *testing.T, chromium, base string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1360, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	ctx, cancelTab := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b := &browser{t: t, ctx: ctx, base: base, dir: artifactsDir(t)}
	t.Cleanup(func() {
		if t.Failed() {
			b.screenshot("dashboard-failure.png")
		}
	})
	return b
}

// run runs steps within timeout, failing the test with what on error.
func (b *browser) run(what string, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// open loads path and waits until sel is visible.
func (b *browser) open(path, sel string) {
	b.t.Helper()
	b.run("open "+path, 30*time.Second, chromedp.Navigate(b.base+path), chromedp.WaitVisible(chromedp.CSS(sel)))
}

// eval returns the value of a JavaScript expression on the page.
func (b *browser) eval(expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	out, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return out
}

// waitJS waits until a JavaScript expression is true on the page, without
// reloading it.
func (b *browser) waitJS(what, expr string, timeout time.Duration) {
	b.t.Helper()
	b.run("wait until "+what, timeout, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Poll[bool](expr, chromedp.WithPollingInterval(100*time.Millisecond))(ctx, t)
		return err
	}))
}

// screenshot saves the whole page as name in the artifacts directory.
func (b *browser) screenshot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return ""
	}
	path := filepath.Join(b.dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Errorf("save screenshot: %v", err)
		return ""
	}
	b.t.Logf("screenshot: %s", path)
	return path
}

// The dates of the test's daily syncs: one completes at once, one fails on
// the provider's 401 until the provider is fixed, and one runs slowly while
// the browser watches it.
const (
	doneDate = "2026-02-26"
	failDate = "2026-02-27"
	liveDate = "2026-03-02"
)

// quoteLatency slows the provider's answers for the live and the retried
// run: a batch of 10 quotes, 2 at a time, takes about 0.75s.
const quoteLatency = 150 * time.Millisecond

// The dashboard in headless Chromium, on a real worker with Postgres and
// Redis: the runs list shows a live run's progress move without a reload,
// and a run that failed on bad credentials is retried from its page with its
// button, goes running and, the provider fixed, completes while the page
// watches. Screenshots of each step are saved as test artifacts.
func TestDashboardInChromium(t *testing.T) {
	chromium := chromiumPath(t)
	var broken atomic.Bool
	broken.Store(true)
	h := harness.New(t, harness.Options{Symbols: 300, Unknown: 6,
		Configure: func(c *config.Config) { c.Quotes.Concurrency = 2 },
		Wrap: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Query().Get("date") {
				case failDate:
					if broken.Load() {
						w.Header().Set("Content-Type", "application/json")
						w.WriteHeader(http.StatusUnauthorized)
						_, _ = w.Write([]byte(`{"error":"invalid API key"}`))
						return
					}
					fallthrough
				case liveDate:
					select {
					case <-time.After(quoteLatency):
					case <-r.Context().Done():
						return
					}
				}
				next.ServeHTTP(w, r)
			})
		}})
	h.StartWorker("w1")
	b := newBrowser(t, chromium, "http://"+h.AdminAddr("w1"))

	done := h.StartDailySync(doneDate, 25, 2)
	if r := h.WaitEnded(done.ID, 60*time.Second); r.Status != checkpoint.StatusCompleted {
		t.Fatalf("run %d = %+v, want completed", done.ID, r)
	}
	failed := h.StartDailySync(failDate, 10, 3)
	if r := h.WaitEnded(failed.ID, 60*time.Second); r.Status != checkpoint.StatusFailed || !strings.Contains(r.LastError, "credentials") {
		t.Fatalf("run %d = %+v, want failed on the credentials", failed.ID, r)
	}
	live := h.StartDailySync(liveDate, 10, 3)
	h.WaitFor(live.ID, 60*time.Second, "under way", func(r checkpoint.Run) bool { return r.Processed > 0 })

	// The list: the live run's progress moves while the page stays loaded.
	row := fmt.Sprintf(`tr[data-run-id="%d"]`, live.ID)
	bar := row + ` [role=progressbar]`
	b.open("/", bar)
	b.eval(`String(window.__loaded = 1)`) // a reload would lose it
	first, total := b.progress(bar)
	if first >= total {
		t.Fatalf("the live run is done (%d of %d) before the test could watch it; slow it down", first, total)
	}
	b.waitJS("the live run's progress moves past "+strconv.FormatInt(first, 10),
		fmt.Sprintf(`Number(document.querySelector('%s').getAttribute('aria-valuenow')) > %d`, bar, first), 30*time.Second)
	second, _ := b.progress(bar)
	if b.eval(`String(window.__loaded)`) != "1" {
		t.Fatal("the list page reloaded; it must update in place")
	}
	t.Logf("live run %d: %d then %d of %d items, without a reload", live.ID, first, second, total)
	if rate := b.eval(`document.querySelector('` + row + ` td:nth-child(6)').textContent.trim()`); !strings.HasSuffix(rate, "/s") {
		t.Errorf("the live run's rate cell reads %q, want a rate per second", rate)
	}
	b.screenshot("dashboard-runs.png")

	// The live run's page: partitions, attempts, the throughput chart.
	b.open(fmt.Sprintf("/runs/%d", live.ID), ".chart svg rect.barrect")
	b.screenshot("dashboard-run-live.png")

	// The failed run's page offers Retry (and Restart), not Pause or
	// Resume; a retry with the provider fixed runs it again to the end.
	b.open(fmt.Sprintf("/runs/%d", failed.ID), `button[data-action="retry"]`)
	if got := b.eval(`document.querySelector('.page-head .badge').textContent`); got != "failed" {
		t.Errorf("failed run's badge reads %q, want failed", got)
	}
	if got := b.eval(`[...document.querySelectorAll('[data-action]')].map(e => e.dataset.action).join(',')`); got != "retry,restart-open,restart" {
		t.Errorf("failed run's page offers %q, want retry and restart", got)
	}
	if got := b.eval(`document.querySelector('.error-callout').textContent`); !strings.Contains(got, "credentials") {
		t.Errorf("failed run's page shows last error %q, want the credentials error", got)
	}
	b.screenshot("dashboard-run-failed.png")
	broken.Store(false)
	b.run("click Retry", 30*time.Second,
		chromedp.Click(chromedp.CSS(`button[data-action="retry"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.flash-ok`)))
	if got := b.eval(`document.querySelector('.flash').textContent`); !strings.Contains(got, fmt.Sprintf("Run %d retried: attempt 2", failed.ID)) {
		t.Errorf("flash after retry reads %q", got)
	}
	if got := b.eval(`document.querySelector('.page-head .badge').textContent`); got != "running" && got != "completed" {
		t.Errorf("after retry the badge reads %q, want running", got)
	}
	b.screenshot("dashboard-after-retry.png")
	b.eval(`String(window.__loaded = 1)`)
	b.waitJS("the retried run completes on its page", `document.querySelector('.page-head .badge').textContent === 'completed'`, 90*time.Second)
	if b.eval(`String(window.__loaded)`) != "1" {
		t.Error("the run page reloaded; it must update in place")
	}
	h.VerifyExactlyOnce(failed.ID)

	// The live run, completed, with its whole chart.
	h.WaitEnded(live.ID, 90*time.Second)
	h.VerifyExactlyOnce(live.ID)
	b.open(fmt.Sprintf("/runs/%d", live.ID), ".chart svg rect.barrect")
	b.screenshot("dashboard-run-completed.png")
	// Restarting from zero asks first; the test does not go on with it.
	b.run("open the restart confirmation", 10*time.Second,
		chromedp.Click(chromedp.CSS(`summary[data-action="restart-open"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[data-action="restart"]`)))
	b.screenshot("dashboard-restart-confirm.png")
	b.open("/", bar)
	b.screenshot("dashboard-runs-ended.png")
	// On a phone's width the table keeps its essential columns.
	b.run("narrow the window", 10*time.Second, chromedp.EmulateViewport(414, 800))
	b.open("/", bar)
	if w := b.eval(`String(document.documentElement.scrollWidth)`); w != "414" {
		t.Errorf("the list is %spx wide on a 414px screen, want no sideways scrolling", w)
	}
	b.screenshot("dashboard-runs-narrow.png")
}

// progress reads the done and total of a progress bar from the DOM.
func (b *browser) progress(sel string) (done, total int64) {
	b.t.Helper()
	raw := b.eval(fmt.Sprintf(`(e => e.getAttribute('aria-valuenow') + ' ' + e.getAttribute('aria-valuemax'))(document.querySelector('%s'))`, sel))
	if _, err := fmt.Sscan(raw, &done, &total); err != nil {
		b.t.Fatalf("progress bar %s reads %q: %v", sel, raw, err)
	}
	return done, total
}
