package http

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	nethttp "net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sys/unix"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/internal/redistest"
)

// BenchmarkBroadcast delivers 100-byte events to 0, 1, 8, 64 and 1,000
// subscribers of one dataset over Server-Sent Events (weir), and the same
// events to as many SUBSCRIBEd clients of a Redis channel (redis: a real
// redis-server, PUBLISH pipelined by the batch), and to as many
// subscribers of a minimal SSE server with no hub (floor: benchFloor, the
// delay no server beats with these subscribers on this machine), in the
// same run. Each
// event has a key of its own (nothing to coalesce). Without a rate the
// producer writes b.N events as fast as it can, in batches of 100; with
// rate=R it writes R events/s, in batches of R/100 every 10 ms, for 5
// seconds whatever b.N. It reports the producer's events/s, the events/s
// delivered to all subscribers together (until the last one has the last
// event), and the p99 delay from an event's creation to a subscriber
// reading it (sampled: one event in 16, every event with a rate). The
// subscribers only count the other events, and stop at an event "end"
// written after the last. They run in a child process of the test binary
// for both servers (-broadcast.clients=inprocess puts them among the
// goroutines of the benchmark, which is the weir server's process), and
// their processor time is part of cpu-µs/delivered; events/read is how
// many events the SSE subscribers got a read of their connections (about
// as many as a write of the server carried). make bench-broadcast runs
// it; -broadcast.transport=ws subscribes to weir over WebSocket instead;
// -broadcast.procs and -broadcast.nice set the weir hub's SubscribeProcs
// and SubscribeNice, -broadcast.client-nice and -broadcast.client-procs
// the subscribers' process's nice value and GOMAXPROCS, -broadcast.rate
// the rate of the 1,000 subscribers (default 1,000/s). The SSE and
// Redis subscribers read their sockets from one epoll goroutine per
// processor (runEpollSubscribers: subscribers that stand for other
// machines take less of this one); -broadcast.client-io=goroutines gives
// each a goroutine and Go's HTTP client or go-redis, as before, and
// -broadcast.client-poll has the epoll ones look at their sockets on a
// timer.
func BenchmarkBroadcast(b *testing.B) {
	if *benchRate < 100 || *benchRate%100 != 0 {
		b.Fatalf("-broadcast.rate=%d: want a multiple of 100 (a batch every 10 ms)", *benchRate)
	}
	for _, c := range []struct{ subs, rate int }{{0, 0}, {1, 0}, {8, 0}, {64, 0}, {1000, *benchRate}} {
		name := fmt.Sprintf("subscribers=%d", c.subs)
		if c.rate > 0 {
			name += fmt.Sprintf(",rate=%d", c.rate)
		}
		b.Run(name+"/weir", func(b *testing.B) { benchWeir(b, c.subs, c.rate) })
		b.Run(name+"/redis", func(b *testing.B) { benchRedis(b, c.subs, c.rate) })
		if c.subs > 0 {
			b.Run(name+"/floor", func(b *testing.B) { benchFloor(b, c.subs, c.rate) })
		}
	}
}

// benchRate is the rate of BenchmarkBroadcast's 1,000 subscribers, in
// events/s, a multiple of 100 (a batch every 10 ms; the target is
// at 1,000).
var benchRate = flag.Int("broadcast.rate", 1000, "events/s of BenchmarkBroadcast's 1,000 subscribers, a multiple of 100 (default 1000)")

// benchEvents is what the subscribers of one benchmark saw.
type benchEvents struct {
	mu       sync.Mutex
	delays   []time.Duration
	received atomic.Int64
	reads    atomic.Int64 // of the SSE subscribers' connections
}

