package log

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/weirhub/weir/codecs"
)

// writeTestLog writes batches of 3 records to a fresh log in dir and
// returns the sizes of the batches and the records written.
func writeTestLog(t *testing.T, dir string, batches int, opts Options) (sizes []int, want []string) {
	t.Helper()
	l := openLog(t, dir, opts)
	for i := range batches {
		b := batchOf(t, fmt.Sprint(i), 3, 40+i%50, int64(i))
		sizes = append(sizes, len(b))
		if _, err := l.Append(b); err != nil {
			t.Fatal(err)
		}
		for j := range 3 {
			want = append(want, fmt.Sprintf("%d/%d/3", i, j))
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return sizes, want
}

// The etcd WAL repair pattern: write, damage the file, reopen, and count
// the entries that survive.
func TestRecoverTornTail(t *testing.T) {
	src := t.TempDir()
	sizes, want := writeTestLog(t, src, 10, Options{Sync: SyncNever})
	total := sum(sizes)
	last := sizes[len(sizes)-1]
	cuts := []struct {
		name  string
		keep  int // bytes of the segment kept
		whole int // batches expected to survive
	}{
		{"inside the length", total - last + 5, 9},
		{"inside the header", total - last + 40, 9},
		{"inside the records", total - 10, 9},
		{"one byte short", total - 1, 9},
		{"on a batch boundary", total - last, 9},
		{"inside an earlier batch", sum(sizes[:4]) + 7, 4},
	}
	for _, c := range cuts {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			seg := segmentName(dir, 0, logSuffix)
			copyFile(t, seg, segmentName(src, 0, logSuffix))
			if err := os.Truncate(seg, int64(c.keep)); err != nil {
				t.Fatal(err)
			}
			l := openLog(t, dir, Options{Sync: SyncNever})
			defer l.Close()
			got := readAll(t, l, 0)
			if fmt.Sprint(got) != fmt.Sprint(want[:3*c.whole]) {
				t.Fatalf("after recovery %d records, want %d", len(got), 3*c.whole)
			}
			ev := l.Recovered()
			if cutBytes := c.keep - sum(sizes[:c.whole]); cutBytes > 0 {
				if len(ev) != 1 || ev[0].Dropped != int64(cutBytes) || !errors.Is(errorsFrom(t, ev[0]), nil) {
					t.Fatalf("recovery events %+v, want one of %d bytes", ev, cutBytes)
				}
				b, _ := os.ReadFile(segmentName(src, 0, logSuffix))
				if cut := b[c.keep-cutBytes : c.keep]; !bytes.Equal(cut, make([]byte, cutBytes)) {
					saved, err := os.ReadFile(ev[0].SavedTo)
					if err != nil || !bytes.Equal(saved, cut) {
						t.Fatalf("saved tail: %d bytes, %v", len(saved), err)
					}
				} else if ev[0].SavedTo != "" {
					t.Fatalf("a tail of zeros saved to %s", ev[0].SavedTo)
				}
			} else if len(ev) != 0 {
				t.Fatalf("cut on a boundary but recovery reports %+v", ev)
			}
			// The log goes on from the last whole batch.
			if base, err := l.Append(batchOf(t, "next", 1, 5, 0)); err != nil || base != int64(3*c.whole) {
				t.Fatalf("Append after recovery = %d, %v", base, err)
			}
			l.Close()
			if _, err := Verify(dir, nil); err != nil {
				t.Fatalf("Verify after recovery: %v", err)
			}
		})
	}
}

func errorsFrom(t *testing.T, ev RecoveryEvent) error {
	if ev.Reason == "" {
		t.Fatalf("recovery event without a reason: %+v", ev)
	}
	return nil
}

func TestRecoverGarbageTail(t *testing.T) {
	tails := map[string][]byte{
		"zeros":         make([]byte, 4096), // a file extended but never written
		"random":        bytes.Repeat([]byte{0x5a, 0x13, 0xff, 0x00, 0x42}, 100),
		"short garbage": {1, 2, 3},
		"a batch header claiming 1 GiB": func() []byte {
			b := batchOf(t, "x", 1, 10, 0)
			b[8], b[9], b[10], b[11] = 0x40, 0, 0, 0
			return b
		}(),
	}
	for name, tail := range tails {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			_, want := writeTestLog(t, dir, 5, Options{Sync: SyncNever})
			f, err := os.OpenFile(segmentName(dir, 0, logSuffix), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(tail)
			f.Close()
			l := openLog(t, dir, Options{Sync: SyncNever})
			defer l.Close()
			if got := readAll(t, l, 0); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("read %d records, want %d", len(got), len(want))
			}
			ev := l.Recovered()
			if len(ev) != 1 || ev[0].Dropped != int64(len(tail)) {
				t.Fatalf("recovery events %+v, want one of %d bytes", ev, len(tail))
			}
			if zeros := !slices.ContainsFunc(tail, func(b byte) bool { return b != 0 }); zeros != (ev[0].SavedTo == "") {
				t.Fatalf("a tail of %d bytes (zeros: %v) saved to %q", len(tail), zeros, ev[0].SavedTo)
			}
		})
	}
}

