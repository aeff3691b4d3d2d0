package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/internal/atomicfile"
	wlog "github.com/weirhub/weir/log"
)

// Partition is one log of a dataset, with the sequence state of the
// idempotent producers writing to it.
type Partition struct {
	ds  *Dataset
	id  int32
	dir string
	log *wlog.Log

	mu        sync.Mutex // orders produce: sequence checks and appends
	producers map[int64]*producerState
	written   sync.Cond // L is mu; signalled when a producer's batches' write is done (see producerState.writing)
	snapAt    int64     // high watermark of the last producer snapshot
	// writeWaits counts the produces waiting on written.
	writeWaits int

	// writeFailedHook, when set by a test, runs in a produce whose write
	// failed, before it takes mu to undo what it recorded.
	writeFailedHook func()

	waitMu  sync.Mutex
	waiters map[chan struct{}]struct{}
	nwait   atomic.Int32

	floor        atomic.Int64 // records below were deleted by DeleteRecords; see records.go
	floorMu      sync.Mutex   // orders DeleteRecords calls (not produce: see records.go)
	fetchedBytes atomic.Int64 // bytes returned by Fetch, for Stats

	aborted  []AbortedTxn // under mu, oldest first; see txnpart.go
	openTxns atomic.Int32 // producers with TxnOpen
}

// producerState is what a partition remembers of one idempotent producer:
// its epoch and its last batches, to recognise a retry.
type producerState struct {
	Epoch     int16        `json:"epoch"`
	LastWrite int64        `json:"last_write_ms"`
	Batches   []batchEntry `json:"batches"` // oldest first, at most maxCachedBatches
	// TxnOpen: the producer's transaction has records here and no marker
	// yet; TxnFirst is the offset of its first batch.
	TxnOpen  bool  `json:"txn_open,omitempty"`
	TxnFirst int64 `json:"txn_first,omitempty"`
	// writing counts the producer's batches recorded whose write is not
	// done: the next batch of the producer, or a retry, is checked only
	// once they are written or taken back, so that a failed write leaves
	// the sequence where it was (its retry is stored, the batches after
	// it refused until it is), as Kafka's does.
	writing int
}

type batchEntry struct {
	FirstSeq   int32 `json:"first_seq"`
	LastSeq    int32 `json:"last_seq"`
	BaseOffset int64 `json:"base_offset"`
	NextOffset int64 `json:"next_offset"`
}

// maxCachedBatches is how many batches per producer a retry is checked
// against: Kafka's limit on in-flight requests of an idempotent producer.
const maxCachedBatches = 5

// producerExpiry forgets producers that have not written for this long
// (Kafka's producer.id.expiration.ms).
const producerExpiry = 24 * time.Hour

const producerSnapshot = "producers.snapshot"

func openPartition(d *Dataset, id int32) (*Partition, error) {
	p := &Partition{ds: d, id: id, dir: filepath.Join(d.dir, fmt.Sprint(id)),
		producers: map[int64]*producerState{}, waiters: map[chan struct{}]struct{}{}}
	p.written.L = &p.mu
	opts := d.cfg.logOptions(d.h)
	opts.OnPublish = p.wake
	if o := d.h.opts.Observer; o != nil {
		opts.OnFsync = func(took time.Duration) { o.ObserveFsync(d.name, id, took) }
	}
	opts.Logger = opts.Logger.With("dataset", d.name, "partition", id)
	if d.cfg.RemoteStorage {
		if d.h.opts.ColdStore == nil {
			return nil, fmt.Errorf("%w: %s has remote.storage.enable but the hub has no cold store (weir serve --cold-store)", ErrInvalidConfig, d.name)
		}
		opts.Tier, opts.ColdCache = d.h.coldTier(d.name, id).tier(), d.h.cold
	}
	l, err := wlog.Open(p.dir, opts)
	if err != nil {
		return nil, fmt.Errorf("hub: opening %s/%d: %w", d.name, id, err)
	}
	p.log = l
	if err := p.loadFloor(); err != nil {
		l.Close()
		return nil, err
	}
	if err := p.loadProducers(); err != nil {
		l.Close()
		return nil, err
	}
	return p, nil
}

// Dataset is the dataset the partition belongs to.
func (p *Partition) Dataset() *Dataset { return p.ds }

// ID is the partition's number.
func (p *Partition) ID() int32 { return p.id }

// Log is the partition's commit log, for readers such as the Kafka fetch
// path that send file sections directly.
func (p *Partition) Log() *wlog.Log { return p.log }

