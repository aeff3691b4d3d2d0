// Command logbench measures the commit log against the disk's sequential
// write ceiling, measured by dd with conv=fdatasync in the same run on the
// same filesystem, and prints a table of throughputs and ratios.
//
//	go run ./benchmarks/logbench -size 1GiB -dir ./data/logbench
//
// With -always it measures only durable acknowledgement (fsync always,
// group commit): for each of -runs rounds, dd and then one run per count of
// -appenders, each against the dd of its own round, with -size per run.
//
//	go run ./benchmarks/logbench -always -appenders 1,8,64 -runs 3 -size 256MiB
//
// -prewrite compares windows of zeros written ahead of the data
// (log.Options.PrewriteBytes), one row each: default, off, or a size.
//
//	go run ./benchmarks/logbench -always -appenders 8,64 -prewrite default,off,16MiB
//
// -segment and -retention run a steady state in which segments roll and
// retention (log.Options.RetentionBytes, enforced every 10ms during the
// run) deletes them; -recycle compares segment files recycled after
// retention (log.Options.RecycleSegments) on and off, one row each, and
// -drop-recycled drops a recycled file's pages from the page cache
// (posix_fadvise DONTNEED) before it is reused, as after a long time.
//
//	go run ./benchmarks/logbench -always -appenders 8,64 -size 512MiB -segment 16MiB -retention 32MiB -recycle on,off -drop-recycled
//
// -warmup appends that many bytes, untimed, before each timed log run, so
// that with retention the run measures the steady state, every new segment
// taking a recycled file:
//
//	go run ./benchmarks/logbench -always -appenders 8,64 -size 256MiB -segment 16MiB -retention 32MiB -warmup 64MiB -recycle on,off -floor
//
// -floor adds, in each round and for each count of appenders, the floor
// under its rows: a loop of write-then-fdatasync of one round's bytes (the
// appenders' batches, one write each), into a file whose blocks are
// reserved as a growing log's are (keep) and into one whose blocks were
// written before (written, as a recycled segment file's), with nothing
// written while a sync runs: what group commit can reach when each
// appender has one batch in flight. (-syncs measures the same loops
// alone, with more block states and carries.)
//
//	go run ./benchmarks/logbench -always -appenders 8,64 -size 256MiB -segment 16MiB -retention 32MiB -recycle on,off -floor
//
// With -syncs it measures the floor under those rows instead: a loop of
// write-then-fdatasync of one round's bytes (-carries), into a file whose
// blocks past the end are reserved as the log does, not reserved,
// reserved with the size set ahead, already written, or written with zeros
// ahead by a goroutine of its own (-modes), with each fdatasync's latency,
// against dd of the same bytes; with -overlap the next round is written
// while the previous one's fdatasync runs.
//
//	go run ./benchmarks/logbench -syncs -size 64MiB
//	go run ./benchmarks/logbench -syncs -overlap -modes keep,written -size 64MiB
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"

	"github.com/weirhub/weir/codecs"
	wlog "github.com/weirhub/weir/log"
)

const recordSize = 1024

