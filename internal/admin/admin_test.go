package admin_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/syncworker/syncworker/internal/admin"
	"github.com/syncworker/syncworker/internal/api"
	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/harness"
)

// token is the admin token of the tests that set one.
const token = "admin-test-token-0123456789"

// clock is the time of a handler's sessions, moved by the test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// env is an admin handler served by httptest, composed as a worker
// composes it on a harness's Postgres schema and Redis database, with
// stand-ins for the metrics and the dashboard.
type env struct {
	h     *harness.Harness
	url   string
	clock *clock
	// client follows no redirect, so that tests see them.
	client *http.Client
}

// stub is a stand-in handler that answers 200 with its name.
func stub(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, name+" "+r.URL.Path)
	})
}

// checks are the readiness checks of db and rdb, as a worker has them.
func checks(db interface{ Ping(context.Context) error }, rdb redis.UniversalClient) []admin.Check {
	return []admin.Check{
		{Name: "postgres", Ping: db.Ping},
		{Name: "redis", Ping: func(ctx context.Context) error { return rdb.Ping(ctx).Err() }},
	}
}

// setup serves the admin handler of a new harness with tok (empty: none);
// configure, when set, adjusts its options.
func setup(t *testing.T, tok string, configure func(*admin.Options)) *env {
	t.Helper()
	return serve(t, harness.New(t, harness.Options{Symbols: 1}), tok, configure)
}

