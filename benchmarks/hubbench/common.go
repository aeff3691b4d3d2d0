package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Every record value starts with a 16-byte header: bytes 0..8 hold the send
// time in nanoseconds since the run's monotonic base (latency runs only),
// bytes 8..16 the record's index. The rest is log-like text, the same for
// every system.
const headerSize = 16

// warmupIndex marks the one record sent before a latency run to make sure
// the consumer is connected; it is not counted.
const warmupIndex = ^uint64(0)

// payloadTemplate returns size bytes of log-like text (space-separated words
// from a small vocabulary), deterministic so every system gets the same bytes.
func payloadTemplate(size int) []byte {
	words := strings.Fields("GET POST /api/v1/orders /static/app.js 200 404 500 user=alice user=bob " +
		"latency_ms=12 latency_ms=340 region=eu-west-1 region=us-east-2 msg=ok msg=retry trace=9f86d081")
	var b bytes.Buffer
	var x uint32 = 2463534242 // xorshift32
	for b.Len() < size {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b.WriteString(words[x%uint32(len(words))])
		b.WriteByte(' ')
	}
	return b.Bytes()[:size]
}

// newValue copies the template and writes idx into the header.
func newValue(tmpl []byte, idx uint64) []byte {
	v := slices.Clone(tmpl)
	binary.BigEndian.PutUint64(v[8:16], idx)
	return v
}

// tally checks that a consumer saw every index in [0, want) exactly once.
// It is not safe for concurrent use.
type tally struct {
	seen                   []uint64 // bitmap of indexes
	records, bytes, unique int64
	dups, bad              int64 // repeated indexes; wrong size or index out of range
}

func newTally(want int64) *tally { return &tally{seen: make([]uint64, (want+63)/64)} }

func (t *tally) add(v []byte, size int) {
	t.records++
	t.bytes += int64(len(v))
	if len(v) != size {
		t.bad++
		return
	}
	idx := binary.BigEndian.Uint64(v[8:16])
	if idx >= uint64(len(t.seen))*64 {
		t.bad++
		return
	}
	w, m := idx/64, uint64(1)<<(idx%64)
	if t.seen[w]&m != 0 {
		t.dups++
		return
	}
	t.seen[w] |= m
	t.unique++
}

// check returns an error unless exactly indexes 0..want-1 were seen once.
func (t *tally) check(want int64) error {
	if t.records != want || t.unique != want || t.dups != 0 || t.bad != 0 {
		return fmt.Errorf("read back %d records, want %d: %d distinct, %d duplicated, %d malformed (wrong size or index)",
			t.records, want, t.unique, t.dups, t.bad)
	}
	return nil
}

// latencyProbe stamps values with their send time and collects the
// send→receive latency of each value a consumer hands to observe.
// value and observe may be called from different goroutines.
type latencyProbe struct {
	base      time.Time
	size      int
	serverPID int // the server's process, 0 unknown
	tmpl      []byte
	mu        sync.Mutex // guards samples and sentAt (the consumer's side)
	samples   []time.Duration
	sentAt    []time.Duration // the send time of each sample, since base
	ackMu     sync.Mutex      // guards acks (the producer's side)
	acks      []time.Duration // send→acknowledgement, when the client tells (ack)
	received  atomic.Int64    // values observed, the warm-up value included
	bad       atomic.Int64    // values of the wrong size
}

// newLatencyProbe returns a probe for values of size bytes; serverPID,
// when not 0, is the server's process, whose CPU each run reports.
func newLatencyProbe(size, serverPID int) *latencyProbe {
	return &latencyProbe{base: time.Now(), size: size, tmpl: payloadTemplate(size), serverPID: serverPID}
}

// value returns a new value for idx stamped with the current time.
func (p *latencyProbe) value(idx uint64) []byte {
	v := newValue(p.tmpl, idx)
	binary.BigEndian.PutUint64(v[0:8], uint64(time.Since(p.base)))
	return v
}