// TestRecoverBitFlipInActiveSegment: a flipped bit fails the CRC. Recovery
// keeps everything before the damaged batch, cuts the rest, and keeps the
// cut bytes in a .corrupt file rather than losing them silently.
func TestRecoverBitFlipInActiveSegment(t *testing.T) {
	dir := t.TempDir()
	sizes, want := writeTestLog(t, dir, 8, Options{Sync: SyncNever})
	seg := segmentName(dir, 0, logSuffix)
	b, _ := os.ReadFile(seg)
	at := sum(sizes[:5]) + 70
	b[at] ^= 0x01
	os.WriteFile(seg, b, 0o644)
	l := openLog(t, dir, Options{Sync: SyncNever})
	defer l.Close()
	if got := readAll(t, l, 0); fmt.Sprint(got) != fmt.Sprint(want[:15]) {
		t.Fatalf("read %d records, want the 15 before the damage", len(got))
	}
	ev := l.Recovered()
	if len(ev) != 1 || ev[0].Position != int64(sum(sizes[:5])) {
		t.Fatalf("recovery events %+v", ev)
	}
	saved, _ := os.ReadFile(ev[0].SavedTo)
	if !bytes.Equal(saved, b[sum(sizes[:5]):]) {
		t.Fatalf("the .corrupt file does not hold the cut bytes")
	}
}

// TestRecoverInterruptedRoll: a crash after the new segment file was
// created but before the old one's index reached the disk.
func TestRecoverInterruptedRoll(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 4 << 10, Sync: SyncNever}
	_, want := writeTestLog(t, dir, 40, opts)
	bases, _ := listSegments(osFS{}, dir, false)
	if len(bases) < 3 {
		t.Fatalf("only %d segments", len(bases))
	}
	os.Remove(segmentName(dir, bases[len(bases)-2], indexSuffix))
	os.Remove(segmentName(dir, bases[len(bases)-2], timeIndexSuffix))
	// and an empty new active segment plus a stray temporary file
	next := bases[len(bases)-1]
	os.WriteFile(segmentName(dir, next, indexSuffix+tmpSuffix), []byte("partial"), 0o644)
	l := openLog(t, dir, opts)
	defer l.Close()
	if got := readAll(t, l, 0); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	if _, err := os.Stat(segmentName(dir, bases[len(bases)-2], indexSuffix)); err != nil {
		t.Fatalf("index not rebuilt: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*"+tmpSuffix)); len(m) != 0 {
		t.Fatalf("temporary files left: %v", m)
	}
}

// TestRecoverFromTruncatedClosedSegment: a closed segment shorter than its
// index says (lost blocks) must not be trusted through the index.
func TestRecoverFromTruncatedClosedSegment(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 4 << 10, Sync: SyncNever}
	writeTestLog(t, dir, 40, opts)
	seg := segmentName(dir, 0, logSuffix)
	st, _ := os.Stat(seg)
	os.Truncate(seg, st.Size()-30)
	l := openLog(t, dir, opts)
	defer l.Close()
	it := l.NewIterator(0)
	for it.Next() {
	}
	var ce *CorruptError
	if !errors.As(it.Err(), &ce) || ce.Path != seg {
		t.Fatalf("reading through a truncated closed segment: %v, want a *CorruptError for %s", it.Err(), seg)
	}
	if _, err := Verify(dir, nil); !errors.Is(err, codecs.ErrShort) {
		t.Fatalf("Verify = %v, want a short batch", err)
	}
}

