package kafka

import (
	"bytes"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/hub"
)

// The hostile clients of issue 18, each with the minimal reproduction the
// issue gives: every test asserts the answer (or the close), that the
// broker still answers Metadata, and a memory or CPU bound.

// poisonBatch frames body as a RecordBatch v2 of codec c claiming count
// records, with a valid CRC: only a walk over the records can tell it is
// bad.
func poisonBatch(c codecs.Compression, count int32, body []byte) []byte {
	b := make([]byte, codecs.HeaderSize, codecs.HeaderSize+len(body))
	binary.BigEndian.PutUint32(b[8:], uint32(codecs.HeaderSize-codecs.LengthPrefix+len(body)))
	b[16] = codecs.Magic
	binary.BigEndian.PutUint16(b[21:], uint16(c))
	binary.BigEndian.PutUint32(b[23:], uint32(count-1))
	binary.BigEndian.PutUint64(b[43:], ^uint64(0)) // producer id -1
	binary.BigEndian.PutUint16(b[51:], ^uint16(0))
	binary.BigEndian.PutUint32(b[53:], ^uint32(0))
	binary.BigEndian.PutUint32(b[57:], uint32(count))
	b = append(b, body...)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-codecs.LengthPrefix))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

func zstdNoSize(t testing.TB, src []byte) []byte {
	var out bytes.Buffer
	w, err := zstd.NewWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(src)
	w.Close()
	return out.Bytes()
}

// produceRaw sends one Produce v7 (acks=all) of batch to topic/0 on c and
// returns the partition's error code.
func produceRaw(t *testing.T, c net.Conn, topic string, batch []byte) int16 {
	t.Helper()
	req := kmsg.NewProduceRequest()
	req.Version = 7
	req.Acks = -1
	req.TimeoutMillis = 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(frame(0, 7, 7, req.AppendTo(nil))); err != nil {
		t.Fatalf("sending a produce: %v", err)
	}
	body := readFrame(t, c)
	resp := kmsg.NewProduceResponse()
	resp.Version = 7
	if err := resp.ReadFrom(body[4:]); err != nil {
		t.Fatalf("decoding the produce response: %v", err)
	}
	return resp.Topics[0].Partitions[0].ErrorCode
}

// metadataAnswers checks that a fresh connection gets a Metadata answer.
func metadataAnswers(t *testing.T, addr string) {
	t.Helper()
	c := rawConn(t, addr)
	req := kmsg.NewMetadataRequest()
	req.Version = 1
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(frame(3, 1, 9, req.AppendTo(nil))); err != nil {
		t.Fatalf("sending metadata: %v", err)
	}
	body := readFrame(t, c)
	resp := kmsg.NewMetadataResponse()
	resp.Version = 1
	if err := resp.ReadFrom(body[4:]); err != nil || len(resp.Brokers) != 1 {
		t.Fatalf("metadata after hostile input: %v, %d brokers", err, len(resp.Brokers))
	}
}

