package main

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"
)

func TestKneeReport(t *testing.T) {
	cfg := &config{kneeStart: 10000, kneeFactor: 1.5, kneeStep: time.Second, kneeP99: 5 * time.Millisecond}
	ms := time.Millisecond
	results := []result{
		{system: "weir", produce: newRate(400000, 400e6, time.Second),
			knee: []latency{{rate: 10000, achieved: 10000, p99: 2 * ms}, {rate: 15000, achieved: 15000, p99: 3 * ms}, {rate: 22500, achieved: 22500, p99: 9 * ms}}},
		{system: "NATS JetStream", produce: newRate(50000, 50e6, time.Second),
			knee: []latency{{rate: 10000, achieved: 10000, p99: 4 * ms}, {rate: 15000, achieved: 15000, p99: 6 * ms}}},
	}
	rep := kneeReport(cfg, results)
	floor := append(results[:1:1], result{system: floorName, produce: newRate(800000, 800e6, time.Second),
		knee: []latency{{rate: 100000, achieved: 100000, p99: 2 * ms}, {rate: 150000, achieved: 150000, p99: 9 * ms}}})
	frep := kneeReport(cfg, floor)
	for _, want := range []string{"floor: knee 100000 records/s, 12% of its maximum produce rate (800000 records/s), 25% of weir's (400000 records/s)",
		"floor, the protocol's least, reached 25% of weir's maximum produce rate: a knee of 40% of it is beyond even the floor"} {
		if !strings.Contains(frep, want) {
			t.Errorf("report with a floor lacks %q:\n%s", want, frep)
		}
	}
	for _, want := range []string{"weir: knee 15000 records/s, 4% of its maximum", "NATS JetStream: knee 10000 records/s, 20% of its maximum", "| 22500 | 0.00 | 9.00 | - | 0.00 | 0.00 | 0.00 | 0 | - | - | - | - | - | - | - |"} {
		if !strings.Contains(rep, want) {
			t.Errorf("report lacks %q:\n%s", want, rep)
		}
	}
	var got []string
	kneeTargets(cfg, &results[0], &results[1], func(what, g string, measured, met bool) { got = append(got, what+": "+g) })
	if len(got) != 2 || !strings.Contains(got[1], "1 rates compared") {
		t.Errorf("targets %q", got)
	}
}

// TestRunKnee checks that the systems take turns at every rate, that a
// system stops after the rate where its median p99 passed the limit, and
// that repeated steps merge into their median.
func TestRunKnee(t *testing.T) {
	ms := time.Millisecond
	cfg := &config{kneeStart: 100, kneeFactor: 2, kneeStep: time.Millisecond, kneeP99: 5 * ms, kneeRepeat: 3, kneeBeyond: 1, timeout: time.Minute}
	var order []string
	// p99 by system and rate; the middle value of three is the median.
	p99 := map[string]map[float64][]time.Duration{
		"a": {100: {1 * ms, 9 * ms, 2 * ms}, 200: {6 * ms, 7 * ms, 1 * ms}, 400: {9 * ms, 9 * ms, 9 * ms}},
		"b": {100: {1 * ms, 1 * ms, 1 * ms}, 200: {2 * ms, 2 * ms, 2 * ms}, 400: {3 * ms, 3 * ms, 3 * ms}, 800: {8 * ms, 8 * ms, 8 * ms}, 1600: {9 * ms, 9 * ms, 9 * ms}},
	}
	calls := map[string]map[float64]int{"a": {}, "b": {}}
	sys := func(name string, maxRate float64) *kneeSystem {
		res := &result{system: name, produce: newRate(int64(maxRate), 0, time.Second)}
		return &kneeSystem{res: res, step: func(_ context.Context, rate float64) (latency, error) {
			order = append(order, name)
			i := calls[name][rate]
			calls[name][rate]++
			return latency{rate: rate, achieved: rate, samples: 10, p99: p99[name][rate][i], cpuWait: 0.01}, nil
		}}
	}
	a, b := sys("a", 10000), sys("b", 10000)
	if err := runKnee(context.Background(), cfg, []*kneeSystem{a, b}); err != nil {
		t.Fatal(err)
	}
	// a goes one rate past its knee (200/s, median 6 ms): to 400/s.
	if want := []string{"a", "b", "b", "a", "a", "b", "b", "a", "a", "b", "b", "a", "a", "b", "b", "a", "a", "b", "b", "b", "b", "b", "b", "b"}; !slices.Equal(order, want) {
		t.Errorf("order of steps = %v, want %v", order, want)
	}
	if got := len(a.res.knee); got != 3 {
		t.Errorf("a ran %d rates, want 3 (one past the median p99 of 200/s, 6 ms)", got)
	}
	if got := len(b.res.knee); got != 5 {
		t.Errorf("b ran %d rates, want 5 (one past 800/s)", got)
	}
	if got := a.res.knee[0].p99; got != 2*ms {
		t.Errorf("a's p99 at 100/s = %v, want the median 2ms", got)
	}
	if got := knee(cfg, a.res.knee); got != 100 {
		t.Errorf("knee(a) = %v, want 100", got)
	}
	if got := knee(cfg, b.res.knee); got != 400 {
		t.Errorf("knee(b) = %v, want 400", got)
	}
}

