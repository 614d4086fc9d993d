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

// clientOf returns the throttle's key of the client r came from (see key);
// for a request from one of proxies, of the last address of its
// X-Forwarded-For that is not one of them: each proxy appends the address it
// was sent from, so the entries right of that one were written by trusted
// proxies, and those left of it by the client, who could write anything. An
// entry that is no address stops the walk at the nearest proxy. From any
// other peer, X-Forwarded-For is ignored.
func clientOf(r *http.Request, proxies []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, ok := parseHop(host)
	if !ok {
		return host
	}
	if !trusted(peer, proxies) {
		return key(peer)
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		addrs := strings.Split(hops[i], ",")
		for j := len(addrs) - 1; j >= 0; j-- {
			ip, ok := parseHop(addrs[j])
			if !ok {
				return key(peer) // malformed: the nearest proxy is all that is known
			}
			if !trusted(ip, proxies) {
				return key(ip)
			}
			peer = ip // the farthest trusted proxy so far
		}
	}
	return key(peer)
}

// parseHop parses an address as a proxy writes it: an IP, maybe in
// brackets or with a port; its zone dropped, IPv4-mapped unmapped.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return ip.Unmap().WithZone(""), true
}

// key is the throttle's key of a client: its IPv4 address, or its IPv6 /64
// (what one subscriber holds).
func key(ip netip.Addr) string {
	if ip.Is6() {
		return netip.PrefixFrom(ip, 64).Masked().String()
	}
	return ip.String()
}

// trusted reports whether ip is within one of proxies.
func trusted(ip netip.Addr, proxies []netip.Prefix) bool {
	for _, p := range proxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
