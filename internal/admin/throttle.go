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

// guess checks a guess of client's at now with right, and counts it when
// it is wrong; a client past its wrong guesses is not checked: guess
// returns how long it must wait before its next guess is (wait > 0), and
// does not call right. Checking and counting are one step, under the lock,
// so that guesses sent at once are counted as those sent one by one (right
// is a constant-time comparison of hashes: it holds the lock for
// microseconds).
func (f *failures) guess(client string, now time.Time, right func() bool) (ok bool, wait time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.byClient[client]
	if l != nil {
		if tokens := l.TokensAt(now); tokens < 1 {
			return false, time.Duration(math.Ceil((1 - tokens) * float64(failEvery)))
		}
	}
	if right() {
		return true, 0
	}
	if l == nil {
		l = f.add(client, now)
	}
	l.AllowN(now, 1)
	return false, 0
}

// add remembers a new client, and returns its limiter; f.mu is held.
func (f *failures) add(client string, now time.Time) *rate.Limiter {
	if f.byClient == nil {
		f.byClient = make(map[string]*rate.Limiter)
	}
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
	l := rate.NewLimiter(rate.Every(failEvery), failBurst)
	f.byClient[client] = l
	return l
}

// clientOf returns the address r came from, without its port.
func clientOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
