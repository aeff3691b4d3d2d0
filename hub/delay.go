package hub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weirhub/weir/codecs"
)

// Delayed delivery: a record with the header weir.deliver_at (RFC 3339 or
// Unix milliseconds) or weir.delay (a Go duration, from the record's
// timestamp) is stored at once, durably, in the partition of the same
// number of the delay dataset "__delay.NAME", and appended to its target
// partition when due. Records not delayed are not held back.
//
// A batch with a delayed record is rebuilt as one batch per due time
// (records due now go to the target at once, in their order); the rebuilt
// batches carry no producer id, the target keeps the producer's sequence,
// so a retry is still recognised. Transactional batches are not delayed.
// Each delay partition has an index of (due, offset) entries on disk, a
// timing wheel of bucket files of which only the seconds about to fall due
// are in memory (see delayindex.go); one timer serves every queue. Records
// of equal due time are delivered in the order they were stored. Delivery
// is at least once: what was moved is recorded after the target has it
// durably, at most every 100ms, and a crash in between delivers it again.
// Delivered records are then freed with DeleteRecords.

// The headers that delay a record.
const (
	HeaderDeliverAt = "weir.deliver_at"
	HeaderDelay     = "weir.delay"
)

// DelayPrefix starts the name of a delay dataset: "__delay." + target.
const DelayPrefix = "__delay."

var delayMarker = []byte("weir.de") // common to both header names

// recordDue returns when a record is due, in Unix milliseconds: 0 when it
// carries no delay header.
func recordDue(r *codecs.Record) (int64, error) {
	var due int64
	for _, hd := range r.Headers {
		var d int64
		switch string(hd.Key) {
		case HeaderDeliverAt:
			v := string(hd.Value)
			if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
				d = ms
			} else if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				d = t.UnixMilli()
			} else {
				return 0, fmt.Errorf("%w: header %s = %q is neither RFC 3339 nor Unix milliseconds", ErrInvalidRecord, HeaderDeliverAt, v)
			}
		case HeaderDelay:
			dur, err := time.ParseDuration(string(hd.Value))
			if err != nil || dur < 0 {
				return 0, fmt.Errorf("%w: header %s = %q is not a duration", ErrInvalidRecord, HeaderDelay, hd.Value)
			}
			d = r.Timestamp + dur.Milliseconds()
		default:
			continue
		}
		due = max(due, d)
	}
	return due, nil
}

// batchDue returns the latest due time of a batch's records (0 when none
// carries a delay header). Transactional batches are not delayed.
func batchDue(b []byte, h *codecs.Header) (int64, error) {
	if h.IsTransactional() || h.IsControl() ||
		h.Compression() == codecs.None && !bytes.Contains(b[codecs.HeaderSize:h.Size()], delayMarker) {
		return 0, nil
	}
	var it codecs.RecordIter
	if err := it.Reset(b); err != nil {
		return 0, err
	}
	var due int64
	for it.Next() {
		d, err := recordDue(it.Record())
		if err != nil {
			return 0, err
		}
		due = max(due, d)
	}
	return due, it.Err()
}

// splitDue rebuilds a batch as batches of one due time each, without
// producer id (the target keeps the producer's sequence): the records due
// by now first, in their order, then one batch per later due time.
func splitDue(b []byte, h *codecs.Header, now int64) (nowBatch []byte, later []dueBatch, err error) {
	var it codecs.RecordIter
	if err := it.Reset(b); err != nil {
		return nil, nil, err
	}
	builders := map[int64]*codecs.Builder{}
	var order []int64
	for it.Next() {
		r := it.Record()
		d, err := recordDue(r)
		if err != nil {
			return nil, nil, err
		}
		if d <= now {
			d = 0
		}
		bld := builders[d]
		if bld == nil {
			bld = &codecs.Builder{Compression: h.Compression()}
			builders[d] = bld
			order = append(order, d)
		}
		bld.AppendRecord(r)
	}
	if err := it.Err(); err != nil {
		return nil, nil, err
	}
	for _, d := range order {
		out, err := builders[d].Build()
		if err != nil {
			return nil, nil, err
		}
		out = bytes.Clone(out)
		codecs.SetLeaderEpoch(out, LeaderEpoch)
		if d == 0 {
			nowBatch = out
		} else {
			later = append(later, dueBatch{due: d, b: out})
		}
	}
	return nowBatch, later, nil
}

