package dashboard_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/dashboard"
	"github.com/syncworker/syncworker/internal/harness"
)

// env is the dashboard of a harness's installation (no worker runs), and a
// browser-like client that keeps cookies and does not follow redirects.
type env struct {
	h      *harness.Harness
	url    string
	client *http.Client
}

func setup(t *testing.T) *env {
	t.Helper()
	h := harness.New(t, harness.Options{Symbols: 5, Unknown: 1})
	srv := httptest.NewServer(dashboard.New(dashboard.Options{Runs: h.Store, Control: h.Control, Logger: h.Logger("dashboard")}))
	t.Cleanup(srv.Close)
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &env{h: h, url: srv.URL, client: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends a request and returns the answer with its body.
func (e *env) do(t *testing.T, method, path string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// status returns run id's status in the store.
func (e *env) status(t *testing.T, id int64) checkpoint.Status {
	t.Helper()
	r, err := e.h.Store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r.Status
}

func TestUnknownPagesAre404(t *testing.T) {
	e := setup(t)
	for path, want := range map[string]string{
		"/runs/999":      "There is no run 999.",
		"/runs/999/live": "There is no run 999.",
		"/runs/abc":      `&#34;abc&#34; is not a run id.`,
		"/nope":          "There is no page /nope.",
		"/runs/":         "There is no page /runs/.",
	} {
		resp, body := e.do(t, http.MethodGet, path)
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, want) ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Errorf("GET %s = %d %s: %.300s; want a 404 page saying %q", path, resp.StatusCode, resp.Header.Get("Content-Type"), body, want)
		}
	}
}

// An action is a POST: any other method is refused and changes nothing,
// and an unknown action is not found.
func TestActionsArePostOnly(t *testing.T) {
	e := setup(t)
	run := e.h.StartDailySync("2026-03-02", 2, 1)
	for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		resp, body := e.do(t, method, fmt.Sprintf("/runs/%d/cancel", run.ID))
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodPost || !strings.Contains(body, "it takes a POST") {
			t.Errorf("%s /runs/%d/cancel = %d (Allow %q), want 405 allowing POST", method, run.ID, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	if s := e.status(t, run.ID); s != checkpoint.StatusPending {
		t.Errorf("after refused requests the run is %s, want still pending", s)
	}
	if resp, _ := e.do(t, http.MethodPost, fmt.Sprintf("/runs/%d/explode", run.ID)); resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST an unknown action = %d, want 404", resp.StatusCode)
	}
	if resp, _ := e.do(t, http.MethodPost, "/runs/x/cancel"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST an action on a bad id = %d, want 404", resp.StatusCode)
	}
}

// A refused action answers 303 back to the run's page, which shows why in
// a flash message once; a done action says what it did.
func TestActionsFlashTheirOutcome(t *testing.T) {
	e := setup(t)
	run := e.h.StartDailySync("2026-03-02", 2, 1)
	page := fmt.Sprintf("/runs/%d", run.ID)

	resp, _ := e.do(t, http.MethodPost, page+"/retry")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != page {
		t.Fatalf("POST %s/retry of a pending run = %d to %q, want 303 to %s", page, resp.StatusCode, resp.Header.Get("Location"), page)
	}
	resp, body := e.do(t, http.MethodGet, page)
	want := fmt.Sprintf("Not done: run %d is pending; only a failed, cancelled or timed-out run can be retried", run.ID)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `class="flash flash-error"`) || !strings.Contains(body, want) {
		t.Errorf("the run's page after a refused retry = %d, want a flash saying %q:\n%s", resp.StatusCode, want, body)
	}
	if _, again := e.do(t, http.MethodGet, page); strings.Contains(again, `class="flash`) {
		t.Error("the flash message shows again on reload")
	}
	if s := e.status(t, run.ID); s != checkpoint.StatusPending {
		t.Errorf("after a refused retry the run is %s, want pending", s)
	}

	// Pending: cancel and pause are offered; cancel it.
	if !strings.Contains(body, `action="`+page+`/cancel"`) || strings.Contains(body, `action="`+page+`/retry"`) {
		t.Errorf("a pending run's page offers the wrong buttons:\n%s", body)
	}
	if resp, _ := e.do(t, http.MethodPost, page+"/cancel"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST cancel = %d, want 303", resp.StatusCode)
	}
	_, body = e.do(t, http.MethodGet, page)
	if !strings.Contains(body, `class="flash flash-ok"`) || !strings.Contains(body, fmt.Sprintf("Run %d cancelled; it is cancelled now.", run.ID)) {
		t.Errorf("the run's page after cancel shows no success:\n%s", body)
	}
	if s := e.status(t, run.ID); s != checkpoint.StatusCancelled {
		t.Errorf("after cancel the run is %s", s)
	}
	// Cancelled: retry is offered now, cancel is not.
	if !strings.Contains(body, `action="`+page+`/retry"`) || strings.Contains(body, `action="`+page+`/cancel"`) {
		t.Errorf("a cancelled run's page offers the wrong buttons:\n%s", body)
	}

	// An action on a run that does not exist goes back to the list.
	resp, _ = e.do(t, http.MethodPost, "/runs/999/cancel")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Errorf("POST cancel of an unknown run = %d to %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	if _, body := e.do(t, http.MethodGet, "/"); !strings.Contains(body, "Run 999 does not exist.") {
		t.Errorf("the list after an action on an unknown run says nothing of it:\n%s", body)
	}
}

func TestListFiltersAndLiveParts(t *testing.T) {
	e := setup(t)
	a := e.h.StartDailySync("2026-03-02", 2, 1)
	b := e.h.StartDailySync("2026-03-03", 2, 1)
	if _, err := e.h.Control.Cancel(context.Background(), b.ID); err != nil {
		t.Fatal(err)
	}
	row := func(id int64) string { return fmt.Sprintf(`data-run-id="%d"`, id) }

	_, body := e.do(t, http.MethodGet, "/")
	if !strings.Contains(body, row(a.ID)) || !strings.Contains(body, row(b.ID)) || strings.Index(body, row(b.ID)) > strings.Index(body, row(a.ID)) {
		t.Errorf("the list does not show both runs, newest first:\n%s", body)
	}
	_, body = e.do(t, http.MethodGet, "/?status=cancelled")
	if strings.Contains(body, row(a.ID)) || !strings.Contains(body, row(b.ID)) || !strings.Contains(body, `data-live="/fragments/runs?status=cancelled"`) {
		t.Errorf("the list of cancelled runs:\n%s", body)
	}
	_, body = e.do(t, http.MethodGet, "/?status=bogus&job=daily-sync")
	if !strings.Contains(body, `There is no status &#34;bogus&#34;`) || !strings.Contains(body, row(a.ID)) {
		t.Errorf("the list with an unknown status does not say so and show every run:\n%s", body)
	}

	resp, body := e.do(t, http.MethodGet, "/fragments/runs?status=pending")
	if resp.StatusCode != http.StatusOK || strings.Contains(body, "<!doctype") || !strings.Contains(body, row(a.ID)) || strings.Contains(body, row(b.ID)) {
		t.Errorf("GET /fragments/runs?status=pending = %d, want the table of the pending run alone:\n%s", resp.StatusCode, body)
	}
	resp, body = e.do(t, http.MethodGet, fmt.Sprintf("/runs/%d/live", a.ID))
	if resp.StatusCode != http.StatusOK || strings.Contains(body, "<!doctype") || !strings.Contains(body, `role="progressbar"`) {
		t.Errorf("GET the live part of run %d = %d:\n%s", a.ID, resp.StatusCode, body)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("live part Cache-Control %q, want no-store", resp.Header.Get("Cache-Control"))
	}

	for path, ctype := range map[string]string{"/static/style.css": "text/css", "/static/live.js": "text/javascript"} {
		resp, body := e.do(t, http.MethodGet, path)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) || len(body) < 500 {
			t.Errorf("GET %s = %d %s (%d bytes)", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
	}
}

// postAndFollow posts action to run id's page, checks the 303, and returns
// the page it leads to.
func (e *env) postAndFollow(t *testing.T, id int64, action string) (location, body string) {
	t.Helper()
	resp, _ := e.do(t, http.MethodPost, fmt.Sprintf("/runs/%d/%s", id, action))
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST /runs/%d/%s = %d, want 303", id, action, resp.StatusCode)
	}
	location = resp.Header.Get("Location")
	_, body = e.do(t, http.MethodGet, location)
	return location, body
}

// The buttons take a run through pause, resume, cancel and a restart from
// zero, which opens the new run; each page offers what its state allows.
func TestPauseResumeCancelRestart(t *testing.T) {
	e := setup(t)
	run := e.h.StartDailySync("2026-03-02", 2, 2)
	page := fmt.Sprintf("/runs/%d", run.ID)
	offers := func(body string, want ...string) {
		t.Helper()
		var got []string
		for _, a := range []string{"retry", "cancel", "pause", "resume", "restart"} {
			if strings.Contains(body, `action="`+page+"/"+a+`"`) {
				got = append(got, a)
			}
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("the page offers %v, want %v", got, want)
		}
	}
	steps := []struct {
		action string
		status checkpoint.Status
		flash  string
		offers []string
	}{
		{"pause", checkpoint.StatusPaused, "paused at its next batch boundary", []string{"cancel", "resume"}},
		{"resume", checkpoint.StatusRunning, "resumed from its checkpoints", []string{"cancel", "pause"}},
		{"cancel", checkpoint.StatusCancelled, "cancelled; it is cancelled now", []string{"retry", "restart"}},
	}
	for _, st := range steps {
		loc, body := e.postAndFollow(t, run.ID, st.action)
		if loc != page || !strings.Contains(body, `class="flash flash-ok"`) || !strings.Contains(body, st.flash) {
			t.Errorf("%s: back to %s with %q expected; got %s:\n%s", st.action, page, st.flash, loc, body)
		}
		if s := e.status(t, run.ID); s != st.status {
			t.Errorf("after %s the run is %s, want %s", st.action, s, st.status)
		}
		offers(body, st.offers...)
	}

	loc, body := e.postAndFollow(t, run.ID, "restart")
	runs, err := e.h.Store.ListRuns(context.Background(), checkpoint.RunFilter{})
	if err != nil || len(runs) != 2 {
		t.Fatalf("after restart: %d runs, %v; want 2", len(runs), err)
	}
	fresh := runs[0]
	want := fmt.Sprintf("Run %d restarted from zero as run %d.", run.ID, fresh.ID)
	if loc != fmt.Sprintf("/runs/%d", fresh.ID) || !strings.Contains(body, want) || fresh.Generation != 2 || fresh.Processed != 0 {
		t.Errorf("restart led to %s (new run %+v), want the new run's page saying %q:\n%s", loc, fresh, want, body)
	}
	if s := e.status(t, run.ID); s != checkpoint.StatusCancelled {
		t.Errorf("the restarted run is %s now, want it left cancelled", s)
	}
	// A restart of a run that a newer generation followed is refused.
	if _, body := e.postAndFollow(t, run.ID, "restart"); !strings.Contains(body, `class="flash flash-error"`) {
		t.Errorf("a second restart of run %d was not refused:\n%s", run.ID, body)
	}
}
