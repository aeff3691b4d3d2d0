package pipelines

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/hub"
)

// KafkaClientOptions configure a KafkaClient.
type KafkaClientOptions struct {
	Brokers  []string
	ClientID string // default "weir"
	Logger   *slog.Logger
}

// KafkaClient is the hub.Client of pipelines that run against a
// Kafka-compatible cluster (a remote `weir serve`, Kafka, Redpanda),
// built on franz-go. Its group consumers use the range assignor, like the
// in-process ones, so both kinds can share a group.
type KafkaClient struct {
	opts KafkaClientOptions
	prod *kgo.Client
	adm  *kadm.Client

	mu    sync.Mutex
	parts map[string]int32
}

var _ hub.Client = (*KafkaClient)(nil)

// NewKafkaClient connects lazily to the cluster.
func NewKafkaClient(opts KafkaClientOptions) (*KafkaClient, error) {
	if opts.ClientID == "" {
		opts.ClientID = "weir"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(opts.Brokers...), kgo.ClientID(opts.ClientID),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchMaxBytes(16<<20), kgo.AllowAutoTopicCreation())
	if err != nil {
		return nil, fmt.Errorf("kafka client for %v: %w", opts.Brokers, err)
	}
	return &KafkaClient{opts: opts, prod: prod, adm: kadm.NewClient(prod), parts: map[string]int32{}}, nil
}

// Close closes the client's connections.
func (c *KafkaClient) Close() error {
	c.prod.Close()
	return nil
}

// EnsureTopic creates a declared dataset as a topic if it does not exist.
func (c *KafkaClient) EnsureTopic(ctx context.Context, d *DatasetConfig) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cfg := map[string]*string{}
	set := func(k, v string) { cfg[k] = &v }
	if d.RetentionTime != 0 {
		set("retention.ms", strconv.FormatInt(d.RetentionTime.Milliseconds(), 10))
	}
	if d.RetentionBytes > 0 {
		set("retention.bytes", strconv.FormatInt(d.RetentionBytes, 10))
	}
	if d.SegmentBytes > 0 {
		set("segment.bytes", strconv.FormatInt(d.SegmentBytes, 10))
	}
	if d.Fsync == "always" {
		set("flush.messages", "1")
	}
	resp, err := c.adm.CreateTopic(ctx, d.Partitions, -1, cfg, d.Name)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("creating topic %s on %v: %w", d.Name, c.opts.Brokers, err)
	}
	return nil
}

// Partitions implements hub.Client.
func (c *KafkaClient) Partitions(ctx context.Context, dataset string) (int32, error) {
	c.mu.Lock()
	n, ok := c.parts[dataset]
	c.mu.Unlock()
	if ok {
		return n, nil
	}
	topics, err := c.adm.ListTopicsWithInternal(ctx, dataset)
	if err != nil {
		return 0, fmt.Errorf("metadata of %s from %v: %w", dataset, c.opts.Brokers, err)
	}
	t, ok := topics[dataset]
	if !ok || t.Err != nil {
		if ok && !errors.Is(t.Err, kerr.UnknownTopicOrPartition) {
			return 0, t.Err
		}
		if _, err := c.adm.CreateTopic(ctx, -1, -1, nil, dataset); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return 0, fmt.Errorf("%w: %s (%v)", hub.ErrUnknownDataset, dataset, err)
		}
		return c.Partitions(ctx, dataset)
	}
	n = int32(len(t.Partitions))
	c.mu.Lock()
	c.parts[dataset] = n
	c.mu.Unlock()
	return n, nil
}

// Produce implements hub.Client.
func (c *KafkaClient) Produce(ctx context.Context, dataset string, records []hub.Record) error {
	n, err := c.Partitions(ctx, dataset)
	if err != nil {
		return err
	}
	sticky := int32(time.Now().UnixNano() % int64(n))
	krs := make([]*kgo.Record, len(records))
	for i, r := range records {
		p := sticky
		if r.Key != nil {
			p = hub.PartitionForKey(r.Key, n)
		}
		kr := &kgo.Record{Topic: dataset, Partition: p, Key: r.Key, Value: r.Value, Timestamp: r.Timestamp}
		for _, h := range r.Headers {
			kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: string(h.Key), Value: h.Value})
		}
		krs[i] = kr
	}
	return c.prod.ProduceSync(ctx, krs...).FirstErr()
}

