package kafka

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhub/weir/hub"
)

// testBroker is a hub with a Kafka server on a loopback port.
type testBroker struct {
	hub  *hub.Hub
	srv  *Server
	addr string
	dir  string
	done chan error
}

func startBroker(t testing.TB, dir string, opts Options) *testBroker {
	t.Helper()
	return startBrokerOn(t, hub.Options{DataDir: dir, Defaults: hub.DatasetConfig{Fsync: "always", SegmentBytes: 8 << 20},
		Groups: hub.GroupOptions{MinSessionTimeout: 100 * time.Millisecond}}, opts)
}

// startBrokerOn is startBroker over a hub opened with ho.
func startBrokerOn(t testing.TB, ho hub.Options, opts Options) *testBroker {
	t.Helper()
	return startBrokerWrapped(t, ho, opts, nil)
}

// startBrokerWrapped is startBrokerOn serving behind the listener wrap
// makes of its own (wrap nil: its own).
func startBrokerWrapped(t testing.TB, ho hub.Options, opts Options, wrap func(net.Listener) net.Listener) *testBroker {
	t.Helper()
	h, err := hub.Open(ho)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(h, opts)
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		h.Close()
		t.Fatal(err)
	}
	b := &testBroker{hub: h, srv: srv, addr: ln.Addr().String(), dir: ho.DataDir, done: make(chan error, 1)}
	if wrap != nil {
		ln = wrap(ln)
	}
	go func() { b.done <- srv.Serve(ln) }()
	t.Cleanup(b.stop)
	return b
}

func (b *testBroker) stop() {
	if b.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b.srv.Shutdown(ctx)
	<-b.done
	b.hub.Close()
	b.srv = nil
}

func newClient(t testing.TB, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func TestFranzGoProduceConsumeEachCodec(t *testing.T) {
	b := startBroker(t, t.TempDir(), Options{})
	codecs := map[string]kgo.CompressionCodec{"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(),
		"snappy": kgo.SnappyCompression(), "lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression()}
	for name, codec := range codecs {
		t.Run(name, func(t *testing.T) {
			topic := "codec-" + name
			adm := kadm.NewClient(newClient(t, b.addr))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := adm.CreateTopic(ctx, 3, 1, nil, topic); err != nil {
				t.Fatal(err)
			}
			prod := newClient(t, b.addr, kgo.ProducerBatchCompression(codec), kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()))
			const n = 2000
			for i := range n {
				prod.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i % 17)), Value: []byte(fmt.Sprintf("value-%d-%s", i, bytes.Repeat([]byte("x"), i%100)))}, func(_ *kgo.Record, err error) {
					if err != nil {
						t.Errorf("produce: %v", err)
					}
				})
			}
			if err := prod.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			cons := newClient(t, b.addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			seen := map[string]bool{}
			for len(seen) < n && ctx.Err() == nil {
				fs := cons.PollFetches(ctx)
				if errs := fs.Errors(); len(errs) > 0 && ctx.Err() == nil {
					t.Fatalf("fetch errors: %v", errs)
				}
				fs.EachRecord(func(r *kgo.Record) {
					if seen[string(r.Value)] {
						t.Errorf("record %s twice", r.Value)
					}
					seen[string(r.Value)] = true
				})
			}
			if len(seen) != n {
				t.Fatalf("consumed %d of %d", len(seen), n)
			}
		})
	}
}