// serve serves the admin handler of h with tok.
func serve(t *testing.T, h *harness.Harness, tok string, configure func(*admin.Options)) *env {
	t.Helper()
	queues, err := asynq.ParseRedisURI(h.Config.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{now: time.Now()}
	opts := admin.Options{
		API:       api.New(api.Options{Runs: h.Store, Control: h.Control, Logger: h.Logger("api")}),
		Metrics:   stub("metrics"),
		Dashboard: stub("dashboard"),
		Queues:    queues,
		Ready:     checks(h.DB.Pool, h.Redis.Client),
		Token:     tok,
		Now:       c.Now,
		Logger:    h.Logger("admin"),
		Pprof:     true,
	}
	if configure != nil {
		configure(&opts)
	}
	a := admin.New(opts)
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Error(err)
		}
	})
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return &env{h: h, url: srv.URL, clock: c, client: &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// do sends a request with header and body, and returns the answer with its
// body read.
func (e *env) do(t *testing.T, method, path string, header http.Header, body string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// login logs in with tok through the form and returns the session cookie.
func (e *env) login(t *testing.T, tok, next string) *http.Cookie {
	t.Helper()
	resp, body := e.do(t, http.MethodPost, "/login", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
		url.Values{"token": {tok}, "next": {next}}.Encode())
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST /login = %d %s, want 303", resp.StatusCode, body)
	}
	for _, c := range resp.Cookies() {
		if c.Name == admin.SessionCookie {
			return c
		}
	}
	t.Fatalf("POST /login set no %s cookie: %v", admin.SessionCookie, resp.Header["Set-Cookie"])
	return nil
}

// header returns a header with the pairs k, v, k, v...
func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func cookieHeader(c *http.Cookie) http.Header { return header("Cookie", c.Name+"="+c.Value) }

// route is a protected route and what it answers an authorized caller.
type route struct {
	method, path string
	// want is the status of an authorized request; 0 for the retry,
	// which answers 200 the first time and 409 after (the run is running).
	want int
}

// protectedRoutes are every route that needs the token: the runs API,
// asynqmon's UI and API, the metrics, the dashboard and the profiles. run is a cancelled
// run, so that its retry is a real change.
func protectedRoutes(run checkpoint.Run) []route {
	id := itoa(run.ID)
	return []route{
		{http.MethodGet, "/api/runs", http.StatusOK},
		{http.MethodGet, "/api/runs/" + id, http.StatusOK},
		{http.MethodPost, "/api/runs/" + id + "/retry", 0},
		{http.MethodGet, "/monitoring/", http.StatusOK},
		{http.MethodGet, "/monitoring/queues", http.StatusOK}, // a page of asynqmon's UI
		{http.MethodGet, "/monitoring/api/queues", http.StatusOK},
		{http.MethodGet, "/metrics", http.StatusOK},
		{http.MethodGet, "/", http.StatusOK},
		{http.MethodGet, "/runs/" + id, http.StatusOK}, // a page of the dashboard
		{http.MethodGet, "/debug/pprof/", http.StatusOK},
		{http.MethodGet, "/debug/pprof/heap?debug=1", http.StatusOK},
		{http.MethodGet, "/debug/pprof/cmdline", http.StatusOK},
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

const (
	acceptJSON = "application/json"
	acceptPage = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
)

// With a token, every protected route refuses a caller without it: an API
// or scraper request (and any unsafe one) gets 401 with a Bearer challenge,
// a browser asking for a page is sent to the login form; a wrong token, a
// forged cookie or a cookie of another token is refused too. Health and
// readiness stay open. The bearer token, basic auth and the login cookie
// each pass. Nothing changes before an authorized request: the run stays
// cancelled until then.
func TestTokenGuardsEveryRoute(t *testing.T) {
	e := setup(t, token, nil)
	run := e.h.StartDailySync("2026-11-20", 5, 1)
	if _, err := e.h.Control.Cancel(context.Background(), run.ID); err != nil {
		t.Fatal(err)
	}
	routes := protectedRoutes(run)

	for _, open := range []string{"/healthz", "/readyz"} {
		if resp, body := e.do(t, http.MethodGet, open, header("Accept", acceptJSON), ""); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s without the token = %d %s, want 200: it stays open", open, resp.StatusCode, body)
		}
	}

	other := serve(t, e.h, "another-admin-token-9876543210", nil).login(t, "another-admin-token-9876543210", "/")
	longer := serve(t, e.h, token, func(o *admin.Options) { o.SessionTTL = 48 * time.Hour }).login(t, token, "/")
	good := e.login(t, token, "/")
	forged := *good
	forged.Value = good.Value[:len(good.Value)-2] + "AA"
	if forged.Value == good.Value {
		forged.Value = good.Value[:len(good.Value)-2] + "BB"
	}
	expSig := strings.SplitN(good.Value, ".", 2)
	later := &http.Cookie{Name: good.Name, Value: "9999999999." + expSig[1]} // another expiry with the same MAC

	refused := []struct {
		name   string
		header http.Header
	}{
		{"no credentials", header("Accept", acceptJSON)},
		{"no credentials, no Accept", header()},
		{"wrong bearer", header("Authorization", "Bearer "+token+"x", "Accept", acceptPage)},
		{"bearer of a prefix", header("Authorization", "Bearer "+token[:len(token)-1])},
		{"wrong basic password", header("Authorization", "Basic "+basic("admin", "nope-"+token))},
		{"token as basic user name", header("Authorization", "Basic "+basic(token, ""))},
		{"forged cookie", cookieHeader(&forged)},
		{"cookie of another token", cookieHeader(other)},
		{"cookie lasting longer than a login here", cookieHeader(longer)},
		{"cookie with its expiry changed", cookieHeader(later)},
		{"cookie holding the token", header("Cookie", admin.SessionCookie+"="+token)},
	}
	for _, rt := range routes {
		// A minute between routes gives this client its wrong guesses
		// back (TestWrongTokensAreThrottled).
		e.clock.Add(time.Minute)
		for _, c := range refused {
			resp, body := e.do(t, rt.method, rt.path, c.header, "")
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s (%s) = %d %s, want 401", rt.method, rt.path, c.name, resp.StatusCode, body)
				continue
			}
			if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer ") {
				t.Errorf("%s %s (%s): WWW-Authenticate %q, want a Bearer challenge", rt.method, rt.path, c.name, got)
			}
			if !strings.Contains(body, `"error":"authentication required`) {
				t.Errorf("%s %s (%s): body %s, want the JSON error", rt.method, rt.path, c.name, body)
			}
		}
		// A browser asking for a page goes to the login form, which
		// brings it back; an unsafe request is never redirected.
		resp, body := e.do(t, rt.method, rt.path, header("Accept", acceptPage), "")
		switch {
		case rt.method != http.MethodGet && resp.StatusCode != http.StatusUnauthorized:
			t.Errorf("%s %s from a browser = %d %s, want 401", rt.method, rt.path, resp.StatusCode, body)
		case rt.method == http.MethodGet && (resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?next="+url.QueryEscape(rt.path)):
			t.Errorf("GET %s from a browser = %d to %q, want 303 to the login form", rt.path, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	if got, err := e.h.Store.Get(context.Background(), run.ID); err != nil || got.Status != checkpoint.StatusCancelled || got.Attempt != run.Attempt {
		t.Fatalf("run after the refused requests = %+v (%v), want it cancelled as before: a refused retry got through", got, err)
	}

	allowed := []struct {
		name   string
		header http.Header
	}{
		{"bearer", header("Authorization", "Bearer "+token)},
		{"bearer, lower-case scheme", header("Authorization", "bearer "+token)},
		{"basic auth, any user", header("Authorization", "Basic "+basic("ops", token))},
		{"login cookie", cookieHeader(good)},
	}
	retried := 0
	for _, c := range allowed {
		for _, rt := range routes {
			resp, body := e.do(t, rt.method, rt.path, c.header, "")
			want := rt.want
			if want == 0 { // the retry
				want = http.StatusConflict
				if retried == 0 {
					want = http.StatusOK
				}
				retried++
			}
			if resp.StatusCode != want {
				t.Errorf("%s %s (%s) = %d %s, want %d", rt.method, rt.path, c.name, resp.StatusCode, body, want)
			}
		}
	}
	if got, err := e.h.Store.Get(context.Background(), run.ID); err != nil || got.Status != checkpoint.StatusRunning {
		t.Errorf("run after the authorized retry = %+v (%v), want it running", got, err)
	}
	if strings.Contains(e.h.Log.String(), token) {
		t.Errorf("the token was logged:\n%s", e.h.Log.String())
	}
}

func basic(user, password string) string {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth(user, password)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

// Without a token every route is open (the loopback default), and asynqmon
// is read-only: its mutating API refuses, and the UI is told so.
func TestNoTokenOpensAllButAsynqmonIsReadOnly(t *testing.T) {
	e := setup(t, "", nil)
	run := e.h.StartDailySync("2026-11-20", 5, 1)
	for _, rt := range protectedRoutes(run) {
		if rt.want == 0 {
			continue // the retry of a pending run: 409, below
		}
		if resp, body := e.do(t, rt.method, rt.path, header("Accept", acceptJSON), ""); resp.StatusCode != rt.want {
			t.Errorf("%s %s without a token configured = %d %s, want %d", rt.method, rt.path, resp.StatusCode, body, rt.want)
		}
	}
	if resp, body := e.do(t, http.MethodPost, "/api/runs/"+itoa(run.ID)+"/retry", nil, ""); resp.StatusCode != http.StatusConflict {
		t.Errorf("POST retry of a pending run = %d %s, want 409 from the API", resp.StatusCode, body)
	}
	// /login has nothing to do: it sends the browser on.
	if resp, _ := e.do(t, http.MethodGet, "/login?next=/monitoring/", nil, ""); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/monitoring/" {
		t.Errorf("GET /login without a token = %d to %q, want 303 to /monitoring/", resp.StatusCode, resp.Header.Get("Location"))
	}
	verifyAsynqmon(t, e, nil, false)
}

// With a token, an authorized caller gets the full asynqmon: it may pause a
// queue and delete its tasks.
func TestAuthorizedAsynqmonIsWritable(t *testing.T) {
	e := setup(t, token, nil)
	verifyAsynqmon(t, e, header("Accept", acceptJSON), false)
	verifyAsynqmon(t, e, header("Authorization", "Bearer "+token), true)
}

// verifyAsynqmon checks that asynqmon, asked with h, shows a queue and
// changes it only when writable.
func verifyAsynqmon(t *testing.T, e *env, h http.Header, writable bool) {
	t.Helper()
	const queue = "admin-test"
	client := asynq.NewClientFromRedisClient(e.h.Redis.Client)
	if _, err := client.Enqueue(asynq.NewTask("admin:test", nil), asynq.Queue(queue)); err != nil {
		t.Fatal(err)
	}
	readOnly := `window.FLAG_READ_ONLY="` + map[bool]string{true: "false", false: "true"}[writable] + `"`
	resp, body := e.do(t, http.MethodGet, "/monitoring/", h, "")
	authorized := resp.StatusCode == http.StatusOK
	if authorized && !strings.Contains(body, readOnly) {
		t.Errorf("GET /monitoring/ does not say %s", readOnly)
	}
	if !authorized && resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /monitoring/ = %d, want 200 or 401", resp.StatusCode)
	}

	pause, _ := e.do(t, http.MethodPost, "/monitoring/api/queues/"+queue+":pause", h, "")
	del, _ := e.do(t, http.MethodDelete, "/monitoring/api/queues/"+queue+"/pending_tasks:delete_all", h, "")
	info, err := asynq.NewInspectorFromRedisClient(e.h.Redis.Client).GetQueueInfo(queue)
	if err != nil {
		t.Fatal(err)
	}
	if writable {
		if pause.StatusCode != http.StatusNoContent || !info.Paused || del.StatusCode != http.StatusOK || info.Pending != 0 {
			t.Errorf("authorized asynqmon: pause %d, delete %d, queue paused %t with %d pending; want 204, 200, paused with none",
				pause.StatusCode, del.StatusCode, info.Paused, info.Pending)
		}
		return
	}
	want := http.StatusMethodNotAllowed // asynqmon's read-only refusal
	if !authorized {
		want = http.StatusUnauthorized
	}
	if pause.StatusCode != want || del.StatusCode != want || info.Paused || info.Pending != 1 {
		t.Errorf("read-only asynqmon: pause %d, delete %d, queue paused %t with %d pending; want %d, %d, not paused with 1",
			pause.StatusCode, del.StatusCode, info.Paused, info.Pending, want, want)
	}
	if _, err := asynq.NewInspectorFromRedisClient(e.h.Redis.Client).DeleteAllPendingTasks(queue); err != nil {
		t.Fatal(err)
	}
}

// The login form: a wrong token shows the form again with the error and
// sets no cookie; the right one sets an HttpOnly, SameSite=Strict cookie
// that does not hold the token and sends the browser on to a page of this
// site only. The session ends after its time, and at logout.
func TestLogin(t *testing.T) {
	e := setup(t, token, nil)

	// A browser sent to the form from a page.
	resp, _ := e.do(t, http.MethodGet, "/monitoring/queues?x=1", header("Accept", acceptPage), "")
	loc := resp.Header.Get("Location")
	resp, body := e.do(t, http.MethodGet, loc, header("Accept", acceptPage), "")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(body, `<form method="post" action="/login">`) || !strings.Contains(body, `name="next" value="/monitoring/queues?x=1"`) {
		t.Fatalf("GET %s = %d %s, want the login form sending back to /monitoring/queues?x=1", loc, resp.StatusCode, body)
	}

	resp, body = e.do(t, http.MethodPost, "/login", header("Content-Type", "application/x-www-form-urlencoded"),
		url.Values{"token": {"wrong-" + token}, "next": {"/"}}.Encode())
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Wrong token") || len(resp.Cookies()) != 0 {
		t.Errorf("POST /login with a wrong token = %d, cookies %v, body %s; want 401, the error shown, no cookie", resp.StatusCode, resp.Cookies(), body)
	}

	resp, _ = e.do(t, http.MethodPost, "/login", header("Content-Type", "application/x-www-form-urlencoded"),
		url.Values{"token": {token}, "next": {"/monitoring/queues?x=1"}}.Encode())
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/monitoring/queues?x=1" {
		t.Errorf("POST /login = %d to %q, want 303 back to the page", resp.StatusCode, resp.Header.Get("Location"))
	}
	var c *http.Cookie
	for _, rc := range resp.Cookies() {
		if rc.Name == admin.SessionCookie {
			c = rc
		}
	}
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.MaxAge <= 0 {
		t.Fatalf("session cookie %+v, want HttpOnly, SameSite=Strict, Path=/, a Max-Age", c)
	}
	if strings.Contains(c.Value, token) || strings.Contains(c.Value, token[:8]) {
		t.Errorf("session cookie %q holds the token", c.Value)
	}
	if resp, body := e.do(t, http.MethodGet, "/api/runs", cookieHeader(c), ""); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /api/runs with the session = %d %s, want 200", resp.StatusCode, body)
	}
	if resp, _ := e.do(t, http.MethodGet, "/login?next=/metrics", cookieHeader(c), ""); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/metrics" {
		t.Errorf("GET /login logged in = %d to %q, want 303 on to /metrics", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Only pages of this site.
	for _, next := range []string{"//evil.example/x", "https://evil.example/", `/\evil.example`, "/\t/evil.example", "evil", "/login"} {
		resp, _ := e.do(t, http.MethodPost, "/login", header("Content-Type", "application/x-www-form-urlencoded"),
			url.Values{"token": {token}, "next": {next}}.Encode())
		if got := resp.Header.Get("Location"); got != "/" {
			t.Errorf("POST /login with next %q sends to %q, want /", next, got)
		}
	}

	// The session ends after 12 hours.
	e.clock.Add(12*time.Hour - time.Minute)
	if resp, _ := e.do(t, http.MethodGet, "/api/runs", cookieHeader(c), ""); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /api/runs with an 11h59m-old session = %d, want 200", resp.StatusCode)
	}
	e.clock.Add(2 * time.Minute)
	if resp, _ := e.do(t, http.MethodGet, "/api/runs", cookieHeader(c), ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /api/runs with a 12h01m-old session = %d, want 401", resp.StatusCode)
	}

	resp, _ = e.do(t, http.MethodPost, "/logout", cookieHeader(c), "")
	cleared := false
	for _, rc := range resp.Cookies() {
		cleared = cleared || (rc.Name == admin.SessionCookie && rc.MaxAge < 0 && rc.Value == "")
	}
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" || !cleared {
		t.Errorf("POST /logout = %d to %q, cookies %v; want 303 to /login clearing the cookie", resp.StatusCode, resp.Header.Get("Location"), resp.Header["Set-Cookie"])
	}
}