// ProduceBatch implements hub.Client by producing the batch's records.
func (c *KafkaClient) ProduceBatch(ctx context.Context, dataset string, partition int32, batches []byte) (int64, error) {
	var krs []*kgo.Record
	var it codecs.RecordIter
	for b := batches; len(b) > 0; {
		if err := it.Reset(b); err != nil {
			return -1, fmt.Errorf("%w: %v", hub.ErrCorruptBatch, err)
		}
		for it.Next() {
			r := it.Record()
			kr := &kgo.Record{Topic: dataset, Partition: partition, Key: clone(r.Key), Value: clone(r.Value),
				Timestamp: time.UnixMilli(r.Timestamp)}
			for _, h := range r.Headers {
				kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: string(h.Key), Value: clone(h.Value)})
			}
			krs = append(krs, kr)
		}
		if err := it.Err(); err != nil {
			return -1, fmt.Errorf("%w: %v", hub.ErrCorruptBatch, err)
		}
		b = b[it.Header().Size():]
	}
	res := c.prod.ProduceSync(ctx, krs...)
	if err := res.FirstErr(); err != nil {
		return -1, err
	}
	if len(res) == 0 {
		return -1, nil
	}
	return res[0].Record.Offset, nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

// Consume implements hub.Client.
func (c *KafkaClient) Consume(ctx context.Context, opts hub.ConsumeOptions) (hub.Consumer, error) {
	if len(opts.Datasets) == 0 {
		return nil, errors.New("pipelines: Consume needs at least one dataset")
	}
	kc := &kafkaConsumer{opts: opts, hw: map[hub.TopicPartition]int64{}, pos: map[hub.TopicPartition]int64{}}
	reset := kgo.NewOffset().AtStart()
	switch opts.Start.Kind {
	case hub.StartLatest:
		reset = kgo.NewOffset().AtEnd()
	case hub.StartOffset:
		reset = kgo.NewOffset().At(opts.Start.Offset)
	case hub.StartTime:
		reset = kgo.NewOffset().AfterMilli(opts.Start.Time.UnixMilli())
	}
	kopts := []kgo.Opt{kgo.SeedBrokers(c.opts.Brokers...), kgo.ClientID(c.opts.ClientID), kgo.ConsumeTopics(opts.Datasets...),
		kgo.ConsumeResetOffset(reset)}
	if opts.MinBytes > 0 {
		kopts = append(kopts, kgo.FetchMinBytes(opts.MinBytes))
	}
	if opts.MaxWait > 0 {
		kopts = append(kopts, kgo.FetchMaxWait(max(opts.MaxWait, 10*time.Millisecond)))
	}
	if opts.MaxPollBytes > 0 {
		kopts = append(kopts, kgo.FetchMaxBytes(opts.MaxPollBytes))
	}
	if opts.Group != "" && !opts.Broadcast {
		if opts.SessionTimeout <= 0 {
			opts.SessionTimeout = 10 * time.Second
		}
		kopts = append(kopts, kgo.ConsumerGroup(opts.Group), kgo.Balancers(kgo.RangeBalancer()), kgo.DisableAutoCommit(),
			kgo.BlockRebalanceOnPoll(), kgo.SessionTimeout(opts.SessionTimeout),
			kgo.OnPartitionsRevoked(func(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
				if opts.OnRevoked != nil {
					opts.OnRevoked(ctx, flatten(lost))
				}
			}),
			kgo.OnPartitionsAssigned(func(ctx context.Context, _ *kgo.Client, got map[string][]int32) {
				if opts.OnAssigned != nil {
					opts.OnAssigned(ctx, flatten(got))
				}
			}))
		kc.group = true
	}
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kafka consumer for %v: %w", c.opts.Brokers, err)
	}
	kc.cl = cl
	if opts.Group != "" && opts.Broadcast {
		// A named broadcast subscriber resumes from its own commits.
		fetched, err := kadm.NewClient(cl).FetchOffsets(ctx, opts.Group)
		if err == nil {
			at := map[string]map[int32]kgo.Offset{}
			fetched.Each(func(o kadm.OffsetResponse) {
				if o.Err == nil && o.At >= 0 {
					if at[o.Topic] == nil {
						at[o.Topic] = map[int32]kgo.Offset{}
					}
					at[o.Topic][o.Partition] = kgo.NewOffset().At(o.At)
				}
			})
			if len(at) > 0 {
				cl.AddConsumePartitions(at)
			}
		}
		kc.adm = kadm.NewClient(cl)
	}
	return kc, nil
}

func flatten(m map[string][]int32) []hub.TopicPartition {
	var out []hub.TopicPartition
	for t, ps := range m {
		for _, p := range ps {
			out = append(out, hub.TopicPartition{Topic: t, Partition: p})
		}
	}
	return out
}

