package admin_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/syncworker/syncworker/internal/admin"
)

// Every place that checks a token in the Authorization header is a place
// to guess it: GET /login (which redirects a caller whose token is right)
// and /readyz (which tells such a caller why a check failed) count wrong
// tokens as the protected routes do, and tell nothing while their client
// is held up.
func TestNoUnthrottledTokenOracle(t *testing.T) {
	broken := admin.Check{Name: "broken", Ping: func(context.Context) error { return errors.New("secret detail") }}
	for _, path := range []string{"/login", "/readyz"} {
		t.Run(strings.TrimPrefix(path, "/"), func(t *testing.T) {
			e := setup(t, token, func(o *admin.Options) { o.Ready = append(o.Ready, broken) })
			wrong := header("Authorization", "Bearer wrong-"+token, "Accept", acceptJSON)
			for range 10 {
				e.do(t, http.MethodGet, path, wrong, "")
			}
			if resp, body := e.do(t, http.MethodGet, "/api/runs", wrong, ""); resp.StatusCode != http.StatusTooManyRequests {
				t.Errorf("a wrong token after 10 wrong ones at %s = %d %s, want 429: the guesses there were not counted", path, resp.StatusCode, body)
			}
			// Held up now (by the guesses at path or at /api): the right
			// token must tell nothing.
			for range 10 {
				e.do(t, http.MethodGet, "/api/runs", wrong, "")
			}
			right := header("Authorization", "Bearer "+token, "Accept", acceptJSON)
			resp, body := e.do(t, http.MethodGet, path, right, "")
			switch path {
			case "/login":
				if resp.StatusCode == http.StatusSeeOther {
					t.Errorf("GET /login with the right token while held up = 303 to %q: it tells a right guess from a wrong one", resp.Header.Get("Location"))
				}
			case "/readyz":
				if strings.Contains(body, "secret detail") {
					t.Errorf("GET /readyz with the right token while held up shows the detail: %s", body)
				}
			}
		})
	}
}
