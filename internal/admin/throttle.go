package admin

import (
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Guesses of the admin token are throttled by client: each may get it wrong
// failBurst times at once, then once every failEvery; past that, what it
// sends is refused unchecked (429) until it may guess again. Only wrong
// tokens count, so a client that logs in right is never held up by its own
// requests; clients behind one proxy share its address, and its limit.
const (
	failBurst = 10
	failEvery = 6 * time.Second
	// maxClients bounds the clients remembered: past it, those that have
	// not failed for long enough to have their whole burst back go, and
	// then any. (A guesser with more addresses than that gets their
	// bursts; the token's length is what stands against it.)
	maxClients = 4096
)

// failures counts the wrong tokens of each client.
type failures struct {
	mu       sync.Mutex
	byClient map[string]*rate.Limiter
}

// wait returns how long client must wait before its next guess is checked;
// 0 when it may guess now.
func (f *failures) wait(client string, now time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.byClient[client]
	if l == nil {
		return 0
	}
	tokens := l.TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	return time.Duration(math.Ceil((1 - tokens) * float64(failEvery)))
}

// fail counts a wrong token of client.
func (f *failures) fail(client string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byClient == nil {
		f.byClient = make(map[string]*rate.Limiter)
	}
	l := f.byClient[client]
	if l == nil {
		if len(f.byClient) >= maxClients {
			for c, old := range f.byClient {
				if old.TokensAt(now) >= failBurst {
					delete(f.byClient, c)
				}
			}
			for c := range f.byClient {
				if len(f.byClient) < maxClients {
					break
				}
				delete(f.byClient, c)
			}
		}
		l = rate.NewLimiter(rate.Every(failEvery), failBurst)
		f.byClient[client] = l
	}
	l.AllowN(now, 1)
}

// clientOf returns the address r came from, without its port.
func clientOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
