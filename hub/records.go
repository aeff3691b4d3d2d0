package hub

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/weirhub/weir/internal/atomicfile"
)

// floorFile holds, in a partition's directory, the offset below which
// DeleteRecords deleted the records, as decimal text.
const floorFile = "deleted-below"

// DeleteRecords deletes the records of the partition below offset, as
// Kafka's DeleteRecords does: the start offset moves to offset at once
// (fetching below it fails with ErrOffsetOutOfRange, ListOffsets earliest
// answers it) and the segments entirely below it are removed. offset -1
// means the high watermark: everything. An offset above the high watermark
// fails with ErrOffsetOutOfRange. It returns the new start offset. The
// move is persisted before it is answered, so it holds across restarts.
//
// It does not take the produce lock: the high watermark it checks against
// only grows, and persisting the move costs an fsync, which under a busy
// disk takes long enough to stall every produce to the partition. Calls
// are ordered among themselves, so that the file always holds the highest
// offset asked for.
func (p *Partition) DeleteRecords(offset int64) (int64, error) {
	p.floorMu.Lock()
	defer p.floorMu.Unlock()
	hw := p.log.HighWatermark()
	if offset == -1 {
		offset = hw
	}
	if offset < 0 || offset > hw {
		return p.StartOffset(), fmt.Errorf("%w: %s/%d: cannot delete below %d, the partition ends at %d", ErrOffsetOutOfRange, p.ds.name, p.id, offset, hw)
	}
	if offset > p.StartOffset() {
		if err := atomicfile.Write(filepath.Join(p.dir, floorFile), []byte(strconv.FormatInt(offset, 10)+"\n")); err != nil {
			return p.StartOffset(), fmt.Errorf("%w: %s/%d: recording the new start offset: %v", ErrStorage, p.ds.name, p.id, err)
		}
		p.floor.Store(offset)
		p.ds.h.opts.Logger.Info("hub: records deleted", "dataset", p.ds.name, "partition", p.id, "below", offset)
	}
	if _, err := p.log.DeleteBefore(offset); err != nil {
		return p.StartOffset(), storageErr(err)
	}
	return p.StartOffset(), nil
}

// loadFloor reads what DeleteRecords recorded.
func (p *Partition) loadFloor() error {
	b, err := os.ReadFile(filepath.Join(p.dir, floorFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("hub: %s/%d: %w", p.ds.name, p.id, err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("hub: %s: damaged: %q", filepath.Join(p.dir, floorFile), b)
	}
	p.floor.Store(n)
	return nil
}

// DeleteRecords deletes the records of dataset's partition below offset;
// see Partition.DeleteRecords.
func (h *Hub) DeleteRecords(dataset string, partition int32, offset int64) (int64, error) {
	ds, err := h.Dataset(dataset)
	if err != nil {
		return -1, err
	}
	p, err := ds.Partition(partition)
	if err != nil {
		return -1, err
	}
	return p.DeleteRecords(offset)
}
