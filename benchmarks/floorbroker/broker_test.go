package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhub/weir/codecs"
)

// startBroker runs a floor broker on a free port until the test ends.
func startBroker(t *testing.T, retain int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := newBroker(ln, retain)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { b.serve(); close(done) }()
	t.Cleanup(func() { b.close(); <-done })
	return ln.Addr().String()
}

func createTopic(t *testing.T, ctx context.Context, addr, topic string, partitions int32) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	r, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, nil, topic)
	if err == nil {
		err = r.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

// TestRoundTrip produces with franz-go's idempotent acks=all producer (the
// hub benchmark's settings) to two partitions and reads everything back
// with a consumer without group: each partition's records in order, at
// offsets 0, 1, 2..., with the offsets the producer was told.
func TestRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	addr := startBroker(t, 256<<20)
	const topic, perPartition = "round-trip", 5000
	createTopic(t, ctx, addr, topic, 2)

	prod, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	acked := make([][]int64, 2) // by partition, the offset of record i
	for p := range acked {
		acked[p] = make([]int64, perPartition)
	}
	errs := make(chan error, 1)
	for i := range perPartition {
		for p := range int32(2) {
			v := make([]byte, 12)
			binary.BigEndian.PutUint32(v, uint32(p))
			binary.BigEndian.PutUint64(v[4:], uint64(i))
			prod.Produce(ctx, &kgo.Record{Partition: p, Value: v}, func(r *kgo.Record, err error) {
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
				acked[r.Partition][binary.BigEndian.Uint64(r.Value[4:])] = r.Offset
			})
		}
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		t.Fatalf("produce: %v", err)
	default:
	}

	cons, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMinBytes(1), kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	next := make([]int64, 2)
	for next[0] < perPartition || next[1] < perPartition {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %v of %d records per partition: %v", next, perPartition, err)
		}
		for _, e := range fs.Errors() {
			t.Fatalf("fetch %s/%d: %v", e.Topic, e.Partition, e.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			p, i := r.Partition, int64(binary.BigEndian.Uint64(r.Value[4:]))
			if got := int32(binary.BigEndian.Uint32(r.Value)); got != p {
				t.Fatalf("partition %d returned a record produced to %d", p, got)
			}
			if i != next[p] || r.Offset != i || acked[p][i] != i {
				t.Fatalf("partition %d: record %d at offset %d (acknowledged at %d), want record %d at offset %d",
					p, i, r.Offset, acked[p][i], next[p], next[p])
			}
			next[p]++
		})
	}
}

// TestLongPoll checks that a fetch at the end of a partition waits, and
// is answered as soon as a record is produced, long before its max wait;
// and that without a produce it waits the max wait out.
func TestLongPoll(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	addr := startBroker(t, 256<<20)
	const topic = "long-poll"
	createTopic(t, ctx, addr, topic, 1)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("first")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	fetch := func(offset int64, maxWait time.Duration) (*kmsg.FetchResponse, error) {
		req := kmsg.NewPtrFetchRequest()
		req.Version, req.ReplicaID, req.MinBytes, req.MaxBytes = 12, -1, 1, 1<<20
		req.MaxWaitMillis = int32(maxWait / time.Millisecond)
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.FetchOffset, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = offset, 1<<20, -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl.Broker(nodeID))
		if err != nil {
			return nil, err
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			return nil, fmt.Errorf("fetch answered %d topics", len(resp.Topics))
		}
		return resp, kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode)
	}

	// Nothing past offset 1: the fetch waits its max wait out.
	start := time.Now()
	resp, err := fetch(1, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 280*time.Millisecond || len(resp.Topics[0].Partitions[0].RecordBatches) != 0 {
		t.Fatalf("empty fetch took %s with %d bytes, want about 300ms with none", took, len(resp.Topics[0].Partitions[0].RecordBatches))
	}

	// A produce during the wait answers the fetch at once.
	type answer struct {
		resp *kmsg.FetchResponse
		at   time.Time
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		r, err := fetch(1, 20*time.Second)
		got <- answer{r, time.Now(), err}
	}()
	time.Sleep(300 * time.Millisecond) // the fetch is waiting by now
	select {
	case a := <-got:
		t.Fatalf("fetch answered before any produce: %v", a.err)
	default:
	}
	produced := time.Now()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("second")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	a := <-got
	if a.err != nil {
		t.Fatal(a.err)
	}
	if wait := a.at.Sub(produced); wait > 2*time.Second {
		t.Fatalf("fetch answered %s after the produce, want at once (max wait 20s)", wait)
	}
	batches := a.resp.Topics[0].Partitions[0].RecordBatches
	var rb kmsg.RecordBatch
	if err := rb.ReadFrom(batches); err != nil {
		t.Fatal(err)
	}
	if rb.FirstOffset != 1 || rb.NumRecords != 1 {
		t.Fatalf("fetch answered batch at %d with %d records, want 1 record at offset 1", rb.FirstOffset, rb.NumRecords)
	}
}

