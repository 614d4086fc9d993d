package admin

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// SessionCookie is the name of the cookie a login through /login sets.
const SessionCookie = "syncworker_admin"

// sessionContext is what a session's MAC signs besides its expiry, so that
// the MAC is of no use anywhere else.
const sessionContext = "syncworker admin session v1\x00"

// maxLoginBody bounds the body of a login form.
const maxLoginBody = 64 << 10

//go:embed login.html
var loginHTML string

var loginPage = template.Must(template.New("login").Parse(loginHTML))

// auth decides who may use the protected routes. A caller is authorized
// by the token as a bearer token, as the password of basic auth (any user
// name), or by a session cookie that /login sets: the expiry and an HMAC
// of it keyed by the token, so the cookie never holds the token, and
// changing the token ends every session. Sessions are stateless: logging
// out clears the browser's cookie, and a copied cookie lasts until it
// expires or the token changes.
type auth struct {
	// token is nil when none is configured: every route is open.
	token  []byte
	digest [sha256.Size]byte
	ttl    time.Duration
	now    func() time.Time
	// home is where a login goes when it is not sent anywhere else.
	home string
	log  *slog.Logger
	// fails throttles wrong tokens, by client (see failures).
	fails failures
	// proxies are the trusted reverse proxies (see clientOf).
	proxies []netip.Prefix
}

func newAuth(token string, ttl time.Duration, now func() time.Time, home string, log *slog.Logger) *auth {
	a := &auth{ttl: ttl, now: now, home: home, log: log}
	if token != "" {
		a.token = []byte(token)
		a.digest = sha256.Sum256(a.token)
	}
	if a.ttl <= 0 {
		a.ttl = defaultSessionTTL
	}
	if a.now == nil {
		a.now = time.Now
	}
	return a
}

// check reports whether r may use every route: no token is configured, r
// carries a valid session cookie, or the token in its Authorization
// header. A token there is a guess when it is wrong, counted against r's
// client (see failures); a client past its wrong guesses is not checked:
// check then returns how long it must wait (wait > 0). Whatever checks the
// token goes through here (or guess), so that no route tells a right guess
// from a wrong one unthrottled.
func (a *auth) check(r *http.Request) (ok bool, wait time.Duration) {
	if a.token == nil || a.validCookie(r) {
		return true, 0
	}
	if r.Header.Get("Authorization") == "" {
		return false, 0
	}
	return a.guess(r, func() bool { return a.headerToken(r) })
}

// guess checks a guess of the token from r with right, throttled by r's
// client (see failures.guess), and logs a wrong one.
func (a *auth) guess(r *http.Request, right func() bool) (ok bool, wait time.Duration) {
	client := clientOf(r, a.proxies)
	ok, wait = a.fails.guess(client, a.now(), right)
	if !ok && wait == 0 {
		a.log.Warn("admin authentication refused: wrong token", "remote", client, "path", r.URL.Path)
	}
	return ok, wait
}

// headerToken reports whether r's Authorization header carries the token,
// as a bearer token or as the password of basic auth.
func (a *auth) headerToken(r *http.Request) bool {
	if scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") && a.matches(strings.TrimSpace(cred)) {
		return true
	}
	if _, password, ok := r.BasicAuth(); ok && a.matches(password) {
		return true
	}
	return false
}

// matches reports whether given is the token, in constant time: both are
// hashed first, so that not even the token's length leaks.
func (a *auth) matches(given string) bool {
	d := sha256.Sum256([]byte(given))
	return subtle.ConstantTimeCompare(d[:], a.digest[:]) == 1
}

// session returns the cookie value of a session that ends at exp:
// "<unix seconds>.<base64url HMAC-SHA256>".
func (a *auth) session(exp time.Time) string {
	e := strconv.FormatInt(exp.Unix(), 10)
	return e + "." + base64.RawURLEncoding.EncodeToString(a.mac(e))
}

func (a *auth) mac(exp string) []byte {
	m := hmac.New(sha256.New, a.token)
	m.Write([]byte(sessionContext + exp))
	return m.Sum(nil)
}

// validSession reports whether v is a session of this token that has not
// ended; one that would end later than a fresh login's is refused too.
func (a *auth) validSession(v string) bool {
	e, sig, ok := strings.Cut(v, ".")
	if !ok {
		return false
	}
	unix, err := strconv.ParseInt(e, 10, 64)
	if err != nil {
		return false
	}
	exp, now := time.Unix(unix, 0), a.now()
	if !now.Before(exp) || exp.After(now.Add(a.ttl)) {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	return err == nil && hmac.Equal(got, a.mac(e))
}

// require serves next to authorized callers and refuses the others (see
// check): a client past its wrong guesses with 429 and Retry-After.
func (a *auth) require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok, wait := a.check(r)
		switch {
		case ok:
			next.ServeHTTP(w, r)
		case wait > 0:
			a.tooMany(w, wait)
		default:
			a.deny(w, r)
		}
	})
}