// TestRecoverUnsealedSegment: a crash during a roll, before the background
// seal synced the old segment: it has no index and a torn tail (lost to
// the power cut) while the next segment already exists. Recovery cuts the
// tail like the active segment's instead of refusing to serve the segment,
// and reads go on into the next segment.
func TestRecoverUnsealedSegment(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 4 << 10, Sync: SyncNever}
	writeTestLog(t, dir, 40, opts)
	bases, _ := listSegments(osFS{}, dir, false)
	if len(bases) < 3 {
		t.Fatalf("only %d segments", len(bases))
	}
	closed := bases[len(bases)-2]
	seg := segmentName(dir, closed, logSuffix)
	os.Remove(segmentName(dir, closed, indexSuffix))
	os.Remove(segmentName(dir, closed, timeIndexSuffix))
	st, _ := os.Stat(seg)
	b, _ := os.ReadFile(seg)
	last := 0
	for p := 0; p < len(b); p += codecs.BatchSize(b[p:]) {
		last = p
	}
	os.Truncate(seg, st.Size()-20) // the last batch is torn
	l := openLog(t, dir, opts)
	defer l.Close()
	ev := l.Recovered()
	if len(ev) != 1 || ev[0].Segment != seg || ev[0].Position != int64(last) {
		t.Fatalf("recovery events %+v, want one cut of %s at %d", ev, seg, last)
	}
	it := l.NewIterator(0)
	n := 0
	for it.Next() {
		n++
	}
	if it.Err() != nil {
		t.Fatalf("reading after recovering an unsealed segment: %d records, then %v", n, it.Err())
	}
	lastBatch, _ := codecs.ParseHeader(b[last:])
	if want := 40*3 - int(lastBatch.NumRecords); n != want {
		t.Fatalf("read %d records, want %d", n, want)
	}
	if _, err := os.Stat(segmentName(dir, closed, indexSuffix)); err != nil {
		t.Fatalf("the recovered segment was not sealed: %v", err)
	}
	if _, err := Verify(dir, nil); err != nil {
		t.Fatalf("Verify after recovery: %v", err)
	}
}

// TestRecoverUnsealedSegmentHole: the pages of an unsynced tail reach the
// disk in any order, so a power cut during a roll can leave an unsealed
// segment with a page of zeros (one that never reached the disk) and whole
// batches after it (pages that did). That is a torn tail, not damage in
// the middle of a segment: recovery cuts it at the hole, keeps the bytes
// cut in a .corrupt file, and reads go on into the next segment (before,
// the segment was kept as corrupt and reads stopped at the hole).
func TestRecoverUnsealedSegmentHole(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 16 << 10, Sync: SyncNever}
	_, want := writeTestLog(t, dir, 200, opts)
	bases, _ := listSegments(osFS{}, dir, false)
	if len(bases) < 3 {
		t.Fatalf("only %d segments", len(bases))
	}
	closed := bases[len(bases)-2]
	seg := segmentName(dir, closed, logSuffix)
	os.Remove(segmentName(dir, closed, indexSuffix))
	os.Remove(segmentName(dir, closed, timeIndexSuffix))
	b, _ := os.ReadFile(seg)
	if len(b) < 3*4096 {
		t.Fatalf("segment of %d bytes, want at least 3 pages", len(b))
	}
	// The first batch that reaches into the second page is where the cut
	// goes; its records and all after it in this segment are cut.
	cut, kept := 0, 0
	for p := 0; p < len(b); p += codecs.BatchSize(b[p:]) {
		if p+codecs.BatchSize(b[p:]) > 4096 {
			cut = p
			break
		}
		h, _ := codecs.ParseHeader(b[p:])
		kept += int(h.NumRecords)
	}
	f, err := os.OpenFile(seg, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(make([]byte, 4096), 4096)
	f.Close()

	l := openLog(t, dir, opts)
	defer l.Close()
	ev := l.Recovered()
	if len(ev) != 1 || ev[0].Segment != seg || ev[0].Position != int64(cut) || ev[0].SavedTo == "" {
		t.Fatalf("recovery events %+v, want one cut of %s at %d with the bytes kept", ev, seg, cut)
	}
	it := l.NewIterator(0)
	n := 0
	for it.Next() {
		n++
	}
	if it.Err() != nil {
		t.Fatalf("reading after recovering an unsealed segment with a hole: %d records, then %v", n, it.Err())
	}
	inSeg := 0
	for p := 0; p < len(b); p += codecs.BatchSize(b[p:]) {
		h, _ := codecs.ParseHeader(b[p:])
		inSeg += int(h.NumRecords)
	}
	if wantN := len(want) - inSeg + kept; n != wantN {
		t.Fatalf("read %d records, want %d", n, wantN)
	}
}
