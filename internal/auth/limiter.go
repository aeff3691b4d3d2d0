package auth

import (
	"net"
	"sync"
	"time"
)

// FailureLimiter counts failed authentications per address, so that
// guessing credentials is slow: an address with Max failures within
// Window is refused without checking until the window has passed. It is
// the one limiter of the Kafka listeners (hub/kafka) and the HTTP ones
// (internal/httpauth). The zero value is ready to use and safe for
// concurrent use.
type FailureLimiter struct {
	// Max is how many failures an address may make in Window. Default 10.
	Max int
	// Window is the time failures are counted over. Default a minute.
	Window time.Duration

	mu    sync.Mutex
	fails map[string]*failures
}

type failures struct {
	n     int
	since time.Time
}

func (l *FailureLimiter) limits() (int, time.Duration) {
	n, w := l.Max, l.Window
	if n <= 0 {
		n = 10
	}
	if w <= 0 {
		w = time.Minute
	}
	return n, w
}

// Allowed reports whether host may try to authenticate now.
func (l *FailureLimiter) Allowed(host string) bool {
	max, window := l.limits()
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.fails[host]
	if f == nil {
		return true
	}
	if time.Since(f.since) > window {
		delete(l.fails, host)
		return true
	}
	return f.n < max
}

// Failed counts a failed authentication from host.
func (l *FailureLimiter) Failed(host string) {
	_, window := l.limits()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fails == nil {
		l.fails = map[string]*failures{}
	}
	if len(l.fails) > 100000 { // bound the table under a flood of addresses
		now := time.Now()
		for h, f := range l.fails {
			if now.Sub(f.since) > window {
				delete(l.fails, h)
			}
		}
	}
	f := l.fails[host]
	if f == nil || time.Since(f.since) > window {
		f = &failures{since: time.Now()}
		l.fails[host] = f
	}
	f.n++
}

// Host is the host part of a host:port remote address, the key the
// limiter counts by.
func Host(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