func main() {
	sizeFlag := flag.String("size", "1GiB", "bytes written by dd and by each log run")
	dir := flag.String("dir", "./data/logbench", "scratch directory on the filesystem to measure (emptied)")
	reopenFlag := flag.String("reopen-size", "", "size of the log that is reopened and read back (default: -size), e.g. 10GiB")
	always := flag.Bool("always", false, "measure only fsync always (group commit) against dd, in interleaved rounds")
	appendersFlag := flag.String("appenders", "1,8,64", "with -always: comma-separated counts of concurrent appenders")
	runs := flag.Int("runs", 3, "with -always: rounds of dd and one run per appender count")
	batchFlag := flag.Int("batch", 16, "with -always: 1 KiB records per batch")
	prewriteFlag := flag.String("prewrite", "default", "with -always: comma-separated windows of zeros written ahead of the data (log.Options.PrewriteBytes): default, off, or a size such as 16MiB; one row each")
	segmentFlag := flag.String("segment", "", "with -always: segment size (log.Options.SegmentBytes), e.g. 16MiB (default: the log's)")
	retentionFlag := flag.String("retention", "", "with -always: retention in bytes (log.Options.RetentionBytes), enforced every 10ms during each run, e.g. 32MiB")
	recycleFlag := flag.String("recycle", "default", "with -always: comma-separated segment file recycling (log.Options.RecycleSegments): default, on, off; one row each")
	warmupFlag := flag.String("warmup", "", "with -always: bytes each log run appends, untimed, before the -size it times, e.g. 64MiB: with -retention, enough to reach the steady state in which new segments take recycled files (retention plus two segments)")
	floor := flag.Bool("floor", false, "with -always: also the floor under each count of appenders in each round: write-then-fdatasync of one round's bytes into reserved (keep) and into written blocks, nothing written during a sync")
	dropRecycled := flag.Bool("drop-recycled", false, "with -always: drop the pages of segment files kept for reuse from the page cache (posix_fadvise DONTNEED) before they are reused")
	syncs := flag.Bool("syncs", false, "measure only write-then-fdatasync loops against dd (see -carries, -modes)")
	carriesFlag := flag.String("carries", strconv.Itoa(8*batchBytes)+","+strconv.Itoa(64*batchBytes), "with -syncs: comma-separated bytes per fdatasync")
	modesFlag := flag.String("modes", "keep,extend,nokeep,written", "with -syncs: comma-separated states of the blocks past the end: keep, extend, nokeep, written, ahead, dio")
	overlap := flag.Bool("overlap", false, "with -syncs: write the next carry while the previous one's fdatasync runs")
	flag.Parse()
	size, err := humanize.ParseBytes(*sizeFlag)
	if err != nil {
		fail("-size: %v", err)
	}
	if err := os.RemoveAll(*dir); err != nil {
		fail("%v", err)
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fail("%v", err)
	}
	defer os.RemoveAll(*dir)

	if *syncs {
		syncRows(*dir, int64(size), *carriesFlag, *modesFlag, *overlap)
		return
	}
	if *always {
		var counts []int
		for _, f := range strings.Split(*appendersFlag, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				fail("-appenders: %q is not a positive count", f)
			}
			counts = append(counts, n)
		}
		if *runs < 1 || *batchFlag < 1 {
			fail("-runs and -batch must be at least 1")
		}
		var prewrites []int64
		for _, f := range strings.Split(*prewriteFlag, ",") {
			switch f = strings.TrimSpace(f); f {
			case "default":
				prewrites = append(prewrites, 0)
			case "off":
				prewrites = append(prewrites, -1)
			default:
				n, err := humanize.ParseBytes(f)
				if err != nil || n == 0 {
					fail("-prewrite: %q is not default, off or a size", f)
				}
				prewrites = append(prewrites, int64(n))
			}
		}
		var recycles []int
		for _, f := range strings.Split(*recycleFlag, ",") {
			switch f = strings.TrimSpace(f); f {
			case "default":
				recycles = append(recycles, 0)
			case "on":
				recycles = append(recycles, 1)
			case "off":
				recycles = append(recycles, -1)
			default:
				fail("-recycle: %q is not default, on or off", f)
			}
		}
		var seg, ret, warm uint64
		if *warmupFlag != "" {
			if warm, err = humanize.ParseBytes(*warmupFlag); err != nil {
				fail("-warmup: %v", err)
			}
		}
		if *segmentFlag != "" {
			if seg, err = humanize.ParseBytes(*segmentFlag); err != nil {
				fail("-segment: %v", err)
			}
		}
		if *retentionFlag != "" {
			if ret, err = humanize.ParseBytes(*retentionFlag); err != nil {
				fail("-retention: %v", err)
			}
		}
		var variants []variant
		for _, p := range prewrites {
			for _, r := range recycles {
				variants = append(variants, variant{prewrite: p, recycle: r, segment: int64(seg), retention: int64(ret), drop: *dropRecycled, warmup: int64(warm)})
			}
		}
		alwaysRounds(*dir, int64(size), counts, variants, *runs, *batchFlag, *floor)
		return
	}

	fmt.Printf("commit log vs dd conv=fdatasync, %s per run, 1 KiB records, in %s\n\n", humanize.IBytes(size), *dir)
	ddMBs := runDD(filepath.Join(*dir, "dd.bin"), size)
	fmt.Printf("%-44s %10s %12s %10s\n", "run", "MB/s", "records/s", "vs dd")
	fmt.Printf("%-44s %10.0f %12s %10s\n", "dd bs=1M conv=fdatasync", ddMBs, "-", "1.00x")
	row := func(name string, bytes int64, d time.Duration) {
		mbs := float64(bytes) / d.Seconds() / 1e6
		fmt.Printf("%-44s %10.0f %12.0f %9.2fx\n", name, mbs, float64(bytes/recordSize)/d.Seconds(), mbs/ddMBs)
	}
	for _, n := range []int{16, 64, 256} {
		d, written := appendRun(filepath.Join(*dir, fmt.Sprintf("interval-%d", n)), int64(size), n, 1, wlog.SyncInterval)
		row(fmt.Sprintf("append, fsync every 10ms, %d records/batch", n), written, d)
	}
	for _, a := range []int{1, 8, 64} {
		d, written := appendRun(filepath.Join(*dir, fmt.Sprintf("always-%d", a)), int64(size)/4, 16, a, wlog.SyncAlways)
		row(fmt.Sprintf("append, fsync always, 16/batch, %d appender(s)", a), written, d)
	}
	reopenSize := size
	if *reopenFlag != "" {
		if reopenSize, err = humanize.ParseBytes(*reopenFlag); err != nil {
			fail("-reopen-size: %v", err)
		}
	}
	logDir := filepath.Join(*dir, "interval-256")
	_, written := appendRun(logDir, int64(reopenSize), 256, 1, wlog.SyncInterval)
	start := time.Now()
	l, err := wlog.Open(logDir, wlog.Options{})
	if err != nil {
		fail("reopen: %v", err)
	}
	openTime := time.Since(start)
	start = time.Now()
	it := l.NewIterator(0)
	var n int64
	for it.Next() {
		n++
	}
	if it.Err() != nil || n*recordSize != written {
		fail("read back %d records: %v", n, it.Err())
	}
	row("read back, decoded records", written, time.Since(start))
	l.Close()
	segs, _ := filepath.Glob(filepath.Join(logDir, "*.log"))
	fmt.Printf("\nreopen of the %s log (%d segments, the active one scanned): %s\n", humanize.IBytes(uint64(written)), len(segs), openTime.Round(time.Microsecond))
}

