package hub

import (
	"context"
	"errors"
	"fmt"
	"time"

	wlog "github.com/weirhub/weir/log"
)

// FetchPartition asks for records of one partition from an offset.
type FetchPartition struct {
	Dataset   string
	Partition int32
	Offset    int64
	MaxBytes  int32 // per partition; at least one whole batch is returned
}

// FetchRequest asks for records of several partitions at once, as a Kafka
// Fetch does. The call returns when MinBytes are available in all, when
// MaxWait has passed, when a partition has an error, or when ctx ends.
type FetchRequest struct {
	Partitions []FetchPartition
	MinBytes   int32
	MaxBytes   int32 // over all partitions; the first batch found is returned whole regardless
	MaxWait    time.Duration
	// ReadCommitted reads only up to each partition's last stable offset
	// and lists the aborted transactions in the range (Kafka's
	// read_committed isolation).
	ReadCommitted bool
}

// FetchResult is what one partition returned: whole batches as file
// sections, to be sent with sendfile or copied, and released after.
type FetchResult struct {
	Err            error
	HighWatermark  int64
	LogStartOffset int64
	Sections       []wlog.Section
	Bytes          int64
	// LastStableOffset is the end of decided transactions; Aborted the
	// aborted transactions of the range read (ReadCommitted only).
	LastStableOffset int64
	Aborted          []AbortedTxn
}

// ReleaseFetch gives back the file sections of every result.
func ReleaseFetch(results []FetchResult) {
	for i := range results {
		wlog.ReleaseSections(results[i].Sections)
		results[i].Sections = results[i].Sections[:0]
	}
}

// Fetch reads the partitions of req, long-polling until MinBytes are
// available or MaxWait passes. Results are in the order of req.Partitions;
// their sections must be released with ReleaseFetch.
func (h *Hub) Fetch(ctx context.Context, req FetchRequest) []FetchResult {
	results := make([]FetchResult, len(req.Partitions))
	parts := make([]*Partition, len(req.Partitions))
	for i, fp := range req.Partitions {
		ds, err := h.Dataset(fp.Dataset)
		if err == nil {
			parts[i], err = ds.Partition(fp.Partition)
		}
		results[i].Err = err
		results[i].HighWatermark, results[i].LogStartOffset, results[i].LastStableOffset = -1, -1, -1
	}
	var deadline time.Time
	if req.MaxWait > 0 {
		deadline = time.Now().Add(req.MaxWait)
	}
	defer countFetched(parts, results)
	var wake chan struct{}
	for {
		total, failed := h.readAll(req, parts, results)
		if failed || total >= int64(max(req.MinBytes, 1)) || req.MaxWait <= 0 || ctx.Err() != nil {
			return results
		}
		left := time.Until(deadline)
		if left <= 0 {
			return results
		}
		if wake == nil {
			wake = make(chan struct{}, 1)
			for _, p := range parts {
				if p != nil {
					p.addWaiter(wake)
				}
			}
			defer func() {
				for _, p := range parts {
					if p != nil {
						p.removeWaiter(wake)
					}
				}
			}()
			continue // re-read: data may have arrived before the waiters were in place
		}
		t := time.NewTimer(left)
		select {
		case <-wake:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		ReleaseFetch(results)
	}
}

// readAll reads every partition once. It reports the bytes found and
// whether a partition failed (which ends the long poll).
func (h *Hub) readAll(req FetchRequest, parts []*Partition, results []FetchResult) (int64, bool) {
	var total int64
	failed := false
	budget := int64(req.MaxBytes)
	if budget <= 0 {
		budget = 1 << 62
	}
	for i, fp := range req.Partitions {
		p := parts[i]
		r := &results[i]
		if p == nil {
			failed = true
			continue
		}
		r.Err, r.Bytes, r.Aborted = nil, 0, nil
		limit := min(int64(max(fp.MaxBytes, 1)), budget)
		// Loaded before the read: the records returned may pass it, and
		// are cut there for read_committed.
		lso := p.LastStableOffset()
		r.LastStableOffset = lso
		if total > 0 && limit <= 0 {
			r.HighWatermark, r.LogStartOffset = p.log.HighWatermark(), p.StartOffset()
			continue
		}
		var secs []wlog.Section
		var err error
		if start := p.floor.Load(); fp.Offset < start {
			err = fmt.Errorf("%w: offset %d is below %d, where DeleteRecords moved the start", wlog.ErrOutOfRange, fp.Offset, start)
		} else if !req.ReadCommitted || fp.Offset < lso {
			secs, err = p.log.Read(r.Sections[:0], fp.Offset, int(max(limit, 1)))
			if err == nil && req.ReadCommitted && lso < p.log.HighWatermark() {
				secs, err = trimSections(secs, lso)
			}
		} else if fp.Offset > p.log.HighWatermark() {
			_, err = p.log.Read(r.Sections[:0], fp.Offset, 1) // the out-of-range error
		}
		r.Sections = secs
		// Loaded after the read, so every record returned is below it.
		r.HighWatermark, r.LogStartOffset = p.log.HighWatermark(), p.StartOffset()
		if req.ReadCommitted && len(secs) > 0 {
			r.Aborted = p.AbortedTxns(fp.Offset, lso)
		}
		if err != nil {
			r.Err = readErr(err)
			failed = true
			continue
		}
		for _, s := range secs {
			r.Bytes += s.Len
		}
		total += r.Bytes
		budget -= r.Bytes
	}
	return total, failed
}

func readErr(err error) error {
	switch {
	case errors.Is(err, wlog.ErrOutOfRange):
		return fmt.Errorf("%w: %v", ErrOffsetOutOfRange, err)
	case errors.Is(err, wlog.ErrClosed):
		return fmt.Errorf("%w: %v", ErrClosed, err)
	}
	return fmt.Errorf("%w: %v", ErrStorage, err)
}

// ListOffset answers Kafka's ListOffsets for one partition: the earliest
// offset (ts -2), the latest (ts -1), the earliest in a local segment file
// (ts -4), the last in the cold store (ts -5; -1 when it holds none), or
// the first offset with a timestamp at or after ts (the latest when there
// is none).
func (p *Partition) ListOffset(ts int64) (int64, error) {
	switch ts {
	case -2:
		return p.StartOffset(), nil
	case -1:
		return p.log.HighWatermark(), nil
	case -4: // earliest local (KIP-1005): the first offset in a local segment file
		return max(p.log.LocalStartOffset(), p.StartOffset()), nil
	case -5: // latest tiered (KIP-1005): the last offset the cold store holds, -1 for none
		if end := p.log.TierStats().RemoteEnd; end > 0 {
			return end - 1, nil
		}
		return -1, nil
	}
	off, err := p.log.OffsetForTime(ts)
	if err != nil {
		return -1, readErr(err)
	}
	return max(off, p.floor.Load()), nil
}