// HighWatermark is the offset after the last readable record.
func (p *Partition) HighWatermark() int64 { return p.log.HighWatermark() }

// StartOffset is the first offset still stored (Kafka's log start offset):
// records below were deleted by retention or DeleteRecords.
func (p *Partition) StartOffset() int64 { return max(p.log.StartOffset(), p.floor.Load()) }

func (p *Partition) close() error {
	p.snapshotProducers(true)
	err := p.log.Close()
	if errors.Is(err, wlog.ErrClosed) {
		return nil
	}
	return err
}

// ProduceResult is the outcome of a successful produce.
type ProduceResult struct {
	BaseOffset     int64 // offset of the first record of the first batch
	LogStartOffset int64
	Duplicate      bool  // every batch was a retry, answered from the cache
	Next           int64 // offset after the batches: what WaitDurable waits for
}

// WaitDurable blocks until the records below next are durable as the
// dataset's fsync policy defines (at once unless it is "always"). Callers
// that produce without waiting, to release their own locks first, use it.
func (p *Partition) WaitDurable(next int64) error {
	if err := p.log.WaitDurable(next); err != nil {
		return storageErr(err)
	}
	return nil
}

// WaitsForDisk reports whether WaitDurable can block: only when the
// dataset's fsync policy is "always"; with "interval" and "never" an
// acknowledgement waits for nothing.
func (p *Partition) WaitsForDisk() bool { return p.log.WaitsForDisk() }

// Produce appends the record batches in records (one or more whole
// RecordBatch v2 batches) to the partition. Batches of idempotent producers
// are checked against the producer's sequence: a retry of one of its last
// five batches is not stored again but answered with its original offset,
// and a gap or reordering fails with ErrOutOfOrderSequence. A producer's
// batch is checked only once the write of its batches before is done: a
// failed write leaves the producer's sequence where it was, so that its
// retry is stored and the batches sent after it are refused until it is.
// With waitDurable
// (acks=all) it returns only once the records are durable as the dataset's
// fsync policy defines. records is modified in place (offsets assigned).
// Every record of every batch is checked first (see checkProduced).
func (p *Partition) Produce(records []byte, waitDurable bool) (ProduceResult, error) {
	return p.produce(records, waitDurable, true)
}