// alwaysRounds runs rounds of dd and fsync-always appends, each row
// against the dd of its round, and then the median ratio per appender count.
// Each row shows the writes to the segment per sync (appends are combined
// into fewer writes), the mean fdatasync (sync ms) and the mean time per sync
// with no fdatasync running (gap ms): the appenders' writes, wake-ups and
// the gathering of a round, which group commit does between its syncs.
func alwaysRounds(dir string, size int64, counts []int, variants []variant, runs, batch int, floor bool) {
	fmt.Printf("fsync always (group commit) vs dd conv=fdatasync, %s per run, %d x 1 KiB records/batch, in %s\n",
		humanize.IBytes(uint64(size)), batch, dir)
	if v := variants[0]; v.segment > 0 || v.retention > 0 {
		fmt.Printf("segments of %s, retention %s, recycled files' pages dropped: %v\n", humanize.IBytes(uint64(v.segment)), humanize.IBytes(uint64(v.retention)), v.drop)
	}
	if w := variants[0].warmup; w > 0 {
		fmt.Printf("each log run first appends %s untimed (its rolls and recycled files are not counted)\n", humanize.IBytes(uint64(w)))
	}
	fmt.Println()
	fmt.Printf("%-6s %-60s %10s %12s %10s %8s %13s %12s %9s %9s %6s %8s\n", "round", "run", "MB/s", "records/s", "vs dd", "syncs", "appends/sync", "writes/sync", "sync ms", "gap ms", "rolls", "recycled")
	type key struct {
		appenders int
		v         int
	}
	ratios := map[key][]float64{}
	floorModes := []string{"keep", "written"}
	if !floor {
		floorModes = nil
	}
	floorKey := func(mode int) int { return -1 - mode } // floors' keys: below the variants'
	for r := range runs {
		dd := runDD(filepath.Join(dir, "dd.bin"), uint64(size))
		fmt.Printf("%-6d %-44s %10.0f %12s %10s\n", r+1, "dd bs=1M conv=fdatasync", dd, "-", "1.00x")
		for _, a := range counts {
			for mi, m := range floorModes {
				carry := int64(a * batchBytes * batch / 16)
				lat, d := syncRun(filepath.Join(dir, "floor"), m, carry, size, false)
				var took time.Duration
				for _, l := range lat {
					took += l
				}
				n := max(int64(len(lat)), 1)
				mbs := float64(int64(len(lat))*carry) / d.Seconds() / 1e6
				ratios[key{a, floorKey(mi)}] = append(ratios[key{a, floorKey(mi)}], mbs/dd)
				fmt.Printf("%-6d %-60s %10.0f %12.0f %9.2fx %8d %13d %12d %9.2f %9.2f\n", r+1, floorName(a, m), mbs, mbs*1e6/recordSize,
					mbs/dd, len(lat), a, a, float64(took)/float64(n)/1e6, float64(d-took)/float64(n)/1e6)
			}
			for vi, v := range variants {
				if r%2 == 1 {
					// Alternate the order of the variants from round to round.
					v = variants[len(variants)-1-vi]
					vi = len(variants) - 1 - vi
				}
				var st syncStats
				st.variant = v
				d, written := appendRunStats(filepath.Join(dir, fmt.Sprintf("always-%d", a)), size, batch, a, wlog.SyncAlways, &st)
				mbs := float64(written) / d.Seconds() / 1e6
				ratios[key{a, vi}] = append(ratios[key{a, vi}], mbs/dd)
				syncs := max(st.syncs.Load(), 1)
				fmt.Printf("%-6d %-60s %10.0f %12.0f %9.2fx %8d %13.1f %12.1f %9.2f %9.2f %6d %8d\n", r+1, fmt.Sprintf("fsync always, %d appender(s), %s", a, v.name()), mbs,
					float64(written/recordSize)/d.Seconds(), mbs/dd, st.syncs.Load(), float64(st.appends)/float64(syncs), float64(st.writes)/float64(syncs),
					float64(st.took.Load())/float64(syncs)/1e6, float64(d.Nanoseconds()-st.took.Load())/float64(syncs)/1e6, st.rolls, st.recycled)
				os.RemoveAll(filepath.Join(dir, fmt.Sprintf("always-%d", a)))
			}
		}
	}
	fmt.Println()
	summary := func(name string, rs []float64) {
		slices.Sort(rs)
		fmt.Printf("%s: median %.2fx dd (min %.2fx, max %.2fx)\n", name, rs[len(rs)/2], rs[0], rs[len(rs)-1])
	}
	for _, a := range counts {
		for mi, m := range floorModes {
			summary(floorName(a, m), ratios[key{a, floorKey(mi)}])
		}
		for vi, v := range variants {
			summary(fmt.Sprintf("%d appender(s), %s", a, v.name()), ratios[key{a, vi}])
		}
	}
}

