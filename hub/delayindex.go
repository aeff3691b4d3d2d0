package hub

import (
	"bufio"
	"container/heap"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/weirhub/weir/internal/atomicfile"
)

// The pending index of a delay partition lives on disk, in its directory
// delayindex/, as entries of 16 bytes (due time, offset of the batch in the
// delay partition; big endian) in bucket files by due time, a two-level
// timing wheel:
//
//	delayindex/
//	  index.json        {"indexed": N}: every batch below offset N is in a bucket file
//	  L1-<k>.idx        entries due in [k·64s, (k+1)·64s), more than 10s ahead when added
//	  L0-<k>.idx        entries due in [k·1s, (k+1)·1s)
//	  L0-<k>.done       offsets of that second already delivered (8 bytes each)
//
// A level-1 bucket is cascaded into level-0 buckets 10s before it starts;
// a level-0 bucket is read into memory (a heap by due time) 1s before it
// starts, and its files are removed once every entry was delivered. Only
// the buckets being written (their last entries, up to 4 KiB) and the
// seconds about to fall due are in memory: 10 million pending batches
// take their 160 MB on disk, not in RAM. A bucket's entries are written
// when 4 KiB gathered, and all of them every 10s, when index.json moves
// on, after the files are synced (unless the delay dataset's fsync policy
// is never); at open the delay partition is read from
// there to the end again, so an entry lost with a crash is found again
// (one written twice is delivered once: a second is de-duplicated when
// read). Delivered offsets are appended to the .done files only after the
// target has the records durably, so a crash delivers again what it had
// not recorded: at least once.

const (
	delayWidth0    = int64(1000)  // ms a level-0 bucket spans
	delayWidth1    = int64(64000) // ms a level-1 bucket spans
	delayCascade   = int64(10000) // ms before its start a level-1 bucket is cascaded
	delayLoadAhead = int64(1000)  // ms before its start a level-0 bucket is read in
	delayEntrySize = 16
	delayBufMax    = 4 << 10 // bytes of entries a bucket holds before writing them
	// delayCheckpointEvery is how often index.json moves on: what a
	// restart after a crash reads again from the delay partition.
	delayCheckpointEvery = 10 * time.Second
)

type bucketKey struct {
	level int
	key   int64
}

func (k bucketKey) start() int64 {
	if k.level == 0 {
		return k.key * delayWidth0
	}
	return k.key * delayWidth1
}

func (k bucketKey) name(ext string) string { return fmt.Sprintf("L%d-%d.%s", k.level, k.key, ext) }

// delayBucket is one bucket file's state in memory.
type delayBucket struct {
	k      bucketKey
	count  int // entries not delivered (after a crash, duplicates too until loaded)
	minOff int64
	minDue int64
	buf    []byte // entries not written yet
	done   []byte // delivered offsets not written yet
	loaded bool   // level 0: its entries are in the heap
	left   int    // loaded: its entries still in the heap
}

// delayIndex is a delay partition's pending entries. Its methods are
// called with the queue's mu held.
type delayIndex struct {
	dir     string
	sync    bool // sync the files before a checkpoint
	buckets map[bucketKey]*delayBucket
	h       delayHeap // entries of the loaded buckets
	indexed int64
	dirty   bool            // entries or delivered offsets not written, or index.json behind
	touched map[string]bool // files written since the last checkpoint, to sync
	lastCk  time.Time       // the last checkpoint
}

func openDelayIndex(dir string) (*delayIndex, bool, error) {
	x := &delayIndex{dir: dir, buckets: map[bucketKey]*delayBucket{}, touched: map[string]bool{}}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, false, fmt.Errorf("hub: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	found := err == nil
	if found {
		var st struct {
			Indexed int64 `json:"indexed"`
		}
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, false, fmt.Errorf("hub: %s: %w", filepath.Join(dir, "index.json"), err)
		}
		x.indexed = st.Indexed
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("hub: %w", err)
	}
	names, err := os.ReadDir(dir)
	if err != nil {
		return nil, false, fmt.Errorf("hub: %w", err)
	}
	for _, de := range names {
		base, ok := strings.CutSuffix(de.Name(), ".idx")
		if !ok {
			continue
		}
		k, ok := parseBucket(base)
		if !ok {
			continue
		}
		bk := &delayBucket{k: k, minOff: -1}
		if err := x.readEntries(k, func(e delayEntry) {
			bk.note(e)
		}); err != nil {
			return nil, false, err
		}
		done, err := x.readDone(k)
		if err != nil {
			return nil, false, err
		}
		bk.count = max(bk.count-len(done), 0)
		x.buckets[k] = bk
	}
	return x, found, nil
}