// produce is Produce; check is false for batches the hub built itself
// (LocalClient), whose records need no walk through a decompressor.
func (p *Partition) produce(records []byte, waitDurable, check bool) (ProduceResult, error) {
	res := ProduceResult{BaseOffset: -1}
	var headers [8]codecs.Header
	hs := headers[:0]
	for rest := records; len(rest) > 0; {
		h, err := codecs.ParseHeader(rest)
		if err == nil && h.Size() > len(rest) {
			err = &codecs.BatchError{BaseOffset: -1, Reason: "batch runs past the end of the request", Err: codecs.ErrShort}
		}
		if err != nil {
			return res, fmt.Errorf("%w: %v", ErrCorruptBatch, err)
		}
		if h.IsControl() {
			return res, fmt.Errorf("%w: control batches are written by the hub only", ErrInvalidRecord)
		}
		codecs.SetLeaderEpoch(rest, LeaderEpoch) // as Kafka's leader stamps its epoch
		if check {
			if err := checkProduced(p.ds, rest[:h.Size()]); err != nil {
				return res, err
			}
		}
		hs = append(hs, h)
		rest = rest[h.Size():]
	}
	if len(hs) == 0 {
		return res, fmt.Errorf("%w: no record batches", ErrCorruptBatch)
	}

	p.mu.Lock()
	for p.writing(hs) {
		// A batch of one of these producers is being written: whether it
		// was stored decides what follows it in sequence.
		p.writeWaits++
		p.written.Wait()
		p.writeWaits--
	}
	if err := p.checkTxnProduce(hs); err != nil {
		p.mu.Unlock()
		return res, err
	}
	now := p.ds.h.opts.Now().UnixMilli()
	// Leading retries are answered from the cache.
	var dupNext int64 = -1
	skip := 0
	for len(hs) > 0 && hs[0].ProducerID >= 0 {
		e, dup, err := p.checkSequence(&hs[0])
		if err != nil {
			p.mu.Unlock()
			return res, err
		}
		if !dup {
			break
		}
		if res.BaseOffset < 0 {
			res.BaseOffset = e.BaseOffset
		}
		dupNext = e.NextOffset
		skip += hs[0].Size()
		hs = hs[1:]
	}
	// What follows must be new and in sequence; hs[0] was checked above.
	for i := 1; i < len(hs); i++ {
		if hs[i].ProducerID < 0 {
			continue
		}
		if _, dup, err := p.checkSequenceAfter(&hs[i], hs[:i]); err != nil || dup {
			p.mu.Unlock()
			if err == nil {
				err = fmt.Errorf("%w: a retried batch after a new one in the same request", ErrOutOfOrderSequence)
			}
			return res, err
		}
	}
	if len(hs) == 0 { // all retries
		p.mu.Unlock()
		res.Duplicate, res.Next = true, dupNext
		res.LogStartOffset = p.StartOffset()
		if waitDurable {
			if err := p.log.WaitDurable(dupNext); err != nil {
				return res, storageErr(err)
			}
		}
		return res, nil
	}
	dues, delayed, err := p.delayedBatches(records[skip:], hs, now) // see delay.go
	if err != nil {
		p.mu.Unlock()
		return res, err
	}
	if delayed {
		dres, q, entries, dnext, err := p.produceDelayed(records[skip:], hs, dues, now)
		p.mu.Unlock()
		return p.finishDelayed(res, dres, q, entries, dnext, waitDurable, err)
	}
	// The offsets are taken under p.mu, the write waited for after it:
	// with fsync always, concurrent produces to the partition then share
	// one write (see log.AppendStaged), as they share one fdatasync.
	// (check is false for the hub's own batches, whose CRCs the log
	// checks; checkProduced has verified the others'.)
	base, next, w, err := p.log.AppendStaged(records[skip:], !check)
	if err != nil {
		p.mu.Unlock()
		return res, appendErr(err)
	}
	off := base
	idempotent := false
	for i := range hs {
		h := &hs[i]
		if h.ProducerID >= 0 {
			p.recordBatch(h, off, now)
			p.producers[h.ProducerID].writing++
			idempotent = true
		}
		off += int64(h.LastOffsetDelta) + 1
	}
	p.mu.Unlock()
	err = w.Wait()
	if err != nil && p.writeFailedHook != nil {
		p.writeFailedHook()
	}
	if idempotent {
		p.mu.Lock()
		if err != nil {
			p.forgetBatches(hs, base)
		}
		p.doneWriting(hs)
		p.mu.Unlock()
	}
	if err != nil {
		return res, appendErr(err)
	}
	if res.BaseOffset < 0 {
		res.BaseOffset = base
	}
	res.Next = next
	res.LogStartOffset = p.StartOffset()
	if waitDurable {
		if err := p.log.WaitDurable(next); err != nil {
			return res, storageErr(err)
		}
	}
	return res, nil
}

// checkSequence checks an idempotent batch against the producer's state.
// It returns the cached entry and dup=true for a retry.
func (p *Partition) checkSequence(h *codecs.Header) (batchEntry, bool, error) {
	st := p.producers[h.ProducerID]
	lastSeq := h.BaseSequence + h.LastOffsetDelta
	switch {
	case st == nil:
		if h.BaseSequence != 0 {
			return batchEntry{}, false, fmt.Errorf("%w: producer %d is unknown here and starts at sequence %d, not 0",
				ErrOutOfOrderSequence, h.ProducerID, h.BaseSequence)
		}
		return batchEntry{}, false, nil
	case h.ProducerEpoch < st.Epoch:
		return batchEntry{}, false, fmt.Errorf("%w: producer %d epoch %d, current %d", ErrInvalidProducerEpoch, h.ProducerID, h.ProducerEpoch, st.Epoch)
	case h.ProducerEpoch > st.Epoch:
		if h.BaseSequence != 0 {
			return batchEntry{}, false, fmt.Errorf("%w: producer %d new epoch %d starts at sequence %d, not 0",
				ErrOutOfOrderSequence, h.ProducerID, h.ProducerEpoch, h.BaseSequence)
		}
		return batchEntry{}, false, nil
	}
	for _, e := range st.Batches {
		if e.FirstSeq == h.BaseSequence && e.LastSeq == lastSeq {
			return e, true, nil
		}
	}
	if len(st.Batches) > 0 {
		last := st.Batches[len(st.Batches)-1].LastSeq
		if h.BaseSequence != nextSeq(last) {
			return batchEntry{}, false, fmt.Errorf("%w: producer %d epoch %d sent sequence %d, expected %d",
				ErrOutOfOrderSequence, h.ProducerID, h.ProducerEpoch, h.BaseSequence, nextSeq(last))
		}
	}
	return batchEntry{}, false, nil
}

