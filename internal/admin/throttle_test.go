package admin

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
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

func TestClientOf(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::1/128")}
	tests := []struct {
		name    string
		remote  string
		xff     []string
		proxies []netip.Prefix
		want    string
	}{
		{"no proxy trusted: the peer", "203.0.113.5:4000", []string{"198.51.100.7"}, nil, "203.0.113.5"},
		{"an untrusted peer's header is ignored", "203.0.113.5:4000", []string{"198.51.100.7"}, proxies, "203.0.113.5"},
		{"behind a trusted proxy: the client it names", "10.1.2.3:4000", []string{"198.51.100.7"}, proxies, "198.51.100.7"},
		{"what the client wrote is passed over", "10.1.2.3:4000", []string{"1.1.1.1, 198.51.100.7"}, proxies, "198.51.100.7"},
		{"through two trusted proxies", "10.1.2.3:4000", []string{"198.51.100.7, 10.9.9.9"}, proxies, "198.51.100.7"},
		{"headers on several lines", "10.1.2.3:4000", []string{"1.1.1.1", "198.51.100.7, 10.9.9.9"}, proxies, "198.51.100.7"},
		{"every hop trusted: the farthest", "10.1.2.3:4000", []string{"10.7.7.7, 10.9.9.9"}, proxies, "10.7.7.7"},
		{"no header: the proxy", "10.1.2.3:4000", nil, proxies, "10.1.2.3"},
		{"an empty entry: the proxy", "10.1.2.3:4000", []string{"198.51.100.7, "}, proxies, "10.1.2.3"},
		{"IPv6 proxy; an IPv6 client by its /64", "[2001:db8::1]:4000", []string{"2001:db8:0:1::99"}, proxies, "2001:db8:0:1::/64"},
		{"an IPv6 peer by its /64", "[2001:db8:0:2::5]:4000", nil, nil, "2001:db8:0:2::/64"},
		{"IPv4-mapped proxy", "[::ffff:10.1.2.3]:4000", []string{"198.51.100.7"}, proxies, "198.51.100.7"},
		{"IPv4-mapped client", "10.1.2.3:4000", []string{"::ffff:198.51.100.7"}, proxies, "198.51.100.7"},
		{"a client with its port", "10.1.2.3:4000", []string{"198.51.100.7:5555"}, proxies, "198.51.100.7"},
		{"a bracketed IPv6 client with its port", "10.1.2.3:4000", []string{"[2001:db8:0:3::7]:5555"}, proxies, "2001:db8:0:3::/64"},
		{"a bracketed IPv6 client", "10.1.2.3:4000", []string{"[2001:db8:0:3::7]"}, proxies, "2001:db8:0:3::/64"},
		{"a trusted hop with its port", "10.1.2.3:4000", []string{"198.51.100.7, 10.0.0.9:80"}, proxies, "198.51.100.7"},
		{"no address: the nearest proxy", "10.1.2.3:4000", []string{"unknown"}, proxies, "10.1.2.3"},
		{"no address behind a trusted hop: that hop", "10.1.2.3:4000", []string{"unknown, 10.0.0.9"}, proxies, "10.0.0.9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := clientOf(r, tt.proxies); got != tt.want {
				t.Errorf("clientOf = %q, want %q", got, tt.want)
			}
		})
	}
}
