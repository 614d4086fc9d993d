package admin

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Guesses of the admin token are throttled by client: each may get it wrong
// failBurst times at once, then once every failEvery; past that, what it
// sends is refused unchecked (429) until it may guess again. Only wrong
// tokens count, so a client that logs in right is never held up by its own
// requests. Clients behind one proxy share its address, and its limit,
// unless the proxy is trusted (see clientOf).
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

// clientOf returns the address r came from, without its port; for a
// request from one of proxies, the last address of its X-Forwarded-For that
// is not one of them: each proxy appends the address it was sent from, so
// the entries right of that one were written by trusted proxies, and those
// left of it by the client, who could write anything. From any other
// address, X-Forwarded-For is ignored.
func clientOf(r *http.Request, proxies []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if !trusted(host, proxies) {
		return host
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		addrs := strings.Split(hops[i], ",")
		for j := len(addrs) - 1; j >= 0; j-- {
			addr := strings.TrimSpace(addrs[j])
			if !trusted(addr, proxies) {
				if addr == "" {
					return host // a malformed header: the proxy is all that is known
				}
				return addr
			}
			host = addr // the farthest trusted proxy so far
		}
	}
	return host
}

// trusted reports whether addr is an IP within one of proxies.
func trusted(addr string, proxies []netip.Prefix) bool {
	if len(proxies) == 0 {
		return false
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range proxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
