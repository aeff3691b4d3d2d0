//go:build bcastprobe

package hub

import (
	"sync"
	"time"
)

// Probe records, for BenchmarkBroadcast's breakdown of the delay (build
// tag bcastprobe only), when the fan-out published events and when its
// writers wrote them.
var Probe probe

type ProbeWrite struct {
	T, Seq int64
	N      int32
	W      int8
}

type ProbePass struct {
	Start, End, From, Head int64
	Subs, Written          int32
	W                      int8
}

type ProbePub struct{ T, Head int64 }

type probe struct {
	mu     sync.Mutex
	Writes []ProbeWrite
	Passes []ProbePass
	Pubs   []ProbePub
}

func (p *probe) Reset() {
	p.mu.Lock()
	p.Writes, p.Passes, p.Pubs = p.Writes[:0], p.Passes[:0], p.Pubs[:0]
	p.mu.Unlock()
}

func probeNow() int64 { return time.Now().UnixNano() }

func probePub(head int64) {
	t := probeNow()
	Probe.mu.Lock()
	Probe.Pubs = append(Probe.Pubs, ProbePub{t, head})
	Probe.mu.Unlock()
}

func probeWrite(w int, seq int64, n int) {
	t := probeNow()
	Probe.mu.Lock()
	Probe.Writes = append(Probe.Writes, ProbeWrite{t, seq, int32(n), int8(w)})
	Probe.mu.Unlock()
}

func probePass(w int, start, from, head int64, subs, written int) {
	p := ProbePass{Start: start, End: probeNow(), From: from, Head: head, Subs: int32(subs), Written: int32(written), W: int8(w)}
	Probe.mu.Lock()
	Probe.Passes = append(Probe.Passes, p)
	Probe.mu.Unlock()
}