func parseBucket(s string) (bucketKey, bool) {
	lv, key, ok := strings.Cut(s, "-")
	if !ok || (lv != "L0" && lv != "L1") {
		return bucketKey{}, false
	}
	n, err := strconv.ParseInt(key, 10, 64)
	if err != nil {
		return bucketKey{}, false
	}
	return bucketKey{level: int(lv[1] - '0'), key: n}, true
}

func (b *delayBucket) note(e delayEntry) {
	b.count++
	if b.minOff < 0 || e.off < b.minOff {
		b.minOff = e.off
	}
	if b.minDue == 0 || e.due < b.minDue {
		b.minDue = e.due
	}
}

// readEntries calls fn for every entry of a bucket's file (a torn last
// entry is left out: it is found again in the delay partition).
func (x *delayIndex) readEntries(k bucketKey, fn func(delayEntry)) error {
	f, err := os.Open(filepath.Join(x.dir, k.name("idx")))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	var e [delayEntrySize]byte
	for {
		if _, err := io.ReadFull(r, e[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil
			}
			return fmt.Errorf("hub: reading %s: %w", f.Name(), err)
		}
		fn(delayEntry{due: int64(binary.BigEndian.Uint64(e[:8])), off: int64(binary.BigEndian.Uint64(e[8:]))})
	}
}

// readDone returns the delivered offsets of a level-0 bucket.
func (x *delayIndex) readDone(k bucketKey) (map[int64]bool, error) {
	done := map[int64]bool{}
	if k.level != 0 {
		return done, nil
	}
	b, err := os.ReadFile(filepath.Join(x.dir, k.name("done")))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("hub: %w", err)
	}
	for ; len(b) >= 8; b = b[8:] {
		done[int64(binary.BigEndian.Uint64(b))] = true
	}
	return done, nil
}

// add puts an entry in its bucket: level 1 when that whole bucket starts
// after the cascade horizon, else level 0 (straight into the heap when its
// second is loaded).
func (x *delayIndex) add(e delayEntry, now int64) {
	k := bucketKey{level: 1, key: e.due / delayWidth1}
	if k.start() <= now+delayCascade {
		k = bucketKey{level: 0, key: e.due / delayWidth0}
	}
	x.addTo(k, e)
}

func (x *delayIndex) addTo(k bucketKey, e delayEntry) {
	b := x.buckets[k]
	if b == nil {
		b = &delayBucket{k: k, minOff: -1}
		x.buckets[k] = b
	}
	b.note(e)
	b.buf = binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(b.buf, uint64(e.due)), uint64(e.off))
	if b.loaded {
		heap.Push(&x.h, e)
		b.left++
	}
	x.dirty = true
	if len(b.buf) >= delayBufMax {
		x.writeBuf(b) // on failure the entries stay, written by the checkpoint (which reports it)
	}
}

// writeBuf appends a bucket's unwritten entries and delivered offsets to
// its files; it returns the files written, to sync.
func (x *delayIndex) writeBuf(b *delayBucket) ([]string, error) {
	var written []string
	for _, w := range []struct {
		ext string
		buf *[]byte
	}{{"idx", &b.buf}, {"done", &b.done}} {
		if len(*w.buf) == 0 {
			continue
		}
		path := filepath.Join(x.dir, b.k.name(w.ext))
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return written, fmt.Errorf("hub: %w", err)
		}
		_, err = f.Write(*w.buf)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return written, fmt.Errorf("hub: writing %s: %w", path, err)
		}
		*w.buf = (*w.buf)[:0]
		written = append(written, path)
		x.touched[path] = true
	}
	if cap(b.buf) > 2*delayBufMax {
		b.buf = nil
	}
	return written, nil
}

// advance cascades the level-1 buckets within the horizon and loads the
// level-0 seconds about to fall due.
func (x *delayIndex) advance(now int64) error {
	for k, b := range x.buckets {
		if k.level != 1 || k.start() > now+delayCascade {
			continue
		}
		if _, err := x.writeBuf(b); err != nil {
			return err
		}
		delete(x.buckets, k)
		if err := x.readEntries(k, func(e delayEntry) {
			x.addTo(bucketKey{level: 0, key: e.due / delayWidth0}, e)
		}); err != nil {
			x.buckets[k] = b
			return err
		}
		// The entries are in level-0 buffers: they must reach their
		// files before the level-1 file goes.
		if err := x.flushBuffers(x.sync); err != nil {
			return err
		}
		if err := os.Remove(filepath.Join(x.dir, k.name("idx"))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("hub: %w", err)
		}
	}
	for k, b := range x.buckets {
		if k.level != 0 || b.loaded || k.start() > now+delayLoadAhead {
			continue
		}
		if _, err := x.writeBuf(b); err != nil {
			return err
		}
		done, err := x.readDone(k)
		if err != nil {
			return err
		}
		seen := map[int64]bool{}
		n := 0
		if err := x.readEntries(k, func(e delayEntry) {
			if done[e.off] || seen[e.off] {
				return
			}
			seen[e.off] = true
			x.h = append(x.h, e)
			n++
		}); err != nil {
			return err
		}
		heap.Init(&x.h)
		b.loaded, b.left, b.count = true, n, n
	}
	return nil
}

