package hub

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/weirhub/weir/codecs"
	wlog "github.com/weirhub/weir/log"
)

// AbortedTxn is an aborted transaction's span in one partition: what a
// read_committed consumer skips (Kafka's aborted transactions list).
type AbortedTxn struct {
	ProducerID  int64 `json:"pid"`
	FirstOffset int64 `json:"first"`
	LastOffset  int64 `json:"last"` // the abort marker
}

// abortedBatch reports whether a transactional batch belongs to one of the
// aborted transactions (a fetch's list, which covers the range read).
func abortedBatch(aborted []AbortedTxn, h *codecs.Header) bool {
	for _, a := range aborted {
		if a.ProducerID == h.ProducerID && a.FirstOffset <= h.BaseOffset && h.BaseOffset < a.LastOffset {
			return true
		}
	}
	return false
}

// Control record types (the key of a control batch's record).
const (
	markerAbort  = 0
	markerCommit = 1
)

// controlBatch builds a commit or abort marker of a producer.
func controlBatch(pid int64, epoch int16, commit bool, now int64) ([]byte, error) {
	b := codecs.Builder{Attributes: codecs.AttrTransactional | codecs.AttrControl}
	b.SetProducer(pid, epoch, -1)
	key := binary.BigEndian.AppendUint16(nil, 0) // version
	typ := uint16(markerAbort)
	if commit {
		typ = markerCommit
	}
	key = binary.BigEndian.AppendUint16(key, typ)
	value := binary.BigEndian.AppendUint16(nil, 0)  // version
	value = binary.BigEndian.AppendUint32(value, 0) // coordinator epoch
	b.Append(now, key, value, nil)
	return b.Build()
}

// markerType reads the control type of a control batch: markerCommit or
// markerAbort.
func markerType(batch []byte) (int, error) {
	var it codecs.RecordIter
	if err := it.Reset(batch); err != nil {
		return 0, err
	}
	if !it.Next() {
		if it.Err() != nil {
			return 0, it.Err()
		}
		return 0, fmt.Errorf("control batch without a record")
	}
	k := it.Record().Key
	if len(k) < 4 {
		return 0, fmt.Errorf("control record key of %d bytes", len(k))
	}
	return int(binary.BigEndian.Uint16(k[2:])), nil
}

// WriteMarker ends a producer's transaction in this partition: it appends
// a commit or abort marker and waits until it is durable. A partition
// where the producer has no open transaction gets no marker (so ending a
// transaction again after a restart is harmless).
func (p *Partition) WriteMarker(pid int64, epoch int16, commit bool) error {
	p.mu.Lock()
	st := p.producers[pid]
	if st == nil || !st.TxnOpen {
		p.mu.Unlock()
		return nil
	}
	b, err := controlBatch(pid, epoch, commit, p.ds.h.opts.Now().UnixMilli())
	if err != nil {
		p.mu.Unlock()
		return fmt.Errorf("hub: building a transaction marker: %w", err)
	}
	codecs.SetLeaderEpoch(b, LeaderEpoch)
	base, next, err := p.log.AppendAsync(b)
	if err != nil {
		p.mu.Unlock()
		return appendErr(err)
	}
	p.endTxn(st, pid, epoch, commit, base)
	p.mu.Unlock()
	return p.WaitDurable(next)
}

// endTxn updates producer state for a marker at offset off; p.mu is held.
func (p *Partition) endTxn(st *producerState, pid int64, epoch int16, commit bool, off int64) {
	if !commit && st.TxnOpen {
		p.aborted = append(p.aborted, AbortedTxn{ProducerID: pid, FirstOffset: st.TxnFirst, LastOffset: off})
	}
	if st.TxnOpen {
		p.openTxns.Add(-1)
	}
	st.TxnOpen, st.TxnFirst = false, 0
	if epoch > st.Epoch {
		st.Epoch, st.Batches = epoch, nil
	}
	st.LastWrite = p.ds.h.opts.Now().UnixMilli()
}

// replayControl applies a control batch found while rebuilding producer
// state at open.
func (p *Partition) replayControl(h *codecs.Header) error {
	b, err := p.log.ReadBatches(nil, h.BaseOffset, 1)
	if err != nil {
		return err
	}
	if len(b) < codecs.HeaderSize {
		return fmt.Errorf("control batch at %d: %w", h.BaseOffset, io.ErrUnexpectedEOF)
	}
	// ReadBatches starts at the batch holding the offset: a control batch
	// holds one record, so it is the first.
	typ, err := markerType(b)
	if err != nil {
		return fmt.Errorf("control batch at %d: %w", h.BaseOffset, err)
	}
	st := p.producers[h.ProducerID]
	if st == nil {
		st = &producerState{Epoch: h.ProducerEpoch}
		p.producers[h.ProducerID] = st
	}
	p.endTxn(st, h.ProducerID, h.ProducerEpoch, typ == markerCommit, h.BaseOffset)
	return nil
}

// LastStableOffset is the offset below which every transaction is decided:
// the visible end for read_committed consumers. Without open transactions
// it is the high watermark.
func (p *Partition) LastStableOffset() int64 {
	hw := p.log.HighWatermark()
	if p.openTxns.Load() == 0 {
		return hw
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	lso := p.log.HighWatermark()
	for _, st := range p.producers {
		if st.TxnOpen && st.TxnFirst < lso {
			lso = st.TxnFirst
		}
	}
	return lso
}

// AbortedTxns returns the aborted transactions that overlap [from, to).
func (p *Partition) AbortedTxns(from, to int64) []AbortedTxn {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []AbortedTxn
	for _, a := range p.aborted {
		if a.LastOffset >= from && a.FirstOffset < to {
			out = append(out, a)
		}
	}
	return out
}

// pruneAborted forgets aborted transactions wholly below the start offset;
// p.mu is held.
func (p *Partition) pruneAborted() {
	start := p.StartOffset()
	i := 0
	for i < len(p.aborted) && p.aborted[i].LastOffset < start {
		i++
	}
	if i > 0 {
		p.aborted = append(p.aborted[:0], p.aborted[i:]...)
	}
}

// trimSections cuts secs so that no batch at or past end is returned: a
// read_committed fetch stops at the last stable offset. Sections wholly
// past end are released and dropped.
func trimSections(secs []wlog.Section, end int64) ([]wlog.Section, error) {
	var hdr [codecs.HeaderSize]byte
	for i := range secs {
		s := &secs[i]
		var buf []byte
		if s.File == nil {
			var err error
			if buf, err = s.AppendTo(nil); err != nil {
				return secs, err
			}
		}
		for pos := int64(0); pos < s.Len; {
			var b []byte
			if buf != nil {
				b = buf[pos:]
			} else {
				n := min(int64(len(hdr)), s.Len-pos)
				if _, err := s.File.ReadAt(hdr[:n], s.Pos+pos); err != nil {
					return secs, err
				}
				b = hdr[:n]
			}
			h, err := codecs.ParseHeader(b)
			if err != nil {
				return secs, err
			}
			if h.BaseOffset >= end {
				if pos == 0 {
					wlog.ReleaseSections(secs[i:])
					return secs[:i], nil
				}
				s.Len = pos
				wlog.ReleaseSections(secs[i+1:])
				return secs[:i+1], nil
			}
			pos += int64(h.Size())
		}
	}
	return secs, nil
}