// TestRuntimeSince checks that a step's client figures count the
// collections made during it and only those.
func TestRuntimeSince(t *testing.T) {
	before := readRuntime()
	if r := runtimeSince(before); r.gcs != 0 {
		t.Fatalf("no collection yet, runtimeSince counts %d", r.gcs)
	}
	runtime.GC()
	runtime.GC()
	if r := runtimeSince(before); r.gcs != 2 || r.pauseMax <= 0 {
		t.Fatalf("after two collections: %+v", r)
	}
}

// TestClientGC checks that a limit turns GOGC off under it until the
// restore, and 0 leaves the collector alone.
func TestClientGC(t *testing.T) {
	gogc, limit := debug.SetGCPercent(100), debug.SetMemoryLimit(math.MaxInt64)
	defer func() { debug.SetGCPercent(gogc); debug.SetMemoryLimit(limit) }()
	clientGC(0)()
	if g := debug.SetGCPercent(100); g != 100 {
		t.Fatalf("limit 0 changed GOGC to %d", g)
	}
	restore := clientGC(256 << 20)
	if g, l := debug.SetGCPercent(-1), debug.SetMemoryLimit(-1); g != -1 || l != 256<<20 {
		t.Fatalf("limit 256MiB: GOGC %d, memory limit %d", g, l)
	}
	restore()
	if g, l := debug.SetGCPercent(100), debug.SetMemoryLimit(-1); g != 100 || l != math.MaxInt64 {
		t.Fatalf("restored: GOGC %d, memory limit %d", g, l)
	}
}

// TestMergeStepsBreakdown checks that repeated steps merge their
// acknowledgement latency, request round trips, machine and client CPU
// into medians and sum their GCs.
func TestMergeStepsBreakdown(t *testing.T) {
	ms := time.Millisecond
	m := mergeSteps([]latency{
		{ackP99: 9 * ms, machineCPUs: 1.9, serverCPUs: 0.4, produceRTT: 7 * ms, fetchRTT: 1 * ms, client: clientRuntime{gcs: 1, cpuShare: 0.9, pauseMax: ms}},
		{ackP99: 1 * ms, machineCPUs: 1.1, serverCPUs: 0.6, produceRTT: 2 * ms, fetchRTT: 8 * ms, client: clientRuntime{gcs: 2, cpuShare: 0.1}},
		{ackP99: 3 * ms, machineCPUs: 1.5, serverCPUs: 0.5, produceRTT: 3 * ms, fetchRTT: 4 * ms, client: clientRuntime{gcs: 3, cpuShare: 0.5, pauseMax: 2 * ms}},
	})
	if m.ackP99 != 3*ms || m.client.cpuShare != 0.5 || m.client.gcs != 6 || m.client.pauseMax != 2*ms ||
		m.machineCPUs != 1.5 || m.serverCPUs != 0.5 || m.otherCPUs() != 0.5 || m.produceRTT != 3*ms || m.fetchRTT != 4*ms {
		t.Fatalf("merged %+v", m)
	}
}