// A client that sends wrong tokens is refused unchecked after 10, with 429
// and Retry-After, the right token too, until it may guess again (one every
// 6 s); the login form counts the same guesses and says so. A session
// cookie still passes while its client is held up.
func TestWrongTokensAreThrottled(t *testing.T) {
	e := setup(t, token, nil)
	good := e.login(t, token, "/")
	wrong := header("Authorization", "Bearer wrong-"+token, "Accept", acceptJSON)
	for i := range 10 {
		if resp, body := e.do(t, http.MethodGet, "/api/runs", wrong, ""); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong token %d = %d %s, want 401", i+1, resp.StatusCode, body)
		}
	}
	right := header("Authorization", "Bearer "+token, "Accept", acceptJSON)
	resp, body := e.do(t, http.MethodGet, "/api/runs", right, "")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "6" || !strings.Contains(body, "too many wrong tokens") {
		t.Fatalf("the right token after 10 wrong ones = %d, Retry-After %q, %s; want 429, 6", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	form := url.Values{"token": {token}, "next": {"/"}}.Encode()
	resp, body = e.do(t, http.MethodPost, "/login", header("Content-Type", "application/x-www-form-urlencoded"), form)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "Too many wrong tokens") || len(resp.Cookies()) != 0 {
		t.Errorf("POST /login held up = %d, cookies %v, %s; want 429, no cookie", resp.StatusCode, resp.Cookies(), body)
	}
	if resp, body := e.do(t, http.MethodGet, "/api/runs", cookieHeader(good), ""); resp.StatusCode != http.StatusOK {
		t.Errorf("a session while its client is held up = %d %s, want 200", resp.StatusCode, body)
	}

	e.clock.Add(6 * time.Second)
	if resp, body := e.do(t, http.MethodGet, "/api/runs", right, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("the right token 6 s later = %d %s, want 200", resp.StatusCode, body)
	}
	// The one wrong guess given back is spent by a wrong login.
	bad := url.Values{"token": {"nope"}, "next": {"/"}}.Encode()
	if resp, _ := e.do(t, http.MethodPost, "/login", header("Content-Type", "application/x-www-form-urlencoded"), bad); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a wrong login with a guess left = %d, want 401", resp.StatusCode)
	}
	if resp, _ := e.do(t, http.MethodPost, "/login", header("Content-Type", "application/x-www-form-urlencoded"), form); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("the right login after the wrong one = %d, want 429", resp.StatusCode)
	}
}

