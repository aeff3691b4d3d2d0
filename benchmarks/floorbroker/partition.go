package main

import (
	"errors"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/weirhub/weir/codecs"
)

// chunkSize is the size of the memory a partition appends batches to; a
// larger batch gets a chunk of its own.
const chunkSize = 8 << 20

// batchMeta locates one stored batch in its chunk.
type batchMeta struct {
	base, last int64 // first and last offset
	pos, end   int   // bytes [pos, end) of the chunk
	maxTS      int64
}

// chunk is a piece of a partition's memory: batches one after the other.
// Bytes below len(data) never change while the chunk is in use, so a fetch
// may copy them into its answer after the partition's lock is released,
// holding a reference (acquire, under the lock; release once copied).
// A chunk dropped from its partition (retire) goes back to the free
// chunks once no fetch holds it, so that the next chunk reuses memory the
// process already has instead of faulting fresh pages in (at 250 MB/s of
// records, fresh chunks were most of the broker's CPU).
type chunk struct {
	data    []byte
	batches []batchMeta
	// state counts the references held by fetches, plus retired once the
	// partition dropped the chunk: whoever brings it to exactly retired
	// frees it.
	state atomic.Int64
}

const retired = 1 << 40

func (c *chunk) acquire() { c.state.Add(1) }

func (c *chunk) release() {
	if c.state.Add(-1) == retired {
		freeChunks.put(c)
	}
}

func (c *chunk) retire() {
	if c.state.Add(retired) == retired {
		freeChunks.put(c)
	}
}

// chunkPool keeps up to limit chunks of chunkSize for reuse.
type chunkPool struct {
	mu    sync.Mutex
	free  []*chunk
	limit int
}

// freeChunks are the chunks dropped by partitions, for new chunks: up to
// 2 GiB of them.
var freeChunks = chunkPool{limit: 2 << 30 / chunkSize}

func (p *chunkPool) put(c *chunk) {
	if cap(c.data) != chunkSize {
		return // a batch's own chunk: left to the collector
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) < p.limit {
		p.free = append(p.free, c)
	}
}

// get returns a chunk with room for n bytes.
func (p *chunkPool) get(n int) *chunk {
	if n <= chunkSize {
		p.mu.Lock()
		if k := len(p.free); k > 0 {
			c := p.free[k-1]
			p.free = p.free[:k-1]
			p.mu.Unlock()
			c.data, c.batches = c.data[:0], c.batches[:0]
			c.state.Store(0)
			return c
		}
		p.mu.Unlock()
	}
	return &chunk{data: make([]byte, 0, max(chunkSize, n))}
}

// producerState is what a partition remembers of an idempotent producer:
// its epoch and its last five batches (Kafka's window), newest last.
type producerState struct {
	epoch  int16
	recent []seqBatch
}

type seqBatch struct {
	first, last int32 // sequence numbers
	base        int64 // offset assigned
}

// partition is one partition's records in memory.
type partition struct {
	mu        sync.Mutex
	chunks    []*chunk
	next      int64 // offset of the next record: the high watermark
	kept      int64 // bytes in chunks
	retain    int64
	producers map[int64]*producerState
	// wake is closed at the next append when a fetch took it (waited).
	wake    chan struct{}
	waited  bool
	deleted bool
}

func newPartition(retain int64) *partition {
	return &partition{retain: retain, producers: map[int64]*producerState{}, wake: make(chan struct{})}
}

// errBadBatch reports a produce payload that is not one whole v2 batch.
var errBadBatch = errors.New("floorbroker: records are not one whole record batch of magic 2")

// checkBatch returns the header of the one batch that b must be, its
// framing checked as a producer's (codecs.ValidateProducedFraming: no
// CRC), or an error.
func checkBatch(b []byte) (codecs.Header, error) {
	h, err := codecs.ValidateProducedFraming(b, 0)
	if err == nil && h.Size() != len(b) {
		err = errBadBatch
	}
	return h, err
}