type dueBatch struct {
	due int64
	b   []byte
}

// delayedBatches returns, for each batch of records, when it is due (0 if
// it carries no delay), and whether any is due after now.
func (p *Partition) delayedBatches(records []byte, hs []codecs.Header, now int64) ([]int64, bool, error) {
	if p.ds.h.delays == nil || strings.HasPrefix(p.ds.name, DelayPrefix) {
		return nil, false, nil
	}
	dues := make([]int64, len(hs))
	any := false
	for i := range hs {
		d, err := batchDue(records, &hs[i])
		if err != nil {
			return nil, false, err
		}
		dues[i] = d
		any = any || d > now
		records = records[hs[i].Size():]
	}
	return dues, any, nil
}

// produceDelayed stores the batches of a produce one by one: those due
// after now in the delay partition, the others here. p.mu is held; the
// sequence checks are done. It returns the target's result and the delay
// partition's appends to wait for and queue.
func (p *Partition) produceDelayed(records []byte, hs []codecs.Header, dues []int64, now int64) (ProduceResult, *delayQueue, []delayEntry, int64, error) {
	res := ProduceResult{BaseOffset: -1}
	q, err := p.ds.h.delays.queue(p)
	if err != nil {
		return res, nil, nil, 0, err
	}
	var entries []delayEntry
	var dnext int64
	for i := range hs {
		h := &hs[i]
		b := records[:h.Size()]
		records = records[h.Size():]
		if dues[i] > now {
			nowBatch, later, err := splitDue(b, h, now)
			if err != nil {
				return res, nil, nil, 0, err
			}
			for _, l := range later {
				// Under imu, so that an index checkpoint sees the batch
				// either in the log's end or in flight.
				q.imu.Lock()
				base, next, err := q.dp.log.AppendAsync(l.b)
				if err == nil {
					q.inflight[base]++
				}
				q.imu.Unlock()
				if err != nil {
					return res, nil, nil, 0, appendErr(err)
				}
				entries = append(entries, delayEntry{due: l.due, off: base})
				dnext = next
			}
			base := int64(-1)
			if nowBatch != nil {
				var next int64
				if base, next, err = p.log.AppendAsync(nowBatch); err != nil {
					return res, nil, nil, 0, appendErr(err)
				}
				if res.BaseOffset < 0 {
					res.BaseOffset = base
				}
				res.Next = next
			}
			if h.ProducerID >= 0 {
				p.recordBatch(h, base, now) // the sequence goes on here
			}
			continue
		}
		base, next, err := p.log.AppendAsync(b)
		if err != nil {
			return res, nil, nil, 0, appendErr(err)
		}
		if res.BaseOffset < 0 {
			res.BaseOffset = base
		}
		res.Next = next
		if h.ProducerID >= 0 {
			p.recordBatch(h, base, now)
		}
	}
	return res, q, entries, dnext, nil
}

// finishDelayed completes a produce that stored batches in a delay
// partition: once they are durable they are queued; res is the target's.
func (p *Partition) finishDelayed(res, dres ProduceResult, q *delayQueue, entries []delayEntry, dnext int64, waitDurable bool, err error) (ProduceResult, error) {
	if err != nil {
		return res, err
	}
	if len(entries) > 0 {
		if err := q.dp.WaitDurable(dnext); err != nil {
			return res, err
		}
		p.ds.h.delays.add(q, entries)
	}
	if res.BaseOffset < 0 {
		res.BaseOffset = dres.BaseOffset
	}
	res.Next = max(dres.Next, res.Next)
	res.LogStartOffset = p.StartOffset()
	if waitDurable && res.Next > 0 {
		if err := p.WaitDurable(res.Next); err != nil {
			return res, err
		}
	}
	return res, nil
}

type delayEntry struct{ due, off int64 }

type delayHeap []delayEntry