// Behind a trusted reverse proxy, each client it names in X-Forwarded-For
// has its own wrong-token limit: one guesser holds up nobody else. The same
// header from a peer that is not trusted is ignored.
func TestWrongTokensThrottledByClientBehindATrustedProxy(t *testing.T) {
	for _, trust := range []bool{true, false} {
		e := setup(t, token, func(o *admin.Options) {
			if trust {
				o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
			}
		})
		from := func(client, tok string) http.Header {
			return header("Authorization", "Bearer "+tok, "Accept", acceptJSON, "X-Forwarded-For", client)
		}
		for i := range 10 {
			if resp, body := e.do(t, http.MethodGet, "/api/runs", from("198.51.100.1", "wrong-"+token), ""); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("trusted %v: wrong token %d = %d %s, want 401", trust, i+1, resp.StatusCode, body)
			}
		}
		if resp, _ := e.do(t, http.MethodGet, "/api/runs", from("198.51.100.1", token), ""); resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("trusted %v: the guesser's right token = %d, want 429", trust, resp.StatusCode)
		}
		want := http.StatusOK // its own limit
		if !trust {
			want = http.StatusTooManyRequests // the proxy's, which the guesser used up
		}
		if resp, _ := e.do(t, http.MethodGet, "/api/runs", from("198.51.100.2", token), ""); resp.StatusCode != want {
			t.Errorf("trusted %v: another client's right token = %d, want %d", trust, resp.StatusCode, want)
		}
	}
}

