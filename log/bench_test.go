package log

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/weirhub/weir/codecs"
)

const benchRecordSize = 1024

// benchBatch builds a batch of n records of 1 KiB.
func benchBatch(b testing.TB, n int) []byte {
	value := make([]byte, benchRecordSize)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	var bl codecs.Builder
	for i := range n {
		bl.Append(int64(1_700_000_000_000+i), nil, value, nil)
	}
	out, err := bl.Build()
	if err != nil {
		b.Fatal(err)
	}
	return append([]byte(nil), out...)
}

// BenchmarkAppend appends batches of 1 KiB records with fsync every 10ms.
func BenchmarkAppend(b *testing.B) {
	for _, n := range []int{16, 64, 256} {
		b.Run(fmt.Sprintf("interval/records=%d", n), func(b *testing.B) {
			l := openLog(b, b.TempDir(), Options{Sync: SyncInterval, SyncInterval: 10 * time.Millisecond})
			defer l.Close()
			batch := benchBatch(b, n)
			b.SetBytes(int64(n * benchRecordSize))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := l.Append(batch); err != nil {
					b.Fatal(err)
				}
			}
			if err := l.Sync(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkAppendDurable appends batches of 16 records of 1 KiB with fsync
// always from 1, 8 and 64 goroutines sharing group commits.
func BenchmarkAppendDurable(b *testing.B) {
	const n = 16
	for _, appenders := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("appenders=%d", appenders), func(b *testing.B) {
			l := openLog(b, b.TempDir(), Options{Sync: SyncAlways})
			defer l.Close()
			batches := make([][]byte, appenders)
			for i := range batches {
				batches[i] = benchBatch(b, n)
			}
			b.SetBytes(int64(n * benchRecordSize))
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			work := make(chan struct{}, appenders)
			for a := range appenders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range work {
						if _, err := l.Append(batches[a]); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			for range b.N {
				work <- struct{}{}
			}
			close(work)
			wg.Wait()
			b.StopTimer()
			st := l.Stats()
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(st.Appends)/float64(max(st.Fsyncs, 1)), "appends/fsync")
			b.ReportMetric(float64(st.Writes)/float64(max(st.Fsyncs, 1)), "writes/fsync")
		})
	}
}

// fillLog writes size bytes of 256-record batches of 1 KiB records.
func fillLog(b *testing.B, dir string, size int64, opts Options) int64 {
	l := openLog(b, dir, opts)
	batch := benchBatch(b, 256)
	var written int64
	for written < size {
		if _, err := l.Append(batch); err != nil {
			b.Fatal(err)
		}
		written += int64(len(batch))
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	return written
}

// BenchmarkRead reads a 256 MiB log from start to end: as raw batches
// (ReadBatches, what an in-process fetch copies) and as decoded records
// (Iterator).
func BenchmarkRead(b *testing.B) {
	dir := b.TempDir()
	size := fillLog(b, dir, 256<<20, Options{Sync: SyncNever, SegmentBytes: 64 << 20})
	l := openLog(b, dir, Options{Sync: SyncNever, SegmentBytes: 64 << 20})
	defer l.Close()
	records := l.HighWatermark()
	b.Run("batches", func(b *testing.B) {
		buf := make([]byte, 0, 2<<20)
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			for off := int64(0); off < records; {
				var err error
				buf, err = l.ReadBatches(buf[:0], off, 1<<20)
				if err != nil {
					b.Fatal(err)
				}
				for p := buf; len(p) > 0; p = p[codecs.BatchSize(p):] {
					h, _ := codecs.ParseHeader(p)
					off = h.NextOffset()
				}
			}
		}
		b.ReportMetric(float64(b.N)*float64(records)/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("records", func(b *testing.B) {
		it := l.NewIterator(0)
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			it.SeekTo(0)
			var n int64
			for it.Next() {
				n++
			}
			if it.Err() != nil || n != records {
				b.Fatalf("read %d of %d records: %v", n, records, it.Err())
			}
		}
		b.ReportMetric(float64(b.N)*float64(records)/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("sections", func(b *testing.B) {
		var secs []Section
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			for off := int64(0); off < records; {
				var err error
				secs, err = l.Read(secs[:0], off, 1<<20)
				if err != nil || len(secs) == 0 {
					b.Fatal(err)
				}
				last := secs[len(secs)-1]
				var hdr [codecs.HeaderSize]byte
				// the offset after the last batch: scan its headers
				for p := last.Pos; p < last.Pos+last.Len; {
					last.File.ReadAt(hdr[:], p)
					h, _ := codecs.ParseHeader(hdr[:])
					off = h.NextOffset()
					p += int64(h.Size())
				}
				ReleaseSections(secs)
			}
		}
	})
}

// BenchmarkRecovery measures Open of a log of WEIR_BENCH_RECOVERY_GIB GiB
// (default 2): "closed" has all of it in closed segments and a small active
// one, which Open trusts through their indexes; "active" has a full 1 GiB
// active segment, which Open scans and CRC-checks.
func BenchmarkRecovery(b *testing.B) {
	gib := int64(2)
	if s := os.Getenv("WEIR_BENCH_RECOVERY_GIB"); s != "" {
		gib, _ = strconv.ParseInt(s, 10, 64)
	}
	opts := Options{Sync: SyncNever, SegmentBytes: 1 << 30}
	b.Run(fmt.Sprintf("closed/GiB=%d", gib), func(b *testing.B) {
		dir := b.TempDir()
		fillLog(b, dir, gib<<30, opts)
		l := openLog(b, dir, opts)
		l.Roll()
		l.Append(benchBatch(b, 16))
		l.Close()
		b.ReportAllocs()
		for b.Loop() {
			l := openLog(b, dir, opts)
			l.Close()
		}
	})
	b.Run("active/GiB=1", func(b *testing.B) {
		dir := b.TempDir()
		size := fillLog(b, dir, 1<<30-(1<<20), opts)
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			l := openLog(b, dir, opts)
			l.Close()
		}
	})
}

// BenchmarkAppendStalls appends batches of 64 records of 1 KiB with fsync
// every 10ms into 16 MiB segments and reports the append latency tail (and
// the slowest append that rolled a segment),
// for three block reservation policies: none, bounded steps ahead of the
// write position (the default), and the whole segment at creation.
//
//	go test -run '^$' -bench AppendStalls -benchtime 20000x ./log
func BenchmarkAppendStalls(b *testing.B) {
	policies := []struct {
		name     string
		min, max int64
	}{{"none", 0, 0}, {"step", reserveMin, reserveMax}, {"whole", 1 << 30, 1 << 30}}
	for _, p := range policies {
		b.Run("reserve="+p.name, func(b *testing.B) {
			defer func(lo, hi int64) { reserveMin, reserveMax = lo, hi }(reserveMin, reserveMax)
			reserveMin, reserveMax = p.min, p.max
			dir := b.TempDir()
			l := openLog(b, dir, Options{Sync: SyncInterval, SegmentBytes: 16 << 20})
			defer l.Close()
			batch := benchBatch(b, 64)
			lat := make([]time.Duration, 0, b.N)
			var rollLat []time.Duration // appends that rolled a segment
			b.SetBytes(int64(64 * benchRecordSize))
			b.ReportAllocs()
			for b.Loop() {
				rolls := l.stats.rolls.Load()
				t0 := time.Now()
				if _, err := l.Append(batch); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
				if l.stats.rolls.Load() != rolls {
					rollLat = append(rollLat, lat[len(lat)-1])
				}
			}
			slices.Sort(lat)
			over := len(lat) - sort.Search(len(lat), func(i int) bool { return lat[i] > 5*time.Millisecond })
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(float64(lat[len(lat)*999/1000].Microseconds()), "p99.9-µs")
			b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
			b.ReportMetric(float64(over), "over-5ms")
			if len(rollLat) > 0 {
				b.ReportMetric(float64(slices.Max(rollLat).Microseconds()), "roll-max-µs")
			}
		})
	}
}