// checkSequenceAfter checks h as if the batches before it in the same
// request had been stored.
func (p *Partition) checkSequenceAfter(h *codecs.Header, before []codecs.Header) (batchEntry, bool, error) {
	for i := len(before) - 1; i >= 0; i-- {
		b := &before[i]
		if b.ProducerID != h.ProducerID {
			continue
		}
		if b.ProducerEpoch != h.ProducerEpoch || h.BaseSequence != nextSeq(b.BaseSequence+b.LastOffsetDelta) {
			return batchEntry{}, false, fmt.Errorf("%w: producer %d batches out of sequence within one request", ErrOutOfOrderSequence, h.ProducerID)
		}
		return batchEntry{}, false, nil
	}
	return p.checkSequence(h)
}

func nextSeq(s int32) int32 {
	if s == math.MaxInt32 {
		return 0
	}
	return s + 1
}

// recordBatch remembers a stored idempotent batch.
func (p *Partition) recordBatch(h *codecs.Header, base, now int64) {
	st := p.producers[h.ProducerID]
	if st == nil || h.ProducerEpoch != st.Epoch {
		old := st
		st = &producerState{Epoch: h.ProducerEpoch}
		if old != nil { // an open transaction stays open until its marker
			st.TxnOpen, st.TxnFirst = old.TxnOpen, old.TxnFirst
		}
		p.producers[h.ProducerID] = st
	}
	if h.IsTransactional() && !st.TxnOpen {
		st.TxnOpen, st.TxnFirst = true, base
		p.openTxns.Add(1)
	}
	st.LastWrite = now
	if len(st.Batches) == maxCachedBatches {
		copy(st.Batches, st.Batches[1:])
		st.Batches = st.Batches[:maxCachedBatches-1]
	}
	st.Batches = append(st.Batches, batchEntry{FirstSeq: h.BaseSequence, LastSeq: h.BaseSequence + h.LastOffsetDelta,
		BaseOffset: base, NextOffset: base + int64(h.LastOffsetDelta) + 1})
}

// writing reports whether a batch of a producer of hs is being written.
// Called with p.mu held.
func (p *Partition) writing(hs []codecs.Header) bool {
	for i := range hs {
		if st := p.producers[hs[i].ProducerID]; hs[i].ProducerID >= 0 && st != nil && st.writing > 0 {
			return true
		}
	}
	return false
}

// doneWriting counts the write of hs's idempotent batches done (stored or
// taken back by forgetBatches) and wakes the produces that wait for it.
// Called with p.mu held.
func (p *Partition) doneWriting(hs []codecs.Header) {
	for i := range hs {
		if st := p.producers[hs[i].ProducerID]; hs[i].ProducerID >= 0 && st != nil && st.writing > 0 {
			st.writing--
		}
	}
	p.written.Broadcast()
}

// forgetBatches takes back what recordBatch remembered of the batches hs,
// stored from offset base, whose write failed: the log gives their
// offsets to the appends after, and a retry must be stored, not answered
// as a duplicate. (A cached batch recordBatch dropped to make room is not
// brought back: a retry of it gets ErrOutOfOrderSequence, never a
// success for records that are not there.)
func (p *Partition) forgetBatches(hs []codecs.Header, base int64) {
	off := base
	for i := range hs {
		h := &hs[i]
		if st := p.producers[h.ProducerID]; h.ProducerID >= 0 && st != nil {
			st.Batches = slices.DeleteFunc(st.Batches, func(e batchEntry) bool {
				return e.BaseOffset == off && e.FirstSeq == h.BaseSequence
			})
			if st.TxnOpen && st.TxnFirst == off {
				st.TxnOpen = false
				p.openTxns.Add(-1)
			}
		}
		off += int64(h.LastOffsetDelta) + 1
	}
	for i := range hs {
		if st := p.producers[hs[i].ProducerID]; hs[i].ProducerID >= 0 && st != nil && len(st.Batches) == 0 && !st.TxnOpen {
			// Its first batches here (of this epoch): the producer is
			// unknown again, so that what comes next must start at
			// sequence 0, as a retry of these does.
			delete(p.producers, hs[i].ProducerID)
		}
	}
}

type snapshotFile struct {
	Offset    int64                    `json:"offset"` // the state covers batches below this offset
	Producers map[int64]*producerState `json:"producers"`
	Aborted   []AbortedTxn             `json:"aborted,omitempty"`
}