// Behind a TLS-terminating proxy that says so, the session cookie is
// Secure.
func TestSessionCookieSecureBehindProxy(t *testing.T) {
	e := setup(t, token, nil)
	form := url.Values{"token": {token}, "next": {"/"}}.Encode()
	for _, proto := range []string{"", "https", "https, http"} {
		h := header("Content-Type", "application/x-www-form-urlencoded")
		if proto != "" {
			h.Set("X-Forwarded-Proto", proto)
		}
		resp, _ := e.do(t, http.MethodPost, "/login", h, form)
		var c *http.Cookie
		for _, rc := range resp.Cookies() {
			if rc.Name == admin.SessionCookie {
				c = rc
			}
		}
		if want := proto != ""; c == nil || c.Secure != want {
			t.Errorf("login with X-Forwarded-Proto %q: cookie %+v, want Secure %v", proto, c, want)
		}
	}
}

// A browser logged in cannot be made by another site to change anything:
// a cross-origin POST with a valid session is refused and changes nothing,
// the same POST from the site's own page goes through.
func TestCrossOriginRequestsAreRefused(t *testing.T) {
	e := setup(t, token, nil)
	run := e.h.StartDailySync("2026-11-20", 5, 1)
	c := e.login(t, token, "/")
	cancel := "/api/runs/" + itoa(run.ID) + "/cancel"

	for _, h := range []http.Header{
		header("Origin", "http://evil.example"),
		header("Sec-Fetch-Site", "cross-site"),
		header("Sec-Fetch-Site", "same-site", "Origin", "http://sub."+strings.TrimPrefix(e.url, "http://")),
	} {
		h.Set("Cookie", c.Name+"="+c.Value)
		resp, body := e.do(t, http.MethodPost, cancel, h, "")
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "cross-origin request refused") {
			t.Errorf("cross-origin POST %s with a session (%v) = %d %s, want 403", cancel, h, resp.StatusCode, body)
		}
	}
	// A cross-origin login (login CSRF) is refused too.
	resp, _ := e.do(t, http.MethodPost, "/login", header("Content-Type", "application/x-www-form-urlencoded", "Sec-Fetch-Site", "cross-site"),
		url.Values{"token": {token}}.Encode())
	if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Errorf("cross-origin POST /login = %d with cookies %v, want 403 and none", resp.StatusCode, resp.Cookies())
	}
	if got, err := e.h.Store.Get(context.Background(), run.ID); err != nil || got.Status.Ended() {
		t.Fatalf("run after the cross-origin POSTs = %+v (%v), want it not cancelled", got, err)
	}

	resp, body := e.do(t, http.MethodPost, cancel, header("Cookie", c.Name+"="+c.Value, "Sec-Fetch-Site", "same-origin", "Origin", e.url), "")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("same-origin POST %s with a session = %d %s, want 200", cancel, resp.StatusCode, body)
	}
	if got, _ := e.h.Store.Get(context.Background(), run.ID); got.Status != checkpoint.StatusCancelled {
		t.Errorf("run after the same-origin cancel is %s, want cancelled", got.Status)
	}
}

