// Command metricsbench measures what metrics cost the hub: it starts two
// `weir serve` processes on this machine, one without --http-listen and
// one with it whose /metrics it scrapes every second, and produces the
// same records to each in alternating rounds (off then on, on then off,
// ...; dirty pages written back before each), so that both see the same
// machine state. It reports each round, the median
// produce throughput of each side and their ratio; it exits 1 when the
// ratio is below -min-ratio.
//
//	go build -o bin/weir ./cmd/weir
//	cd benchmarks && go run ./metricsbench -weir ../bin/weir
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type config struct {
	weir       string
	size       uint64
	recordSize int
	partitions int
	rounds     int
	scrape     time.Duration
	minRatio   float64
}

func main() {
	var cfg config
	size := flag.String("size", "256MiB", "payload bytes produced in each round")
	flag.StringVar(&cfg.weir, "weir", "../bin/weir", "the weir binary")
	flag.IntVar(&cfg.recordSize, "record-size", 1024, "bytes per record value")
	flag.IntVar(&cfg.partitions, "partitions", 4, "partitions of the dataset")
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds per side")
	flag.DurationVar(&cfg.scrape, "scrape-every", time.Second, "how often /metrics is scraped on the metrics side")
	flag.Float64Var(&cfg.minRatio, "min-ratio", 0.97, "fail when metrics-on throughput is below this fraction of metrics-off")
	flag.Parse()
	n, err := humanize.ParseBytes(*size)
	if err != nil {
		fatal(err)
	}
	cfg.size = n
	if err := run(cfg); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "metricsbench:", err)
	os.Exit(1)
}

// server is one running weir serve.
type server struct {
	cmd         *exec.Cmd
	kafka, http string
}

var (
	kafkaRE = regexp.MustCompile(`"weir: hub serving" listen=(\S+)`)
	httpRE  = regexp.MustCompile(`"http: serving" listen=(\S+)`)
)

func startServe(bin, dir string, metrics bool) (*server, error) {
	args := []string{"serve", "--data-dir", dir, "--listen", "127.0.0.1:0", "--log-level", "info",
		"--partitions", "1", "--fsync", "interval"}
	if metrics {
		args = append(args, "--http-listen", "127.0.0.1:0")
	}
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd}
	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		closed := false
		for sc.Scan() {
			line := sc.Text()
			if m := httpRE.FindStringSubmatch(line); m != nil {
				s.http = m[1]
			}
			if m := kafkaRE.FindStringSubmatch(line); m != nil && !closed {
				s.kafka = m[1]
				closed = true
				close(found)
			}
		}
	}()
	select {
	case <-found:
		return s, nil
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		return nil, fmt.Errorf("%s serve did not start", bin)
	}
}

func (s *server) stop() {
	s.cmd.Process.Signal(os.Interrupt)
	s.cmd.Wait()
}

// scraper GETs url every interval until stopped, counting scrapes and
// bytes, so the metrics side pays for real scrapes.
func scraper(ctx context.Context, url string, every time.Duration, scrapes, bytes *atomic.Int64) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		resp, err := http.Get(url)
		if err != nil {
			continue
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		scrapes.Add(1)
		bytes.Add(n)
	}
}