// read takes one event: the subscribers check that the events come in
// order, and parse the delay of one in every (sample) from its value,
// {"t":UNIX_NANO,"n":SEQ} padded to 100 bytes, inside whatever frames
// it. *n counts the events read, and is the SEQ the next must have.
func (ev *benchEvents) read(data []byte, sample int, n *int, mine *[]time.Duration) error {
	i := bytes.Index(data, []byte(`{"t":`))
	if i < 0 {
		return fmt.Errorf("event %d: no {\"t\": in %q", *n, data)
	}
	data = data[i+5:]
	j := bytes.IndexByte(data, ',')
	if j < 0 || !bytes.HasPrefix(data[j:], []byte(`,"n":`)) {
		return fmt.Errorf("event %d: no \"n\" in %q", *n, data)
	}
	seq, k := 0, j+5
	for ; k < len(data) && data[k] >= '0' && data[k] <= '9'; k++ {
		seq = seq*10 + int(data[k]-'0')
	}
	if seq != *n {
		return fmt.Errorf("event %d has sequence number %d: out of order", *n, seq)
	}
	if *n++; *n%sample == 0 {
		sent, ok := parseDigits(data[:j])
		if !ok {
			return fmt.Errorf("event %d: time %q", seq, data[:j])
		}
		*mine = append(*mine, time.Since(time.Unix(0, sent)))
	}
	return nil
}

// parseDigits returns the number that b, ASCII digits only, writes; ok
// is false for anything else or past math.MaxInt64.
func parseDigits(b []byte) (v int64, ok bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var u uint64 // 19 digits fit
	for _, d := range b {
		if d < '0' || d > '9' {
			return 0, false
		}
		u = u*10 + uint64(d-'0')
	}
	if u > math.MaxInt64 {
		return 0, false
	}
	return int64(u), true
}

// sseReader reads Server-Sent Events as a browser's EventSource does:
// "field: value" lines (one space after the colon dropped), comments
// skipped, an event dispatched at a blank line with the data lines joined
// by newlines, the last id kept for a reconnection. It parses the lines
// where they were read, in one buffer (what the socket had, in one read,
// until a line does not fit), copying only the id it keeps and the data
// of an event of several data lines.
type sseReader struct {
	r          io.Reader
	buf        []byte
	start, end int // buf[start:end] is read and not parsed
	err        error
	event      []byte
	data       []byte // the data of the event being read, in buf or in joined
	joined     []byte
	lastID     []byte
	reads      int64 // reads that returned bytes
	// The event being read, kept across a next that returned
	// errWouldBlock (a reader of a non-blocking socket).
	reading, hasData, isJoined bool
}

// errWouldBlock is what the reader of a non-blocking socket returns when
// the socket has nothing more for now: next returns it, keeps what it
// parsed, and goes on from there when called again.
var errWouldBlock = errors.New("the socket has nothing to read for now")

// newSSEReader returns an sseReader of r with a 64 KiB buffer.
func newSSEReader(r io.Reader) *sseReader {
	return &sseReader{r: r, buf: make([]byte, 64<<10)}
}

// line returns the next line without its end (\n or \r\n), valid until
// the next call of next.
func (c *sseReader) line() ([]byte, error) {
	for {
		if i := bytes.IndexByte(c.buf[c.start:c.end], '\n'); i >= 0 {
			line := c.buf[c.start : c.start+i]
			c.start += i + 1
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			return line, nil
		}
		if c.err != nil {
			err := c.err
			if err == errWouldBlock {
				c.err = nil // read again on the next call
			}
			return nil, err
		}
		if c.start > 0 && c.end == len(c.buf) {
			// Make room: the partial line goes to the front (the
			// fields of the event being read are copied first).
			c.keep()
			c.end = copy(c.buf, c.buf[c.start:c.end])
			c.start = 0
		} else if c.end == len(c.buf) {
			c.keep()
			c.buf = append(c.buf, make([]byte, len(c.buf))...)
		}
		n, err := c.r.Read(c.buf[c.end:])
		if n > 0 {
			c.reads++
		}
		c.end += n
		c.err = err
	}
}

// keep copies the event's type and data out of buf before it is
// overwritten.
func (c *sseReader) keep() {
	if len(c.data) > 0 && (len(c.joined) == 0 || &c.joined[0] != &c.data[0]) {
		c.joined = append(c.joined[:0], c.data...)
		c.data = c.joined
	}
	c.event = bytes.Clone(c.event)
}