func (h delayHeap) Len() int { return len(h) }
func (h delayHeap) Less(i, j int) bool {
	return h[i].due < h[j].due || h[i].due == h[j].due && h[i].off < h[j].off
}
func (h delayHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)   { *h = append(*h, x.(delayEntry)) }
func (h *delayHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// delayQueue is one delay partition's pending batches.
type delayQueue struct {
	target *Partition
	dp     *Partition
	mu     sync.Mutex
	idx    *delayIndex

	saved time.Time // when the index was last checkpointed

	imu      sync.Mutex    // a leaf lock
	inflight map[int64]int // offsets stored in the delay partition, not queued yet
}

// deliveredFile is the delivered.json of delay partitions written before
// the index on disk: every batch below Low is delivered, and so are those
// at the offsets in Done. It is read once, to build the index.
type deliveredFile struct {
	Low  int64   `json:"low"`
	Done []int64 `json:"done,omitempty"`
}

type delayer struct {
	h      *Hub
	mu     sync.Mutex
	queues map[*Partition]*delayQueue
	wake   chan struct{}
}

func newDelayer(h *Hub) *delayer {
	return &delayer{h: h, queues: map[*Partition]*delayQueue{}, wake: make(chan struct{}, 1)}
}

// queue returns the delay queue of a target partition, creating its delay
// dataset if needed.
func (d *delayer) queue(p *Partition) (*delayQueue, error) {
	d.mu.Lock()
	q := d.queues[p]
	d.mu.Unlock()
	if q != nil {
		return q, nil
	}
	name := DelayPrefix + p.ds.name
	ds, err := d.h.Dataset(name)
	if errors.Is(err, ErrUnknownDataset) {
		cfg := p.ds.Config()
		cfg.RetentionTime, cfg.RetentionBytes = -1, -1 // pending records must stay
		ds, err = d.h.CreateDataset(name, cfg)
		if errors.Is(err, ErrDatasetExists) {
			ds, err = d.h.Dataset(name)
		}
	}
	if err == nil && ds.NumPartitions() <= p.id {
		err = ds.grow(p.ds.NumPartitions())
	}
	var dp *Partition
	if err == nil {
		dp, err = ds.Partition(p.id)
	}
	if err != nil {
		return nil, fmt.Errorf("hub: the delay dataset of %s: %w", p.ds.name, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if q = d.queues[p]; q == nil {
		idx, found, err := openDelayIndex(filepath.Join(dp.dir, "delayindex"))
		if err != nil {
			return nil, err
		}
		if !found {
			idx.indexed = dp.HighWatermark() // a new delay partition
		}
		idx.sync = ds.Config().Fsync != "never"
		q = &delayQueue{target: p, dp: dp, idx: idx, inflight: map[int64]int{}}
		d.queues[p] = q
	}
	return q, nil
}

// add queues entries whose batches are durable in the delay partition.
func (d *delayer) add(q *delayQueue, entries []delayEntry) {
	q.mu.Lock()
	now := d.h.opts.Now().UnixMilli()
	for _, e := range entries {
		q.idx.add(e, now)
	}
	q.imu.Lock()
	for _, e := range entries {
		if q.inflight[e.off]--; q.inflight[e.off] <= 0 {
			delete(q.inflight, e.off)
		}
	}
	q.imu.Unlock()
	q.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// load rebuilds the queues from the delay datasets at open.
func (d *delayer) load() error {
	for _, ds := range d.h.Datasets() {
		target, ok := strings.CutPrefix(ds.name, DelayPrefix)
		if !ok {
			continue
		}
		tds, err := d.h.Dataset(target)
		if err != nil {
			d.h.opts.Logger.Warn("hub: a delay dataset without its target; its records wait", "dataset", ds.name)
			continue
		}
		for _, dp := range ds.partitions() {
			tp, err := tds.Partition(dp.id)
			if err != nil {
				continue
			}
			idx, found, err := openDelayIndex(filepath.Join(dp.dir, "delayindex"))
			if err != nil {
				return err
			}
			q := &delayQueue{target: tp, dp: dp, idx: idx, inflight: map[int64]int{}}
			done := map[int64]bool{}
			legacy := filepath.Join(dp.dir, "delivered.json")
			if !found {
				// Written before the index: rebuild it from the log.
				var st deliveredFile
				if b, err := os.ReadFile(legacy); err == nil {
					if err := json.Unmarshal(b, &st); err != nil {
						return fmt.Errorf("hub: %s/%d/delivered.json: %w", ds.name, dp.id, err)
					}
				}
				idx.indexed = st.Low
				for _, o := range st.Done {
					done[o] = true
				}
			}
			// What the last checkpoint had not recorded is read again.
			now := d.h.opts.Now().UnixMilli()
			var buf []byte
			for off := max(idx.indexed, dp.StartOffset()); off < dp.HighWatermark(); {
				buf, err = dp.log.ReadBatches(buf[:0], off, 1<<20)
				if err != nil {
					return fmt.Errorf("hub: reading the delay partition %s/%d: %w", ds.name, dp.id, err)
				}
				for b := buf; len(b) > 0; {
					h, err := codecs.ParseHeader(b)
					if err != nil {
						return err
					}
					if h.BaseOffset >= off && !done[h.BaseOffset] && !h.IsControl() {
						due, err := batchDue(b, &h)
						if err != nil {
							return err
						}
						idx.add(delayEntry{due: due, off: h.BaseOffset}, now)
					}
					off = h.NextOffset()
					b = b[h.Size():]
				}
			}
			idx.sync = dp.ds.Config().Fsync != "never"
			if err := idx.checkpoint(dp.HighWatermark(), true); err != nil {
				return err
			}
			if err := os.Remove(legacy); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("hub: %w", err)
			}
			d.queues[tp] = q
		}
	}
	return nil
}

// next is the earliest due time over every queue; ok is false when none
// is pending.
func (d *delayer) next() (int64, bool) {
	d.mu.Lock()
	qs := make([]*delayQueue, 0, len(d.queues))
	for _, q := range d.queues {
		qs = append(qs, q)
	}
	d.mu.Unlock()
	var min int64
	ok := false
	for _, q := range qs {
		q.mu.Lock()
		if at, has := q.idx.nextAction(); has && (!ok || at < min) {
			min, ok = at, true
		}
		q.mu.Unlock()
	}
	return min, ok
}

// deliverDue moves every batch due at or before now to its target. It
// returns how many batches it moved.
func (d *delayer) deliverDue(now int64) int {
	d.mu.Lock()
	qs := make([]*delayQueue, 0, len(d.queues))
	for _, q := range d.queues {
		qs = append(qs, q)
	}
	d.mu.Unlock()
	n := 0
	for _, q := range qs {
		m, err := q.deliver(now)
		n += m
		if err != nil {
			d.h.opts.Logger.Error("hub: delivering delayed records failed; will try again", "dataset", q.target.ds.name,
				"partition", q.target.id, "err", err)
		}
	}
	return n
}

// deliver moves the queue's due batches, in due order.
func (q *delayQueue) deliver(now int64) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.idx.advance(now); err != nil {
		return 0, err
	}
	due := q.idx.popDue(now, 10000)
	if len(due) == 0 {
		return 0, nil
	}
	var next int64
	var bld codecs.Builder
	bld.Compression = DefaultCompression
	var it codecs.RecordIter
	var buf []byte
	for i, e := range due {
		var err error
		buf, err = q.dp.log.ReadBatches(buf[:0], e.off, 1)
		if err == nil {
			err = it.Reset(buf)
		}
		if err == nil && it.Header().BaseOffset != e.off {
			err = fmt.Errorf("no batch at offset %d", e.off)
		}
		bld.Reset()
		for err == nil && it.Next() {
			r := it.Record()
			hs := r.Headers[:0:0]
			for _, h := range r.Headers {
				if k := string(h.Key); k != HeaderDeliverAt && k != HeaderDelay {
					hs = append(hs, h)
				}
			}
			bld.Append(r.Timestamp, r.Key, r.Value, hs)
		}
		if err == nil {
			err = it.Err()
		}
		var b []byte
		if err == nil {
			b, err = bld.Build()
		}
		if err == nil {
			codecs.SetLeaderEpoch(b, LeaderEpoch)
			q.target.mu.Lock()
			_, next, err = q.target.log.AppendAsync(b)
			q.target.mu.Unlock()
		}
		if err != nil {
			q.idx.unpop(due[i:])
			due = due[:i]
			q.saveLocked(due, next, now)
			return i, err
		}
	}
	return len(due), q.saveLocked(due, next, now)
}

// saveLocked waits until the target has the moved batches durably, then
// records them as delivered. q.mu is held.
func (q *delayQueue) saveLocked(moved []delayEntry, next, now int64) error {
	if len(moved) == 0 {
		return nil
	}
	if err := q.target.WaitDurable(next); err != nil {
		return err
	}
	if err := q.idx.delivered(moved, now); err != nil {
		return err
	}
	if time.Since(q.saved) < saveDeliveredEvery {
		return nil // a crash now delivers these again: at least once
	}
	return q.saveStateLocked(false)
}

// saveDeliveredEvery is how often at most a delay partition records what it
// delivered: what a crash can deliver twice.
const saveDeliveredEvery = 100 * time.Millisecond

// saveStateLocked checkpoints the index (see delayIndex.checkpoint); q.mu
// is held.
func (q *delayQueue) saveStateLocked(force bool) error {
	q.imu.Lock()
	hwm := q.dp.HighWatermark()
	indexed := hwm
	for o := range q.inflight {
		indexed = min(indexed, o)
	}
	q.imu.Unlock()
	if err := q.idx.checkpoint(indexed, force); err != nil {
		return err
	}
	q.saved = time.Now()
	low := min(q.idx.lowest(hwm), indexed)
	// What is delivered need not be kept: let the delay partition's
	// segments go once a good stretch of it is done.
	if start := q.dp.StartOffset(); low > start && (low-start >= deleteDeliveredEvery || low == hwm) {
		if _, err := q.dp.DeleteRecords(low); err != nil {
			return err
		}
	}
	return nil
}

// deleteDeliveredEvery is how many delivered offsets of a delay partition
// wait before DeleteRecords frees them (at once when nothing is pending).
const deleteDeliveredEvery = 10000

// flush writes what every queue delivered; the hub's Close calls it once
// the mover has stopped.
func (d *delayer) flush() error {
	_, err := d.flushDue(true)
	return err
}

// flushDue writes the delivered state of the queues whose last write is
// saveDeliveredEvery old (all with force). It reports whether some
// state is left unwritten.
func (d *delayer) flushDue(force bool) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	left := false
	for _, q := range d.queues {
		q.mu.Lock()
		if force || time.Since(q.saved) >= saveDeliveredEvery {
			errs = append(errs, q.saveStateLocked(force))
		}
		left = left || q.idx.dirty
		q.mu.Unlock()
	}
	return left, errors.Join(errs...)
}

// delayMover delivers delayed batches when due: one timer for every queue.
func (h *Hub) delayMover() {
	defer h.bg.Done()
	d := h.delays
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		now := h.opts.Now().UnixMilli()
		d.deliverDue(now)
		wait := time.Hour
		if at, ok := d.next(); ok {
			wait = max(time.Duration(at-h.opts.Now().UnixMilli())*time.Millisecond, time.Millisecond)
		}
		left, err := d.flushDue(false)
		if err != nil {
			h.opts.Logger.Error("hub: recording delivered delayed records failed; a restart may deliver them again", "err", err)
		}
		if left {
			wait = min(wait, saveDeliveredEvery)
		}
		t.Reset(wait)
		select {
		case <-h.stop:
			return
		case <-t.C:
		case <-d.wake:
		}
	}
}

// DeliverDue moves the delayed records due now to their datasets; the hub
// also does so when they fall due. It returns the batches moved.
func (h *Hub) DeliverDue() int {
	if h.delays == nil {
		return 0
	}
	return h.delays.deliverDue(h.opts.Now().UnixMilli())
}

// PendingDelayed returns how many batches of a dataset wait for their due
// time, and the earliest due time (zero when none).
func (h *Hub) PendingDelayed(dataset string) (int, time.Time) {
	if h.delays == nil {
		return 0, time.Time{}
	}
	h.delays.mu.Lock()
	defer h.delays.mu.Unlock()
	n := 0
	var next int64
	for p, q := range h.delays.queues {
		if p.ds.name != dataset {
			continue
		}
		q.mu.Lock()
		qn, qnext := q.idx.pending()
		n += qn
		if qnext > 0 && (next == 0 || qnext < next) {
			next = qnext
		}
		q.mu.Unlock()
	}
	if next == 0 {
		return n, time.Time{}
	}
	return n, time.UnixMilli(next)
}
