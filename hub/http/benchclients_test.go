package http

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	nethttp "net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/weirhub/weir/hub"
)

// benchClientsIn is where BenchmarkBroadcast's subscribers run: "process"
// (the default) in a child process of the test binary, for weir and Redis
// alike, so that the server under test shares neither its processors'
// scheduling nor its garbage collector with them; "inprocess" as
// goroutines of the benchmark's own process (as the weir server, not as
// redis-server). Their processor time counts in cpu-µs/delivered either
// way.
var benchClientsIn = flag.String("broadcast.clients", "process", "where BenchmarkBroadcast's subscribers run: process or inprocess")

// benchTransport is how BenchmarkBroadcast's weir subscribers subscribe:
// "sse" (the default, as the benchmark is defined) or "ws"
// (WebSocket, coder/websocket's client).
var benchTransport = flag.String("broadcast.transport", "sse", "how BenchmarkBroadcast's weir subscribers subscribe: sse or ws")

// benchProcs and benchNice are the weir hub's Options.SubscribeProcs and
// SubscribeNice in BenchmarkBroadcast (0: the hub's defaults).
var (
	benchProcs = flag.Int("broadcast.procs", 0, "BenchmarkBroadcast's hub.Options.SubscribeProcs (0: the default)")
	benchNice  = flag.Int("broadcast.nice", 0, "BenchmarkBroadcast's hub.Options.SubscribeNice (0: the default; -1: the hub's own priority)")
	// benchClientNice runs the subscribers' child process at this nice
	// value (nice(1)): subscribers that stand for other machines then
	// take only the processor time the servers leave, as they would
	// there. Default 0: they compete with the producer and the servers.
	benchClientNice = flag.Int("broadcast.client-nice", 0, "run BenchmarkBroadcast's subscribers' process at this nice value (default 0)")
	// benchClientProcs is the GOMAXPROCS of the subscribers' child
	// process (0: as this process's).
	benchClientProcs = flag.Int("broadcast.client-procs", 0, "GOMAXPROCS of BenchmarkBroadcast's subscribers' process (default: this process's)")
)

// benchClientIO is how BenchmarkBroadcast's SSE and Redis subscribers
// read their connections: "epoll" (the default: a goroutine per
// processor reads raw non-blocking sockets, runEpollSubscribers, so that
// the subscribers, which stand for other machines, take less of this
// one's processors) or "goroutines" (a goroutine per subscriber with Go's
// HTTP client or go-redis, reading through the netpoller: the figures
// before epoll).
var benchClientIO = flag.String("broadcast.client-io", "epoll", "how BenchmarkBroadcast's SSE and Redis subscribers read: epoll or goroutines")

// benchClientPoll, if above 0, has the epoll subscribers' pollers sleep
// this long when they find nothing ready instead of waiting in
// epoll_wait (runEpollSubscribers).
var benchClientPoll = flag.Duration("broadcast.client-poll", 0, "epoll subscribers: sleep this long when nothing is ready instead of waiting in epoll_wait (default 0: wait)")

// benchClientBatch runs the subscribers' child process under SCHED_BATCH
// (chrt(1), Linux): its threads keep their share of the processors but,
// woken by a server's write, do not preempt the thread that wrote, as
// subscribers on other machines would not.
var benchClientBatch = flag.Bool("broadcast.client-batch", false, "run BenchmarkBroadcast's subscribers' process under SCHED_BATCH (chrt --batch 0)")

// Environment of the child process that runs the subscribers.
const (
	envClientKind   = "WEIR_BENCH_CLIENT_KIND" // sse or redis
	envClientURL    = "WEIR_BENCH_CLIENT_URL"
	envClientSubs   = "WEIR_BENCH_CLIENT_SUBS"
	envClientSample = "WEIR_BENCH_CLIENT_SAMPLE"
	envClientTotal  = "WEIR_BENCH_CLIENT_TOTAL"
	envClientOut    = "WEIR_BENCH_CLIENT_OUT"
	envClientIO     = "WEIR_BENCH_CLIENT_IO"   // -broadcast.client-io
	envClientPoll   = "WEIR_BENCH_CLIENT_POLL" // -broadcast.client-poll
	// envClientCPUProfile, if set (by whoever runs the benchmark), is
	// where the child writes a CPU profile of its subscribers.
	envClientCPUProfile = "WEIR_BENCH_CLIENT_CPUPROFILE"
)

