package main

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/weirhub/weir/codecs"
	wlog "github.com/weirhub/weir/log"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure Weir on this machine",
	}
	var o logBenchOptions
	var size, recordSize, segment string
	logCmd := &cobra.Command{
		Use:   "log",
		Short: "Write records through a commit log, reopen it, read them back and check them, and print throughput",
		Long: `Writes --size bytes of log-like records (seeded, compressible) in batches through one
commit log with the chosen fsync policy, showing progress; closes and reopens the log
(recovery); reads every record back through the in-process iterator, checking each
one's content; and prints the throughput of each phase.`,
		Example: `  weir bench log --dir ./data/bench-log --size 512MiB
  weir bench log --fsync always --appenders 8 --batch 16`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if o.size, err = parseBytes("--size", size); err != nil {
				return err
			}
			rs, err := parseBytes("--record-size", recordSize)
			if err != nil {
				return err
			}
			o.recordSize = int(rs)
			if o.segment, err = parseBytes("--segment", segment); err != nil {
				return err
			}
			return runLogBench(cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f := logCmd.Flags()
	f.StringVar(&o.dir, "dir", "./data/bench-log", "log directory to write (emptied first)")
	f.StringVar(&size, "size", "512MiB", "bytes of records to write")
	f.StringVar(&recordSize, "record-size", "1KiB", "size of each record value")
	f.StringVar(&segment, "segment", "256MiB", "segment size")
	f.IntVar(&o.batch, "batch", 64, "records per batch")
	f.IntVar(&o.appenders, "appenders", 1, "concurrent appending goroutines")
	f.StringVar(&o.fsync, "fsync", "interval", "fsync policy: always, interval (10ms) or never")
	f.StringVar(&o.compression, "compression", "none", "batch compression: none, gzip, snappy, lz4, zstd")
	f.BoolVar(&o.keep, "keep", false, "keep the log directory afterwards")
	cmd.AddCommand(logCmd)
	return cmd
}

func parseBytes(flag, s string) (int64, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, fmt.Errorf("%s %q: %v (write sizes like 512MiB or 1KiB)", flag, s, err)
	}
	return int64(n), nil
}

type logBenchOptions struct {
	dir         string
	size        int64
	recordSize  int
	segment     int64
	batch       int
	appenders   int
	fsync       string
	compression string
	keep        bool
}

// benchLines are log-like lines that benchmark records are cut from:
// seeded, varied and compressible like real logs.
func benchLines(n, size int) [][]byte {
	rng := rand.New(rand.NewPCG(7, 42))
	words := [...]string{"GET ", "POST ", "/api/v1/orders ", "/healthz ", "status=200 ", "status=503 ",
		"latency_ms=", "user=", "region=eu-west-1 ", "trace=", "level=info ", "level=debug "}
	lines := make([][]byte, n)
	for i := range lines {
		v := make([]byte, 0, size)
		for len(v) < size {
			v = append(v, words[rng.IntN(len(words))]...)
			v = fmt.Appendf(v, "%d ", rng.IntN(100000))
		}
		lines[i] = v[:size]
	}
	return lines
}

// stampValue makes v record i: a line from lines, its first 12 bytes
// replaced by the index and a checksum of the rest.
func stampValue(v []byte, lines [][]byte, i uint64) {
	copy(v, lines[i%uint64(len(lines))])
	binary.BigEndian.PutUint64(v, i)
	binary.BigEndian.PutUint32(v[8:], crc32.ChecksumIEEE(v[12:]))
}