// flushBuffers writes every bucket's unwritten entries and, with sync,
// syncs every file written since the last checkpoint.
func (x *delayIndex) flushBuffers(sync bool) error {
	for _, b := range x.buckets {
		if _, err := x.writeBuf(b); err != nil {
			return err
		}
	}
	if !sync {
		return nil
	}
	for p := range x.touched {
		if err := syncFile(p); err != nil {
			return err
		}
		delete(x.touched, p)
	}
	return nil
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // delivered and removed since
	}
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("hub: syncing %s: %w", path, err)
	}
	return nil
}

// popDue takes the heap's entries due by now, at most max.
func (x *delayIndex) popDue(now int64, max int) []delayEntry {
	var due []delayEntry
	for len(x.h) > 0 && x.h[0].due <= now && len(due) < max {
		due = append(due, heap.Pop(&x.h).(delayEntry))
	}
	return due
}

// unpop puts entries back that could not be delivered.
func (x *delayIndex) unpop(es []delayEntry) {
	for _, e := range es {
		heap.Push(&x.h, e)
	}
}

// delivered records entries as delivered (the target has them durably):
// their offsets go to the .done files, and a second whose entries are all
// delivered loses its files.
func (x *delayIndex) delivered(es []delayEntry, now int64) error {
	for _, e := range es {
		k := bucketKey{level: 0, key: e.due / delayWidth0}
		b := x.buckets[k]
		if b == nil {
			continue
		}
		b.done = binary.BigEndian.AppendUint64(b.done, uint64(e.off))
		b.left--
		b.count--
		x.dirty = true
	}
	for k, b := range x.buckets {
		if !b.loaded || b.left > 0 || k.start()+delayWidth0 > now {
			continue
		}
		delete(x.buckets, k)
		for _, ext := range []string{"idx", "done"} {
			if err := os.Remove(filepath.Join(x.dir, k.name(ext))); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("hub: %w", err)
			}
		}
	}
	return nil
}

// checkpoint writes the delivered offsets and, every
// delayCheckpointEvery (or with force), every buffered entry, syncs the
// files and records that every batch below indexed is in them.
func (x *delayIndex) checkpoint(indexed int64, force bool) error {
	if !x.dirty && indexed == x.indexed {
		return nil
	}
	for _, b := range x.buckets {
		if len(b.done) == 0 {
			continue
		}
		done := b.buf
		b.buf = nil // the .done file only
		_, err := x.writeBuf(b)
		b.buf = done
		if err != nil {
			return err
		}
	}
	if !force && time.Since(x.lastCk) < delayCheckpointEvery {
		return nil
	}
	x.lastCk = time.Now()
	if err := x.flushBuffers(x.sync); err != nil {
		return err
	}
	if indexed != x.indexed {
		b, _ := json.Marshal(struct {
			Indexed int64 `json:"indexed"`
		}{indexed})
		if err := atomicfile.Write(filepath.Join(x.dir, "index.json"), b); err != nil {
			return err
		}
		x.indexed = indexed
	}
	x.dirty = false
	return nil
}

// lowest is the lowest offset still pending (hwm when none is).
func (x *delayIndex) lowest(hwm int64) int64 {
	low := hwm
	for _, b := range x.buckets {
		if !b.loaded && b.count > 0 && b.minOff >= 0 {
			low = min(low, b.minOff)
		}
	}
	for _, e := range x.h {
		low = min(low, e.off)
	}
	return low
}

// pending returns the entries not delivered and the earliest due time (0
// when none).
func (x *delayIndex) pending() (int, int64) {
	n := 0
	var next int64
	for _, b := range x.buckets {
		if b.loaded {
			n += b.left
			continue
		}
		n += b.count
		if b.count > 0 && (next == 0 || b.minDue < next) {
			next = b.minDue
		}
	}
	if len(x.h) > 0 && (next == 0 || x.h[0].due < next) {
		next = x.h[0].due
	}
	return n, next
}

// nextAction is when the index next has something to do: an entry falls
// due, a second is to be loaded or a bucket cascaded. ok is false when
// nothing is pending.
func (x *delayIndex) nextAction() (int64, bool) {
	var at int64
	ok := false
	note := func(t int64) {
		if !ok || t < at {
			at, ok = t, true
		}
	}
	if len(x.h) > 0 {
		note(x.h[0].due)
	}
	for k, b := range x.buckets {
		switch {
		case k.level == 1:
			note(k.start() - delayCascade)
		case !b.loaded:
			note(k.start() - delayLoadAhead)
		}
	}
	return at, ok
}