// TestFetchEncodingMatchesKmsg checks the hand-framed fetch response, with
// the sections put inline (inlineSections, what small fetches write),
// against franz-go's own encoding of the same response, for every version
// served.
func TestFetchEncodingMatchesKmsg(t *testing.T) {
	b := startBroker(t, t.TempDir(), Options{})
	ds, err := b.hub.CreateDataset("enc", hub.DatasetConfig{Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	p0, _ := ds.Partition(0)
	var bl = func(vals ...string) []byte {
		var bld = new(kgoBuilder)
		return bld.build(vals...)
	}
	for i := range 5 {
		if _, err := p0.Produce(bl(fmt.Sprint(i), "b", "c"), true); err != nil {
			t.Fatal(err)
		}
	}
	for v := int16(4); v <= 12; v++ {
		req := kmsg.NewPtrFetchRequest()
		req.Version = v
		for _, name := range []string{"enc", "missing"} {
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic = name
			for _, part := range []int32{0, 1} {
				rp := kmsg.NewFetchRequestTopicPartition()
				rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = part, 4, 1<<20
				rt.Partitions = append(rt.Partitions, rp)
			}
			req.Topics = append(req.Topics, rt)
		}
		fr := hub.FetchRequest{MaxBytes: 1 << 20}
		for _, t := range req.Topics {
			for _, p := range t.Partitions {
				fr.Partitions = append(fr.Partitions, hub.FetchPartition{Dataset: t.Topic, Partition: p.Partition, Offset: p.FetchOffset, MaxBytes: p.PartitionMaxBytes})
			}
		}
		results := b.hub.Fetch(context.Background(), fr)
		p := &pending{hdr: header{key: 1, version: v, correlationID: 77}, flexHeader: v >= 12}
		enc, chunks := encodeFetch(nil, p, v, req, results, nil)
		// Put the sections inline, as small fetches are written.
		got, err := inlineSections(nil, enc, chunks)
		if err != nil {
			t.Fatal(err)
		}
		// The same response through kmsg.
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		i := 0
		for _, rt := range req.Topics {
			ot := kmsg.NewFetchResponseTopic()
			ot.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				r := results[i]
				i++
				op := kmsg.NewFetchResponseTopicPartition()
				op.Partition, op.ErrorCode = rp.Partition, errCode(r.Err)
				op.HighWatermark, op.LastStableOffset, op.LogStartOffset = r.HighWatermark, r.HighWatermark, r.LogStartOffset
				op.RecordBatches = []byte{}
				for _, s := range r.Sections {
					op.RecordBatches, _ = s.AppendTo(op.RecordBatches)
				}
				ot.Partitions = append(ot.Partitions, op)
			}
			resp.Topics = append(resp.Topics, ot)
		}
		want := appendResponseHeader(nil, p)
		want = resp.AppendTo(want)
		binary.BigEndian.PutUint32(want, uint32(len(want)-4))
		hub.ReleaseFetch(results)
		if !bytes.Equal(got, want) {
			t.Fatalf("fetch v%d: hand-framed response differs from kmsg's:\n got %x\nwant %x", v, got, want)
		}
		// And franz-go decodes it back.
		var dec kmsg.FetchResponse
		dec.Version = v
		body := got[8:]
		if p.flexHeader {
			body = body[1:]
		}
		if err := dec.ReadFrom(body); err != nil {
			t.Fatalf("fetch v%d: kmsg cannot decode our response: %v", v, err)
		}
	}
}

// kgoBuilder builds plain batches with franz-go's record encoding through
// our codecs (kept tiny: the tests need a few batches).
type kgoBuilder struct{}

func (kgoBuilder) build(vals ...string) []byte {
	var b = newBatch()
	for _, v := range vals {
		b.Append(time.Now().UnixMilli(), nil, []byte(v), nil)
	}
	out, _ := b.Build()
	return bytes.Clone(out)
}

// rawConn speaks the frame protocol directly.
func rawConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

func frame(key, version int16, corr int32, body []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(key))
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	b = binary.BigEndian.AppendUint16(b, 4)
	b = append(b, "test"...)
	b = append(b, body...)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

func readFrame(t *testing.T, c net.Conn) []byte {
	t.Helper()
	var n [4]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		t.Fatalf("reading a response: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(n[:]))
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatal(err)
	}
	return body
}

// expectClosed checks the server closed the connection.
func expectClosed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	if _, err := c.Read(b[:]); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: connection still open (%v)", what, err)
	}
}

