// Command partbench measures what partitions cost in `weir serve`: for each
// partition count it creates the count as topics of 100 partitions (fewer
// for smaller counts), then reports the create time, the server's resident
// memory and open files once idle, the disk used, the time to produce one
// record to every partition round-robin, and the time for a restart to
// reopen them all. Then it compares produce throughput to a topic of one
// partition and to a topic of 1,000.
//
//	make build && cd benchmarks && go run ./partbench -weir ../bin/weir -counts 1000,10000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "partbench: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	weir := flag.String("weir", "../bin/weir", "the weir binary to measure (make build)")
	countsFlag := flag.String("counts", "1000,10000", "partition counts to measure, comma separated")
	workdir := flag.String("workdir", os.TempDir(), "scratch directory on the filesystem to measure (a subdirectory is removed at the end)")
	sizeFlag := flag.String("size", "256MiB", "payload bytes of each throughput run")
	recordSize := flag.Int("record-size", 1024, "bytes per record in the throughput runs")
	flag.Parse()
	size, err := humanize.ParseBytes(*sizeFlag)
	if err != nil {
		return fmt.Errorf("-size: %w", err)
	}
	var counts []int
	for _, s := range strings.Split(*countsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-counts: %q is not a partition count", s)
		}
		counts = append(counts, n)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := os.MkdirAll(*workdir, 0o755); err != nil {
		return err
	}
	base, err := os.MkdirTemp(*workdir, "partbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(base)

	fmt.Printf("| partitions | create | idle RSS | idle open files | disk | produce 1 record to each | RSS after | open files after | restart |\n")
	fmt.Printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, n := range counts {
		row, err := measureCount(ctx, *weir, filepath.Join(base, fmt.Sprint(n)), n)
		if err != nil {
			return fmt.Errorf("%d partitions: %w", n, err)
		}
		fmt.Println(row)
	}

	fmt.Printf("\nproduce %s of %d-byte records, acks=all, linger 5ms, round-robin over the topic's partitions:\n\n", humanize.IBytes(size), *recordSize)
	fmt.Printf("| topic partitions | records/s | MB/s |\n|---:|---:|---:|\n")
	srv, err := startServer(ctx, *weir, filepath.Join(base, "throughput"))
	if err != nil {
		return err
	}
	defer srv.stop()
	for _, parts := range []int{1, 1000} {
		topic := fmt.Sprintf("p%d", parts)
		if err := createTopics(ctx, srv.addr, []string{topic}, parts); err != nil {
			return err
		}
		records := int64(size) / int64(*recordSize)
		d, err := produce(ctx, srv.addr, topic, records, *recordSize)
		if err != nil {
			return fmt.Errorf("produce to %d partitions: %w", parts, err)
		}
		fmt.Printf("| %d | %.0f | %.0f |\n", parts, float64(records)/d.Seconds(), float64(records)*float64(*recordSize)/d.Seconds()/1e6)
	}
	return nil
}

// measureCount runs one row of the partitions table.
func measureCount(ctx context.Context, weir, dir string, n int) (string, error) {
	srv, err := startServer(ctx, weir, dir)
	if err != nil {
		return "", err
	}
	defer srv.stop()
	per := min(n, 100)
	var topics []string
	for i := 0; i*per < n; i++ {
		topics = append(topics, fmt.Sprintf("t%05d", i))
	}
	start := time.Now()
	for i := 0; i < len(topics); i += 10 {
		if err := createTopics(ctx, srv.addr, topics[i:min(i+10, len(topics))], per); err != nil {
			return "", err
		}
	}
	create := time.Since(start)
	time.Sleep(3 * time.Second)
	rss, files := srv.usage()
	disk := du(dir)

	start = time.Now()
	if err := produceEach(ctx, srv.addr, topics, per); err != nil {
		return "", err
	}
	produced := time.Since(start)
	time.Sleep(time.Second)
	rss2, files2 := srv.usage()

	srv.stop()
	start = time.Now()
	// The restarted server is stopped too: the deferred stop holds the
	// first one.
	again, err := startServer(ctx, weir, dir)
	if err != nil {
		return "", err
	}
	restart := time.Since(start)
	again.stop()
	return fmt.Sprintf("| %d | %.1f s | %s | %d | %s | %.1f s | %s | %d | %.1f s |", len(topics)*per, create.Seconds(),
		humanize.IBytes(rss), files, humanize.IBytes(uint64(disk)), produced.Seconds(), humanize.IBytes(rss2), files2, restart.Seconds()), nil
}

// server is a `weir serve` started by the benchmark.
type server struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
	once sync.Once
}

func startServer(ctx context.Context, weir, dir string) (*server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(filepath.Join(filepath.Dir(dir), filepath.Base(dir)+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(weir, "serve", "--data-dir", dir, "--listen", addr, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", weir, err)
	}
	s := &server{cmd: cmd, addr: addr, done: make(chan struct{})}
	go func() { cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("weir serve exited; see %s", logf.Name())
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, errors.New("weir serve did not listen within 2 minutes")
		}
	}
}

func (s *server) stop() {
	s.once.Do(func() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(time.Minute):
			s.cmd.Process.Kill()
			<-s.done
		}
	})
}

// usage reads the server's resident memory and open files from /proc.
func (s *server) usage() (rss uint64, files int) {
	pid := s.cmd.Process.Pid
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				rss = kb << 10
			}
		}
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return rss, len(fds)
}

// du is the disk the files under dir take (st_blocks).
func du(dir string) int64 {
	var total int64
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		var st syscall.Stat_t
		if syscall.Stat(path, &st) == nil {
			total += st.Blocks * 512
		}
		return nil
	})
	return total
}

func createTopics(ctx context.Context, addr string, topics []string, partitions int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return err
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).CreateTopics(ctx, int32(partitions), 1, nil, topics...)
	if err != nil {
		return fmt.Errorf("creating topics: %w", err)
	}
	for _, r := range resp.Sorted() {
		if r.Err != nil {
			return fmt.Errorf("creating %s: %w: %s", r.Topic, r.Err, r.ErrMessage)
		}
	}
	return nil
}

// produceEach produces one record to every partition of every topic.
func produceEach(ctx context.Context, addr string, topics []string, partitions int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(1<<20))
	if err != nil {
		return err
	}
	defer cl.Close()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for _, t := range topics {
		for p := range partitions {
			wg.Add(1)
			cl.Produce(ctx, &kgo.Record{Topic: t, Partition: int32(p), Value: []byte("x")}, func(_ *kgo.Record, err error) {
				if err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
				}
				wg.Done()
			})
		}
	}
	wg.Wait()
	return firstErr
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// produce sends records of size bytes round-robin over the topic's
// partitions and returns how long until all were acknowledged.
func produce(ctx context.Context, addr, topic string, records int64, size int) (time.Duration, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond), kgo.ProducerBatchMaxBytes(1<<20), kgo.DisableIdempotentWrite(),
		kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	value := make([]byte, size)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	start := time.Now()
	for range records {
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Topic: topic, Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				firstErr = cmpErr(firstErr, err)
				mu.Unlock()
			}
			wg.Done()
		})
	}
	wg.Wait()
	return time.Since(start), firstErr
}
