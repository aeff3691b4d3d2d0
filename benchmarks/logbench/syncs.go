package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// batchBytes is one logbench append: 16 records of 1 KiB in one batch.
const batchBytes = 16589

// reserveStep is how far ahead keep and nokeep reserve (the log's most).
const reserveStep = 4 << 20

// ahead and dio write zeros in steps of aheadStep up to aheadMax past the
// write position.
const aheadStep, aheadMax = 4 << 20, 8 << 20

// syncRows is -syncs: it measures what one fdatasync costs on a filesystem,
// against what it carries and what the file's blocks are, and what a loop
// of write-then-fdatasync carries per second against dd conv=fdatasync of
// the same bytes in the same run: the floor under durable acknowledgement
// (fsync always), whose group commit makes one such sync per round of
// appenders.
//
// Each carry (default: a round of 8 and of 64 logbench appends of 16 x 1
// KiB records) is written back to back, one fdatasync after each write,
// into a file whose blocks past the end are
//
//   - keep: reserved by fallocate FALLOC_FL_KEEP_SIZE ahead of the write
//     position, as the log does (the size still grows with each sync);
//   - extend: not reserved (the size grows with each sync);
//   - nokeep: reserved by fallocate without KEEP_SIZE (the size is set
//     ahead, the blocks unwritten until written);
//   - written: written with zeros and synced beforehand (the sync carries
//     data only: no size or extent change; the zeros are not timed);
//   - ahead: written with zeros by a goroutine of its own, aheadStep at a
//     time, each step followed by an fdatasync, up to aheadMax ahead of
//     the write position (the zeros' cost is timed: they share the disk
//     and the file with the loop);
//   - dio: as ahead, the zeros written through a second descriptor with
//     O_DIRECT|O_DSYNC, so that they never are dirty pages that the loop's
//     fdatasync would write back.
//
// ahead and dio measure time only: should the loop overtake the zeros, they
// overwrite its bytes, which nothing reads.
//
// Each carry is written as the log's appenders write a round: one write per
// batchBytes. With overlap, the next carry is written while the previous
// one's fdatasync runs (a pipelined group commit, whose next round writes
// during the sync), instead of between syncs.
func syncRows(dir string, total int64, carriesFlag, modesFlag string, overlap bool) {
	var carries []int64
	for _, f := range strings.Split(carriesFlag, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		if err != nil || n < 1 {
			fail("-carries: %q is not a positive byte count", f)
		}
		carries = append(carries, n)
	}
	modes := strings.Split(modesFlag, ",")
	for _, m := range modes {
		if !slices.Contains([]string{"keep", "extend", "nokeep", "written", "ahead", "dio"}, m) {
			fail("-modes: unknown mode %q (keep, extend, nokeep, written, ahead, dio)", m)
		}
	}
	dd := runDD(filepath.Join(dir, "dd.bin"), uint64(total))
	fmt.Printf("write then fdatasync, %d MiB per row, in %s; dd bs=1M conv=fdatasync of the same bytes: %.0f MB/s\n\n", total>>20, dir, dd)
	fmt.Printf("%-8s %9s %6s %9s %9s %9s %9s %9s %8s %7s\n", "mode", "carry B", "syncs", "p10", "p50", "p90", "p99", "mean", "MB/s", "vs dd")
	for _, c := range carries {
		for _, m := range modes {
			lat, d := syncRun(filepath.Join(dir, "f"), m, c, total, overlap)
			slices.Sort(lat)
			var sum time.Duration
			for _, l := range lat {
				sum += l
			}
			q := func(p int) string { return lat[len(lat)*p/100].Round(time.Microsecond).String() }
			mbs := float64(int64(len(lat))*c) / d.Seconds() / 1e6
			fmt.Printf("%-8s %9d %6d %9s %9s %9s %9s %9s %8.0f %6.2fx\n", m, c, len(lat), q(10), q(50), q(90), q(99),
				(sum / time.Duration(len(lat))).Round(time.Microsecond), mbs, mbs/dd)
		}
	}
}

// syncRun writes total bytes in carries of c bytes into a new file at path
// prepared as mode says, with an fdatasync after each, and returns each
// fdatasync's time and the whole loop's.
func syncRun(path, mode string, c, total int64, overlap bool) ([]time.Duration, time.Duration) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		fail("%v", err)
	}
	defer os.Remove(path)
	defer f.Close()
	fd := int(f.Fd())
	if mode == "written" {
		zeros := make([]byte, 1<<20)
		for at := int64(0); at < total+c; at += int64(len(zeros)) {
			if _, err := f.WriteAt(zeros, at); err != nil {
				fail("writing zeros: %v", err)
			}
		}
		if err := unix.Fdatasync(fd); err != nil {
			fail("fdatasync: %v", err)
		}
	}
	var written atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	if mode == "ahead" || mode == "dio" {
		zf := f
		if mode == "dio" {
			var err error
			zf, err = os.OpenFile(path, os.O_RDWR|unix.O_DIRECT|unix.O_DSYNC, 0)
			if err != nil {
				fail("%v", err)
			}
			defer zf.Close()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			zeros := alignedZeros(aheadStep)
			var zeroed int64
			for {
				select {
				case <-stop:
					return
				default:
				}
				if zeroed-written.Load() >= aheadMax {
					time.Sleep(50 * time.Microsecond)
					continue
				}
				if _, err := zf.WriteAt(zeros, zeroed); err != nil {
					fail("writing zeros: %v", err)
				}
				if mode == "ahead" {
					if err := unix.Fdatasync(fd); err != nil {
						fail("fdatasync: %v", err)
					}
				}
				zeroed += aheadStep
			}
		}()
		defer wg.Wait()
		defer close(stop)
	}
	buf := make([]byte, c)
	for i := range buf {
		buf[i] = byte('a' + i%26)
	}
	var lat []time.Duration
	var reserved int64
	prepare := func(at int64) {
		if (mode == "keep" || mode == "nokeep") && at+c > reserved {
			flags := uint32(0)
			if mode == "keep" {
				flags = unix.FALLOC_FL_KEEP_SIZE
			}
			n := max(at+c-reserved, reserveStep)
			if err := unix.Fallocate(fd, flags, reserved, n); err != nil {
				fail("fallocate: %v", err)
			}
			reserved += n
		}
	}
	// write writes one carry as the log's appenders do: one write per
	// batch of batchBytes.
	write := func(at int64) {
		for p := int64(0); p < c; p += batchBytes {
			if _, err := f.WriteAt(buf[p:min(p+batchBytes, c)], at+p); err != nil {
				fail("write: %v", err)
			}
		}
	}
	start := time.Now()
	if overlap && total >= c {
		prepare(0)
		write(0)
	}
	for at := int64(0); at+c <= total; at += c {
		done := make(chan struct{})
		switch {
		case !overlap:
			prepare(at)
			write(at)
			close(done)
		case at+2*c <= total:
			prepare(at + c)
			go func() { write(at + c); close(done) }()
		default:
			close(done)
		}
		t := time.Now()
		if err := unix.Fdatasync(fd); err != nil {
			fail("fdatasync: %v", err)
		}
		lat = append(lat, time.Since(t))
		<-done
		written.Store(at + c)
	}
	return lat, time.Since(start)
}

// alignedZeros returns n zero bytes aligned for O_DIRECT (anonymous
// memory is page-aligned); they are never unmapped, as the run is short.
func alignedZeros(n int) []byte {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		fail("mmap: %v", err)
	}
	return b
}