// benchClients are the running subscribers of one benchmark.
type benchClients struct {
	ev     *benchEvents
	errs   chan error
	wg     sync.WaitGroup
	cmd    *exec.Cmd // the child process, if they run in one
	out    string    // where the child writes its benchClientResult
	stdout *bufio.Reader
}

// benchClientResult is what the child process reports.
type benchClientResult struct {
	Received int64
	Reads    int64 // SSE: the reads of the subscribers' connections that returned bytes
	Delays   []time.Duration
	CPU      time.Duration // from all connected to all done
	Errors   []string
}

// startClients connects subs subscribers (kind "sse": EventSource-like
// readers of url; "redis": SUBSCRIBEd go-redis clients of the server at
// url) and returns once every one of them is subscribed.
func startClients(b *testing.B, kind, url string, subs, sample, total int) *benchClients {
	c := &benchClients{ev: &benchEvents{}}
	if *benchClientsIn == "inprocess" || subs == 0 {
		c.errs = make(chan error, subs)
		if err := runSubscribers(kind, *benchClientIO, url, subs, sample, total, c.ev, &c.wg, c.errs); err != nil {
			b.Fatal(err)
		}
		return c
	}
	if *benchClientsIn != "process" {
		b.Fatalf("-broadcast.clients=%q: want process or inprocess", *benchClientsIn)
	}
	c.out = filepath.Join(b.TempDir(), "clients.json")
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestBenchClientProcess$", "-test.count=1")
	if *benchClientNice != 0 {
		c.cmd = exec.Command("nice", append([]string{"-n", strconv.Itoa(*benchClientNice)}, c.cmd.Args...)...)
	}
	if *benchClientBatch {
		c.cmd = exec.Command("chrt", append([]string{"--batch", "0"}, c.cmd.Args...)...)
	}
	c.cmd.Env = append(os.Environ(), envClientKind+"="+kind, envClientURL+"="+url,
		envClientSubs+"="+strconv.Itoa(subs), envClientSample+"="+strconv.Itoa(sample),
		envClientTotal+"="+strconv.Itoa(total), envClientOut+"="+c.out, envClientIO+"="+*benchClientIO, envClientPoll+"="+benchClientPoll.String())
	if *benchClientProcs > 0 {
		c.cmd.Env = append(c.cmd.Env, "GOMAXPROCS="+strconv.Itoa(*benchClientProcs))
	}
	c.cmd.Stderr = os.Stderr
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		b.Fatalf("starting the subscribers' process: %v", err)
	}
	c.stdout = bufio.NewReader(stdout)
	line, err := c.stdout.ReadString('\n')
	if line != "ready\n" {
		c.cmd.Process.Kill()
		c.cmd.Wait()
		b.Fatalf("the subscribers' process said %q (%v) instead of ready", line, err)
	}
	return c
}

// wait waits for every subscriber to have the end, calls done then (so
// that the caller reads its clocks before the subscribers' result is
// decoded), and returns what they saw with the processor time they took
// (in a child process; in this process it is part of the process's own).
func (c *benchClients) wait(b *testing.B, done func()) (*benchEvents, time.Duration) {
	if c.cmd == nil {
		c.wg.Wait()
		done()
		close(c.errs)
		for err := range c.errs {
			b.Error(err)
		}
		return c.ev, 0
	}
	rest, _ := c.stdout.ReadString(0)
	if err := c.cmd.Wait(); err != nil {
		b.Fatalf("the subscribers' process: %v (%s)", err, rest)
	}
	done()
	data, err := os.ReadFile(c.out)
	if err != nil {
		b.Fatalf("the subscribers' process wrote no result: %v (%s)", err, rest)
	}
	var res benchClientResult
	if err := json.Unmarshal(data, &res); err != nil {
		b.Fatalf("the subscribers' result: %v", err)
	}
	for _, e := range res.Errors {
		b.Error(e)
	}
	c.ev.received.Store(res.Received)
	c.ev.reads.Store(res.Reads)
	c.ev.delays = res.Delays
	return c.ev, res.CPU
}