func (p *latencyProbe) observe(v []byte) {
	now := time.Since(p.base)
	if len(v) != p.size {
		p.bad.Add(1)
		p.received.Add(1)
		return
	}
	if binary.BigEndian.Uint64(v[8:16]) != warmupIndex {
		sent := time.Duration(binary.BigEndian.Uint64(v[0:8]))
		p.mu.Lock()
		p.samples = append(p.samples, now-sent)
		p.sentAt = append(p.sentAt, sent)
		p.mu.Unlock()
	}
	p.received.Add(1)
}

// ack records the send→acknowledgement time of a value the server
// acknowledged.
func (p *latencyProbe) ack(v []byte) {
	now := time.Since(p.base)
	if len(v) != p.size || binary.BigEndian.Uint64(v[8:16]) == warmupIndex {
		return
	}
	d := now - time.Duration(binary.BigEndian.Uint64(v[0:8]))
	p.ackMu.Lock()
	p.acks = append(p.acks, d)
	p.ackMu.Unlock()
}

// waitReceived waits until n values were observed or ctx ends.
func (p *latencyProbe) waitReceived(ctx context.Context, n int64) error {
	for p.received.Load() < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("consumer received %d of %d records: %w", p.received.Load(), n, context.Cause(ctx))
		case <-time.After(time.Millisecond):
		}
	}
	if b := p.bad.Load(); b > 0 {
		return fmt.Errorf("consumer received %d records of the wrong size", b)
	}
	return nil
}

// latency is the outcome of a latency run.
type latency struct {
	rate, achieved float64 // records/s asked for and sent
	samples        int
	p50, p99, max  time.Duration
	cpuWait        float64         // share of the run some task waited for a CPU; -1 unknown
	p99s           []time.Duration // the p99 of each run merged into this one (mergeSteps)
	ackP50, ackP99 time.Duration   // send→acknowledgement; 0 when not measured
	machineCPUs    float64         // CPUs the whole machine kept busy (/proc/stat); -1 unknown
	serverCPUs     float64         // CPUs the server's process used; -1 unknown
	// p99 round trip of the produce and fetch requests as the Kafka
	// client saw them (write to response read); 0 when not measured.
	produceRTT, fetchRTT time.Duration
	// The slowest produce and fetch request of the run as the client
	// saw it; zero when not measured.
	produceSlowest, fetchSlowest kgo.BrokerE2E
	// The consumer's fetches: how many, their mean response size, and
	// their round trips added up. With one fetch in flight, a busy time
	// near the run's length and large answers mean the consumer was
	// behind, limited by the fetches' pace rather than stalled by one.
	fetches        int
	fetchMeanBytes int64
	fetchBusy      time.Duration
	client         clientRuntime // what the benchmark process's runtime did meanwhile
	tail           tail          // how the slowest 1% were spread over the run
	// tcp lists the machine's TCP trouble counters that moved during
	// the run ("TCPTimeouts 2, TCPLossProbes 40"); empty when none did.
	tcp string
}

// tcpTrouble are the kernel's TCP counters (/proc/net/netstat TcpExt,
// /proc/net/snmp Tcp) that tell of a stalled connection on loopback:
// retransmission timeouts (200ms at least), loss probes, zero windows
// and their probes, and receive-queue pruning and drops.
var tcpTrouble = []string{"RetransSegs", "TCPTimeouts", "TCPLossProbes", "TCPLossProbeRecovery", "TCPFastRetrans",
	"TCPSpuriousRTOs", "TCPToZeroWindowAdv", "TCPWinProbe", "TCPZeroWindowDrop", "PruneCalled", "RcvPruned",
	"TCPRcvCollapsed", "TCPRcvQDrop", "TCPBacklogDrop", "TCPOFODrop", "TCPMemoryPressures"}

