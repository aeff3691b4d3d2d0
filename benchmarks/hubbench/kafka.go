package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// startKfake starts franz-go's in-memory fake cluster with one broker and
// returns its address and a stop function.
func startKfake() (string, func(), error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0))
	if err != nil {
		return "", nil, fmt.Errorf("start kfake: %w", err)
	}
	return c.ListenAddrs()[0], c.Close, nil
}

// kafkaBench measures the Kafka-protocol broker at brokers (host:port,
// comma-separated; pid its process when known, else 0): produce, fetch
// from the start, then produce→consume latency at half the produce rate.
// It returns
// the latency step of the knee search (each step on a topic of its own),
// to be run interleaved with the peers' by runKnee, and a function that
// releases the clients once the knee search is over.
func kafkaBench(ctx context.Context, cfg *config, name, brokers string, pid int) (res result, step stepFunc, closeFn func(), err error) {
	res.system = name
	seeds := strings.Split(brokers, ",")
	if err := waitListening(ctx, seeds[0], nil); err != nil {
		return res, nil, nil, fmt.Errorf("broker %s: %w (start it first, e.g. weir serve)", seeds[0], err)
	}
	adm, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		return res, nil, nil, fmt.Errorf("kafka admin client for %s: %w", brokers, err)
	}
	defer func() {
		if err != nil {
			adm.Close()
		}
	}()
	admin := kadm.NewClient(adm)
	prefix := fmt.Sprintf("hubbench-%d", time.Now().UnixNano())
	topic, latTopic := prefix, prefix+"-latency"
	for _, t := range []string{topic, latTopic} {
		if err := createTopic(ctx, admin, t, cfg.partitions); err != nil {
			return res, nil, nil, err
		}
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, err := admin.DeleteTopics(dctx, topic, latTopic); err != nil {
			fmt.Fprintf(os.Stderr, "hubbench: delete topics %s, %s: %v (they stay on the broker)\n", topic, latTopic, err)
		}
	}()

	pctx, cancel := context.WithTimeoutCause(ctx, cfg.timeout, fmt.Errorf("kafka produce took longer than -timeout %s", cfg.timeout))
	defer cancel()
	res.produce, err = kafkaProduce(pctx, cfg, seeds, topic)
	if err != nil {
		return res, nil, nil, fmt.Errorf("kafka produce to %s: %w", brokers, err)
	}
	fmt.Printf("  produce: %s\n", res.produce)
	cctx, cancel := context.WithTimeoutCause(ctx, cfg.timeout, fmt.Errorf("kafka fetch took longer than -timeout %s", cfg.timeout))
	defer cancel()
	res.consume, err = kafkaConsume(cctx, cfg, seeds, topic)
	if err != nil {
		return res, nil, nil, fmt.Errorf("kafka fetch from %s: %w", brokers, err)
	}
	fmt.Printf("  fetch:   %s\n", res.consume)
	for i := 1; i < cfg.produceRuns; i++ {
		t := fmt.Sprintf("%s-produce%d", prefix, i)
		if err := createTopic(ctx, admin, t, cfg.partitions); err != nil {
			return res, nil, nil, err
		}
		r, err := kafkaProduce(pctx, cfg, seeds, t)
		if _, derr := admin.DeleteTopics(context.WithoutCancel(ctx), t); derr != nil {
			fmt.Fprintf(os.Stderr, "hubbench: delete topic %s: %v (it stays on the broker)\n", t, derr)
		}
		if err != nil {
			return res, nil, nil, fmt.Errorf("kafka produce to %s (run %d): %w", brokers, i+1, err)
		}
		fmt.Printf("  produce: %s\n", r)
		res.produce = res.produce.faster(r)
	}
	if cfg.latencyDuration > 0 {
		lctx, cancel := context.WithTimeoutCause(ctx, cfg.latencyDuration+cfg.timeout, errors.New("kafka latency run took longer than -latency-duration + -timeout"))
		defer cancel()
		res.latency, err = kafkaLatency(lctx, cfg, seeds, pid, latTopic, cfg.latencyRateFor(res.produce), cfg.latencyDuration)
		if err != nil {
			return res, nil, nil, fmt.Errorf("kafka latency on %s: %w", brokers, err)
		}
		fmt.Printf("  latency: %s\n", res.latency)
	}
	n := 0
	step = func(ctx context.Context, rate float64) (latency, error) {
		n++
		t := fmt.Sprintf("%s-knee%d", prefix, n)
		if err := createTopic(ctx, admin, t, cfg.partitions); err != nil {
			return latency{}, err
		}
		defer admin.DeleteTopics(context.WithoutCancel(ctx), t)
		return kafkaLatency(ctx, cfg, seeds, pid, t, rate, cfg.kneeStep)
	}
	return res, step, adm.Close, nil
}