func TestApiVersionsFallback(t *testing.T) {
	b := startBroker(t, t.TempDir(), Options{})
	c := rawConn(t, b.addr)
	c.Write(frame(18, 99, 5, nil))
	body := readFrame(t, c)
	if corr := int32(binary.BigEndian.Uint32(body)); corr != 5 {
		t.Fatalf("correlation id %d", corr)
	}
	var resp kmsg.ApiVersionsResponse
	resp.Version = 0
	if err := resp.ReadFrom(body[4:]); err != nil {
		t.Fatal(err)
	}
	if resp.ErrorCode != kerr.UnsupportedVersion.Code || len(resp.ApiKeys) != len(apis) {
		t.Fatalf("fallback response: error %d, %d keys", resp.ErrorCode, len(resp.ApiKeys))
	}
	for _, k := range resp.ApiKeys {
		if k.ApiKey == 0 && k.MinVersion != 0 {
			t.Fatalf("Produce advertised from v%d; librdkafka needs v0 in range", k.MinVersion)
		}
	}
}

func TestHostileInput(t *testing.T) {
	b := startBroker(t, t.TempDir(), Options{MaxRequestBytes: 1 << 20})
	cases := map[string][]byte{
		"huge size":        {0x7f, 0xff, 0xff, 0xff, 0, 0},
		"negative size":    {0xff, 0xff, 0xff, 0xf0},
		"tiny size":        {0, 0, 0, 2, 1, 2},
		"unknown key":      frame(999, 0, 1, nil),
		"negative key":     frame(-5, 0, 1, nil),
		"too new version":  frame(3, 99, 1, nil),
		"garbage body":     frame(3, 9, 1, bytes.Repeat([]byte{0xff}, 64)),
		"bad client id":    {0, 0, 0, 12, 0, 3, 0, 1, 0, 0, 0, 1, 0x7f, 0xff, 0, 0},
		"http":             []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"fetch big arrays": frame(1, 4, 1, []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff}),
	}
	for name, data := range cases {
		c := rawConn(t, b.addr)
		c.Write(data)
		expectClosed(t, c, name)
	}
	// A truncated frame: the server waits for the rest; closing the client
	// ends it without harm.
	c := rawConn(t, b.addr)
	c.Write(frame(3, 9, 1, nil)[:10])
	c.Close()
	// The broker still serves.
	adm := kadm.NewClient(newClient(t, b.addr))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := adm.ListTopics(ctx); err != nil {
		t.Fatalf("broker unusable after hostile input: %v", err)
	}
}

func TestManyIdleConnections(t *testing.T) {
	b := startBroker(t, t.TempDir(), Options{MaxConnections: 1500, MaxConnectionsPerIP: -1, FirstRequestTimeout: 2 * time.Second})
	var conns []net.Conn
	for range 2000 {
		c, err := net.Dial("tcp", b.addr)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// The cap is reached before the accept loop has taken the last dials
	// from the listen backlog: wait until some were evicted for them too.
	deadline := time.Now().Add(5 * time.Second)
	for (b.srv.Connections() != 1500 || b.srv.Stats().EvictedIdle < 1) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := b.srv.Connections(); n != 1500 {
		t.Fatalf("%d connections open with a cap of 1500", n)
	}
	// Past the cap, the oldest of them were closed to make room (none sent
	// a request); the rest are closed after the first-request timeout.
	// (On a slow machine some reach the timeout before the last dial.)
	if st := b.srv.Stats(); st.EvictedIdle < 1 || st.EvictedIdle > 500 || st.RefusedFull != 0 {
		t.Fatalf("stats %+v: want 1 to 500 idle connections evicted to make room, none refused", st)
	}
	deadline = time.Now().Add(10 * time.Second)
	for b.srv.Connections() != 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := b.srv.Connections(); n != 0 {
		t.Fatalf("%d idle connections still open after the idle timeout", n)
	}
}

// FuzzRequest feeds arbitrary request bodies to the decoding and handling
// path. Decoding must finish within a second and allocate no more than
// parseRequest charged for it (a small multiple of the request's size);
// handling must never panic, and whatever it does not close on gets
// answered. The seeds in testdata/fuzz/FuzzRequest hold every hostile
// reproduction of issue 18 (go test -run TestFuzzSeeds -update-seeds
// writes them).
func FuzzRequest(f *testing.F) {
	for _, seed := range [][]byte{
		frame(18, 3, 1, []byte{0, 0, 0})[4:],
		frame(3, 0, 1, []byte{0, 0, 0, 0})[4:],
		frame(0, 7, 1, []byte{0xff, 0xff, 0, 0, 0, 1, 0, 0, 0, 0})[4:],
		frame(1, 4, 1, bytes.Repeat([]byte{0}, 30))[4:],
		frame(11, 5, 1, bytes.Repeat([]byte{0, 1}, 20))[4:],
		frame(8, 8, 1, bytes.Repeat([]byte{1}, 20))[4:],
	} {
		f.Add(seed)
	}
	h, err := hub.Open(hub.Options{DataDir: f.TempDir(), Defaults: hub.DatasetConfig{Fsync: "never"}})
	if err != nil {
		f.Fatal(err)
	}
	defer h.Close()
	srv := NewServer(h, Options{})
	srv.host, srv.port = "127.0.0.1", 9092
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) < 8 {
			return
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		_, req, rest, cost, err := parseRequest(body)
		if err == nil && req != nil {
			req.ReadFrom(rest)
		}
		took := time.Since(start)
		runtime.ReadMemStats(&after)
		if took > time.Second {
			t.Fatalf("decoding %d bytes took %v", len(body), took)
		}
		if alloc, limit := after.TotalAlloc-before.TotalAlloc, uint64(cost)+2*uint64(len(body))+64<<10; alloc > limit {
			t.Fatalf("decoding %d bytes (charged %d) allocated %d, more than %d", len(body), cost, alloc, limit)
		}

		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		c := newConn(srv, a)
		go io.Copy(io.Discard, b)
		go c.writeLoop()
		c.handle(body, time.Now().Add(time.Second))
		close(c.out)
		c.cancel()
	})
}

