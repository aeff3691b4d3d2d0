// Command hubbench measures a Kafka-protocol broker (Weir's `weir serve`,
// or franz-go's in-memory kfake with -kfake) against NATS JetStream and
// Redis Streams in one run on one machine, and prints a table of
// throughputs, latencies and ratios. Machines are noisy: only the ratios
// between systems measured in the same run mean anything.
//
// For each system, in turn and alone on the machine:
//
//   - produce: N records of -record-size bytes (-size in total) as fast as
//     the client allows, acknowledged by the server (Kafka acks=all, JetStream
//     publish acks, Redis replies);
//   - consume: read all N back from the start;
//   - latency (Kafka and NATS): produce at half the rate just measured for
//     -latency-duration while a concurrent consumer measures the time from
//     handing a record to the client to receiving it; p50, p99 and max;
//   - latency knee (Kafka and NATS, after the rest, the two taking turns at
//     each rate so that both see the same background load): the same at
//     fixed rates stepping up from -knee-start by -knee-factor, -knee-repeat
//     steps each, until the median p99 exceeds -knee-p99 (5 ms), and
//     -knee-beyond rates more, then -knee-refine bisections between each
//     system's highest rate within and the next failing one: the highest
//     rate within it, p99 at equal rates side by side, how long tasks
//     waited for a CPU meanwhile and the CPUs the client, the server (NATS,
//     and weir given -broker-pid) and everything else on the machine used
//     (a busy machine shows in the tail). Each step also shows where
//     the time went on the client's side: the produce acknowledgement's
//     p99 and the p99 round trip of produce and fetch requests as the
//     client saw them (Kafka), the CPUs the benchmark process used, and its
//     own garbage collections.
//
// All clients live in this one process. During latency runs its garbage
// collector runs only when the heap reaches -client-memory-limit (512
// MiB; GOGC off), as a latency-sensitive Go service is run: with Go's
// default the clients' 4 MB heap was collected 200 to 300 times a second
// at 100,000 records/s, and the collector's CPU on a two-core machine
// made the p99 of every system the client's. -client-memory-limit 0
// measures the old way.
//
// nats-server is started from PATH or ~/.cache/weir-bench/bin (installed
// there with go install when missing); redis-server and redis-benchmark
// come from Debian (scripts/bench-peers.sh installs both). Their data goes
// to a scratch directory that is removed at the end; every server the
// harness starts is stopped on exit, error or interrupt.
//
// With -floor-brokers, a floor broker (benchmarks/floorbroker: the
// Kafka protocol's least, records in memory) is measured as the system
// "floor" like the -brokers one, its latency knee in turns with the
// others, and reported against its own and the -brokers system's maximum
// produce rate: whether any broker could reach the knee's target on this
// machine with these clients.
//
// With -durable-brokers, a second weir serve started with --fsync always
// gets the same acks=all produce run after the first, reported against it:
// what durable acknowledgement (group commit) costs.
//
//	go run ./hubbench -brokers 127.0.0.1:9092            # weir serve
//	go run ./hubbench -kfake -size 64MiB -latency-duration 3s
//
// -cpuprofile writes the benchmark process's own CPU profile (all the
// clients), to tell the client's share of a step's CPU from the server's.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/twmb/franz-go/pkg/kgo"
)

type config struct {
	brokers, name                  string
	durableBrokers                 string // a weir serve --fsync always, produce only
	floorBrokers                   string // -floor-brokers: benchmarks/floorbroker, measured like -brokers
	floorPID                       int    // -floor-pid: its process
	kfake, skipNats, skipRedis     bool
	size                           uint64
	recordSize, partitions         int
	records                        int64
	linger, latencyLinger          time.Duration
	fetchMaxWait                   time.Duration // consumer fetch.max.wait of the latency runs
	latencyDuration, timeout       time.Duration
	latencyRate                    float64 // records/s of the latency runs; 0: half the measured produce rate
	compression                    string
	codec                          kgo.CompressionCodec
	workdir, out                   string
	natsBin, redisServer, redisBin string
	kneeStart, kneeFactor          float64 // first rate and step factor of the knee search; start 0 skips it
	kneeStep, kneeP99              time.Duration
	kneeRepeat                     int    // steps per system at each rate
	kneeBeyond                     int    // rates run past the first over -knee-p99
	kneeRefine                     int    // bisections of the knee between the ladder's rates
	produceRuns                    int    // produce runs per system; the best counts
	clientMemLimit                 uint64 // the benchmark process's GC: 0 leaves Go's default, else GOGC off under this soft limit
	cpuProfile                     string // -cpuprofile: the benchmark process's own CPU profile
	brokerPID                      int    // -broker-pid: the -brokers server's process, for its CPU per latency step
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "hubbench: %v\n", err)
		os.Exit(1)
	}
}

