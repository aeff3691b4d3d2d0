package main

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// requestTimes is a franz-go hook that keeps, for one request key (0
// Produce, 1 Fetch), each request's round trip as the client saw it: from
// writing the request to having read its response (BrokerE2E's
// DurationE2E). Set against the broker's own request durations it shows
// how much of a latency step's tail the broker's handling took and how
// much the way there and back (the kernel, the scheduler, the client).
type requestTimes struct {
	key  int16
	mu   sync.Mutex
	rtt  []time.Duration
	slow kgo.BrokerE2E // the slowest request seen
	busy time.Duration // the round trips added up
	read int64         // response bytes read, all requests
}

var _ kgo.HookBrokerE2E = (*requestTimes)(nil)

func (h *requestTimes) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e kgo.BrokerE2E) {
	if key != h.key || e.Err() != nil {
		return
	}
	h.mu.Lock()
	h.rtt = append(h.rtt, e.DurationE2E())
	h.busy += e.DurationE2E()
	h.read += int64(e.BytesRead)
	if e.DurationE2E() > h.slow.DurationE2E() {
		h.slow = e
	}
	h.mu.Unlock()
}

// p99 returns the p99 round trip of the requests seen, or 0.
func (h *requestTimes) p99() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.rtt) == 0 {
		return 0
	}
	slices.Sort(h.rtt)
	return quantile(h.rtt, 0.99)
}

// slowest returns the slowest request seen, the zero BrokerE2E for none.
func (h *requestTimes) slowest() kgo.BrokerE2E {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.slow
}

// slowRequest tells where a request's round trip went: its total, then
// the conn.Write, the wait before the client began to read the response
// (behind earlier responses), and the conn.Read (for a fetch that
// includes the broker's long poll), with the bytes each way.
func slowRequest(e kgo.BrokerE2E) string {
	return fmt.Sprintf("%s (write %s of %d B, read wait %s, read %s of %d B)",
		ms(e.DurationE2E()), ms(e.TimeToWrite), e.BytesWritten, ms(e.ReadWait), ms(e.TimeToRead), e.BytesRead)
}

// load returns how many requests were seen, their response bytes on
// average, and their round trips added up.
func (h *requestTimes) load() (n int, meanRead int64, busy time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n = len(h.rtt); n > 0 {
		meanRead = h.read / int64(n)
	}
	return n, meanRead, h.busy
}