func runLogBench(w, progressOut io.Writer, o logBenchOptions) error {
	policy, err := wlog.ParseSyncPolicy(o.fsync)
	if err != nil {
		return err
	}
	comp, err := codecs.ParseCompression(o.compression)
	if err != nil {
		return err
	}
	if o.recordSize < 12 || o.batch < 1 || o.appenders < 1 {
		return fmt.Errorf("--record-size must be at least 12 bytes, --batch and --appenders at least 1")
	}
	if err := os.RemoveAll(o.dir); err != nil {
		return fmt.Errorf("emptying %s: %w", o.dir, err)
	}
	opts := wlog.Options{Sync: policy, SegmentBytes: o.segment}
	l, err := wlog.Open(o.dir, opts)
	if err != nil {
		return err
	}
	batchBytes := int64(o.batch * o.recordSize)
	batches := max(o.size/batchBytes, 1)
	fmt.Fprintf(w, "writing %s: %d batches of %d records of %s, fsync %s, compression %s, %d appender(s), into %s\n",
		humanize.IBytes(uint64(batches*batchBytes)), batches, o.batch, humanize.IBytes(uint64(o.recordSize)), policy, comp, o.appenders, o.dir)

	// Write phase: each appender builds its batches from its own seeded
	// stream; record i of batch k has index k*batch+i.
	lines := benchLines(4096, o.recordSize)
	var next atomic.Int64
	var written atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, o.appenders)
	p := newProgress(progressOut, "write")
	start := time.Now()
	for a := range o.appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b codecs.Builder
			b.Compression = comp
			v := make([]byte, o.recordSize)
			for {
				k := next.Add(1) - 1
				if k >= batches {
					return
				}
				b.Reset()
				for i := range o.batch {
					stampValue(v, lines, uint64(k)*uint64(o.batch)+uint64(i))
					b.Append(time.Now().UnixMilli(), nil, v, nil)
				}
				batch, err := b.Build()
				if err == nil {
					_, err = l.Append(batch)
				}
				if err != nil {
					errs <- err
					return
				}
				done := written.Add(batchBytes)
				if a == 0 {
					p.update(done, batches*batchBytes)
				}
			}
		}()
	}
	wg.Wait()
	if err := l.Sync(); err != nil {
		return err
	}
	writeTime := time.Since(start)
	p.finish(written.Load(), batches*batchBytes)
	select {
	case err := <-errs:
		l.Close()
		return fmt.Errorf("append: %w", err)
	default:
	}
	stats := l.Stats()
	diskBytes := l.Size()
	if err := l.Close(); err != nil {
		return err
	}

	// Recovery: reopen, which scans the active segment.
	start = time.Now()
	l, err = wlog.Open(o.dir, opts)
	if err != nil {
		return fmt.Errorf("reopening: %w", err)
	}
	openTime := time.Since(start)
	defer l.Close()

	// Read phase: every record back, in order, content checked.
	records := batches * int64(o.batch)
	p = newProgress(progressOut, "read")
	start = time.Now()
	it := l.NewIterator(0)
	seen := make([]bool, records)
	var n int64
	for it.Next() {
		r := it.Record()
		v := r.Value
		if len(v) != o.recordSize || binary.BigEndian.Uint32(v[8:]) != crc32.ChecksumIEEE(v[12:]) {
			return fmt.Errorf("record at offset %d fails its content check", r.Offset)
		}
		idx := binary.BigEndian.Uint64(v)
		if idx >= uint64(records) || seen[idx] {
			return fmt.Errorf("record at offset %d has index %d twice or out of range", r.Offset, idx)
		}
		seen[idx] = true
		n++
		if n%65536 == 0 {
			p.update(n*int64(o.recordSize), records*int64(o.recordSize))
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("reading back: %w", err)
	}
	readTime := time.Since(start)
	p.finish(n*int64(o.recordSize), records*int64(o.recordSize))
	if n != records {
		return fmt.Errorf("read %d records back, wrote %d", n, records)
	}
	payload := float64(records * int64(o.recordSize))
	fmt.Fprintf(w, "\n%-10s %12s %14s %12s\n", "phase", "time", "records/s", "MiB/s")
	row := func(name string, d time.Duration) {
		fmt.Fprintf(w, "%-10s %12s %14.0f %12.1f\n", name, d.Round(time.Millisecond), float64(records)/d.Seconds(), payload/d.Seconds()/(1<<20))
	}
	row("write", writeTime)
	row("read", readTime)
	fmt.Fprintf(w, "%-10s %12s   (reopen: indexes of closed segments checked, active segment scanned)\n", "recovery", openTime.Round(time.Microsecond))
	fmt.Fprintf(w, "\n%d records, %s on disk in %d segments, %d fsyncs, every record read back and checked\n",
		records, humanize.IBytes(uint64(diskBytes)), stats.Rolls+1, stats.Fsyncs)
	if !o.keep {
		l.Close()
		os.RemoveAll(o.dir)
	}
	return nil
}