// floorName names a -floor row.
func floorName(appenders int, mode string) string {
	return fmt.Sprintf("floor of %d appender(s): write+fdatasync, %s blocks", appenders, mode)
}

// variant is one row of -always: the log's options that differ.
type variant struct {
	prewrite           int64 // log.Options.PrewriteBytes
	recycle            int   // log.Options.RecycleSegments
	segment, retention int64 // log.Options.SegmentBytes, RetentionBytes
	drop               bool  // drop recycled files' pages before reuse
	warmup             int64 // bytes appended, untimed, before the run
}

func (v variant) name() string {
	n := prewriteName(v.prewrite)
	switch {
	case v.recycle > 0:
		n += ", recycle on"
	case v.recycle < 0:
		n += ", recycle off"
	}
	return n
}

// prewriteName names a -prewrite value.
func prewriteName(p int64) string {
	switch {
	case p == 0:
		return "prewrite default"
	case p < 0:
		return "prewrite off"
	}
	return "prewrite " + humanize.IBytes(uint64(p))
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "logbench: "+format+"\n", args...)
	os.Exit(1)
}

// runDD writes size bytes with dd and fdatasync, returning MB/s.
func runDD(path string, size uint64) float64 {
	start := time.Now()
	cmd := exec.Command("dd", "if=/dev/zero", "of="+path, "bs=1M", fmt.Sprintf("count=%d", size>>20), "conv=fdatasync")
	if out, err := cmd.CombinedOutput(); err != nil {
		fail("dd: %v: %s", err, out)
	}
	d := time.Since(start)
	os.Remove(path)
	return float64(size>>20<<20) / d.Seconds() / 1e6
}