// TestRefineKnee checks that the knee is narrowed between the ladder's
// rates by bisection (geometric middles), each middle run -knee-repeat
// times, and that a system with no failing rate above its knee is not
// refined.
func TestRefineKnee(t *testing.T) {
	ms := float64(time.Millisecond)
	cfg := &config{kneeStart: 100, kneeFactor: 2, kneeStep: time.Millisecond, kneeP99: 5 * time.Millisecond, kneeRepeat: 3, kneeRefine: 2, timeout: time.Minute}
	var ran []float64
	// p99 grows with the rate: 1 ms per 100 records/s, within 5 ms up to 500/s.
	a := &kneeSystem{res: &result{system: "a", produce: newRate(10000, 0, time.Second)},
		step: func(_ context.Context, rate float64) (latency, error) {
			ran = append(ran, rate)
			return latency{rate: rate, achieved: rate, samples: 10, p99: time.Duration(rate / 100 * ms)}, nil
		}}
	// b never fails below its maximum produce rate: nothing to refine.
	b := &kneeSystem{res: &result{system: "b", produce: newRate(300, 0, time.Second)},
		step: func(_ context.Context, rate float64) (latency, error) {
			return latency{rate: rate, achieved: rate, samples: 10, p99: time.Millisecond}, nil
		}}
	if err := runKnee(context.Background(), cfg, []*kneeSystem{a, b}); err != nil {
		t.Fatal(err)
	}
	// Ladder 100, 200, 400, 800 (8 ms: over, and -knee-beyond 0), then
	// sqrt(400*800) = 566 (over), sqrt(400*566) = 476.
	var rates []float64
	for _, l := range a.res.knee {
		rates = append(rates, l.rate)
	}
	if want := []float64{100, 200, 400, 800, 566, 476}; !slices.Equal(rates, want) {
		t.Errorf("a's rates = %v, want %v", rates, want)
	}
	if n := len(ran); n != 3*6 {
		t.Errorf("a ran %d steps, want 18 (3 per rate)", n)
	}
	if got := knee(cfg, a.res.knee); got != 476 {
		t.Errorf("knee(a) = %v, want 476 (refined between 400 and 566)", got)
	}
	if got := len(b.res.knee); got != 2 {
		t.Errorf("b ran %d rates, want 2 (100 and 200; 400 is above its produce rate, nothing to refine)", got)
	}
	rep := kneeReport(cfg, []result{*a.res, *b.res})
	if !strings.Contains(rep, "a between the ladder's rates, at 476 records/s: p50 0.00 ms, p99 4.76 ms") || !strings.Contains(rep, "a: knee 476 records/s") {
		t.Errorf("report lacks the refined step:\n%s", rep)
	}
}

// TestMachineBusy checks that the machine's busy CPU time, and this
// process's as /proc/PID/stat tells it, grow by about what this process
// burns meanwhile (at least most of it).
func TestMachineBusy(t *testing.T) {
	b0, ok := machineBusy()
	p0, pok := procCPU(os.Getpid())
	if !ok || !pok {
		t.Skip("no /proc/stat")
	}
	c0 := processCPU()
	for processCPU()-c0 < 200*time.Millisecond {
	}
	b1, _ := machineBusy()
	p1, _ := procCPU(os.Getpid())
	if d := b1 - b0; d < 150*time.Millisecond {
		t.Errorf("machine busy grew %v while this process burnt 200ms of CPU", d)
	}
	if d := p1 - p0; d < 150*time.Millisecond || d > 400*time.Millisecond {
		t.Errorf("procCPU(self) grew %v while this process burnt 200ms of CPU", d)
	}
	if _, ok := procCPU(0); ok {
		t.Errorf("procCPU(0) reports a CPU time")
	}
}