func parseFlags() (*config, error) {
	cfg := &config{}
	flag.StringVar(&cfg.brokers, "brokers", "", "Kafka-protocol broker to measure, host:port[,host:port...] (e.g. weir serve)")
	flag.StringVar(&cfg.name, "name", "weir", "name of the -brokers system in the report")
	flag.StringVar(&cfg.durableBrokers, "durable-brokers", "", "also measure acks=all produce against this broker, the same server run with --fsync always")
	flag.StringVar(&cfg.floorBrokers, "floor-brokers", "", "also measure this floor broker (benchmarks/floorbroker: the Kafka protocol's minimum, records in memory) as the system \"floor\", like -brokers: "+
		"throughput runs and the latency knee, taking turns with the others; its knee is reported against its own and -brokers' maximum produce rate")
	flag.IntVar(&cfg.floorPID, "floor-pid", 0, "process id of the -floor-brokers server, as -broker-pid")
	flag.BoolVar(&cfg.kfake, "kfake", false, "measure franz-go's in-memory kfake cluster started in this process instead of -brokers")
	size := flag.String("size", "512MiB", "payload bytes produced to each system")
	flag.IntVar(&cfg.recordSize, "record-size", 1024, "bytes per record value")
	flag.IntVar(&cfg.partitions, "partitions", 1, "partitions of the Kafka topic (NATS and Redis use one stream)")
	flag.IntVar(&cfg.produceRuns, "produce-runs", 3, "produce runs per system (each to a topic or stream of its own); the fastest is its produce rate: other work on the machine only ever slows a run, "+
		"and the latency knee's target is a share of this rate")
	flag.DurationVar(&cfg.linger, "linger", 5*time.Millisecond, "Kafka producer linger in the throughput run")
	flag.DurationVar(&cfg.latencyLinger, "latency-linger", 0, "Kafka producer linger in the latency run")
	flag.StringVar(&cfg.compression, "compression", "none", "Kafka batch compression: none, gzip, snappy, lz4, zstd")
	flag.DurationVar(&cfg.latencyDuration, "latency-duration", 10*time.Second, "length of each latency run (0 skips them)")
	flag.Float64Var(&cfg.latencyRate, "latency-rate", 0, "records/s of the latency runs (0: half of each system's measured produce rate)")
	flag.DurationVar(&cfg.fetchMaxWait, "fetch-max-wait", 500*time.Millisecond, "Kafka consumer fetch.max.wait in the latency runs (Kafka's default 500ms): a broker that misses a fetch's wake-up shows as stalls of this length")
	flag.DurationVar(&cfg.timeout, "timeout", 10*time.Minute, "limit for each produce or consume run")
	flag.Float64Var(&cfg.kneeStart, "knee-start", 10000, "records/s of the first step of the latency knee search (0 skips it)")
	flag.Float64Var(&cfg.kneeFactor, "knee-factor", 1.5, "rate multiplier between steps of the latency knee search")
	flag.DurationVar(&cfg.kneeStep, "knee-step", 3*time.Second, "length of each step of the latency knee search")
	flag.DurationVar(&cfg.kneeP99, "knee-p99", 5*time.Millisecond, "p99 produce->consume latency that defines the knee")
	flag.IntVar(&cfg.kneeRepeat, "knee-repeat", 3, "steps per system at each rate of the knee search, taking turns; the median p99 counts")
	flag.IntVar(&cfg.kneeBeyond, "knee-beyond", 1, "rates a system still runs after the first whose p99 exceeds -knee-p99, to compare latencies past the knee")
	flag.IntVar(&cfg.kneeRefine, "knee-refine", 2, "after the ladder, times each system's knee is narrowed by running the geometric middle of its highest rate within -knee-p99 and the lowest failing rate above it")
	memLimit := flag.String("client-memory-limit", "512MiB", "during latency runs the benchmark process (every system's clients) collects garbage only when its heap reaches this soft limit (GOGC off), "+
		"as a latency-sensitive Go service is run; 0 leaves the collector as GOGC and GOMEMLIMIT set it (GOGC 100: a collection every few ms at a 4 MB heap). Throughput runs keep Go's settings")
	flag.BoolVar(&cfg.skipNats, "skip-nats", false, "do not measure NATS JetStream")
	flag.BoolVar(&cfg.skipRedis, "skip-redis", false, "do not measure Redis Streams")
	flag.StringVar(&cfg.workdir, "workdir", "", "scratch directory for the peers' data (default: a new directory under "+os.TempDir()+", removed at the end)")
	flag.StringVar(&cfg.out, "out", "", "also write the report as markdown to this file")
	flag.IntVar(&cfg.brokerPID, "broker-pid", 0, "process id of the -brokers server on this machine (make bench-hub passes weir serve's): each latency step then shows its CPU and the CPU of everything else on the machine")
	flag.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a CPU profile of the benchmark process (every system's clients) over the whole run to this file")
	flag.Parse()

	if cfg.kfake == (cfg.brokers != "") {
		return nil, errors.New("give exactly one of -brokers host:port and -kfake")
	}
	var err error
	if cfg.size, err = humanize.ParseBytes(*size); err != nil {
		return nil, fmt.Errorf("-size %q: %w", *size, err)
	}
	if cfg.clientMemLimit, err = humanize.ParseBytes(*memLimit); err != nil {
		return nil, fmt.Errorf("-client-memory-limit %q: %w", *memLimit, err)
	}
	if cfg.clientMemLimit > 0 && cfg.clientMemLimit < 64<<20 {
		return nil, fmt.Errorf("-client-memory-limit %s: want 0 or at least 64MiB (the produce run alone buffers 64 MiB)", *memLimit)
	}
	if cfg.recordSize < headerSize || cfg.recordSize > 512<<10 {
		return nil, fmt.Errorf("-record-size %d: want %d to %d bytes", cfg.recordSize, headerSize, 512<<10)
	}
	if cfg.records = int64(cfg.size) / int64(cfg.recordSize); cfg.records < 1 {
		return nil, fmt.Errorf("-size %s is smaller than one record", *size)
	}
	if cfg.produceRuns < 1 {
		return nil, fmt.Errorf("-produce-runs %d: want at least 1", cfg.produceRuns)
	}
	if cfg.partitions < 1 {
		return nil, fmt.Errorf("-partitions %d: want at least 1", cfg.partitions)
	}
	codecs := map[string]kgo.CompressionCodec{"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(),
		"snappy": kgo.SnappyCompression(), "lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression()}
	var ok bool
	if cfg.codec, ok = codecs[cfg.compression]; !ok {
		return nil, fmt.Errorf("-compression %q: want none, gzip, snappy, lz4 or zstd", cfg.compression)
	}
	if cfg.latencyRate < 0 {
		return nil, errors.New("-latency-rate must not be negative")
	}
	if cfg.kneeStart < 0 || cfg.kneeStart > 0 && (cfg.kneeFactor <= 1 || cfg.kneeStep <= 0 || cfg.kneeP99 <= 0 || cfg.kneeRepeat < 1 || cfg.kneeBeyond < 0 || cfg.kneeRefine < 0) {
		return nil, errors.New("-knee-start must not be negative; with it, -knee-factor must exceed 1, -knee-step and -knee-p99 be positive, -knee-repeat at least 1 and -knee-beyond and -knee-refine not negative")
	}
	if cfg.timeout <= 0 || cfg.latencyDuration < 0 {
		return nil, errors.New("-timeout must be positive and -latency-duration not negative")
	}
	return cfg, nil
}

func run() error {
	cfg, err := parseFlags()
	if err != nil {
		return err
	}
	// ^C, SIGTERM and a closed stdout (| head) stop the run cleanly; a
	// second ^C kills at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGPIPE)
	defer stop()
	context.AfterFunc(ctx, stop)

	base := cfg.workdir
	if base == "" {
		base = os.TempDir()
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return fmt.Errorf("-workdir: %w", err)
	}
	if base, err = filepath.Abs(base); err != nil {
		return fmt.Errorf("-workdir: %w", err)
	}
	if cfg.workdir, err = os.MkdirTemp(base, "hubbench-"); err != nil {
		return fmt.Errorf("-workdir: %w", err)
	}
	defer os.RemoveAll(cfg.workdir)
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	// Find every peer before measuring anything, so a missing one fails fast.
	if !cfg.skipNats {
		if cfg.natsBin, err = findNats(ctx); err != nil {
			return err
		}
	}
	if !cfg.skipRedis {
		if cfg.redisServer, cfg.redisBin, err = findRedis(); err != nil {
			return err
		}
	}

	var results []result
	name, stopKfake := cfg.name, func() {}
	if cfg.kfake {
		addr, stopFn, err := startKfake()
		if err != nil {
			return err
		}
		stopKfake = sync.OnceFunc(stopFn)
		defer stopKfake()
		cfg.brokers, name = addr, "kfake (in-process)"
	}
	fmt.Printf("== %s at %s\n", name, cfg.brokers)
	r, kstep, closeKafka, err := kafkaBench(ctx, cfg, name, cfg.brokers, cfg.brokerPID)
	if err != nil {
		return err
	}
	defer closeKafka()
	results = append(results, r)
	steps := []stepFunc{kstep}
	if cfg.floorBrokers != "" {
		fmt.Printf("== %s at %s\n", floorName, cfg.floorBrokers)
		r, fstep, closeFloor, err := kafkaBench(ctx, cfg, floorName, cfg.floorBrokers, cfg.floorPID)
		if err != nil {
			return err
		}
		defer closeFloor()
		results = append(results, r)
		steps = append(steps, fstep)
	}
	var durable *rate
	if cfg.durableBrokers != "" {
		fmt.Printf("== %s --fsync always at %s\n", name, cfg.durableBrokers)
		d, err := kafkaProduceOnly(ctx, cfg, strings.Split(cfg.durableBrokers, ","))
		if err != nil {
			return err
		}
		durable = &d
	}
	if !cfg.skipNats {
		fmt.Printf("== NATS JetStream (%s)\n", cfg.natsBin)
		r, nstep, closeNats, err := natsBench(ctx, cfg)
		if err != nil {
			return err
		}
		defer closeNats()
		results = append(results, r)
		steps = append(steps, nstep)
	}
	if !cfg.skipRedis {
		fmt.Printf("== Redis Streams (%s)\n", cfg.redisServer)
		r, err := redisBench(ctx, cfg)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	if cfg.kneeStart > 0 {
		fmt.Printf("== latency knee, the systems taking turns\n")
		var systems []*kneeSystem
		for i, step := range steps {
			systems = append(systems, &kneeSystem{res: &results[i], step: step})
		}
		if err := runKnee(ctx, cfg, systems); err != nil {
			return err
		}
	}
	stopKfake()

	rep := report(cfg, results)
	if durable != nil {
		rep += fmt.Sprintf("\nDurable acknowledgement: acks=all produce to %s started with --fsync always (at %s, same client settings): %s, %.2fx of %s's %.1f MB/s above.\n",
			name, cfg.durableBrokers, *durable, durable.mbPerSec()/results[0].produce.mbPerSec(), name, results[0].produce.mbPerSec())
	}
	fmt.Print("\n" + rep)
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(rep), 0o644); err != nil {
			return fmt.Errorf("-out: %w", err)
		}
		fmt.Printf("\nreport written to %s\n", cfg.out)
	}
	return nil
}

// rate is the outcome of a produce or consume run.
type rate struct {
	records, bytes int64
	dur            time.Duration
}

func newRate(records, bytes int64, d time.Duration) rate { return rate{records, bytes, d} }

// faster returns whichever of r and o moved more records a second (o
// when r is the zero rate).
func (r rate) faster(o rate) rate {
	if r.dur <= 0 || o.recordsPerSec() > r.recordsPerSec() {
		return o
	}
	return r
}

func (r rate) mbPerSec() float64      { return float64(r.bytes) / r.dur.Seconds() / 1e6 }
func (r rate) recordsPerSec() float64 { return float64(r.records) / r.dur.Seconds() }
func (r rate) String() string {
	return fmt.Sprintf("%.1f MB/s, %.0f records/s (%d records in %s)", r.mbPerSec(), r.recordsPerSec(), r.records, r.dur.Round(time.Millisecond))
}

func (l latency) String() string {
	cpu := ""
	if l.cpuWait >= 0 {
		cpu = fmt.Sprintf(", CPU wait %.0f%%", 100*l.cpuWait)
	}
	ack := ""
	if l.ackP99 > 0 {
		ack = fmt.Sprintf(", acked p50 %s p99 %s", ms(l.ackP50), ms(l.ackP99))
	}
	if l.produceRTT > 0 || l.fetchRTT > 0 {
		ack += fmt.Sprintf(", request round trip p99 produce %s fetch %s", ms(l.produceRTT), ms(l.fetchRTT))
	}
	if l.produceSlowest.DurationE2E() > 0 || l.fetchSlowest.DurationE2E() > 0 {
		ack += fmt.Sprintf(", slowest produce %s, slowest fetch %s", slowRequest(l.produceSlowest), slowRequest(l.fetchSlowest))
	}
	if l.fetches > 0 {
		ack += fmt.Sprintf(", %d fetches of %d B on average, in flight %s in all", l.fetches, l.fetchMeanBytes, l.fetchBusy.Round(time.Millisecond))
	}
	if l.machineCPUs >= 0 {
		cpu += fmt.Sprintf(", machine %.2f CPUs busy", l.machineCPUs)
		if l.serverCPUs >= 0 {
			cpu += fmt.Sprintf(" (server %.2f, others %.2f)", l.serverCPUs, l.otherCPUs())
		}
	}
	if l.tcp != "" {
		cpu += ", TCP: " + l.tcp
	}
	tail := ""
	if l.tail.episodes > 0 {
		tail = fmt.Sprintf(" (slowest 1%%: %d episode(s) spanning %s of sends)", l.tail.episodes, ms(l.tail.span))
	}
	return fmt.Sprintf("p50 %s, p99 %s%s, max %s over %d records at %.0f records/s (asked %.0f)%s%s; client: %.2f CPUs, %d GCs, GC pause max %s, sched p99 %s",
		ms(l.p50), ms(l.p99), tail, ms(l.max), l.samples, l.achieved, l.rate, ack, cpu, l.client.cpuShare, l.client.gcs, ms(l.client.pauseMax), ms(l.client.schedP99))
}

// otherCPUs is the CPU the machine spent on neither the client nor the
// server during a latency run, or -1 when not known.
func (l latency) otherCPUs() float64 {
	if l.machineCPUs < 0 || l.serverCPUs < 0 {
		return -1
	}
	return max(l.machineCPUs-l.serverCPUs-l.client.cpuShare, 0)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

// result is one system's row in the report.
type result struct {
	system           string
	produce, consume rate
	latency          latency   // zero when not measured
	knee             []latency // the knee search's steps, rate rising
}

// report renders the results as markdown: the setup, the table, and which
// of the targets the broker under test (results[0]) meets.
func report(cfg *config, results []result) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "## Hub benchmark, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "Host %s (%s/%s, %d CPUs, %s). Each system: %d records of %d bytes (%s), alone on the machine. MB = 10^6 payload bytes.\n\n",
		host, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), cfg.records, cfg.recordSize, humanize.IBytes(uint64(cfg.records)*uint64(cfg.recordSize)))
	fmt.Fprintf(&b, "- %s at %s: franz-go %s, %d partition(s), acks=all (idempotent), linger %s, batches up to 1 MiB, compression %s; fetch from the start without a group; latency run with linger %s.\n",
		results[0].system, cfg.brokers, modVersion("github.com/twmb/franz-go"), cfg.partitions, cfg.linger, cfg.compression, cfg.latencyLinger)
	if cfg.floorBrokers != "" {
		fmt.Fprintf(&b, "- %s at %s: %s Same clients and settings as %s.\n", floorName, cfg.floorBrokers, floorWhat, results[0].system)
	}
	if !cfg.skipNats {
		fmt.Fprintf(&b, "- NATS: one nats-server, JetStream file storage (server default sync), nats.go %s PublishAsync with %d in flight; ordered consumer.\n",
			modVersion("github.com/nats-io/nats.go"), natsWindow)
	}
	if !cfg.skipRedis {
		fmt.Fprintf(&b, "- Redis: appendonly no, save \"\" (in memory only, no persistence); redis-benchmark -c %d -P %d XADD; read with XRANGE COUNT %d via go-redis %s; no latency run.\n",
			redisClients, redisPipeline, redisReadCount, modVersion("github.com/redis/go-redis/v9"))
	}
	fmt.Fprintf(&b, "- Produce: the fastest of %d runs per system, each to a topic or stream of its own (a busy machine only slows a run); fetch reads the first run's.\n", cfg.produceRuns)
	fmt.Fprintf(&b, "- Clients: every system's in this one process (%s); in latency runs %s, throughput runs with Go's. The client's own pauses are in every latency measured, for every system alike.\n",
		runtime.Version(), clientGCString(cfg.clientMemLimit))
	if onTmpfs(cfg.workdir) {
		fmt.Fprintf(&b, "- WARNING: the scratch dir %s is on tmpfs, so NATS \"file\" storage was in memory; use -workdir on a disk.\n", cfg.workdir)
	}
	nats, redis := find(results, "NATS"), find(results, "Redis")
	produce := func(r *result) float64 { return r.produce.mbPerSec() }
	fetch := func(r *result) float64 { return r.consume.mbPerSec() }
	// ratio returns how many times of peer's value r's is, or 0 without a peer.
	ratio := func(r, peer *result, of func(*result) float64) float64 {
		if peer == nil {
			return 0
		}
		return of(r) / of(peer)
	}
	times := func(x float64) string {
		if x == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx", x)
	}
	fmt.Fprintf(&b, "\n| system | produce MB/s | produce rec/s | consume MB/s | p50 ms | p99 ms | max ms | produce vs NATS | produce vs Redis | fetch vs NATS |\n")
	fmt.Fprintf(&b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for i := range results {
		r := &results[i]
		lat := "- | - | -"
		if l := r.latency; l.samples > 0 {
			lat = fmt.Sprintf("%.2f | %.2f | %.2f", float64(l.p50)/1e6, float64(l.p99)/1e6, float64(l.max)/1e6)
		}
		fmt.Fprintf(&b, "| %s | %.1f | %.0f | %.1f | %s | %s | %s | %s |\n", r.system,
			produce(r), r.produce.recordsPerSec(), fetch(r), lat,
			times(ratio(r, nats, produce)), times(ratio(r, redis, produce)), times(ratio(r, nats, fetch)))
	}
	if cfg.latencyDuration > 0 {
		at := "half the measured produce rate"
		if cfg.latencyRate > 0 {
			at = fmt.Sprintf("%.0f records/s", cfg.latencyRate)
		}
		fmt.Fprintf(&b, "\nLatency: from handing a record to the client to a concurrent consumer receiving it, producing at %s for %s:\n", at, cfg.latencyDuration)
		for _, r := range results {
			if r.latency.samples > 0 {
				fmt.Fprintf(&b, "- %s: %s\n", r.system, r.latency)
			}
		}
	}

	b.WriteString(kneeReport(cfg, results))

	w := &results[0]
	fmt.Fprintf(&b, "\nTargets, for %s:\n", w.system)
	target := func(what, got string, measured, met bool) {
		switch {
		case !measured:
			fmt.Fprintf(&b, "- %s: not measured\n", what)
		case met:
			fmt.Fprintf(&b, "- %s: %s, met\n", what, got)
		default:
			fmt.Fprintf(&b, "- %s: %s, NOT met\n", what, got)
		}
	}
	np, rp, nf := ratio(w, nats, produce), ratio(w, redis, produce), ratio(w, nats, fetch)
	p99 := float64(w.latency.p99) / 1e6
	target("produce >= 3x NATS", times(np), nats != nil, np >= 3)
	target("produce >= 2x Redis", times(rp), redis != nil, rp >= 2)
	target("fetch >= 3x NATS", times(nf), nats != nil, nf >= 3)
	if cfg.latencyRate > 0 {
		// Not at half of the maximum: a data point, not the target.
		fmt.Fprintf(&b, "- p99 produce->consume at %.0f records/s (-latency-rate; the target is judged at half of max throughput without it): %.2f ms\n", cfg.latencyRate, p99)
	} else {
		target("p99 produce->consume <= 5 ms at half of max throughput", fmt.Sprintf("%.2f ms", p99), w.latency.samples > 0, p99 <= 5)
	}
	kneeTargets(cfg, w, nats, target)
	return b.String()
}