// tcpCounters reads the tcpTrouble counters of the machine; nil where
// /proc does not tell.
func tcpCounters() map[string]int64 {
	c := map[string]int64{}
	for _, f := range []string{"/proc/net/netstat", "/proc/net/snmp"} {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil
		}
		lines := strings.Split(string(b), "\n")
		for i := 0; i+1 < len(lines); i += 2 {
			names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
			for j := 1; j < len(names) && j < len(values); j++ {
				if slices.Contains(tcpTrouble, names[j]) {
					c[names[j]], _ = strconv.ParseInt(values[j], 10, 64)
				}
			}
		}
	}
	return c
}

// tcpCountersSince returns the tcpTrouble counters that moved since c0
// (tcpCounters), as "name delta" in tcpTrouble's order.
func tcpCountersSince(c0 map[string]int64) string {
	c1 := tcpCounters()
	if c0 == nil || c1 == nil {
		return ""
	}
	var moved []string
	for _, name := range tcpTrouble {
		if d := c1[name] - c0[name]; d != 0 {
			moved = append(moved, fmt.Sprintf("%s %d", name, d))
		}
	}
	return strings.Join(moved, ", ")
}

// cpuPressure returns the total time, since boot, during which some task
// on the machine was runnable but waited for a CPU (Linux PSI,
// /proc/pressure/cpu "some"), or false where the kernel does not tell.
func cpuPressure() (time.Duration, bool) {
	b, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "total="); ok {
			us, err := strconv.ParseInt(v, 10, 64)
			return time.Duration(us) * time.Microsecond, err == nil
		}
	}
	return 0, false
}

// machineBusy returns the CPU time, since boot, that the machine's CPUs
// spent on anything but idling and waiting for I/O (/proc/stat), or false
// where the kernel does not tell. Jiffies are in USER_HZ, 100 a second on
// Linux.
func machineBusy() (time.Duration, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, false
	}
	var busy int64
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, false
		}
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return time.Duration(busy) * 10 * time.Millisecond, true
}