var _ = kgo.NewClient

// countingListener counts the Read calls made on the connections it
// accepts.
type countingListener struct {
	net.Listener
	reads *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.reads}, nil
}

type countingConn struct {
	net.Conn
	reads *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(p)
}

// gatedConn counts writes and holds the first until gate is closed.
type gatedConn struct {
	countingConn
	writes *atomic.Int64
	gate   chan struct{}
}

func (c gatedConn) Write(p []byte) (int, error) {
	if c.writes.Add(1) == 1 {
		<-c.gate
	}
	return c.Conn.Write(p)
}

type gatedListener struct {
	countingListener
	writes *atomic.Int64
	gate   chan struct{}
}

func (l gatedListener) Accept() (net.Conn, error) {
	c, err := l.countingListener.Accept()
	if err != nil {
		return nil, err
	}
	return gatedConn{c.(countingConn), l.writes, l.gate}, nil
}

// TestResponsesCoalesced: responses that are ready while the writer is
// busy go out together in one write, in request order.
func TestResponsesCoalesced(t *testing.T) {
	var reads, writes atomic.Int64
	gate := make(chan struct{})
	c := rawConn(t, startBrokerWrapped(t, hub.Options{DataDir: t.TempDir()}, Options{}, func(ln net.Listener) net.Listener {
		return gatedListener{countingListener{ln, &reads}, &writes, gate}
	}).addr)
	const n = 20
	var pipelined []byte
	for i := range n {
		pipelined = append(pipelined, frame(18, 0, int32(i), nil)...)
	}
	c.Write(pipelined)
	// The reader has queued every response once it reads again; the
	// writer is held in its first write meanwhile.
	for i := 0; reads.Load() < 2 || writes.Load() < 1; i++ {
		if i == 5000 {
			t.Fatalf("the server read %d times and wrote %d times in 5s", reads.Load(), writes.Load())
		}
		time.Sleep(time.Millisecond)
	}
	close(gate)
	for i := range n {
		body := readFrame(t, c)
		if corr := int32(binary.BigEndian.Uint32(body)); corr != int32(i) {
			t.Fatalf("response %d has correlation id %d", i, corr)
		}
	}
	if got := writes.Load(); got > 2 {
		t.Fatalf("%d writes for %d responses queued behind one, want 2", got, n)
	}
}