// floorName is the -floor-brokers system's name in the report, and
// floorWhat says what it is.
const (
	floorName = "floor"
	floorWhat = "benchmarks/floorbroker, the least a Kafka-protocol broker can do for these clients: one process (GOMAXPROCS default), " +
		"records in memory only (each produced batch copied with its base offset written in place, idempotent sequences checked, " +
		"no CRC check, no disk; by default the newest 1 GiB per partition), the produce answered once the batch is in memory, " +
		"a fetch answered from memory, long-polling until a produce wakes it; one goroutine per connection answering in order. " +
		"Its knee is what any broker could reach on this machine with these clients."
)

// find returns the result whose system name starts with prefix, or nil.
func find(results []result, prefix string) *result {
	for i := range results[1:] {
		if strings.HasPrefix(results[i+1].system, prefix) {
			return &results[i+1]
		}
	}
	return nil
}

// modVersion returns the version of a module linked into this binary.
func modVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path {
				return d.Version
			}
		}
	}
	return "(unknown version)"
}

// onTmpfs reports whether dir is on a tmpfs (memory) filesystem.
func onTmpfs(dir string) bool {
	var st syscall.Statfs_t
	return syscall.Statfs(dir, &st) == nil && st.Type == 0x01021994 // TMPFS_MAGIC
}