// TestBenchClientProcess is the child process of BenchmarkBroadcast's
// subscribers (startClients); without its environment it is skipped.
func TestBenchClientProcess(t *testing.T) {
	kind := os.Getenv(envClientKind)
	if kind == "" {
		t.Skip("the subscribers' process of BenchmarkBroadcast")
	}
	num := func(k string) int {
		n, err := strconv.Atoi(os.Getenv(k))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		return n
	}
	var (
		ev   benchEvents
		wg   sync.WaitGroup
		subs = num(envClientSubs)
		errs = make(chan error, subs)
	)
	if d := os.Getenv(envClientPoll); d != "" {
		p, err := time.ParseDuration(d)
		if err != nil {
			t.Fatalf("%s: %v", envClientPoll, err)
		}
		*benchClientPoll = p
	}
	if err := runSubscribers(kind, os.Getenv(envClientIO), os.Getenv(envClientURL), subs, num(envClientSample), num(envClientTotal), &ev, &wg, errs); err != nil {
		t.Fatal(err)
	}
	if path := os.Getenv(envClientCPUProfile); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	cpu0 := ownCPU(t)
	m0 := probeChildStart()
	fmt.Println("ready")
	wg.Wait()
	probeChildEnd(m0)
	res := benchClientResult{Received: ev.received.Load(), Reads: ev.reads.Load(), Delays: ev.delays, CPU: ownCPU(t) - cpu0}
	close(errs)
	for err := range errs {
		res.Errors = append(res.Errors, err.Error())
	}
	data, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(os.Getenv(envClientOut), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func ownCPU(t testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runSubscribers connects subs subscribers of kind and returns once all
// are subscribed; each then reads until the end event, counts the
// events in ev and reports what went wrong to errs, and is done in wg.
// With how "epoll" (benchClientIO), SSE and Redis subscribers are read
// by runEpollSubscribers.
func runSubscribers(kind, how, url string, subs, sample, total int, ev *benchEvents, wg *sync.WaitGroup, errs chan<- error) error {
	switch how {
	case "epoll":
		if kind == "sse" || kind == "redis" {
			return runEpollSubscribers(kind, url, *benchClientPoll, subs, sample, total, ev, wg, errs)
		}
	case "goroutines":
	default:
		return fmt.Errorf("-broadcast.client-io=%q: want epoll or goroutines", how)
	}
	switch kind {
	case "sse":
		ready := make(chan error, subs)
		for range subs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := sseSubscriber(url, sample, total, ev, ready); err != nil {
					errs <- err
				}
			}()
		}
		var first error
		for range subs {
			if err := <-ready; err != nil && first == nil {
				first = err
			}
		}
		return first
	case "ws":
		ready := make(chan error, subs)
		for range subs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := wsSubscriber(url, sample, total, ev, ready); err != nil {
					errs <- err
				}
			}()
		}
		var first error
		for range subs {
			if err := <-ready; err != nil && first == nil {
				first = err
			}
		}
		return first
	case "redis":
		opts, err := redis.ParseURL(url)
		if err != nil {
			return err
		}
		// RESP2: with RESP3 (go-redis v9.17's default), a subscriber
		// that falls behind loses a message now and then (seen in this
		// benchmark: one message gone from the middle of a pipelined
		// batch, the same one for several subscribers).
		opts.Protocol = 2
		rdb := redis.NewClient(opts)
		ctx := context.Background()
		for range subs {
			ps := rdb.Subscribe(ctx, "bench")
			if _, err := ps.Receive(ctx); err != nil { // the subscription's confirmation
				return err
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer ps.Close()
				if err := redisSubscriber(ctx, ps, sample, total, ev); err != nil {
					errs <- err
				}
			}()
		}
		return nil
	}
	return fmt.Errorf("subscriber kind %q: want sse, ws or redis", kind)
}