type kafkaConsumer struct {
	opts    hub.ConsumeOptions
	cl      *kgo.Client
	adm     *kadm.Client
	group   bool
	fetches []hub.Fetch
	hw      map[hub.TopicPartition]int64
	pos     map[hub.TopicPartition]int64
}

// Poll implements hub.Consumer. Rebalances wait until the next Poll: the
// runtime has processed and committed what the last one returned by then.
func (k *kafkaConsumer) Poll(ctx context.Context) ([]hub.Fetch, error) {
	k.cl.AllowRebalance()
	pctx, cancel := context.WithTimeout(ctx, max(k.opts.MaxWait, 10*time.Millisecond)+time.Second)
	defer cancel()
	fs := k.cl.PollFetches(pctx)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var errs []error
	fs.EachError(func(t string, p int32, err error) {
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("%s/%d: %w", t, p, err))
		}
	})
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	k.fetches = k.fetches[:0]
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		tp := hub.TopicPartition{Topic: p.Topic, Partition: p.Partition}
		k.hw[tp] = p.HighWatermark
		if len(p.Records) == 0 {
			return
		}
		f := hub.Fetch{Dataset: p.Topic, Partition: p.Partition, HighWatermark: p.HighWatermark}
		for _, r := range p.Records {
			rec := codecs.Record{Offset: r.Offset, Timestamp: r.Timestamp.UnixMilli(), Key: r.Key, Value: r.Value}
			for _, h := range r.Headers {
				rec.Headers = append(rec.Headers, codecs.RecordHeader{Key: []byte(h.Key), Value: h.Value})
			}
			f.Records = append(f.Records, rec)
		}
		k.pos[tp] = p.Records[len(p.Records)-1].Offset + 1
		k.fetches = append(k.fetches, f)
	})
	return k.fetches, nil
}

// Commit implements hub.Consumer.
func (k *kafkaConsumer) Commit(ctx context.Context, offsets map[hub.TopicPartition]int64) error {
	if k.opts.Group == "" {
		return nil
	}
	if !k.group {
		var o kadm.Offsets
		for tp, off := range offsets {
			o.AddOffset(tp.Topic, tp.Partition, off, -1)
		}
		resp, err := k.adm.CommitOffsets(ctx, k.opts.Group, o)
		if err == nil {
			err = resp.Error()
		}
		return err
	}
	m := map[string]map[int32]kgo.EpochOffset{}
	for tp, off := range offsets {
		if m[tp.Topic] == nil {
			m[tp.Topic] = map[int32]kgo.EpochOffset{}
		}
		m[tp.Topic][tp.Partition] = kgo.EpochOffset{Epoch: -1, Offset: off}
	}
	var cerr error
	done := make(chan struct{})
	k.cl.CommitOffsetsSync(ctx, m, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		defer close(done)
		if err != nil {
			cerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if e := kerr.ErrorForCode(p.ErrorCode); e != nil && cerr == nil {
					cerr = e
				}
			}
		}
	})
	<-done
	switch {
	case errors.Is(cerr, kerr.RebalanceInProgress):
		return fmt.Errorf("%w: %v", hub.ErrRebalanceInProgress, cerr)
	case errors.Is(cerr, kerr.IllegalGeneration):
		return fmt.Errorf("%w: %v", hub.ErrIllegalGeneration, cerr)
	case errors.Is(cerr, kerr.UnknownMemberID):
		return fmt.Errorf("%w: %v", hub.ErrUnknownMemberID, cerr)
	}
	return cerr
}

// Assignment implements hub.Consumer.
func (k *kafkaConsumer) Assignment() []hub.TopicPartition {
	var out []hub.TopicPartition
	for tp := range k.hw {
		out = append(out, tp)
	}
	return out
}

// Lag implements hub.Consumer, from the high watermarks of the last fetches.
func (k *kafkaConsumer) Lag() map[hub.TopicPartition]int64 {
	out := make(map[hub.TopicPartition]int64, len(k.hw))
	for tp, hw := range k.hw {
		out[tp] = max(hw-k.pos[tp], 0)
	}
	return out
}

// Close implements hub.Consumer.
func (k *kafkaConsumer) Close(ctx context.Context) error {
	if k.group && k.opts.OnRevoked != nil {
		k.opts.OnRevoked(ctx, k.Assignment())
	}
	// A blocked rebalance would keep Close (which leaves the group)
	// waiting: the records last polled are processed by now.
	k.cl.AllowRebalance()
	k.cl.Close()
	return nil
}