// validCookie reports whether r carries a valid session cookie.
func (a *auth) validCookie(r *http.Request) bool {
	c, err := r.Cookie(SessionCookie)
	return err == nil && a.validSession(c.Value)
}

// tooMany refuses a client that got the token wrong too often: it may try
// again after wait.
func (a *auth) tooMany(w http.ResponseWriter, wait time.Duration) {
	secs := retryAfter(w, wait)
	w.Header().Set("Cache-Control", "no-store")
	writeError(w, http.StatusTooManyRequests, fmt.Sprintf("too many wrong tokens from this address: try again in %d s", secs))
}

// retryAfter tells the client to come back after wait, in whole seconds,
// and returns them.
func retryAfter(w http.ResponseWriter, wait time.Duration) int {
	secs := int(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	return secs
}

// deny refuses r: a browser asking for a page is sent to the login form,
// which sends it back after; anything else (the API, metrics scrapers,
// asynqmon's requests, a wrong token) gets a 401.
func (a *auth) deny(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if wantsPage(r) && r.Header.Get("Authorization") == "" {
		http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="syncworker admin"`)
	writeError(w, http.StatusUnauthorized, "authentication required: send the admin token as \"Authorization: Bearer TOKEN\" or as the password of basic auth, or log in at /login")
}

// wantsPage reports whether r is a browser's request for a page.
func wantsPage(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.Contains(r.Header.Get("Accept"), "text/html")
}

// loginData fills the login page.
type loginData struct {
	Next, Error string
}

// login serves the login form (GET) and logs in (POST): the right token
// sets the session cookie and sends the browser on to next; a wrong one
// shows the form again with the error and sets nothing.
func (a *auth) login(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		next := a.safeNext(r.URL.Query().Get("next"))
		if ok, _ := a.check(r); ok { // nothing to log in to, or logged in already
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
		a.render(w, http.StatusOK, loginData{Next: next})
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
		if err := r.ParseForm(); err != nil {
			writeError(w, http.StatusBadRequest, "login: the form does not parse")
			return
		}
		next := a.safeNext(r.PostForm.Get("next"))
		if a.token == nil {
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
		ok, wait := a.guess(r, func() bool { return a.matches(r.PostForm.Get("token")) })
		if wait > 0 {
			secs := retryAfter(w, wait)
			a.render(w, http.StatusTooManyRequests, loginData{Next: next,
				Error: fmt.Sprintf("Too many wrong tokens from this address. Try again in %d s.", secs)})
			return
		}
		if !ok {
			a.render(w, http.StatusUnauthorized, loginData{Next: next, Error: "Wrong token. Try again."})
			return
		}
		http.SetCookie(w, &http.Cookie{
			Name: SessionCookie, Value: a.session(a.now().Add(a.ttl)), Path: "/",
			MaxAge: int(a.ttl / time.Second), HttpOnly: true, SameSite: http.SameSiteStrictMode,
			Secure: secure(r),
		})
		http.Redirect(w, r, next, http.StatusSeeOther)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		writeError(w, http.StatusMethodNotAllowed, r.Method+" /login: method not allowed; use GET or POST")
	}
}

// logout clears the session cookie and sends the browser to the login
// form. It takes GET as well as POST: another site making a browser log
// out costs only a login.
func (a *auth) logout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, HEAD, POST")
		writeError(w, http.StatusMethodNotAllowed, r.Method+" /logout: method not allowed; use GET or POST")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure(r)})
	to := "/login"
	if a.token == nil {
		to = a.home
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// secure reports whether r's client reached this site over HTTPS: served
// here with TLS, or by a TLS-terminating proxy that says so in
// X-Forwarded-Proto. A cookie set for it is Secure, so that the browser
// never sends the session over plain HTTP. (A client that claims HTTPS
// falsely only gets a cookie its browser keeps from plain HTTP.)
func secure(r *http.Request) bool {
	// A chain of proxies lists one protocol each; the first is the client's.
	first, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
	return r.TLS != nil || strings.EqualFold(strings.TrimSpace(first), "https")
}

// safeNext returns next when it is a path of this site, else home: a login
// must not send the browser to another site (an open redirect).
func (a *auth) safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, `/\`) { // browsers read /\ as //
		return a.home
	}
	u, err := url.Parse(next) // finds the host of //host, and refuses control characters, which browsers drop
	if err != nil || u.Scheme != "" || u.Host != "" || u.Path == "/login" {
		return a.home
	}
	return next
}

// render writes the login page with code.
func (a *auth) render(w http.ResponseWriter, code int, d loginData) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(code)
	if err := loginPage.Execute(w, d); err != nil {
		a.log.Warn("admin login page not written", "error", err)
	}
}