// next reads up to the next event, whose type and data it returns
// (valid until the next call). An error of the reader ends it, but for
// errWouldBlock, after which it goes on where it stopped.
func (c *sseReader) next() (event, data []byte, err error) {
	if !c.reading {
		c.event, c.data = nil, nil
		c.reading, c.hasData, c.isJoined = true, false, false
	}
	for {
		line, err := c.line()
		if err != nil {
			return nil, nil, err
		}
		if len(line) == 0 {
			if !c.hasData {
				continue // nothing to dispatch (the retry: block)
			}
			if len(c.event) == 0 {
				c.event = []byte("message")
			}
			c.reading = false
			return c.event, c.data, nil
		}
		if line[0] == ':' {
			continue // a comment
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "event":
			c.event = value
		case "data":
			switch {
			case !c.hasData:
				c.data = value // where it was read, unless another line joins it
			case !c.isJoined:
				c.joined = append(append(append(c.joined[:0], c.data...), '\n'), value...)
				c.data, c.isJoined = c.joined, true
			default:
				c.joined = append(append(c.joined, '\n'), value...)
				c.data = c.joined
			}
			c.hasData = true
		case "id":
			c.lastID = append(c.lastID[:0], value...)
		}
	}
}

func (ev *benchEvents) add(n int, mine []time.Duration) {
	ev.received.Add(int64(n))
	ev.mu.Lock()
	ev.delays = append(ev.delays, mine...)
	ev.mu.Unlock()
}

// produceBench writes total events (b.N, or 5 seconds at rate) through
// send, a batch at a time, then benchEnd, and returns how many it wrote.
func produceBench(b *testing.B, rate int, send func(vals [][]byte) error) int {
	total, batch := benchTotal(b, rate), 100
	var tick *time.Ticker
	if rate > 0 {
		batch = max(rate/100, 1)
		tick = time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
	}
	pad := bytes.Repeat([]byte(" "), 100)
	vals := make([][]byte, 0, batch)
	for done := 0; done < total; {
		if tick != nil {
			<-tick.C
		}
		vals = vals[:0]
		for i := 0; i < batch && done < total; i++ {
			t := time.Now().UnixNano()
			probeCreated(t)
			v := fmt.Appendf(nil, `{"t":%d,"n":%d}`, t, done)
			vals = append(vals, append(v, pad[:100-len(v)]...))
			done++
		}
		if err := send(vals); err != nil {
			b.Fatal(err)
		}
		probeAcked()
	}
	// The end, which the subscribers see after the last event.
	if err := send([][]byte{[]byte(benchEnd)}); err != nil {
		b.Fatal(err)
	}
	return total
}

// benchTotal is how many events produceBench writes: b.N, or 5 seconds
// at rate.
func benchTotal(b *testing.B, rate int) int {
	if rate > 0 {
		return 5 * rate
	}
	return b.N
}

// benchEnd is the value (and key) of the event after the last.
const benchEnd = "end"

// report reports the figures; cpu is the processor time the run took,
// the benchmark's process and the peer's server (in the delivered events,
// as cpu-µs/delivered: a figure that other load on the machine disturbs
// less than the rates), and clientCPU the part of it the subscribers'
// child process took (client-cpu-µs/delivered; zero when they run in
// this process).
func (ev *benchEvents) report(b *testing.B, subs, total int, produced, all, cpu, clientCPU time.Duration) {
	b.ReportMetric(float64(total)/produced.Seconds(), "produced/s")
	if subs > 0 {
		b.ReportMetric(float64(ev.received.Load())/all.Seconds(), "delivered/s")
		if r := ev.reads.Load(); r > 0 {
			b.ReportMetric(float64(ev.received.Load())/float64(r), "events/read")
		}
		b.ReportMetric(float64(cpu.Microseconds())/float64(ev.received.Load()), "cpu-µs/delivered")
		if clientCPU > 0 {
			b.ReportMetric(float64(clientCPU.Microseconds())/float64(ev.received.Load()), "client-cpu-µs/delivered")
		}
		if got, want := ev.received.Load(), int64(total*subs); got != want {
			b.Errorf("subscribers received %d events, want %d", got, want)
		}
		slices.Sort(ev.delays)
		if len(ev.delays) > 0 {
			b.ReportMetric(float64(ev.delays[len(ev.delays)*99/100].Microseconds())/1000, "p99-ms")
		}
	}
}