// TestRetain checks that memory stays bounded: old chunks are dropped, the
// log start offset moves up, and a fetch below it is OFFSET_OUT_OF_RANGE.
func TestRetain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	addr := startBroker(t, 2*chunkSize)
	const topic = "retain"
	createTopic(t, ctx, addr, topic, 1)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic), kgo.ProducerBatchMaxBytes(1<<20),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	v := make([]byte, 64<<10)
	const n = 6 * chunkSize / (64 << 10) // six chunks' worth
	for range n {
		cl.Produce(ctx, &kgo.Record{Value: v}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := starts.Lookup(topic, 0)
	e, _ := ends.Lookup(topic, 0)
	kept := (e.Offset - s.Offset) * int64(len(v))
	if e.Offset != n || s.Offset == 0 || kept > 3*chunkSize {
		t.Fatalf("offsets %d to %d (%d MiB kept), want up to %d with at most 24 MiB kept", s.Offset, e.Offset, kept>>20, n)
	}

	cons, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(0)}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	fs := cons.PollFetches(ctx)
	var got error
	for _, fe := range fs.Errors() {
		got = fe.Err
	}
	if !errors.Is(got, kerr.OffsetOutOfRange) {
		t.Fatalf("fetch at offset 0 below start %d: error %v, want OFFSET_OUT_OF_RANGE", s.Offset, got)
	}
}

// batch returns an uncompressed v2 batch of n records of producer pid,
// epoch and base sequence seq.
func batch(pid int64, epoch int16, seq int32, n int) []byte {
	rb := kmsg.NewRecordBatch()
	rb.Magic, rb.ProducerID, rb.ProducerEpoch, rb.FirstSequence = 2, pid, epoch, seq
	rb.LastOffsetDelta, rb.NumRecords = int32(n-1), int32(n)
	var recs []byte
	for i := range n {
		r := kmsg.NewRecord()
		r.OffsetDelta = int32(i)
		r.Value = []byte("v")
		recs = r.AppendTo(recs)
	}
	rb.Records = recs
	rb.Length = int32(codecs.HeaderSize - codecs.LengthPrefix + len(recs))
	return rb.AppendTo(nil)
}

// TestSequences checks the idempotent producer's sequence numbers: a
// retried batch gets its first offset again and is not stored twice, a
// gap and an old epoch are refused, a new epoch starts at 0.
func TestSequences(t *testing.T) {
	p := newPartition(64 << 20)
	tests := []struct {
		name  string
		b     []byte
		base  int64
		code  int16
		after int64 // high watermark after
	}{
		{"first", batch(7, 0, 0, 3), 0, 0, 3},
		{"next", batch(7, 0, 3, 2), 3, 0, 5},
		{"retry of first", batch(7, 0, 0, 3), 0, 0, 5},
		{"gap", batch(7, 0, 9, 1), -1, kerr.OutOfOrderSequenceNumber.Code, 5},
		{"new producer not at 0", batch(8, 0, 4, 1), -1, kerr.OutOfOrderSequenceNumber.Code, 5},
		{"new epoch", batch(7, 1, 0, 1), 5, 0, 6},
		{"old epoch", batch(7, 0, 5, 1), -1, kerr.InvalidProducerEpoch.Code, 6},
		{"not idempotent", batch(-1, -1, -1, 2), 6, 0, 8},
	}
	for _, tt := range tests {
		h, err := checkBatch(tt.b)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		base, code := p.appendBatch(tt.b, h)
		_, hw := p.offsets()
		if base != tt.base || code != tt.code || hw != tt.after {
			t.Errorf("%s: appendBatch = %d, code %d, high watermark %d; want %d, code %d, %d", tt.name, base, code, hw, tt.base, tt.code, tt.after)
		}
	}
	// What is stored carries the assigned offsets.
	data, held, _, _, _, _ := p.read(3, 1<<20, true, false)
	defer held.release()
	var rb kmsg.RecordBatch
	if err := rb.ReadFrom(data); err != nil || rb.FirstOffset != 3 || rb.NumRecords != 2 {
		t.Fatalf("read(3) = batch at %d of %d records (%v), want 3 of 2", rb.FirstOffset, rb.NumRecords, err)
	}
}

