package admin

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Wrong tokens sent at once are counted as those sent one by one: of many
// concurrent wrong guesses from one client, at most failBurst are checked
// (401), the others refused unchecked (429).
func TestWrongTokensAtOnceAreCountedEach(t *testing.T) {
	for round := range 20 {
		now := time.Now()
		a := newAuth("admin-test-token-0123456789", 0, func() time.Time { return now }, "/", slog.New(slog.DiscardHandler))
		h := a.require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		var mu sync.Mutex
		checked := 0
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 400 {
			wg.Go(func() {
				r := httptest.NewRequest(http.MethodGet, "/api/runs", nil)
				r.RemoteAddr = "192.0.2.1:1234"
				r.Header.Set("Authorization", "Bearer wrong")
				r.Header.Set("Accept", "application/json")
				w := httptest.NewRecorder()
				<-start
				h.ServeHTTP(w, r)
				if w.Code == http.StatusUnauthorized {
					mu.Lock()
					checked++
					mu.Unlock()
				}
			})
		}
		close(start)
		wg.Wait()
		if checked > failBurst {
			t.Fatalf("round %d: of 400 wrong tokens at once, %d were checked (401), want at most %d", round, checked, failBurst)
		}
	}
}