func benchWeir(b *testing.B, subs, rate int) {
	h, err := hub.Open(hub.Options{DataDir: b.TempDir(), Defaults: hub.DatasetConfig{Fsync: "never"},
		SubscribeProcs: *benchProcs, SubscribeNice: *benchNice})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	ds, err := h.CreateDataset("bench", hub.DatasetConfig{})
	if err != nil {
		b.Fatal(err)
	}
	p, _ := ds.Partition(0)
	mux := nethttp.NewServeMux()
	mux.Handle(SubscribePattern, Subscriptions(h, SubscribeOptions{}))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	sample, total := 16, benchTotal(b, rate)
	if rate > 0 {
		sample = 1
	}
	url := srv.URL + "/v1/datasets/bench/subscribe?from=latest"
	if *benchTransport == "ws" {
		url = "ws" + strings.TrimPrefix(url, "http")
	} else if *benchTransport != "sse" {
		b.Fatalf("-broadcast.transport=%q: want sse or ws", *benchTransport)
	}
	clients := startClients(b, *benchTransport, url, subs, sample, total)
	b.ReportAllocs()
	b.ResetTimer()
	probeStart()
	// The producer's own thread: its processor time per event, apart
	// from the process's.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start, cpu0, pcpu0 := time.Now(), processCPU(b), threadCPU(b)
	wait0 := threadRunDelay(b)
	var bl codecs.Builder
	key := 0
	total = produceBench(b, rate, func(vals [][]byte) error {
		bl.Reset()
		for _, v := range vals {
			k := strconv.AppendInt(nil, int64(key), 10)
			if string(v) == benchEnd {
				k = v
			}
			bl.Append(time.Now().UnixMilli(), k, v, nil)
			key++
		}
		batch, _ := bl.Build()
		_, err := p.Produce(bytes.Clone(batch), false)
		return err
	})
	produced, producerCPU := time.Since(start), threadCPU(b)-pcpu0
	producerWait := threadRunDelay(b) - wait0
	var all, cpu time.Duration
	ev, clientCPU := clients.wait(b, func() { all, cpu = time.Since(start), processCPU(b)-cpu0 })
	cpu += clientCPU
	b.StopTimer()
	b.SetBytes(100)
	ev.report(b, subs, total, produced, all, cpu, clientCPU)
	b.ReportMetric(float64(producerCPU.Nanoseconds())/float64(total), "producer-cpu-ns/event")
	b.ReportMetric(float64(producerWait.Nanoseconds())/float64(total), "producer-runq-ns/event")
	probeReport(b, subs)
}

// processCPU is the processor time this process has taken.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// threadCPU is the processor time the calling thread has taken.
func threadCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// threadRunDelay is how long the calling thread has waited for a
// processor while runnable (/proc/thread-self/schedstat, its second
// field); 0 where that is not there.
func threadRunDelay(b *testing.B) time.Duration {
	data, err := os.ReadFile("/proc/thread-self/schedstat")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		b.Fatalf("/proc/thread-self/schedstat: %q", data)
	}
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		b.Fatalf("/proc/thread-self/schedstat: %q", data)
	}
	return time.Duration(n)
}

// redisCPU is the processor time the redis-server has taken (INFO cpu).
func redisCPU(b *testing.B, rdb *redis.Client) time.Duration {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var sum float64
	for _, line := range strings.Split(info, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		if k == "used_cpu_sys" || k == "used_cpu_user" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("INFO cpu: %s: %v", line, err)
			}
			sum += f
		}
	}
	return time.Duration(sum * float64(time.Second))
}