// TestChunkReuse checks that a chunk dropped by its partition is reused
// only once no fetch holds it.
func TestChunkReuse(t *testing.T) {
	pool := &freeChunks
	pool.mu.Lock()
	pool.free = nil
	pool.mu.Unlock()
	p := newPartition(chunkSize) // one chunk kept
	b := batch(-1, -1, -1, 1)
	if _, code := appendChecked(t, p, b); code != 0 {
		t.Fatal(code)
	}
	_, held, _, _, _, _ := p.read(0, 1<<20, true, false)
	first := p.chunks[0]
	if held != first {
		t.Fatal("read did not hold the first chunk")
	}
	big := make([]byte, chunkSize-len(b)) // fill the first chunk
	copy(big, batch(-1, -1, -1, 1))
	binary.BigEndian.PutUint32(big[8:], uint32(len(big)-codecs.LengthPrefix)) // the batch's length field
	if _, code := appendChecked(t, p, big); code != 0 {
		t.Fatal(code)
	}
	if _, code := appendChecked(t, p, b); code != 0 { // a second chunk: the first is dropped
		t.Fatal(code)
	}
	if len(p.chunks) != 1 || p.chunks[0] == first {
		t.Fatalf("%d chunks kept, want the second only", len(p.chunks))
	}
	if c := pool.get(1); c == first {
		t.Fatal("a chunk a fetch still holds was handed out again")
	}
	held.release()
	if c := pool.get(1); c != first {
		t.Fatal("a released dropped chunk was not reused")
	}
}

// TestPipelinedPartial checks that an answer goes out even when the next
// pipelined request has only partly arrived: the broker must not hold
// answers while it waits on the socket for the rest of a request.
func TestPipelinedPartial(t *testing.T) {
	addr := startBroker(t, 64<<20)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	req := kmsg.NewPtrApiVersionsRequest() // v0: header v1, no tags
	frame := func(corr int32) []byte {
		b := []byte{0, 0, 0, 0, 0, 18, 0, 0}
		b = binary.BigEndian.AppendUint32(b, uint32(corr))
		b = append(b, 0xff, 0xff) // null client id
		b = req.AppendTo(b)
		binary.BigEndian.PutUint32(b, uint32(len(b)-4))
		return b
	}
	first, second := frame(1), frame(2)
	if _, err := nc.Write(append(first, second[:6]...)); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	var hdr [8]byte
	if _, err := io.ReadFull(nc, hdr[:]); err != nil {
		t.Fatalf("no answer to the first request while the second is partial: %v", err)
	}
	if corr := int32(binary.BigEndian.Uint32(hdr[4:])); corr != 1 {
		t.Fatalf("answer with correlation id %d, want 1", corr)
	}
}

// appendChecked is checkBatch, which must pass, then appendBatch.
func appendChecked(t *testing.T, p *partition, b []byte) (int64, int16) {
	t.Helper()
	h, err := checkBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	return p.appendBatch(b, h)
}

// TestOffsetForTime checks the timestamp lookup of ListOffsets: the first
// record at or after a time, across batches, and the high watermark past
// the last.
func TestOffsetForTime(t *testing.T) {
	p := newPartition(64 << 20)
	for _, stamps := range [][]int64{{100, 110, 120}, {200, 250}} {
		var bld codecs.Builder
		for _, ts := range stamps {
			bld.Append(ts, nil, []byte("v"), nil)
		}
		b, err := bld.Build()
		if err != nil {
			t.Fatal(err)
		}
		if _, code := appendChecked(t, p, append([]byte(nil), b...)); code != 0 {
			t.Fatal(code)
		}
	}
	for _, tt := range []struct{ ts, off, recordTS int64 }{
		{0, 0, 100}, {100, 0, 100}, {105, 1, 110}, {120, 2, 120}, {121, 3, 200}, {250, 4, 250}, {251, 5, -1},
	} {
		if off, rts := p.offsetForTime(tt.ts); off != tt.off || rts != tt.recordTS {
			t.Errorf("offsetForTime(%d) = %d at %d, want %d at %d", tt.ts, off, rts, tt.off, tt.recordTS)
		}
	}
}
