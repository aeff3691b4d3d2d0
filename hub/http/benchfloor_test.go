package http

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirhub/weir/hub"
)

// benchFloor is what no SSE server can beat with BenchmarkBroadcast's
// subscribers on this machine: a minimal server, with no hub and no log,
// that writes the bytes weir writes (the same response head, "retry",
// and each event framed by appendSSE with the same JSON and a token of
// the same form) to the same subscribers, produced as benchWeir produces
// them. The producer frames each batch once and hands it to one writer
// goroutine per processor, each of which writes to each of its
// connections in turn, in one write, everything published that the
// connection has not had (a blocking net.Conn write: a connection that
// does not take it all holds the writer up, which at these rates the
// socket buffers never make happen). Its p99-ms is the delay of the subscribers and the machine
// alone.
func benchFloor(b *testing.B, subs, rate int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	fs := newFloorServer(ln, runtime.GOMAXPROCS(0))
	defer fs.close()
	sample, total := 16, benchTotal(b, rate)
	if rate > 0 {
		sample = 1
	}
	url := "http://" + ln.Addr().String() + "/v1/datasets/bench/subscribe?from=latest"
	clients := startClients(b, "sse", url, subs, sample, total)
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU(b)
	var f benchFramer
	total = produceBench(b, rate, func(vals [][]byte) error {
		fs.publish(f.frames(vals))
		return nil
	})
	produced := time.Since(start)
	var all, cpu time.Duration
	ev, clientCPU := clients.wait(b, func() { all, cpu = time.Since(start), processCPU(b)-cpu0 })
	cpu += clientCPU
	b.StopTimer()
	b.SetBytes(100)
	ev.report(b, subs, total, produced, all, cpu, clientCPU)
}

// benchFramer frames the events of benchFloor as weir does: keys and
// offsets numbered from 0 (the end's key is its value), tokens of the
// form of a dataset of one partition.
type benchFramer struct {
	offset int64
	e      hub.Event
	tok    []byte
	buf    []byte
}

// frames returns the SSE frames of vals, valid until the next call.
func (f *benchFramer) frames(vals [][]byte) []byte {
	f.buf = f.buf[:0]
	f.e.Type = hub.EventRecord
	for _, v := range vals {
		f.e.Key = strconv.AppendInt(f.e.Key[:0], f.offset, 10)
		if string(v) == benchEnd {
			f.e.Key = append(f.e.Key[:0], v...)
		}
		f.e.Value, f.e.Offset, f.e.Time = v, f.offset, time.Now().UnixMilli()
		f.tok = strconv.AppendInt(append(f.tok[:0], "1a2b3c4d-"...), f.offset+1, 10)
		f.e.Token = string(f.tok)
		f.buf = appendSSE(f.buf, &f.e)
		f.offset++
	}
	return f.buf
}

// floorServer is benchFloor's server.
type floorServer struct {
	ln      net.Listener
	writers []*floorWriter
	mu      sync.Mutex
	conns   []net.Conn // all of them, to close
	wg      sync.WaitGroup
}

// floorWriter writes to its share of the connections what was published
// and they have not had: each connection, at its turn in a pass, gets
// every byte published up to then (as weir's writers do), so that a pass
// longer than the gap between publishes takes the later ones along.
type floorWriter struct {
	mu     sync.Mutex
	stream []byte // published from base on
	base   int64
	signal chan struct{} // cap 1
	conns  []*floorConn  // under mu
}

// floorConn is a connection and where it is in its writer's stream.
type floorConn struct {
	c   net.Conn
	pos int64
}

func newFloorServer(ln net.Listener, writers int) *floorServer {
	fs := &floorServer{ln: ln}
	for range writers {
		w := &floorWriter{signal: make(chan struct{}, 1)}
		fs.writers = append(fs.writers, w)
		fs.wg.Add(1)
		go func() {
			defer fs.wg.Done()
			w.run()
		}()
	}
	fs.wg.Add(1)
	go func() {
		defer fs.wg.Done()
		fs.accept()
	}()
	return fs
}

// accept answers each request with the head of an SSE response, as weir
// does over a connection it took over, once its connection is among
// those published to (so that a subscriber with the head misses
// nothing, as with weir).
func (fs *floorServer) accept() {
	for n := 0; ; n++ {
		c, err := fs.ln.Accept()
		if err != nil {
			return
		}
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				c.Close()
				break
			}
			if strings.TrimRight(line, "\r\n") != "" {
				continue
			}
			fs.mu.Lock()
			fs.conns = append(fs.conns, c)
			fs.mu.Unlock()
			w := fs.writers[n%len(fs.writers)]
			w.mu.Lock()
			w.conns = append(w.conns, &floorConn{c: c, pos: w.base + int64(len(w.stream))})
			_, err = c.Write([]byte("HTTP/1.1 200 OK\r\nCache-Control: no-cache\r\nContent-Type: text/event-stream\r\n" +
				"X-Accel-Buffering: no\r\nConnection: close\r\n\r\nretry: 1000\n\n"))
			w.mu.Unlock()
			if err != nil {
				c.Close()
			}
			break
		}
	}
}

// publish queues frames for every writer.
func (fs *floorServer) publish(frames []byte) {
	for _, w := range fs.writers {
		w.mu.Lock()
		w.stream = append(w.stream, frames...)
		w.mu.Unlock()
		select {
		case w.signal <- struct{}{}:
		default:
		}
	}
}

func (w *floorWriter) run() {
	for range w.signal {
		w.mu.Lock()
		conns := w.conns
		w.mu.Unlock()
		for _, fc := range conns {
			w.mu.Lock()
			stream, base := w.stream, w.base // appended to, never written over
			w.mu.Unlock()
			if end := base + int64(len(stream)); fc.pos < end {
				fc.c.Write(stream[fc.pos-base:]) // an error: the subscriber sees a gap and says so
				fc.pos = end
			}
		}
		// What every connection has had goes.
		w.mu.Lock()
		low := w.base + int64(len(w.stream))
		for _, fc := range w.conns {
			low = min(low, fc.pos)
		}
		if low > w.base {
			w.stream = append([]byte(nil), w.stream[low-w.base:]...)
			w.base = low
		}
		w.mu.Unlock()
	}
}

func (fs *floorServer) close() {
	fs.ln.Close()
	fs.mu.Lock()
	for _, c := range fs.conns {
		c.Close()
	}
	fs.mu.Unlock()
	for _, w := range fs.writers {
		close(w.signal)
	}
	fs.wg.Wait()
}

// TestFloorServerFrames: the floor server writes what weir writes, so
// that the subscribers parse the same bytes from both.
func TestFloorServerFrames(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := newFloorServer(ln, 2)
	defer fs.close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	br := bufio.NewReader(c)
	head, err := br.ReadString('\n')
	if err != nil || head != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("status line %q, %v", head, err)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
	}
	e := hub.Event{Type: hub.EventRecord, Token: "1a2b3c4d-1", Key: []byte("0"), Value: []byte(`{"t":1}`), Time: 5}
	want := appendSSE(nil, &e)
	fs.publish(want)
	got := make([]byte, len("retry: 1000\n\n")+len(want))
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, append([]byte("retry: 1000\n\n"), want...)) {
		t.Errorf("got %q, want retry and %q", got, want)
	}
}