// TestProbeReservesSamples checks that a latency run never grows its
// slices of samples while it runs: copying millions of them under the
// lock that the consumer and the producer's callbacks take would add the
// probe's own pauses to the tail it measures.
func TestProbeReservesSamples(t *testing.T) {
	p := newLatencyProbe(64, 0)
	var first, firstSent, firstAck *time.Duration
	send := func(v []byte) error {
		p.ack(v)
		p.observe(v)
		if binary.BigEndian.Uint64(v[8:16]) != warmupIndex && first == nil {
			first, firstSent, firstAck = unsafe.SliceData(p.samples), unsafe.SliceData(p.sentAt), unsafe.SliceData(p.acks)
		}
		return nil
	}
	l, err := p.run(context.Background(), 50000, 200*time.Millisecond, send, func(context.Context) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if l.samples < 5000 {
		t.Fatalf("%d samples, want about 10000", l.samples)
	}
	if unsafe.SliceData(p.samples) != first || unsafe.SliceData(p.sentAt) != firstSent || unsafe.SliceData(p.acks) != firstAck {
		t.Errorf("the samples (%d), their send times or acks (%d) were reallocated during the run", len(p.samples), len(p.acks))
	}
	if l.tail.episodes < 1 || l.tail.span > 200*time.Millisecond {
		t.Errorf("tail %+v of a 200ms run, want at least one episode within it", l.tail)
	}
}

// TestTailEpisodes checks how the slowest 1% of a run are grouped into
// episodes by their send times: records sent within tailGap of the
// previous slow one belong to its episode, whatever their order in the
// samples (the consumer's arrival order).
func TestTailEpisodes(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name      string
		lat, sent []time.Duration // a record's latency and send time
		p99       time.Duration
		want      tail
	}{
		{"one slow record", []time.Duration{1 * ms, 2 * ms}, []time.Duration{0, 1 * ms}, 2 * ms, tail{episodes: 1}},
		{"one stall", []time.Duration{1 * ms, 20 * ms, 18 * ms, 15 * ms, 1 * ms}, []time.Duration{0, 100 * ms, 105 * ms, 112 * ms, 200 * ms}, 9 * ms, tail{episodes: 1, span: 12 * ms}},
		{"two stalls, out of order", []time.Duration{30 * ms, 1 * ms, 20 * ms, 25 * ms, 1 * ms}, []time.Duration{900 * ms, 0, 100 * ms, 108 * ms, 500 * ms}, 9 * ms, tail{episodes: 2, span: 8 * ms}},
		{"spread", []time.Duration{9 * ms, 9 * ms, 9 * ms}, []time.Duration{0, 11 * ms, 22 * ms}, 9 * ms, tail{episodes: 3}},
		{"none at p99", []time.Duration{1 * ms}, []time.Duration{0}, 2 * ms, tail{}},
	} {
		if got := tailEpisodes(tc.lat, tc.sent, tc.p99, tailGap); got != tc.want {
			t.Errorf("%s: tailEpisodes(%v, %v, %v) = %+v, want %+v", tc.name, tc.lat, tc.sent, tc.p99, got, tc.want)
		}
	}
}

// TestFaster checks that of two produce runs the one that moved more
// records a second counts, whichever came first.
func TestFaster(t *testing.T) {
	slow, fast := newRate(1000, 1e6, 2*time.Second), newRate(1000, 1e6, time.Second)
	if got := slow.faster(fast); got != fast {
		t.Errorf("slow.faster(fast) = %v, want %v", got, fast)
	}
	if got := fast.faster(slow); got != fast {
		t.Errorf("fast.faster(slow) = %v, want %v", got, fast)
	}
	if got := (rate{}).faster(slow); got != slow {
		t.Errorf("zero.faster(slow) = %v, want %v", got, slow)
	}
}

// TestOffsetCheck: the consumer's offsets run on from 0 in each partition;
// the first gap is an error that names the partition and what is missing.
func TestOffsetCheck(t *testing.T) {
	var c offsetCheck
	for _, o := range []int64{0, 1, 2} {
		c.see(0, o)
		c.see(1, o)
	}
	if c.err != nil {
		t.Fatalf("no gap: %v", c.err)
	}
	c.see(1, 7)
	c.see(0, 3)
	c.see(0, 9)
	if c.err == nil || !strings.Contains(c.err.Error(), "partition 1: offset 7 where 3 was due") || !strings.Contains(c.err.Error(), "the 4 record(s) from 3") {
		t.Fatalf("gap in partition 1: err %v", c.err)
	}
	var start offsetCheck
	start.see(0, 5)
	if start.err == nil {
		t.Fatal("a partition read from the start began at offset 5 with no error")
	}
}