// appendBatch stores batch b, whose header checkBatch returned, and
// returns the offset of its first record, or the Kafka error code that
// refuses it. b is copied; the copy gets its base offset and leader epoch
// in place.
func (p *partition) appendBatch(b []byte, h codecs.Header) (base int64, code int16) {
	pid, epoch, seq, lastDelta := h.ProducerID, h.ProducerEpoch, h.BaseSequence, h.LastOffsetDelta
	if h.IsTransactional() || h.IsControl() { // no transactions here
		return -1, kerr.InvalidRecord.Code
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.deleted {
		return -1, kerr.UnknownTopicOrPartition.Code
	}
	var ps *producerState
	if pid >= 0 {
		ps = p.producers[pid]
		switch {
		case ps == nil || epoch > ps.epoch:
			if seq != 0 {
				return -1, kerr.OutOfOrderSequenceNumber.Code
			}
			if ps == nil {
				ps = &producerState{}
				p.producers[pid] = ps
			}
			ps.epoch, ps.recent = epoch, ps.recent[:0]
		case epoch < ps.epoch:
			return -1, kerr.InvalidProducerEpoch.Code
		default:
			for _, r := range ps.recent {
				if r.first == seq && r.last == seq+lastDelta {
					return r.base, 0 // a retry of a stored batch
				}
			}
			if last := ps.recent[len(ps.recent)-1].last; seq != nextSeq(last) {
				return -1, kerr.OutOfOrderSequenceNumber.Code
			}
		}
	}

	c := p.room(len(b))
	pos := len(c.data)
	c.data = append(c.data, b...)
	stored := c.data[pos:]
	base = p.next
	codecs.SetBaseOffset(stored, base)
	codecs.SetLeaderEpoch(stored, 0)
	c.batches = append(c.batches, batchMeta{base: base, last: base + int64(lastDelta), pos: pos, end: len(c.data), maxTS: h.MaxTimestamp})
	p.next = base + int64(lastDelta) + 1
	p.kept += int64(len(b))
	if ps != nil {
		if len(ps.recent) == 5 {
			ps.recent = append(ps.recent[:0], ps.recent[1:]...)
		}
		ps.recent = append(ps.recent, seqBatch{first: seq, last: seq + lastDelta, base: base})
	}
	p.trim()
	if p.waited {
		close(p.wake)
		p.wake, p.waited = make(chan struct{}), false
	}
	return base, 0
}

// nextSeq is the sequence number after s (they wrap at the int32 maximum).
func nextSeq(s int32) int32 {
	if s == 1<<31-1 {
		return 0
	}
	return s + 1
}

// room returns the chunk to append n bytes to, starting a new one when the
// last is full.
func (p *partition) room(n int) *chunk {
	if k := len(p.chunks); k > 0 {
		if c := p.chunks[k-1]; cap(c.data)-len(c.data) >= n {
			return c
		}
	}
	c := freeChunks.get(n)
	p.chunks = append(p.chunks, c)
	return c
}

// trim drops the oldest chunks while more than retain bytes are kept,
// never the newest.
func (p *partition) trim() {
	for p.kept > p.retain && len(p.chunks) > 1 {
		p.kept -= int64(len(p.chunks[0].data))
		p.chunks[0].retire()
		p.chunks[0] = nil
		p.chunks = p.chunks[1:]
	}
}

// startLocked is the first offset kept. p.mu is held.
func (p *partition) startLocked() int64 {
	if len(p.chunks) == 0 || len(p.chunks[0].batches) == 0 {
		return p.next
	}
	return p.chunks[0].batches[0].base
}

// offsets returns the log start offset and the high watermark.
func (p *partition) offsets() (start, hw int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.startLocked(), p.next
}

// read returns the stored batches from the one holding offset, as many as
// fit in limit bytes (at least one when atLeastOne), up to the end of that
// batch's chunk, and that chunk, acquired: the caller releases it once
// done with the bytes; the log start offset and high watermark; and a channel
// closed at the next append when nothing is past offset yet, or always
// when wantWake (a fetch that needs more bytes than one batch). code is
// OFFSET_OUT_OF_RANGE for an offset below the start or past the high
// watermark.
func (p *partition) read(offset int64, limit int, atLeastOne, wantWake bool) (data []byte, held *chunk, start, hw int64, wake <-chan struct{}, code int16) {
	p.mu.Lock()
	defer p.mu.Unlock()
	start, hw = p.startLocked(), p.next
	if p.deleted {
		return nil, nil, start, hw, nil, kerr.UnknownTopicOrPartition.Code
	}
	if offset < start || offset > hw {
		return nil, nil, start, hw, nil, kerr.OffsetOutOfRange.Code
	}
	if offset == hw || wantWake {
		p.waited = true
		wake = p.wake
	}
	if offset == hw {
		return nil, nil, start, hw, wake, 0
	}
	// The chunk holding offset: the last whose first batch starts at or
	// before it.
	ci := sort.Search(len(p.chunks), func(i int) bool { return p.chunks[i].batches[0].base > offset }) - 1
	c := p.chunks[ci]
	bi := sort.Search(len(c.batches), func(i int) bool { return c.batches[i].last >= offset })
	from := c.batches[bi].pos
	to := from
	for _, m := range c.batches[bi:] {
		if m.end-from > limit && !(atLeastOne && to == from) {
			break
		}
		to = m.end
	}
	c.acquire()
	return c.data[from:to:to], c, start, hw, wake, 0
}

// offsetForTime returns the offset of the first record whose timestamp is
// at least ts, or the high watermark when there is none.
func (p *partition) offsetForTime(ts int64) (offset, recordTS int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.chunks {
		for _, m := range c.batches {
			if m.maxTS < ts {
				continue
			}
			if off, rts, ok := firstAtOrAfter(c.data[m.pos:m.end], ts); ok {
				return off, rts
			}
		}
	}
	return p.next, -1
}

// firstAtOrAfter walks the records of the stored batch b and returns the
// offset and timestamp of the first whose timestamp is at least ts. A
// compressed batch, whose records it does not decompress, answers with
// its base offset and its max timestamp (the batch is the first that
// reaches ts); so does one with log append times, all of whose records
// have the max timestamp.
func firstAtOrAfter(b []byte, ts int64) (int64, int64, bool) {
	h, err := codecs.ParseHeader(b)
	if err != nil {
		return 0, 0, false
	}
	if h.Compression() != codecs.None || h.IsLogAppendTime() {
		return h.BaseOffset, h.MaxTimestamp, true
	}
	var it codecs.RecordIter
	if it.Reset(b) != nil {
		return 0, 0, false
	}
	for it.Next() {
		if r := it.Record(); r.Timestamp >= ts {
			return r.Offset, r.Timestamp, true
		}
	}
	return 0, 0, false
}

// remove marks the partition deleted and wakes its waiting fetches.
func (p *partition) remove() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.deleted = true
	for _, c := range p.chunks {
		c.retire()
	}
	p.chunks = nil
	if p.waited {
		close(p.wake)
		p.wake, p.waited = make(chan struct{}), false
	}
}