// TestOneReadPerRequest: a request that arrived whole is taken from the
// socket with one read, not one for its size, one for its header and one
// for its body; pipelined requests share reads.
func TestOneReadPerRequest(t *testing.T) {
	var reads atomic.Int64
	c := rawConn(t, startBrokerWrapped(t, hub.Options{DataDir: t.TempDir()}, Options{}, func(ln net.Listener) net.Listener { return countingListener{ln, &reads} }).addr)
	const n = 20
	for i := range n { // one at a time: each read returns one request
		c.Write(frame(18, 0, int32(i), nil)) // ApiVersions v0
		readFrame(t, c)
	}
	// The server may be blocked in the read that will return the next.
	if got := reads.Load(); got > n+1 {
		t.Fatalf("%d reads for %d requests sent one at a time, want at most %d", got, n, n+1)
	}
	var pipelined []byte
	for i := range n {
		pipelined = append(pipelined, frame(18, 0, int32(n+i), nil)...)
	}
	before := reads.Load()
	c.Write(pipelined)
	for i := range n {
		body := readFrame(t, c)
		if corr := int32(binary.BigEndian.Uint32(body)); corr != int32(n+i) {
			t.Fatalf("response %d has correlation id %d", i, corr)
		}
	}
	if got := reads.Load() - before; got > 3 {
		t.Fatalf("%d reads for %d pipelined requests (%d bytes, one write), want at most 3", got, n, len(pipelined))
	}
}

// TestProduceAcksAllWaitsOnlyForFsync: an acks=all produce waits for the
// disk (on a goroutine of its own, its answer not ready at once) only when
// the dataset's fsync policy is "always"; under "interval" and "never" it
// is answered at once.
func TestProduceAcksAllWaitsOnlyForFsync(t *testing.T) {
	h, err := hub.Open(hub.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	srv := NewServer(h, Options{})
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	c := newConn(srv, server)
	defer c.cancel()
	for _, policy := range []string{"always", "interval", "never"} {
		if _, err := h.CreateDataset(policy, hub.DatasetConfig{Partitions: 1, Fsync: policy}); err != nil {
			t.Fatal(err)
		}
		req := produceRequest(policy, []byte("a"))
		req.SetVersion(9)
		p := handleProduce(c, &header{key: 0, version: 9}, req)
		if p == nil {
			t.Fatalf("fsync %s: no answer to an acks=all produce", policy)
		}
		if waits := p.ready != nil; waits != (policy == "always") {
			t.Errorf("fsync %s: answer waits on a goroutine: %v, want %v", policy, waits, policy == "always")
		}
		if p.ready != nil {
			<-p.ready
		}
		resp := p.resp.(*kmsg.ProduceResponse)
		if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
			t.Errorf("fsync %s: error code %d", policy, code)
		}
	}
}