// benchRedis is benchWeir's peer: a redis-server whose pub/sub output
// buffers are unbounded (as the hub's log is), PUBLISH pipelined by the
// batch, subscribers reading with go-redis's ReceiveMessage.
func benchRedis(b *testing.B, subs, rate int) {
	url := redistest.Start(b, "--client-output-buffer-limit", "pubsub 0 0 0", "--maxclients", "10000")
	opts, err := redis.ParseURL(url)
	if err != nil {
		b.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ctx := context.Background()
	sample, total := 16, benchTotal(b, rate)
	if rate > 0 {
		sample = 1
	}
	clients := startClients(b, "redis", url, subs, sample, total)
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU(b)+redisCPU(b, rdb)
	total = produceBench(b, rate, func(vals [][]byte) error {
		pipe := rdb.Pipeline()
		for _, v := range vals {
			pipe.Publish(ctx, "bench", v)
		}
		_, err := pipe.Exec(ctx)
		return err
	})
	produced := time.Since(start)
	var all, cpu time.Duration
	ev, clientCPU := clients.wait(b, func() { all, cpu = time.Since(start), processCPU(b)+redisCPU(b, rdb)-cpu0 })
	cpu += clientCPU
	b.StopTimer()
	b.SetBytes(100)
	ev.report(b, subs, total, produced, all, cpu, clientCPU)
}

// sseReaderStream is a stream of Server-Sent Events with every kind of
// line, and sseReaderWant what an EventSource dispatches of it.
var (
	sseReaderStream = "retry: 1000\n\n: heartbeat\n\nevent: record\nid: ab-1\ndata: {\"a\":1}\n\n" +
		"data: one\r\ndata:two\ndata:  three\nid: ab-2\n\nevent: snapshot_end\ndata:end\n\n" +
		"event: x\nid: ab-3\ndata: " + strings.Repeat("v", 300) + "\n\nid\ndata\n\n:c\r\nevent:e\r\ndata:\r\ndata: 2\r\n\r\n"
	sseReaderWant = []sseReaderEvent{{"record", `{"a":1}`, "ab-1"}, {"message", "one\ntwo\n three", "ab-2"}, {"snapshot_end", "end", "ab-2"},
		{"x", strings.Repeat("v", 300), "ab-3"}, {"message", "", ""}, {"e", "\n2", ""}}
)

type sseReaderEvent struct{ event, data, id string }

// TestSSEReader: the benchmark's EventSource-like reader dispatches what
// an EventSource would, whatever pieces the stream comes in and however
// small its buffer.
func TestSSEReader(t *testing.T) {
	stream, want := sseReaderStream, sseReaderWant
	type ev = sseReaderEvent
	for _, size := range []int{8, 64, 64 << 10} {
		for _, oneByte := range []bool{false, true} {
			var r io.Reader = strings.NewReader(stream)
			if oneByte {
				r = iotest.OneByteReader(r)
			}
			c := newSSEReader(r)
			c.buf = make([]byte, size)
			var got []ev
			for {
				event, data, err := c.next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, ev{string(event), string(data), string(c.lastID)})
			}
			if !slices.Equal(got, want) {
				t.Errorf("buffer %d, one byte a read %v: got %q, want %q", size, oneByte, got, want)
			}
		}
	}
}

func TestParseDigits(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{{"0", 0, true}, {"1796282072765299673", 1796282072765299673, true}, {"9223372036854775807", math.MaxInt64, true},
		{"9223372036854775808", 0, false}, {"", 0, false}, {"12a", 0, false}, {"-1", 0, false}, {"12345678901234567890", 0, false}} {
		if got, ok := parseDigits([]byte(c.in)); got != c.want || ok != c.ok {
			t.Errorf("parseDigits(%q) = %d, %v, want %d, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}