// produce writes size bytes of records with acks=all and returns records/s.
func produce(ctx context.Context, cfg config, seed, topic string) (float64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seed), kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation(),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(5*time.Millisecond), kgo.ProducerBatchMaxBytes(1<<20),
		kgo.MaxBufferedBytes(64<<20), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	value := []byte(strings.Repeat("x", cfg.recordSize))
	records := int(cfg.size) / cfg.recordSize
	var failed atomic.Pointer[error]
	start := time.Now()
	for i := range records {
		if i%1024 == 0 && failed.Load() != nil {
			break
		}
		cl.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.CompareAndSwap(nil, &err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return 0, err
	}
	if p := failed.Load(); p != nil {
		return 0, *p
	}
	return float64(records) / time.Since(start).Seconds(), nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func run(cfg config) error {
	work, err := os.MkdirTemp("", "metricsbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	off, err := startServe(cfg.weir, filepath.Join(work, "off"), false)
	if err != nil {
		return err
	}
	defer off.stop()
	on, err := startServe(cfg.weir, filepath.Join(work, "on"), true)
	if err != nil {
		return err
	}
	defer on.stop()
	if on.http == "" {
		return fmt.Errorf("the metrics side serves no http")
	}
	ctx := context.Background()
	sctx, stopScrapes := context.WithCancel(ctx)
	var scrapes, scraped atomic.Int64
	go scraper(sctx, "http://"+on.http+"/metrics", cfg.scrape, &scrapes, &scraped)
	defer stopScrapes()

	// Each side creates its dataset with the partitions asked for, then
	// a warm-up round that is not counted.
	for _, s := range []*server{off, on} {
		adm, err := kgo.NewClient(kgo.SeedBrokers(s.kafka))
		if err != nil {
			return err
		}
		if err := createTopic(ctx, adm, "bench", cfg.partitions); err != nil {
			return err
		}
		adm.Close()
		warm := cfg
		warm.size = cfg.size / 8
		if _, err := produce(ctx, warm, s.kafka, "bench"); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	fmt.Printf("metricsbench: %s of %d-byte records per round into %d partitions, acks=all, %d rounds per side, /metrics scraped every %v on one side\n\n",
		humanize.IBytes(cfg.size), cfg.recordSize, cfg.partitions, cfg.rounds, cfg.scrape)
	var rOff, rOn []float64
	type side struct {
		name string
		s    *server
		dst  *[]float64
	}
	for i := range cfg.rounds {
		// Each side goes first in every other round, and the page cache's
		// dirty data is written back before each run, so that neither
		// side pays for the other's writes.
		sides := []side{{"metrics off", off, &rOff}, {"metrics on ", on, &rOn}}
		if i%2 == 1 {
			sides[0], sides[1] = sides[1], sides[0]
		}
		for _, side := range sides {
			syscall.Sync()
			r, err := produce(ctx, cfg, side.s.kafka, "bench")
			if err != nil {
				return fmt.Errorf("round %d %s: %w", i+1, side.name, err)
			}
			*side.dst = append(*side.dst, r)
			fmt.Printf("round %d  %s  %10.0f records/s  %s/s\n", i+1, side.name, r, humanize.IBytes(uint64(r*float64(cfg.recordSize))))
		}
	}
	ratio := median(rOn) / median(rOff)
	fmt.Printf("\nmedian: metrics off %.0f records/s, metrics on %.0f records/s; ratio on/off %.3f (want >= %.2f); %d scrapes of %s each\n",
		median(rOff), median(rOn), ratio, cfg.minRatio, scrapes.Load(), humanize.IBytes(uint64(scraped.Load()/max(scrapes.Load(), 1))))
	if ratio < cfg.minRatio {
		return fmt.Errorf("metrics cost too much: ratio %.3f < %.2f", ratio, cfg.minRatio)
	}
	return nil
}

func createTopic(ctx context.Context, cl *kgo.Client, topic string, partitions int) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req := kgoCreateTopics(topic, partitions)
	resp, err := req.RequestWith(cctx, cl)
	if err != nil {
		return err
	}
	if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 {
		return fmt.Errorf("creating %s: %+v", topic, resp.Topics)
	}
	return nil
}

func kgoCreateTopics(topic string, partitions int) *kmsg.CreateTopicsRequest {
	req := kmsg.NewPtrCreateTopicsRequest()
	t := kmsg.NewCreateTopicsRequestTopic()
	t.Topic, t.NumPartitions, t.ReplicationFactor = topic, int32(partitions), 1
	req.Topics = append(req.Topics, t)
	return req
}