// kafkaProduceOnly runs kafkaBench's produce run alone against seeds, on
// a topic of its own that it deletes after.
func kafkaProduceOnly(ctx context.Context, cfg *config, seeds []string) (rate, error) {
	if err := waitListening(ctx, seeds[0], nil); err != nil {
		return rate{}, fmt.Errorf("broker %s: %w (start it first, e.g. weir serve --fsync always)", seeds[0], err)
	}
	adm, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		return rate{}, fmt.Errorf("kafka admin client for %s: %w", seeds[0], err)
	}
	defer adm.Close()
	admin := kadm.NewClient(adm)
	var best rate
	for i := range cfg.produceRuns {
		topic := fmt.Sprintf("hubbench-%d-durable", time.Now().UnixNano())
		if err := createTopic(ctx, admin, topic, cfg.partitions); err != nil {
			return rate{}, err
		}
		pctx, cancel := context.WithTimeoutCause(ctx, cfg.timeout, fmt.Errorf("kafka produce took longer than -timeout %s", cfg.timeout))
		r, err := kafkaProduce(pctx, cfg, seeds, topic)
		cancel()
		admin.DeleteTopics(context.WithoutCancel(ctx), topic)
		if err != nil {
			return r, fmt.Errorf("kafka produce to %s (run %d): %w", seeds[0], i+1, err)
		}
		fmt.Printf("  produce: %s\n", r)
		best = best.faster(r)
	}
	return best, nil
}

func createTopic(ctx context.Context, admin *kadm.Client, topic string, partitions int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r, err := admin.CreateTopic(ctx, int32(partitions), 1, nil, topic)
	if err == nil {
		err = r.Err
	}
	if err != nil {
		return fmt.Errorf("create topic %s (%d partitions, replication 1): %w (is the broker up?)", topic, partitions, err)
	}
	return nil
}

func producerOpts(cfg *config, seeds []string, linger time.Duration) []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(linger),
		kgo.ProducerBatchMaxBytes(1 << 20),
		kgo.ProducerBatchCompression(cfg.codec),
		kgo.MaxBufferedBytes(64 << 20),
	}
}

// kafkaProduce produces cfg.records values as fast as the client lets it,
// with acks=all, and returns when all are acknowledged.
func kafkaProduce(ctx context.Context, cfg *config, seeds []string, topic string) (rate, error) {
	cl, err := kgo.NewClient(append(producerOpts(cfg, seeds, cfg.linger), kgo.DefaultProduceTopic(topic))...)
	if err != nil {
		return rate{}, err
	}
	defer cl.Close()
	var failed firstError
	cb := func(_ *kgo.Record, err error) { failed.set(err) }
	tmpl := payloadTemplate(cfg.recordSize)
	start := time.Now()
	for i := range cfg.records {
		if i%1024 == 0 && failed.get() != nil {
			break
		}
		cl.Produce(ctx, &kgo.Record{Value: newValue(tmpl, uint64(i))}, cb)
	}
	if err := cl.Flush(ctx); err != nil {
		return rate{}, fmt.Errorf("flush: %w", err)
	}
	if err := failed.get(); err != nil {
		return rate{}, err
	}
	return newRate(cfg.records, cfg.records*int64(cfg.recordSize), time.Since(start)), nil
}