// procCPU returns the user and system CPU time process pid used so far
// (/proc/PID/stat), or false.
func procCPU(pid int) (time.Duration, bool) {
	if pid <= 0 {
		return 0, false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from after its closing one (utime and stime are fields 14 and 15).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, true
}

// run sends values at rate records/s for dur through send (asynchronous),
// after one warm-up value that must come back before the clock starts, then
// calls flush and waits until every value was received.
func (p *latencyProbe) run(ctx context.Context, rate float64, dur time.Duration, send func([]byte) error, flush func(context.Context) error) (latency, error) {
	if err := send(p.value(warmupIndex)); err != nil {
		return latency{}, fmt.Errorf("warm-up send: %w", err)
	}
	wctx, cancel := context.WithTimeoutCause(ctx, 30*time.Second, errors.New("warm-up record not received within 30s"))
	err := p.waitReceived(wctx, 1)
	cancel()
	if err != nil {
		return latency{}, err
	}
	// Room for every sample up front: growing a slice of millions while
	// the consumer (or the producer's callback) waits on the lock would
	// put the probe's own copying into the tail it measures.
	want := int(rate*dur.Seconds()*1.05) + 1024
	p.mu.Lock()
	p.samples = slices.Grow(p.samples, want)
	p.sentAt = slices.Grow(p.sentAt, want)
	p.mu.Unlock()
	p.ackMu.Lock()
	p.acks = slices.Grow(p.acks, want)
	p.ackMu.Unlock()
	var sent int64
	rt0 := readRuntime()
	waited0, psi := cpuPressure()
	busy0, busyOK := machineBusy()
	srv0, srvOK := procCPU(p.serverPID)
	tcp0 := tcpCounters()
	start := time.Now()
	for elapsed := time.Duration(0); elapsed < dur; elapsed = time.Since(start) {
		for due := int64(rate * elapsed.Seconds()); sent < due; sent++ {
			if err := send(p.value(uint64(sent))); err != nil {
				return latency{}, fmt.Errorf("send record %d: %w", sent, err)
			}
		}
		select {
		case <-ctx.Done():
			return latency{}, context.Cause(ctx)
		case <-time.After(500 * time.Microsecond):
		}
	}
	took := time.Since(start)
	client := runtimeSince(rt0)
	client.cpuShare = client.cpu.Seconds() / took.Seconds()
	achieved := float64(sent) / took.Seconds()
	cpuWait := -1.0
	if waited1, ok := cpuPressure(); ok && psi {
		cpuWait = (waited1 - waited0).Seconds() / took.Seconds()
	}
	machine, server := -1.0, -1.0
	if busy1, ok := machineBusy(); ok && busyOK {
		machine = (busy1 - busy0).Seconds() / took.Seconds()
	}
	if srv1, ok := procCPU(p.serverPID); ok && srvOK {
		server = (srv1 - srv0).Seconds() / took.Seconds()
	}
	if err := flush(ctx); err != nil {
		return latency{}, fmt.Errorf("flush: %w", err)
	}
	wctx, cancel = context.WithTimeoutCause(ctx, 60*time.Second, errors.New("records not all received within 60s of the last send"))
	defer cancel()
	if err := p.waitReceived(wctx, sent+1); err != nil {
		return latency{}, err
	}
	tcp := tcpCountersSince(tcp0)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ackMu.Lock()
	defer p.ackMu.Unlock()
	if len(p.samples) == 0 {
		return latency{}, errors.New("no latency samples: the rate is too low for the duration")
	}
	s := slices.Clone(p.samples) // sorted; p.samples stays paired with p.sentAt
	slices.Sort(s)
	l := latency{rate: rate, achieved: achieved, samples: len(s), p50: quantile(s, 0.50), p99: quantile(s, 0.99), max: s[len(s)-1], cpuWait: cpuWait, machineCPUs: machine, serverCPUs: server, client: client}
	l.tail = tailEpisodes(p.samples, p.sentAt, l.p99, tailGap)
	l.tcp = tcp
	if len(p.acks) > 0 {
		slices.Sort(p.acks)
		l.ackP50, l.ackP99 = quantile(p.acks, 0.50), quantile(p.acks, 0.99)
	}
	return l, nil
}

// tailGap is the most time between the sends of two records of a
// latency run's slowest 1% for them to count as one episode (tailEpisodes).
const tailGap = 10 * time.Millisecond

// tail tells how the slowest 1% of a latency run's records (those at or
// above its p99) were spread over the run: in how many episodes they
// were sent (records sent at most tailGap apart belong to one) and how
// much of the run those episodes span, from the first send of each to its
// last. A few short episodes mean a few stalls (a pause somewhere, then
// the backlog drained) set the p99; many, or a span near the run's
// length, a tail spread over the whole run.
type tail struct {
	episodes int
	span     time.Duration
}

// tailEpisodes returns the tail of a latency run whose record i took
// lat[i] and was sent at sent[i], p99 being the run's p99.
func tailEpisodes(lat, sent []time.Duration, p99, gap time.Duration) tail {
	var slow []time.Duration
	for i, d := range lat {
		if d >= p99 {
			slow = append(slow, sent[i])
		}
	}
	if len(slow) == 0 {
		return tail{}
	}
	slices.Sort(slow)
	t := tail{episodes: 1}
	first := slow[0]
	for i := 1; i < len(slow); i++ {
		if slow[i]-slow[i-1] > gap {
			t.span += slow[i-1] - first
			t.episodes++
			first = slow[i]
		}
	}
	t.span += slow[len(slow)-1] - first
	return t
}

// quantile returns the q quantile of sorted samples s.
func quantile(s []time.Duration, q float64) time.Duration {
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// clientRuntime is what the benchmark process's own Go runtime did during
// a latency run: its garbage collections, the longest stop-the-world pause
// they took, and the p99 of how long its goroutines waited to run once
// runnable. The client's own delays are part of every latency it
// measures, for every system alike.
type clientRuntime struct {
	gcs                uint64
	pauseMax, schedP99 time.Duration
	cpu                time.Duration // user and system CPU of the benchmark process
	cpuShare           float64       // cpu over the run's length: CPUs the clients kept busy
}

var runtimeMetrics = []string{"/gc/cycles/total:gc-cycles", "/sched/pauses/total/gc:seconds", "/sched/latencies:seconds"}

// processCPU returns the user and system CPU time the process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runtimeSnap is the process's runtime metrics and CPU time at a moment.
type runtimeSnap struct {
	samples []metrics.Sample
	cpu     time.Duration
}

func readRuntime() runtimeSnap {
	s := make([]metrics.Sample, len(runtimeMetrics))
	for i, name := range runtimeMetrics {
		s[i].Name = name
	}
	metrics.Read(s)
	return runtimeSnap{s, processCPU()}
}

// runtimeSince returns what the runtime did since before was read.
func runtimeSince(before0 runtimeSnap) clientRuntime {
	after0 := readRuntime()
	before, after := before0.samples, after0.samples
	r := clientRuntime{cpu: after0.cpu - before0.cpu}
	if before[0].Value.Kind() != metrics.KindUint64 {
		return r
	}
	r.gcs = after[0].Value.Uint64() - before[0].Value.Uint64()
	diff := func(i int) (*metrics.Float64Histogram, []uint64) {
		a, b := after[i].Value.Float64Histogram(), before[i].Value.Float64Histogram()
		d := make([]uint64, len(a.Counts))
		for j := range d {
			d[j] = a.Counts[j] - b.Counts[j]
		}
		return a, d
	}
	// The upper bound of the highest bucket below which fraction q of
	// the samples fall (q 1: the bucket of the largest).
	at := func(h *metrics.Float64Histogram, d []uint64, q float64) time.Duration {
		var n uint64
		for _, c := range d {
			n += c
		}
		if n == 0 {
			return 0
		}
		var seen uint64
		for j, c := range d {
			seen += c
			if float64(seen) >= q*float64(n) {
				if up := h.Buckets[j+1]; !math.IsInf(up, 1) {
					return time.Duration(up * 1e9)
				}
				return time.Duration(h.Buckets[j] * 1e9)
			}
		}
		return 0
	}
	h, d := diff(1)
	r.pauseMax = at(h, d, 1)
	h, d = diff(2)
	r.schedP99 = at(h, d, 0.99)
	return r
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// proc is a peer server started by the harness.
type proc struct {
	name, logPath string
	cmd           *exec.Cmd
	done          chan struct{} // closed when the process exited
	err           error         // Wait's result, valid after done
}

// startProc starts path with args, output to logPath. The child gets its
// own process group (a terminal ^C reaches only the harness, which stops
// it in order) and SIGTERM if the harness dies.
func startProc(name, logPath, path string, args ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	fmt.Printf("starting %s: %s\n", name, shellQuote(append([]string{path}, args...)))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// waitTCP waits until addr accepts connections, the process exits, or 15s pass.
func (p *proc) waitTCP(ctx context.Context, addr string) error {
	if err := waitListening(ctx, addr, p.done); err != nil {
		return fmt.Errorf("%s: %w; its log:\n%s", p.name, err, p.logTail())
	}
	return nil
}

// waitListening dials addr until it accepts a connection, for up to 15s or
// until exited (which may be nil) is closed.
func waitListening(ctx context.Context, addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listening on %s after 15s: %w", addr, err)
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before listening on %s", addr)
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM, waits up to 15s, then kills. Safe to call twice.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		fmt.Fprintf(os.Stderr, "hubbench: %s did not stop within 15s of SIGTERM; killing it\n", p.name)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// logTail returns the last 2 KiB of the process's log.
func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return string(b)
}

// firstError keeps the first error reported by asynchronous callbacks.
type firstError struct {
	mu  sync.Mutex
	err error
}

func (f *firstError) set(err error) {
	if err == nil {
		return
	}
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// shellQuote renders a command line for the reader to copy.
func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " *'\"$\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