// TestLongPollFetchInWriter: a fetch waiting for records is waited for
// by its connection's writer, not by a goroutine of its own (one wake-up
// less between a produce and the consumer's answer), and each waiting
// connection still gets the record produced while it waits, in order
// behind nothing. Fails with a goroutine per long-polling fetch.
func TestLongPollFetchInWriter(t *testing.T) {
	b := startBrokerOn(t, hub.Options{DataDir: t.TempDir(), Defaults: hub.DatasetConfig{Fsync: "never"}}, Options{})
	ds, err := b.hub.CreateDataset("lp", hub.DatasetConfig{Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	fetch := kmsg.NewPtrFetchRequest()
	fetch.Version, fetch.MaxWaitMillis, fetch.MinBytes, fetch.MaxBytes = 11, 10000, 1, 1<<20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = "lp"
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.PartitionMaxBytes = 1 << 20
	rt.Partitions = append(rt.Partitions, rp)
	fetch.Topics = append(fetch.Topics, rt)
	body := fetch.AppendTo(nil)

	const conns = 40
	before := runtime.NumGoroutine()
	ncs := make([]net.Conn, conns)
	for i := range ncs {
		ncs[i] = rawConn(t, b.addr)
		if _, err := ncs[i].Write(frame(1, 11, int32(i), body)); err != nil {
			t.Fatal(err)
		}
	}
	// Each connection has its reader and writer once its fetch arrived;
	// give the fetches time to reach their wait.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() < before+2*conns && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if n := runtime.NumGoroutine() - before; n > 2*conns+conns/4 {
		t.Errorf("%d connections long-polling a fetch run %d goroutines, want about %d (a reader and a writer each)", conns, n, 2*conns)
	}

	p, _ := ds.Partition(0)
	if _, err := p.Produce(kgoBuilder{}.build("woken"), true); err != nil {
		t.Fatal(err)
	}
	for i, nc := range ncs {
		var size [4]byte
		if _, err := io.ReadFull(nc, size[:]); err != nil {
			t.Fatalf("connection %d: no fetch answer after the produce: %v", i, err)
		}
		resp := make([]byte, binary.BigEndian.Uint32(size[:]))
		if _, err := io.ReadFull(nc, resp); err != nil {
			t.Fatal(err)
		}
		if corr := int32(binary.BigEndian.Uint32(resp)); corr != int32(i) {
			t.Fatalf("connection %d: answer to correlation id %d, want %d", i, corr, i)
		}
		var fr kmsg.FetchResponse
		fr.Version = 11
		if err := fr.ReadFrom(resp[4:]); err != nil {
			t.Fatal(err)
		}
		if len(fr.Topics) != 1 || len(fr.Topics[0].Partitions) != 1 || !bytes.Contains(fr.Topics[0].Partitions[0].RecordBatches, []byte("woken")) {
			t.Fatalf("connection %d: fetch answer %+v does not carry the record produced", i, fr.Topics)
		}
	}
}

// stackListener's connections count the writes made from the
// connection's reader goroutine.
type stackListener struct {
	net.Listener
	fromReader, writes *atomic.Int64
}

func (l stackListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return stackConn{c, l}, nil
}

type stackConn struct {
	net.Conn
	l stackListener
}

func (c stackConn) Write(p []byte) (int, error) {
	buf := make([]byte, 8<<10)
	if bytes.Contains(buf[:runtime.Stack(buf, false)], []byte(").readLoop(")) {
		c.l.fromReader.Add(1)
	}
	c.l.writes.Add(1)
	return c.Conn.Write(p)
}

// TestAnswerFromReader: a response computed at once, to a request that
// came alone while nothing else was owed (a produce under acks=1 or fsync
// interval, as a tailing producer sends them), is written by the goroutine
// that read the request, without waking the writer. Fails when every
// response goes through the writer.
func TestAnswerFromReader(t *testing.T) {
	var fromReader, writes atomic.Int64
	b := startBrokerWrapped(t, hub.Options{DataDir: t.TempDir()}, Options{}, func(ln net.Listener) net.Listener {
		return stackListener{ln, &fromReader, &writes}
	})
	c := rawConn(t, b.addr)
	const n = 10
	for i := range n {
		c.Write(frame(18, 0, int32(i), nil)) // ApiVersions v0, one at a time
		if corr := int32(binary.BigEndian.Uint32(readFrame(t, c))); corr != int32(i) {
			t.Fatalf("response %d has correlation id %d", i, corr)
		}
	}
	if got, all := fromReader.Load(), writes.Load(); got != n || all != n {
		t.Fatalf("%d of %d writes made by the reader for %d requests sent one at a time, want all %d", got, all, n, n)
	}

	// A fetch that finds its records at once is answered by the reader
	// too (a sendfile fetch writes more than once).
	ds, err := b.hub.CreateDataset("fr", hub.DatasetConfig{Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ds.Partition(0)
	if _, err := p.Produce(kgoBuilder{}.build("there"), true); err != nil {
		t.Fatal(err)
	}
	fetch := kmsg.NewPtrFetchRequest()
	fetch.Version, fetch.MaxWaitMillis, fetch.MinBytes, fetch.MaxBytes = 11, 5000, 1, 1<<20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = "fr"
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.PartitionMaxBytes = 1 << 20
	rt.Partitions = append(rt.Partitions, rp)
	fetch.Topics = append(fetch.Topics, rt)
	before, all := fromReader.Load(), writes.Load()
	c.Write(frame(1, 11, 99, fetch.AppendTo(nil)))
	resp := readFrame(t, c)
	if !bytes.Contains(resp, []byte("there")) {
		t.Fatalf("fetch answer %x does not carry the record", resp)
	}
	if got, all := fromReader.Load()-before, writes.Load()-all; got == 0 || got != all {
		t.Fatalf("%d of %d writes of a fetch whose records were there made by the reader, want all", got, all)
	}
}