// wsSubscriber reads the messages of a WebSocket subscription until the
// end, checking their ids and order, into one buffer; ready gets nil
// once the upgrade is answered, or why it was not.
func wsSubscriber(url string, sample, total int, ev *benchEvents, ready chan<- error) error {
	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		ready <- err
		return nil
	}
	defer c.CloseNow()
	ready <- nil
	mine := make([]time.Duration, 0, total/sample+1)
	n, last := 0, int64(-1)
	defer func() { ev.add(n, mine) }()
	buf := bytes.NewBuffer(make([]byte, 0, 4096))
	idField := []byte(`{"type":"record","id":"`)
	for {
		typ, r, err := c.Reader(ctx)
		if err != nil {
			return fmt.Errorf("subscriber after %d events: %w", n, err)
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			return fmt.Errorf("subscriber after %d events: %w", n, err)
		}
		data := buf.Bytes()
		if typ != websocket.MessageText || !bytes.HasPrefix(data, idField) {
			return fmt.Errorf("subscriber after %d events: message %.80q", n, data)
		}
		// The id is a token whose last number is the offset the one
		// partition resumes at: it must grow.
		rest := data[len(idField):]
		q := bytes.IndexByte(rest, '"')
		if q < 0 {
			return fmt.Errorf("subscriber after %d events: message %.80q", n, data)
		}
		id := rest[:q]
		off, err := strconv.ParseInt(string(id[bytes.LastIndexAny(id, "-.")+1:]), 10, 64)
		if err != nil || off <= last {
			return fmt.Errorf("subscriber after %d events: id %q after offset %d", n, id, last)
		}
		last = off
		if bytes.HasPrefix(rest[q:], []byte(`","key":"`+benchEnd+`"`)) {
			return nil
		}
		if err := ev.read(data, sample, &n, &mine); err != nil {
			return err
		}
	}
}

// sseSubscriber reads the events of an SSE subscription until the end,
// checking their ids and order (sseCheck); ready gets nil once it has the
// headers (what is written from then on is delivered), or why it has
// not.
func sseSubscriber(url string, sample, total int, ev *benchEvents, ready chan<- error) error {
	resp, err := nethttp.Get(url)
	if err != nil {
		ready <- err
		return nil
	}
	defer resp.Body.Close()
	ready <- nil
	c := newSSEReader(resp.Body)
	chk := newSSECheck(ev, sample, total)
	defer func() { chk.finish(); ev.reads.Add(c.reads) }()
	for {
		event, data, err := c.next()
		if err != nil {
			return fmt.Errorf("subscriber after %d events: %w", chk.n, err)
		}
		if done, err := chk.event(event, data, c.lastID); done || err != nil {
			return err
		}
	}
}

// sseCheck checks the events of one SSE subscriber of the benchmark,
// whichever way it reads them: records only, ids that grow, values in
// order (benchEvents.read), until the end.
type sseCheck struct {
	ev     *benchEvents
	sample int
	n      int   // events read
	last   int64 // the offset of the last id
	mine   []time.Duration
}

func newSSECheck(ev *benchEvents, sample, total int) *sseCheck {
	return &sseCheck{ev: ev, sample: sample, last: -1, mine: make([]time.Duration, 0, total/sample+1)}
}

// event takes the next event, whose id is the last one the stream set;
// done at the end.
func (c *sseCheck) event(event, data, id []byte) (done bool, err error) {
	if string(event) != hub.EventRecord {
		return false, fmt.Errorf("subscriber after %d events: event %q", c.n, event)
	}
	// The id is a token whose last number is the offset the one
	// partition resumes at: it must grow.
	i := len(id)
	for i > 0 && id[i-1] >= '0' && id[i-1] <= '9' {
		i--
	}
	off, ok := parseDigits(id[i:])
	if !ok || off <= c.last {
		return false, fmt.Errorf("subscriber after %d events: id %q after offset %d", c.n, id, c.last)
	}
	c.last = off
	if bytes.HasPrefix(data, []byte(`{"key":"`+benchEnd+`"`)) {
		return true, nil
	}
	return false, c.ev.read(data, c.sample, &c.n, &c.mine)
}

// finish adds what the subscriber saw to the benchmark's events.
func (c *sseCheck) finish() { c.ev.add(c.n, c.mine) }

// redisSubscriber reads the messages of a Redis subscription until the
// end.
func redisSubscriber(ctx context.Context, ps *redis.PubSub, sample, total int, ev *benchEvents) error {
	mine := make([]time.Duration, 0, total/sample+1)
	n := 0
	defer func() { ev.add(n, mine) }()
	for {
		m, err := ps.ReceiveMessage(ctx)
		if err != nil {
			return err
		}
		if m.Payload == benchEnd {
			return nil
		}
		if err := ev.read([]byte(m.Payload), sample, &n, &mine); err != nil {
			return err
		}
	}
}