// kafkaConsume reads the topic from the start, without a group, until every
// record was seen, and checks each index arrived once.
func kafkaConsume(ctx context.Context, cfg *config, seeds []string, topic string) (rate, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(64<<20),
		kgo.FetchMaxPartitionBytes(8<<20),
	)
	if err != nil {
		return rate{}, err
	}
	defer cl.Close()
	t := newTally(cfg.records)
	var offsets offsetCheck
	start := time.Now()
	for t.records < cfg.records {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return rate{}, fmt.Errorf("read %d of %d records: %w", t.records, cfg.records, context.Cause(ctx))
		}
		if errs := fs.Errors(); len(errs) > 0 {
			e := errs[0]
			return rate{}, fmt.Errorf("fetch %s partition %d: %w", e.Topic, e.Partition, e.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			offsets.see(r.Partition, r.Offset)
			t.add(r.Value, cfg.recordSize)
		})
		if offsets.err != nil {
			// The records before are gone: waiting for them would only
			// run into -timeout.
			return rate{}, fmt.Errorf("fetch %s after %d of %d records: %w", topic, t.records, cfg.records, offsets.err)
		}
	}
	d := time.Since(start)
	if err := t.check(cfg.records); err != nil {
		return rate{}, err
	}
	return newRate(t.records, t.bytes, d), nil
}

// kafkaLatency produces at recsPerSec while a concurrent consumer measures
// the time from the Produce call to PollFetches returning the record; pid
// is the broker's process (0 unknown), whose CPU the run reports.
func kafkaLatency(ctx context.Context, cfg *config, seeds []string, pid int, topic string, recsPerSec float64, dur time.Duration) (latency, error) {
	defer clientGC(cfg.clientMemLimit)()
	prodTimes, fetchTimes := &requestTimes{key: 0}, &requestTimes{key: 1}
	prod, err := kgo.NewClient(append(producerOpts(cfg, seeds, cfg.latencyLinger), kgo.DefaultProduceTopic(topic), kgo.WithHooks(prodTimes))...)
	if err != nil {
		return latency{}, err
	}
	defer prod.Close()
	cons, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(topic), kgo.WithHooks(fetchTimes),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMinBytes(fetchMinBytes), kgo.FetchMaxWait(cfg.fetchMaxWait))
	if err != nil {
		return latency{}, err
	}
	defer cons.Close()

	probe := newLatencyProbe(cfg.recordSize, pid)
	// A consumer failure cancels cctx with the failure as cause, which
	// ends probe.run with that error.
	cctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(nil); wg.Wait() }()
	wg.Go(func() {
		for cctx.Err() == nil {
			fs := cons.PollFetches(cctx)
			if cctx.Err() != nil {
				return
			}
			if errs := fs.Errors(); len(errs) > 0 {
				e := errs[0]
				cancel(fmt.Errorf("consumer: fetch %s partition %d: %w", e.Topic, e.Partition, e.Err))
				return
			}
			fs.EachRecord(func(r *kgo.Record) { probe.observe(r.Value) })
		}
	})

	var failed firstError
	cb := func(r *kgo.Record, err error) {
		if err != nil {
			failed.set(err)
			return
		}
		probe.ack(r.Value)
	}
	send := func(v []byte) error {
		prod.Produce(cctx, &kgo.Record{Value: v}, cb)
		return failed.get()
	}
	flush := func(ctx context.Context) error {
		if err := prod.Flush(ctx); err != nil {
			return err
		}
		return failed.get()
	}
	l, err := probe.run(cctx, recsPerSec, dur, send, flush)
	l.produceRTT, l.fetchRTT = prodTimes.p99(), fetchTimes.p99()
	l.produceSlowest, l.fetchSlowest = prodTimes.slowest(), fetchTimes.slowest()
	l.fetches, l.fetchMeanBytes, l.fetchBusy = fetchTimes.load()
	return l, err
}

// offsetCheck follows the offsets a consumer of a topic this run produced
// from the start reads in each partition: they must run on from 0 with no
// gap (no transactions, no compaction). A gap means the broker no longer
// holds records the run wrote (retention, or a consumer reset to the
// oldest offset kept after an OFFSET_OUT_OF_RANGE), which it can never
// read.
type offsetCheck struct {
	next map[int32]int64
	err  error // the first gap
}

func (c *offsetCheck) see(partition int32, offset int64) {
	if c.next == nil {
		c.next = map[int32]int64{}
	}
	if want := c.next[partition]; offset != want && c.err == nil {
		c.err = fmt.Errorf("partition %d: offset %d where %d was due: the broker no longer holds the %d record(s) from %d (retention on the broker, or an offset reset)", partition, offset, want, offset-want, want)
	}
	c.next[partition] = offset + 1
}