// allocDuring is how many bytes the process allocated while fn ran.
func allocDuring(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestPoisonBatchesRefused is item 1: batches whose CRC and header are
// fine but whose records are not are answered CORRUPT_MESSAGE and nothing
// is stored (no offsets used up), and a good batch after them is stored.
func TestPoisonBatchesRefused(t *testing.T) {
	b := startBroker(t, t.TempDir(), Options{})
	if _, err := b.hub.CreateDataset("poison", hub.DatasetConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	good := kgoBuilder{}.build("a", "b", "c", "d", "e")
	five := good[codecs.HeaderSize:]
	ff := bytes.Repeat([]byte{0xff}, 100)
	gz, err := codecs.Gzip.AppendCompressed(nil, five)
	if err != nil {
		t.Fatal(err)
	}
	gz[len(gz)/2] ^= 0xff // corrupt gzip payload (its own CRC fails)
	cases := map[string][]byte{
		"a million records claimed over 5": poisonBatch(codecs.None, 1_000_000, five),
		"records of 0xff":                  poisonBatch(codecs.None, 5, ff),
		"records of 0xff, zstd":            poisonBatch(codecs.Zstd, 5, zstdNoSize(t, ff)),
		"corrupt gzip payload":             poisonBatch(codecs.Gzip, 5, gz),
		"corrupt zstd payload":             poisonBatch(codecs.Zstd, 5, append([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0x58}, ff...)),
	}
	c := rawConn(t, b.addr)
	for name, batch := range cases {
		var code int16
		alloc := allocDuring(func() { code = produceRaw(t, c, "poison", batch) })
		if code != kerr.CorruptMessage.Code {
			t.Errorf("%s: error code %d (%v), want CORRUPT_MESSAGE", name, code, kerr.ErrorForCode(code))
		}
		if alloc > 16<<20 {
			t.Errorf("%s: the broker allocated %d bytes for a %d-byte batch", name, alloc, len(batch))
		}
	}
	ds, _ := b.hub.Dataset("poison")
	p, _ := ds.Partition(0)
	if hw := p.HighWatermark(); hw != 0 {
		t.Fatalf("high watermark %d after refused batches, want 0 (offsets used up)", hw)
	}
	if code := produceRaw(t, c, "poison", good); code != 0 {
		t.Fatalf("a good batch after the poison: error %v", kerr.ErrorForCode(code))
	}
	if hw := p.HighWatermark(); hw != 5 {
		t.Fatalf("high watermark %d after a good batch of 5, want 5", hw)
	}
	metadataAnswers(t, b.addr)
}

// TestCompressionBombRefused is item 2: a zstd frame without a content
// size that expands far past the dataset's limit is refused without the
// broker allocating what it expands to.
func TestCompressionBombRefused(t *testing.T) {
	b := startBroker(t, t.TempDir(), Options{})
	if _, err := b.hub.CreateDataset("bomb", hub.DatasetConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	// One record whose value is 256 MiB of zeros, and plain zeros.
	zeros := make([]byte, 256<<20)
	rec := []byte{0}
	rec = codecs.AppendVarint(rec, 0)
	rec = codecs.AppendVarint(rec, 0)
	rec = codecs.AppendVarint(rec, -1)
	rec = codecs.AppendVarint(rec, int64(len(zeros)))
	recs := codecs.AppendVarint(nil, int64(len(rec)+len(zeros)+1))
	recs = append(recs, rec...)
	recs = append(recs, zeros...)
	recs = append(recs, 0)
	cases := map[string]struct {
		batch []byte
		want  int16
	}{
		"one record of 256 MiB": {poisonBatch(codecs.Zstd, 1, zstdNoSize(t, recs)), kerr.MessageTooLarge.Code},
		"256 MiB of zeros":      {poisonBatch(codecs.Zstd, 1, zstdNoSize(t, zeros)), kerr.CorruptMessage.Code},
	}
	zeros, recs = nil, nil
	c := rawConn(t, b.addr)
	for name, tc := range cases {
		var code int16
		start := time.Now()
		alloc := allocDuring(func() { code = produceRaw(t, c, "bomb", tc.batch) })
		if code != tc.want {
			t.Errorf("%s (%d bytes): error %v, want %v", name, len(tc.batch), kerr.ErrorForCode(code), kerr.ErrorForCode(tc.want))
		}
		if alloc > 32<<20 {
			t.Errorf("%s: the broker allocated %d bytes", name, alloc)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s: refusing took %v", name, d)
		}
	}
	metadataAnswers(t, b.addr)
}

// tagBomb is issue 18's 23-byte ApiVersions v3 whose body's tag count is
// 0xFFFFFFFF: kmsg before v1.15.1 looped over the missing tags for about
// 90 CPU-seconds, and hanging up did not stop it.
var tagBomb = []byte{0, 0, 0, 0x13, 0, 0x12, 0, 3, 0, 0, 0, 1, 0, 1, 0x78, 0, 1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f}

// TestTagCountBomb is item 5: the request is refused at once (the
// connection closed), four of them do not delay a shutdown, and Metadata
// is still answered.
func TestTagCountBomb(t *testing.T) {
	b := startBroker(t, t.TempDir(), Options{})
	start := time.Now()
	var cpu0 = cpuTime(t)
	for range 4 {
		c := rawConn(t, b.addr)
		c.Write(tagBomb)
		expectClosed(t, c, "tag count bomb")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("four tag-count bombs took %v to refuse", d)
	}
	if used := cpuTime(t) - cpu0; used > 2*time.Second {
		t.Fatalf("four tag-count bombs used %v of CPU", used)
	}
	metadataAnswers(t, b.addr)
	for range 4 {
		c := rawConn(t, b.addr)
		c.Write(tagBomb)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start = time.Now()
	b.srv.Shutdown(ctx)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("shutdown with four tag-count bombs took %v", d)
	}
}

// cpuTime is the CPU time the process has used.
func cpuTime(t testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestRequestArraysBoundedBeforeDecoding is item 3: a 10 MiB produce of
// 1.7 million empty topic entries (6 bytes each on the wire, 64 in kmsg's
// structs) cost 112 MiB to decode. The produce is walked before kmsg sees
// it and refused when decoding would cost more than twice its size; and a
// Metadata request may not be large at all.
func TestRequestArraysBoundedBeforeDecoding(t *testing.T) {
	b := startBroker(t, t.TempDir(), Options{})
	const size = 10 << 20
	body := make([]byte, size-16)                                // after the 16-byte header frame() writes
	binary.BigEndian.PutUint16(body, 0xffff)                     // transactional id null
	binary.BigEndian.PutUint16(body[2:], 1)                      // acks
	binary.BigEndian.PutUint32(body[4:], 5000)                   // timeout
	binary.BigEndian.PutUint32(body[8:], uint32(len(body)-12)/6) // topics: empty ones, 6 bytes each
	req := frame(0, 7, 1, body)
	c := rawConn(t, b.addr)
	alloc := allocDuring(func() {
		c.Write(req)
		expectClosed(t, c, "produce of 1.7M empty topics")
	})
	if alloc > 48<<20 {
		t.Errorf("a 10 MiB produce of empty topics made the broker allocate %d MiB", alloc>>20)
	}
	// A 2 MiB Metadata request is refused from its header.
	c = rawConn(t, b.addr)
	alloc = allocDuring(func() {
		c.Write([]byte{0, 0x20, 0, 0, 0, 3, 0, 1})
		expectClosed(t, c, "2 MiB metadata")
	})
	if alloc > 4<<20 {
		t.Errorf("an announced 2 MiB Metadata made the broker allocate %d bytes", alloc)
	}
	metadataAnswers(t, b.addr)
}

// TestAnnouncedFramesAllocateNothing is item 4: eight bytes announcing a
// 100 MiB produce allocated 100 MiB at once, for up to a minute. A body's
// buffer now grows as its bytes arrive, and what the bodies hold is
// charged to QueuedMaxRequestBytes, which small requests do not need.
func TestAnnouncedFramesAllocateNothing(t *testing.T) {
	b := startBroker(t, t.TempDir(), Options{})
	var conns []net.Conn
	alloc := allocDuring(func() {
		for range 5 {
			c := rawConn(t, b.addr)
			c.Write([]byte{0x06, 0x40, 0, 0, 0, 0, 0, 9})
			conns = append(conns, c)
		}
		metadataAnswers(t, b.addr) // by now the server read the eight bytes
	})
	if alloc > 8<<20 {
		t.Errorf("five announced 100 MiB produces made the broker allocate %d MiB", alloc>>20)
	}
	if used := b.srv.budget.inUse(); used > 5*firstChunk {
		t.Errorf("five announced bodies hold %d bytes of the budget", used)
	}

	// Slow bodies fill a 2 MiB budget and no more; Metadata is still
	// answered meanwhile.
	b = startBroker(t, t.TempDir(), Options{MaxRequestBytes: 2 << 20, QueuedMaxRequestBytes: 2 << 20})
	part := make([]byte, 1<<20+512<<10)
	for range 4 {
		c := rawConn(t, b.addr)
		c.Write(append([]byte{0, 0x20, 0, 0, 0, 0, 0, 9}, part...))
	}
	// The bodies grow until one waits for room: 6 MiB sent, at most 2 MiB
	// held.
	waitFor(t, "a body waiting for room", func() bool {
		b.srv.budget.mu.Lock()
		defer b.srv.budget.mu.Unlock()
		return len(b.srv.budget.waiters) > 0
	}, b.srv.Stats)
	if used := b.srv.budget.inUse(); used > 2<<20 || used < 1<<20 {
		t.Fatalf("slow bodies hold %d bytes of a 2 MiB budget", used)
	}
	metadataAnswers(t, b.addr)
	if used := b.srv.budget.inUse(); used > 2<<20 {
		t.Fatalf("budget of 2 MiB holds %d", used)
	}
}

// dialFrom connects to addr from the loopback address local (any of
// 127.0.0.0/8 on Linux), to act as another client address.
func dialFrom(t *testing.T, local, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// sendMetadata sends a Metadata v1 request on c and reads its answer.
func sendMetadata(t *testing.T, c net.Conn) error {
	t.Helper()
	req := kmsg.NewMetadataRequest()
	req.Version = 1
	if _, err := c.Write(frame(3, 1, 9, req.AppendTo(nil))); err != nil {
		return err
	}
	var n [4]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return err
	}
	_, err := io.ReadFull(c, make([]byte, binary.BigEndian.Uint32(n[:])))
	return err
}

func waitFor(t *testing.T, what string, cond func() bool, stats func() Stats) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (stats now %+v)", what, stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestConnectionExhaustion is item 6: one address cannot take more than
// MaxConnectionsPerIP; idle sockets that never sent a request are closed
// early, and make room for new clients when the cap is reached, so a
// flood of them locks no one out.
func TestConnectionExhaustion(t *testing.T) {
	t.Run("per address", func(t *testing.T) {
		b := startBroker(t, t.TempDir(), Options{MaxConnectionsPerIP: 5})
		for range 8 {
			dialFrom(t, "127.0.0.2", b.addr)
		}
		waitFor(t, "3 refusals", func() bool { return b.srv.Stats().RefusedPerIP == 3 }, b.srv.Stats)
		if n := b.srv.Connections(); n != 5 {
			t.Fatalf("%d connections from one address with a cap of 5", n)
		}
		if err := sendMetadata(t, dialFrom(t, "127.0.0.3", b.addr)); err != nil {
			t.Fatalf("another address is locked out: %v", err)
		}
	})
	t.Run("idle sockets make room", func(t *testing.T) {
		b := startBroker(t, t.TempDir(), Options{MaxConnections: 20, MaxConnectionsPerIP: -1})
		for range 20 {
			dialFrom(t, "127.0.0.2", b.addr)
		}
		waitFor(t, "20 connections", func() bool { return b.srv.Connections() == 20 }, b.srv.Stats)
		// The cap is reached by sockets that sent nothing: a client
		// still gets in, and one idle socket is closed for it.
		if err := sendMetadata(t, dialFrom(t, "127.0.0.3", b.addr)); err != nil {
			t.Fatalf("locked out by idle sockets: %v", err)
		}
		if st := b.srv.Stats(); st.EvictedIdle != 1 || st.RefusedFull != 0 {
			t.Fatalf("stats %+v, want one idle socket evicted", st)
		}
	})
	t.Run("busy connections are kept", func(t *testing.T) {
		b := startBroker(t, t.TempDir(), Options{MaxConnections: 5, MaxConnectionsPerIP: -1})
		for range 5 {
			if err := sendMetadata(t, dialFrom(t, "127.0.0.2", b.addr)); err != nil {
				t.Fatal(err)
			}
		}
		c := dialFrom(t, "127.0.0.3", b.addr)
		expectClosed(t, c, "a sixth connection when five are in use")
		if st := b.srv.Stats(); st.RefusedFull != 1 || st.EvictedIdle != 0 {
			t.Fatalf("stats %+v, want one refusal", st)
		}
	})
	t.Run("no first request", func(t *testing.T) {
		b := startBroker(t, t.TempDir(), Options{FirstRequestTimeout: 200 * time.Millisecond})
		idle := dialFrom(t, "127.0.0.2", b.addr)
		busy := dialFrom(t, "127.0.0.2", b.addr)
		if err := sendMetadata(t, busy); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		expectClosed(t, idle, "a connection that sent nothing")
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("idle connection closed after %v", d)
		}
		if err := sendMetadata(t, busy); err != nil {
			t.Fatalf("an established connection was closed with the idle one: %v", err)
		}
	})
}

// lines counts substr in what was written (lockedBuffer: storage_test.go).
func (l *lockedBuffer) lines(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), substr)
}

// TestRefusalsCountedNotFlooded is item 7: 60 refused connections and 60
// hostile requests are all counted, and logged in one line each kind; a
// full disk is logged once, at ERROR, with what to do.
func TestRefusalsCountedNotFlooded(t *testing.T) {
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	b := startBroker(t, t.TempDir(), Options{MaxConnectionsPerIP: 1, Logger: logger})
	keep := dialFrom(t, "127.0.0.2", b.addr)
	if err := sendMetadata(t, keep); err != nil {
		t.Fatal(err)
	}
	for i := range 60 {
		dialFrom(t, "127.0.0.2", b.addr)
		c := dialFrom(t, fmt.Sprintf("127.0.1.%d", i+1), b.addr)
		c.Write(tagBomb)
		expectClosed(t, c, "bad request")
	}
	waitFor(t, "60 refusals", func() bool {
		st := b.srv.Stats()
		return st.RefusedPerIP == 60 && st.ClosedOnError == 60
	}, b.srv.Stats)
	if n := logs.lines("too many from one address"); n != 1 {
		t.Errorf("%d log lines for 60 refused connections, want 1:\n%s", n, logs.b.String())
	}
	if n := logs.lines("after a protocol error"); n != 1 {
		t.Errorf("%d log lines for 60 bad requests, want 1", n)
	}

	full := fmt.Errorf("%w: log: writing x.log: %w", hub.ErrStorage, &os.PathError{Op: "write", Path: "x.log", Err: syscall.ENOSPC})
	for range 3 {
		b.srv.noteStorage(full)
	}
	if n := logs.lines("level=ERROR msg=\"kafka: the disk is full"); n != 1 {
		t.Errorf("%d ERROR lines for a full disk met three times, want 1:\n%s", n, logs.b.String())
	}
	b.srv.noteStorage(nil) // a produce succeeded: the next failure is news
	b.srv.noteStorage(full)
	if n := logs.lines("the disk is full"); n != 2 {
		t.Errorf("%d ERROR lines after the disk filled again, want 2", n)
	}
}

var updateSeeds = flag.Bool("update-seeds", false, "write the FuzzRequest seeds of issue 18 to testdata/fuzz/FuzzRequest")

// hostileSeeds are the request bodies (after the size) of every
// reproduction above, for FuzzRequest.
func hostileSeeds(t *testing.T) map[string][]byte {
	produce := func(version int16, batch []byte) []byte {
		req := kmsg.NewProduceRequest()
		req.Version = version
		req.Acks = -1
		req.TimeoutMillis = 5000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = "poison"
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = batch
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		return frame(0, version, 1, req.AppendTo(nil))[4:]
	}
	// The records of five, after the batch header: one timestamp for all
	// (kgoBuilder's clock could tick between two of them, making the
	// seed differ from the one on disk).
	fb := newBatch()
	for _, v := range []string{"a", "b", "c", "d", "e"} {
		fb.Append(1_700_000_000_000, nil, []byte(v), nil)
	}
	five, _ := fb.Build()
	five = bytes.Clone(five[codecs.HeaderSize:])
	ff := bytes.Repeat([]byte{0xff}, 100)
	rec := []byte{0}
	rec = codecs.AppendVarint(rec, 0)
	rec = codecs.AppendVarint(rec, 0)
	rec = codecs.AppendVarint(rec, -1)
	rec = codecs.AppendVarint(rec, 64<<20)
	recs := codecs.AppendVarint(nil, int64(len(rec)+64<<20+1))
	recs = append(recs, rec...)
	recs = append(recs, make([]byte, 64<<20+1)...)
	emptyTopics := make([]byte, 16<<10)
	binary.BigEndian.PutUint16(emptyTopics, 0xffff)
	binary.BigEndian.PutUint16(emptyTopics[2:], 1)
	binary.BigEndian.PutUint32(emptyTopics[8:], uint32(len(emptyTopics)-12)/6)
	bigMeta := []byte{0x7f, 0xff, 0xff, 0xff}
	return map[string][]byte{
		"tag-count-bomb":             tagBomb[4:],
		"announced-100MiB-produce":   {0, 0, 0, 9, 0, 0, 0, 1, 0xff, 0xff, 0},
		"produce-empty-topics":       frame(0, 7, 1, emptyTopics)[4:],
		"produce-million-records":    produce(7, poisonBatch(codecs.None, 1_000_000, five)),
		"produce-records-of-ff":      produce(9, poisonBatch(codecs.None, 5, ff)),
		"produce-records-of-ff-zstd": produce(7, poisonBatch(codecs.Zstd, 5, zstdNoSize(t, ff))),
		"produce-zstd-bomb":          produce(9, poisonBatch(codecs.Zstd, 1, zstdNoSize(t, recs))),
		"metadata-huge-array":        frame(3, 1, 1, bigMeta)[4:],
	}
}

// TestFuzzSeeds checks the seeds on disk are the reproductions of today
// (-update-seeds rewrites them).
func TestFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzRequest")
	for name, body := range hostileSeeds(t) {
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", body)
		path := filepath.Join(dir, name)
		if *updateSeeds {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("seed %s: %v (go test -run TestFuzzSeeds -update-seeds writes it)", name, err)
		}
		if name != "produce-zstd-bomb" && name != "produce-records-of-ff-zstd" && string(got) != want {
			t.Errorf("seed %s differs from its reproduction; rewrite with -update-seeds", name)
		}
	}
}

// TestSlowBodyTimesOut is item 4's deadline: a body that does not arrive
// within RequestBodyTimeout plus a second per 256 KiB closes the
// connection and gives its share of the budget back.
func TestSlowBodyTimesOut(t *testing.T) {
	b := startBroker(t, t.TempDir(), Options{RequestBodyTimeout: 200 * time.Millisecond})
	c := rawConn(t, b.addr)
	// 128 KiB announced (half a second more), 70 KiB sent.
	c.Write(append([]byte{0, 2, 0, 0, 0, 0, 0, 9}, make([]byte, 70<<10)...))
	start := time.Now()
	expectClosed(t, c, "a body that stopped arriving")
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("closed after %v, want about 0.7s", d)
	}
	waitFor(t, "the budget to be given back", func() bool { return b.srv.budget.inUse() == 0 }, b.srv.Stats)
	metadataAnswers(t, b.addr)
}