// closedAddr returns an address of this host that nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// readyAnswer is the answer of /readyz.
type readyAnswer struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
	Error  string            `json:"error"`
}

// /readyz answers 200 when Postgres and Redis answer, and 503 naming the
// one that does not; /healthz answers 200 all the same. The reasons go
// only to callers that may see everything.
func TestReadiness(t *testing.T) {
	h := harness.New(t, harness.Options{Symbols: 1})
	deadRedis := redis.NewClient(&redis.Options{Addr: closedAddr(t), MaxRetries: -1})
	t.Cleanup(func() { deadRedis.Close() })
	deadPG, err := pgxpool.New(context.Background(), "postgres://postgres@"+closedAddr(t)+"/none?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(deadPG.Close)

	tests := []struct {
		name     string
		tok      string
		auth     http.Header
		db       interface{ Ping(context.Context) error }
		rdb      redis.UniversalClient
		wantCode int
		want     map[string]string // check: what its answer contains
	}{
		{"both up", "", nil, h.DB.Pool, h.Redis.Client, http.StatusOK, map[string]string{"postgres": "ok", "redis": "ok"}},
		{"redis down", "", nil, h.DB.Pool, deadRedis, http.StatusServiceUnavailable, map[string]string{"postgres": "ok", "redis": "connection refused"}},
		{"postgres down", "", nil, deadPG, h.Redis.Client, http.StatusServiceUnavailable, map[string]string{"postgres": "connect", "redis": "ok"}},
		{"both down, token, no credentials", token, nil, deadPG, deadRedis, http.StatusServiceUnavailable,
			map[string]string{"postgres": "unreachable (the worker log says why)", "redis": "unreachable (the worker log says why)"}},
		{"redis down, token, credentials", token, header("Authorization", "Bearer "+token), h.DB.Pool, deadRedis, http.StatusServiceUnavailable,
			map[string]string{"postgres": "ok", "redis": "connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := serve(t, h, tt.tok, func(o *admin.Options) { o.Ready = checks(tt.db, tt.rdb) })
			resp, body := e.do(t, http.MethodGet, "/readyz", tt.auth, "")
			var ans readyAnswer
			if err := json.Unmarshal([]byte(body), &ans); err != nil || resp.StatusCode != tt.wantCode {
				t.Fatalf("GET /readyz = %d %s (%v), want %d with JSON", resp.StatusCode, body, err, tt.wantCode)
			}
			var failed []string
			for name, want := range tt.want {
				if got := ans.Checks[name]; !strings.Contains(got, want) || (want != "ok" && got == "ok") {
					t.Errorf("check %s = %q, want it to say %q", name, got, want)
				}
				if want != "ok" && !strings.Contains(ans.Error, name) {
					t.Errorf("error %q does not name %s", ans.Error, name)
				}
				if want != "ok" {
					failed = append(failed, name)
				}
			}
			if wantStatus := map[bool]string{true: "ready", false: "unavailable"}[failed == nil]; ans.Status != wantStatus {
				t.Errorf("status %q, want %q", ans.Status, wantStatus)
			}
			if tt.auth == nil && tt.tok != "" && strings.Contains(body, "127.0.0.1") {
				t.Errorf("GET /readyz without credentials tells where the dependencies are: %s", body)
			}
			if resp, body := e.do(t, http.MethodGet, "/healthz", nil, ""); resp.StatusCode != http.StatusOK || body != "ok\n" {
				t.Errorf("GET /healthz = %d %q, want 200 ok whatever the dependencies", resp.StatusCode, body)
			}
		})
	}
}

// Health and readiness answer GET and HEAD only.
func TestChecksTakeOnlyGet(t *testing.T) {
	e := setup(t, token, nil)
	for _, path := range []string{"/healthz", "/readyz"} {
		if resp, _ := e.do(t, http.MethodHead, path, nil, ""); resp.StatusCode != http.StatusOK {
			t.Errorf("HEAD %s = %d, want 200", path, resp.StatusCode)
		}
		if resp, body := e.do(t, http.MethodPost, path, nil, ""); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("POST %s = %d %s, Allow %q; want 405, Allow GET, HEAD", path, resp.StatusCode, body, resp.Header.Get("Allow"))
		}
	}
}

// The profiles are Go's: the index lists them and a CPU profile of a
// second comes back as a profile. Without Pprof the paths are the
// dashboard's, which has no such page.
func TestPprof(t *testing.T) {
	e := setup(t, token, nil)
	auth := header("Authorization", "Bearer "+token)
	resp, body := e.do(t, http.MethodGet, "/debug/pprof/", auth, "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "goroutine") || !strings.Contains(body, "heap") {
		t.Errorf("GET /debug/pprof/ = %d %.200s, want the index of profiles", resp.StatusCode, body)
	}
	resp, body = e.do(t, http.MethodGet, "/debug/pprof/profile?seconds=1", auth, "")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/octet-stream" || len(body) == 0 ||
		!strings.HasPrefix(body, "\x1f\x8b") {
		t.Errorf("GET /debug/pprof/profile?seconds=1 = %d %q, %d bytes, want a gzipped profile",
			resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}

	off := serve(t, e.h, token, func(o *admin.Options) { o.Pprof = false })
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline"} {
		if resp, body := off.do(t, http.MethodGet, path, auth, ""); body != "dashboard "+path {
			t.Errorf("GET %s without Pprof = %d %.100s, want the dashboard's answer", path, resp.StatusCode, body)
		}
	}
}
