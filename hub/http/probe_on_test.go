//go:build bcastprobe

package http

import (
	"fmt"
	"os"
	"runtime/metrics"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/weirhub/weir/hub"
)

// The breakdown of BenchmarkBroadcast's delay (build tag bcastprobe).

var probeState struct {
	mu      sync.Mutex
	created []int64 // by event number
	acked   []int64
	m0      []metrics.Sample
}

func probeStart() {
	hub.Probe.Reset()
	probeState.created, probeState.acked = probeState.created[:0], probeState.acked[:0]
	probeState.m0 = probeMetrics()
}

func probeMetrics() []metrics.Sample {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}, {Name: "/sched/pauses/total/gc:seconds"}, {Name: "/gc/cycles/total:gc-cycles"}, {Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s
}

// probeCreated records the creation time of the next event.
func probeCreated(t int64) { probeState.created = append(probeState.created, t) }

// probeAcked records that the events created so far are acknowledged.
func probeAcked() {
	t := time.Now().UnixNano()
	for len(probeState.acked) < len(probeState.created) {
		probeState.acked = append(probeState.acked, t)
	}
}

func pct(d []int64, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return float64(d[min(len(d)-1, int(float64(len(d))*p))]) / 1e6
}

func dist(name string, d []int64) string {
	return fmt.Sprintf("%-34s n=%-8d p50=%7.3f p90=%7.3f p99=%7.3f max=%7.3f ms", name, len(d), pct(d, .5), pct(d, .9), pct(d, .99), pct(d, 1))
}

func histDiff(a, b *metrics.Float64Histogram, scale float64) string {
	var n uint64
	counts := make([]uint64, len(b.Counts))
	for i := range b.Counts {
		counts[i] = b.Counts[i]
		if i < len(a.Counts) {
			counts[i] -= a.Counts[i]
		}
		n += counts[i]
	}
	q := func(p float64) float64 {
		var c uint64
		for i, x := range counts {
			c += x
			if float64(c) >= p*float64(n) {
				return b.Buckets[i+1] * scale
			}
		}
		return 0
	}
	var sum float64
	for i, x := range counts {
		if x > 0 {
			sum += float64(x) * b.Buckets[i] * scale
		}
	}
	return fmt.Sprintf("n=%d p50<=%.3f p99<=%.3f p999<=%.3f max<=%.3f sum>=%.1f ms", n, q(.5), q(.99), q(.999), q(1), sum)
}

func probeRuntime(who string, m0 []metrics.Sample) {
	m1 := probeMetrics()
	fmt.Fprintf(os.Stderr, "probe %s sched latency: %s\n", who, histDiff(m0[0].Value.Float64Histogram(), m1[0].Value.Float64Histogram(), 1e3))
	fmt.Fprintf(os.Stderr, "probe %s gc stw pauses: %s\n", who, histDiff(m0[1].Value.Float64Histogram(), m1[1].Value.Float64Histogram(), 1e3))
	fmt.Fprintf(os.Stderr, "probe %s gc cycles %d, allocated %d MB\n", who, m1[2].Value.Uint64()-m0[2].Value.Uint64(), (m1[3].Value.Uint64()-m0[3].Value.Uint64())>>20)
}

// probeChildStart and probeChildEnd measure the child's runtime.
func probeChildStart() []metrics.Sample { return probeMetrics() }
func probeChildEnd(m0 []metrics.Sample) { probeRuntime("child", m0) }

// probeReport prints the breakdown of the server side of the delay.
func probeReport(b *testing.B, subs int) {
	if subs == 0 {
		return
	}
	probeRuntime("server", probeState.m0)
	c, a := probeState.created, probeState.acked
	p := &hub.Probe
	var ack, pub, write, pubToPass, inPass, passDur, passEvs, passSubs []int64
	pubAt := make([]int64, len(c)+1)
	j := 0
	for _, pb := range p.Pubs {
		for ; j < int(pb.Head) && j < len(pubAt); j++ {
			pubAt[j] = pb.T
		}
	}
	for i := range c {
		if i < len(a) {
			ack = append(ack, a[i]-c[i])
			if pubAt[i] > 0 {
				pub = append(pub, pubAt[i]-a[i])
			}
		}
	}
	// Passes by writer, in time order: the pass a write belongs to.
	type pass = hub.ProbePass
	var passes [8][]pass
	for _, ps := range p.Passes {
		passDur = append(passDur, ps.End-ps.Start)
		passEvs = append(passEvs, ps.Head-ps.From)
		passSubs = append(passSubs, int64(ps.Written))
		passes[ps.W] = append(passes[ps.W], ps)
	}
	k := [8]int{}
	for _, w := range p.Writes {
		ws := passes[w.W]
		for k[w.W] < len(ws) && ws[k[w.W]].End < w.T {
			k[w.W]++
		}
		var start int64
		if k[w.W] < len(ws) {
			start = ws[k[w.W]].Start
		}
		for e := w.Seq; e < w.Seq+int64(w.N) && int(e) < len(c); e++ {
			write = append(write, w.T-c[e])
			if start > 0 {
				inPass = append(inPass, w.T-start)
				if pubAt[e] > 0 {
					pubToPass = append(pubToPass, start-pubAt[e])
				}
			}
		}
	}
	fmt.Fprintln(os.Stderr, "probe", dist("created->acked", ack))
	fmt.Fprintln(os.Stderr, "probe", dist("acked->published", pub))
	fmt.Fprintln(os.Stderr, "probe", dist("published->pass start", pubToPass))
	fmt.Fprintln(os.Stderr, "probe", dist("pass start->written (per event,sub)", inPass))
	fmt.Fprintln(os.Stderr, "probe", dist("created->written (per event,sub)", write))
	fmt.Fprintln(os.Stderr, "probe", dist("pass duration", passDur))
	// Whether the writers run side by side: the time both were in a
	// pass, against each one's time in passes.
	if len(passes[0]) > 0 && len(passes[1]) > 0 {
		var busy [2]int64
		for w := range 2 {
			for _, ps := range passes[w] {
				busy[w] += ps.End - ps.Start
			}
		}
		var both int64
		j := 0
		for _, a := range passes[0] {
			for j < len(passes[1]) && passes[1][j].End <= a.Start {
				j++
			}
			for k := j; k < len(passes[1]) && passes[1][k].Start < a.End; k++ {
				both += min(a.End, passes[1][k].End) - max(a.Start, passes[1][k].Start)
			}
		}
		fmt.Fprintf(os.Stderr, "probe writers in passes: writer 0 %.0f ms, writer 1 %.0f ms, both at once %.0f ms\n",
			float64(busy[0])/1e6, float64(busy[1])/1e6, float64(both)/1e6)
	}
	raw := func(d []int64, p float64) int64 { slices.Sort(d); return d[min(len(d)-1, int(float64(len(d))*p))] }
	fmt.Fprintf(os.Stderr, "probe passes %d, events/pass p50 %d p99 %d max %d, subs written/pass p50 %d p99 %d\n", len(passDur), raw(passEvs, .5), raw(passEvs, .99), raw(passEvs, 1), raw(passSubs, .5), raw(passSubs, .99))
}