// loadProducers rebuilds producer state: the snapshot, if it is usable,
// then the batch headers written after it.
func (p *Partition) loadProducers() error {
	from := p.log.LocalStartOffset() // not from the cold tier: that would fetch it all
	path := filepath.Join(p.dir, producerSnapshot)
	if b, err := os.ReadFile(path); err == nil {
		var snap snapshotFile
		if err := json.Unmarshal(b, &snap); err == nil && snap.Offset >= from && snap.Offset <= p.log.HighWatermark() {
			if snap.Producers != nil {
				p.producers = snap.Producers
			}
			p.aborted = snap.Aborted
			for _, st := range p.producers {
				if st.TxnOpen {
					p.openTxns.Add(1)
				}
			}
			from = snap.Offset
			p.snapAt = snap.Offset
		} else {
			p.ds.h.opts.Logger.Warn("hub: ignoring an unusable producer snapshot; rebuilding from the log", "path", path)
		}
	}
	now := p.ds.h.opts.Now().UnixMilli()
	var cerr error
	err := p.log.ScanHeaders(from, func(h *codecs.Header) bool {
		if h.BaseOffset >= from && h.ProducerID >= 0 {
			if h.IsControl() {
				cerr = p.replayControl(h)
				return cerr == nil
			}
			p.recordBatch(h, h.BaseOffset, max(h.MaxTimestamp, now-producerExpiry.Milliseconds()+1))
		}
		return true
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("hub: rebuilding producer state of %s/%d: %w", p.ds.name, p.id, err)
	}
	return nil
}

// snapshotProducers writes the producer state when it has changed since
// the last snapshot (on close also when it only has producers to expire),
// dropping expired producers. An idle partition writes nothing: closing a
// hub of many partitions costs no fsync each.
func (p *Partition) snapshotProducers(closing bool) {
	p.mu.Lock()
	hw := p.log.HighWatermark()
	if hw == p.snapAt && (!closing || len(p.producers) == 0) {
		p.mu.Unlock()
		return
	}
	cutoff := p.ds.h.opts.Now().Add(-producerExpiry).UnixMilli()
	for id, st := range p.producers {
		if st.LastWrite < cutoff && !st.TxnOpen {
			delete(p.producers, id)
		}
	}
	p.pruneAborted()
	b, err := json.Marshal(snapshotFile{Offset: hw, Producers: p.producers, Aborted: p.aborted})
	p.mu.Unlock()
	if err == nil {
		// Batches below hw are all accounted for: Produce updates the
		// state under p.mu before the records can be published.
		err = atomicfile.Write(filepath.Join(p.dir, producerSnapshot), b)
	}
	if err != nil {
		p.ds.h.opts.Logger.Warn("hub: writing the producer snapshot failed; it will be rebuilt from the log", "dataset", p.ds.name, "partition", p.id, "err", err)
		return
	}
	p.mu.Lock()
	p.snapAt = hw
	p.mu.Unlock()
}

// wake signals fetches waiting on the partition; it is the log's
// OnPublish hook.
func (p *Partition) wake() {
	if p.nwait.Load() == 0 {
		return
	}
	p.waitMu.Lock()
	for ch := range p.waiters {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	p.waitMu.Unlock()
}

func (p *Partition) addWaiter(ch chan struct{}) {
	p.waitMu.Lock()
	p.waiters[ch] = struct{}{}
	p.nwait.Add(1)
	p.waitMu.Unlock()
}

func (p *Partition) removeWaiter(ch chan struct{}) {
	p.waitMu.Lock()
	if _, ok := p.waiters[ch]; ok {
		delete(p.waiters, ch)
		p.nwait.Add(-1)
	}
	p.waitMu.Unlock()
}

// appendErr maps a log error to the hub's.
func appendErr(err error) error {
	switch {
	case errors.Is(err, codecs.ErrTooLarge):
		return fmt.Errorf("%w: %v", ErrBatchTooLarge, err)
	case errors.Is(err, codecs.ErrCorrupt), errors.Is(err, codecs.ErrShort):
		return fmt.Errorf("%w: %v", ErrCorruptBatch, err)
	case errors.Is(err, wlog.ErrClosed):
		return fmt.Errorf("%w: %v", ErrClosed, err)
	}
	return storageErr(err)
}

// storageErr marks a log error as a storage failure, keeping its cause
// (errors.Is finds syscall.ENOSPC in it).
func storageErr(err error) error {
	if errors.Is(err, wlog.ErrClosed) {
		return fmt.Errorf("%w: %v", ErrClosed, err)
	}
	return fmt.Errorf("%w: %w", ErrStorage, err)
}