// syncStats are what a run's fdatasyncs did: how many, their total time,
// and the appends they acknowledged.
type syncStats struct {
	syncs, took     atomic.Int64
	appends, writes int64
	rolls, recycled int64
	variant         variant // the log's options of the run
}

// appendRun appends size bytes of pre-built batches of n 1 KiB records
// from the given number of goroutines, then syncs, and returns the time.
func appendRun(dir string, size int64, n, appenders int, policy wlog.SyncPolicy) (time.Duration, int64) {
	return appendRunStats(dir, size, n, appenders, policy, nil)
}

// appendRunStats is appendRun that also counts the fdatasyncs in st, if
// not nil.
func appendRunStats(dir string, size int64, n, appenders int, policy wlog.SyncPolicy, st *syncStats) (time.Duration, int64) {
	os.RemoveAll(dir)
	opts := wlog.Options{Sync: policy, SyncInterval: 10 * time.Millisecond}
	if st != nil {
		v := st.variant
		opts.PrewriteBytes, opts.RecycleSegments, opts.SegmentBytes, opts.RetentionBytes = v.prewrite, v.recycle, v.segment, v.retention
		opts.OnFsync = func(took time.Duration) {
			st.syncs.Add(1)
			st.took.Add(int64(took))
		}
	}
	l, err := wlog.Open(dir, opts)
	if err != nil {
		fail("%v", err)
	}
	batches := make([][]byte, appenders)
	value := make([]byte, recordSize)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	for a := range batches {
		var b codecs.Builder
		for i := range n {
			b.Append(time.Now().UnixMilli()+int64(i), nil, value, nil)
		}
		out, _ := b.Build()
		batches[a] = append([]byte(nil), out...)
	}

	total := size / int64(n*recordSize)
	start := time.Now()
	stopRetain := func() {}
	if opts.RetentionBytes > 0 {
		stop, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			retain(l, dir, st.variant.drop, stop)
		}()
		stopRetain = func() { close(stop); <-done }
	}
	run := func(count int64) {
		work := make(chan struct{}, 1024)
		var wg sync.WaitGroup
		for a := range appenders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range work {
					if _, err := l.Append(batches[a]); err != nil {
						fail("append: %v", err)
					}
				}
			}()
		}
		for range count {
			work <- struct{}{}
		}
		close(work)
		wg.Wait()
	}
	var before wlog.Stats
	if st != nil && st.variant.warmup > 0 {
		// Untimed: the log reaches its steady state (with retention,
		// segments recycled) before the run that counts.
		run(st.variant.warmup / int64(n*recordSize))
		before = l.Stats()
		st.syncs.Store(0)
		st.took.Store(0)
		start = time.Now()
	}
	run(total)
	stopRetain()
	if err := l.Sync(); err != nil {
		fail("sync: %v", err)
	}
	d := time.Since(start)
	if st != nil {
		ls := l.Stats()
		st.appends, st.writes, st.rolls, st.recycled = ls.Appends-before.Appends, ls.Writes-before.Writes, ls.Rolls-before.Rolls, ls.SegmentsRecycled-before.SegmentsRecycled
	}
	if err := l.Close(); err != nil {
		fail("close: %v", err)
	}
	return d, total * int64(n*recordSize)
}

// dropPages drops the cached pages of the file at path (those not dirty).
func dropPages(path string) {
	f, err := os.Open(path)
	if err != nil {
		return // taken for a segment since
	}
	defer f.Close()
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// retain enforces the log's retention every 10ms until stop is closed, as a
// hub's retention scheduler would, more often; with drop, it then drops
// the pages of the segment files kept for reuse from the page cache.
func retain(l *wlog.Log, dir string, drop bool, stop chan struct{}) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if _, err := l.EnforceRetention(); err != nil {
			fail("retention: %v", err)
		}
		if !drop {
			continue
		}
		names, _ := filepath.Glob(filepath.Join(dir, "*.recycle"))
		for _, name := range names {
			// Every tick: a file deleted before its seal was done may
			// still have had dirty pages at the last one.
			dropPages(name)
		}
	}
}