// clientGC sets the benchmark process's garbage collector for a latency
// run and returns the function that restores it: with limit 0 it is left
// as GOGC and GOMEMLIMIT say, else it is off until the heap reaches limit
// (a soft limit: then it collects as often as it must to stay near it).
//
// Why: the clients' heap is a few MB, so with GOGC 100 the collector runs
// every few milliseconds (200 to 300 cycles a second at 100,000
// records/s), and on a machine of two cores its mark phase, which takes a
// CPU of its own and makes allocating goroutines assist, delays the
// producer and consumer it measures with. Measured on main with weir, GOGC
// 100 against this at 50,000 to 200,000 records/s: p99 4.6 to 102 ms
// against 2.0 to 5.6 ms, the server unchanged (its produce answers stayed
// under 1.6 ms). A limit keeps the pages in use (no fault per fresh
// allocation, as GOGC off alone would cost). Throughput runs keep Go's
// settings, so that their figures compare with earlier runs.
func clientGC(limit uint64) (restore func()) {
	if limit == 0 {
		return func() {}
	}
	was := debug.SetMemoryLimit(int64(limit))
	gogc := debug.SetGCPercent(-1)
	return func() {
		debug.SetGCPercent(gogc)
		debug.SetMemoryLimit(was)
	}
}

func clientGCString(limit uint64) string {
	if limit == 0 {
		return "garbage collector as GOGC/GOMEMLIMIT set it (-client-memory-limit 0)"
	}
	return fmt.Sprintf("garbage collected only when the heap reaches %s (GOGC off, GOMEMLIMIT %s: -client-memory-limit)", humanize.IBytes(limit), humanize.IBytes(limit))
}

// latencyRateFor is the rate of a latency run: -latency-rate, or half the
// measured produce rate.
func (cfg *config) latencyRateFor(produce rate) float64 {
	if cfg.latencyRate > 0 {
		return cfg.latencyRate
	}
	return produce.recordsPerSec() / 2
}
