package sources

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/hub/kafkaclient"
	"github.com/weirhub/weir/internal/ackq"
	"github.com/weirhub/weir/internal/kafkaconf"
)

var kafkaSpec = connectors.Spec{
	Kind:    connectors.SourceKind,
	Name:    "kafka",
	Summary: "Consume topics of an external Kafka-compatible cluster (Kafka, Redpanda, another weir serve) in a consumer group.",
	Doc: "Consumes the topics (or every topic matching them, with regex) as a member of a consumer group, so several " +
		"`weir run` processes share the partitions. Offsets are committed only after the runtime acknowledged a " +
		"batch, that is once its records are stored in the source's dataset: at least once, end to end. Rebalances " +
		"wait until every record polled is acknowledged and committed (franz-go's BlockRebalanceOnPoll), so a " +
		"partition moves to another member only with its position committed; keep the batches quick to store, under " +
		"rebalance_timeout. After a batch failed (the source stopped while storing it), nothing more is committed; " +
		"what follows is consumed again at the next start.\n\n" +
		"Records keep their key, value, headers and timestamp; the key picks the partition of the source's dataset. " +
		"Batches are cut at max_batch_records and max_batch_bytes: keep the bytes under the destination dataset's " +
		"max_message_bytes. Dead letters name the topic, partition and offset a record came from.",
	Fields: kafkaconf.Fields(
		connectors.Field{Name: "topics", Type: connectors.TypeStrings, Required: true, Doc: "Topics to consume (regular expressions with regex).",
			Example: []string{"access-logs"}},
		connectors.Field{Name: "regex", Type: connectors.TypeBool, Default: false, Doc: "Treat topics as regular expressions matched against the cluster's topics."},
		connectors.Field{Name: "group", Type: connectors.TypeString, Doc: "Consumer group. Default: sources.<the source's name>."},
		connectors.Field{Name: "start", Type: connectors.TypeString, Default: "earliest", Enum: []string{"earliest", "latest"},
			Doc: "Where to start in a partition without a committed offset (auto.offset.reset)."},
		connectors.Field{Name: "max_batch_records", Type: connectors.TypeInt, Default: 10000, Min: 1, Doc: "Most records in one batch."},
		connectors.Field{Name: "max_batch_bytes", Type: connectors.TypeSize, Default: "512KiB", Min: "1B", Max: "1GiB", Doc: "Most bytes of keys and values in one batch (a larger record goes alone)."},
		connectors.Field{Name: "max_pending", Type: connectors.TypeInt, Default: 4, Min: 1, Doc: "Most batches handed over and not yet acknowledged."},
		connectors.Field{Name: "fetch_max_bytes", Type: connectors.TypeSize, Default: "16MiB", Min: "1KiB", Max: "1GiB", Doc: "Most bytes one fetch from the brokers returns (fetch.max.bytes)."},
		connectors.Field{Name: "session_timeout", Type: connectors.TypeDuration, Default: "45s", Min: "1ms", Doc: "Group session timeout: a member silent this long is removed."},
		connectors.Field{Name: "rebalance_timeout", Type: connectors.TypeDuration, Default: "60s", Min: "1ms", Doc: "How long the group waits for members to finish their batches when rebalancing."},
	),
	Example: `sources:
  orders:
    kafka:
      brokers: [kafka-1.internal:9092]
      topics: [orders]
      group: weir-orders
      start: earliest
      sasl: {mechanism: SCRAM-SHA-256, user: weir, password: "${KAFKA_PASSWORD}"}
    to: orders`,
}

func init() { connectors.MustRegisterSource(kafkaSpec, newKafka) }

// kafkaSource consumes with a franz-go group client made by Connect. Read
// and Close are called by one goroutine at a time; acks may come from any.
//
// Polling blocks rebalances (BlockRebalanceOnPoll). They are allowed again
// only when the source is quiescent: no poll in progress, no record waiting
// to be handed over and every batch acknowledged (and its offsets
// committed). A rebalance that waits (OnPartitionsCallbackBlocked) stops
// further polls until then.
type kafkaSource struct {
	conn       *kafkaconf.Conn
	topics     []string
	regex      bool
	group      string
	start      kgo.Offset
	maxRecords int
	maxBytes   int
	fetchMax   int32
	session    time.Duration
	rebalance  time.Duration
	log        *slog.Logger
	acks       *ackq.Tracker[hub.TopicPartition, kgo.EpochOffset] // batches handed over, max_pending at most

	readMu sync.Mutex // one Read at a time
	cmu    sync.Mutex // one commit at a time, in order

	mu         sync.Mutex // the fields below
	cl         *kgo.Client
	queue      []kafkaMsg
	polling    bool
	committing int           // acks committing now
	wanted     bool          // a rebalance waits
	changed    chan struct{} // closed and replaced when pending batches leave
	closed     bool
	lags       map[kafkaTP]int64 // per partition, as of its last fetch (Lag)
}

type kafkaTP struct {
	topic     string
	partition int32
}

var _ connectors.Lagger = (*kafkaSource)(nil)

// Lag is the records past the source's last fetch of each of its
// partitions: the high watermark of that fetch minus the offset after
// its last record.
func (s *kafkaSource) Lag() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, l := range s.lags {
		n += l
	}
	return n
}

type kafkaMsg struct {
	m     *connectors.Message
	epoch int32
}

var (
	_ connectors.Source    = (*kafkaSource)(nil)
	_ connectors.Connector = (*kafkaSource)(nil)
)

func newKafka(conf *connectors.Config, res connectors.Resources) (connectors.Source, error) {
	conn, err := kafkaconf.Parse(conf)
	if err != nil {
		return nil, err
	}
	s := &kafkaSource{
		conn:       conn,
		topics:     conf.Strings("topics"),
		regex:      conf.Bool("regex"),
		group:      conf.String("group"),
		start:      kgo.NewOffset().AtStart(),
		maxRecords: conf.Int("max_batch_records"),
		maxBytes:   int(conf.Size("max_batch_bytes")),
		fetchMax:   int32(conf.Size("fetch_max_bytes")),
		session:    conf.Duration("session_timeout"),
		rebalance:  conf.Duration("rebalance_timeout"),
		log:        res.Logger,
		changed:    make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.group == "" {
		s.group = res.Name
		if s.group == "" {
			s.group = "sources.kafka"
		}
	}
	if conf.String("start") == "latest" {
		s.start = kgo.NewOffset().AtEnd()
	}
	if len(s.topics) == 0 {
		return nil, conf.Errorf("topics", "needs at least one topic")
	}
	for _, t := range s.topics {
		if s.regex {
			if _, err := regexp.Compile(t); err != nil {
				return nil, conf.Errorf("topics", "%q: %v", t, err)
			}
		} else if why := kafkaconf.ValidTopic(t); why != "" {
			return nil, conf.Errorf("topics", "%q: %s", t, why)
		}
	}
	s.acks = ackq.New[hub.TopicPartition, kgo.EpochOffset](conf.Int("max_pending"))
	return s, nil
}

// Connect makes the group client and checks that a broker answers (and
// accepts the credentials). Calling it again once connected does nothing.
func (s *kafkaSource) Connect(ctx context.Context) error {
	s.mu.Lock()
	closed, connected := s.closed, s.cl != nil
	s.mu.Unlock()
	if closed {
		return errSourceClosed
	}
	if connected {
		return nil
	}
	opts, err := s.conn.Opts()
	if err != nil {
		return fmt.Errorf("sources: kafka: %w", err)
	}
	opts = append(opts, kgo.ConsumeTopics(s.topics...), kgo.ConsumerGroup(s.group), kgo.ConsumeResetOffset(s.start),
		kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll(), kgo.FetchMaxBytes(s.fetchMax),
		kgo.FetchMaxPartitionBytes(min(s.fetchMax, 8<<20)), kgo.SessionTimeout(s.session), kgo.RebalanceTimeout(s.rebalance),
		kgo.OnPartitionsCallbackBlocked(s.onBlocked), kgo.OnPartitionsRevoked(s.onRevoked), kgo.OnPartitionsLost(s.onRevoked))
	if s.regex {
		opts = append(opts, kgo.ConsumeRegex())
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("sources: kafka: %w", err)
	}
	if err := cl.Ping(ctx); err != nil {
		cl.Close()
		return fmt.Errorf("sources: kafka: no broker of %v answers: %w", s.conn.Brokers, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		cl.Close()
		return errSourceClosed
	}
	s.cl = cl
	return nil
}

// onBlocked is told that a rebalance waits for the records polled.
func (s *kafkaSource) onBlocked(context.Context, *kgo.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wanted = true
	s.allowIfQuiescent()
}

// onRevoked runs when partitions go (revoked, or lost with the session):
// batches not yet acknowledged are not committed; their records are
// consumed again by the partitions' next owner, from the committed offset.
func (s *kafkaSource) onRevoked(_ context.Context, _ *kgo.Client, gone map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acks.Revoke()
	for topic, ps := range gone {
		for _, p := range ps {
			delete(s.lags, kafkaTP{topic, p})
		}
	}
	kept := s.queue[:0]
	for _, q := range s.queue {
		lost := false
		for _, p := range gone[q.m.Dataset] {
			if p == q.m.Partition {
				lost = true
			}
		}
		if !lost {
			kept = append(kept, q)
		}
	}
	clear(s.queue[len(kept):])
	s.queue = kept
}

// allowIfQuiescent lets a blocked rebalance go on when nothing polled is
// outstanding or being committed. The caller holds mu.
func (s *kafkaSource) allowIfQuiescent() {
	if s.cl != nil && !s.polling && s.committing == 0 && len(s.queue) == 0 && s.acks.Pending() == 0 {
		s.wanted = false
		s.cl.AllowRebalance()
	}
}

// Read returns the next batch, polling the cluster until there are records
// or ctx ends. It waits while max_pending batches are unacknowledged.
func (s *kafkaSource) Read(ctx context.Context) ([]*connectors.Message, connectors.AckFunc, error) {
	if err := s.acks.Acquire(ctx); err != nil {
		return nil, nil, err
	}
	s.readMu.Lock()
	defer s.readMu.Unlock()
	for {
		if msgs, b := s.take(); len(msgs) > 0 {
			return msgs, s.ackFunc(b), nil
		}
		if err := s.poll(ctx); err != nil {
			s.acks.Release()
			return nil, nil, err
		}
	}
}

// poll fetches records into the queue. It waits first while a rebalance
// waits for batches still pending.
func (s *kafkaSource) poll(ctx context.Context) error {
	s.mu.Lock()
	for s.wanted && s.acks.Pending() > 0 && !s.closed {
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.mu.Lock()
	}
	cl := s.cl
	if s.closed {
		s.mu.Unlock()
		return errSourceClosed
	}
	if cl == nil {
		s.mu.Unlock()
		return errors.New("sources: kafka: not connected")
	}
	s.allowIfQuiescent()
	s.polling = true
	s.mu.Unlock()

	fs := cl.PollRecords(ctx, s.maxRecords)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.polling = false
	var errs []error
	fs.EachError(func(t string, p int32, err error) {
		switch {
		case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		case errors.Is(err, kgo.ErrClientClosed):
			errs = append(errs, errSourceClosed)
		default:
			errs = append(errs, fmt.Errorf("%s/%d: %w", t, p, err))
		}
	})
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) == 0 {
			return
		}
		if s.lags == nil {
			s.lags = map[kafkaTP]int64{}
		}
		s.lags[kafkaTP{p.Topic, p.Partition}] = max(p.HighWatermark-p.Records[len(p.Records)-1].Offset-1, 0)
	})
	n, nh := 0, 0
	fs.EachRecord(func(r *kgo.Record) {
		n++
		nh += len(r.Headers)
	})
	if n > 0 {
		msgs := make([]connectors.Message, 0, n)
		hdrs := make([]codecs.RecordHeader, 0, nh)
		fs.EachRecord(func(r *kgo.Record) {
			m := connectors.Message{Key: r.Key, Value: r.Value, Time: r.Timestamp,
				Dataset: r.Topic, Partition: r.Partition, Offset: r.Offset}
			if len(r.Headers) > 0 {
				at := len(hdrs)
				for _, h := range r.Headers {
					hdrs = append(hdrs, codecs.RecordHeader{Key: []byte(h.Key), Value: h.Value})
				}
				m.Headers = hdrs[at:len(hdrs):len(hdrs)]
			}
			msgs = append(msgs, m)
			s.queue = append(s.queue, kafkaMsg{m: &msgs[len(msgs)-1], epoch: r.LeaderEpoch})
		})
	}
	s.allowIfQuiescent()
	if ctx.Err() != nil && len(s.queue) == 0 {
		return ctx.Err()
	}
	if len(errs) > 0 {
		err := fmt.Errorf("sources: kafka: %w", errors.Join(errs...))
		if n == 0 {
			return err
		}
		s.log.Warn("weir: kafka fetch errors; consuming the rest", "err", err)
	}
	return nil
}

// take hands over the next batch from the queue and records it as pending.
func (s *kafkaSource) take() ([]*connectors.Message, *ackq.Batch[hub.TopicPartition, kgo.EpochOffset]) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return nil, nil
	}
	end, size := 0, 0
	for end < len(s.queue) && end < s.maxRecords {
		sz := len(s.queue[end].m.Key) + len(s.queue[end].m.Value)
		if end > 0 && size+sz > s.maxBytes {
			break
		}
		size += sz
		end++
	}
	msgs := make([]*connectors.Message, end)
	offsets := map[hub.TopicPartition]kgo.EpochOffset{}
	for i, q := range s.queue[:end] {
		msgs[i] = q.m
		offsets[hub.TopicPartition{Topic: q.m.Dataset, Partition: q.m.Partition}] = kgo.EpochOffset{Epoch: q.epoch, Offset: q.m.Offset + 1}
	}
	clear(s.queue[:end])
	s.queue = s.queue[end:]
	if len(s.queue) == 0 {
		s.queue = nil
	}
	return msgs, s.acks.Add(offsets)
}

// ackFunc returns the acknowledgement of batch b: it commits the batch's
// offsets once every batch before it is acknowledged too (batches
// acknowledged out of order wait for the ones before them); after a
// failure nothing more is committed.
func (s *kafkaSource) ackFunc(b *ackq.Batch[hub.TopicPartition, kgo.EpochOffset]) connectors.AckFunc {
	return func(ctx context.Context, err error) error {
		s.cmu.Lock()
		defer s.cmu.Unlock()
		s.mu.Lock()
		// Under mu with committing: a rebalance waiting for the batches
		// sees them leave and their commit start as one step.
		ready, poisoned, ok := b.Done(err)
		if !ok {
			s.mu.Unlock()
			return nil
		}
		if poisoned {
			s.log.Warn("weir: a batch consumed from kafka was not stored; nothing more is committed, the rest is consumed again at the next start",
				"err", err)
		}
		cl := s.cl
		s.committing++
		s.mu.Unlock()
		var cerr error
		if len(ready) > 0 && cl != nil {
			commit := map[string]map[int32]kgo.EpochOffset{}
			for tp, off := range ready {
				if commit[tp.Topic] == nil {
					commit[tp.Topic] = map[int32]kgo.EpochOffset{}
				}
				commit[tp.Topic][tp.Partition] = off
			}
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			cerr = kafkaclient.CommitSync(cctx, cl, commit)
			cancel()
			if cerr != nil {
				cerr = fmt.Errorf("sources: kafka: committing offsets (the records will be consumed again): %w", cerr)
			}
		}
		s.mu.Lock()
		s.committing--
		close(s.changed)
		s.changed = make(chan struct{})
		// Offsets are committed: a waiting rebalance may go on.
		s.allowIfQuiescent()
		s.mu.Unlock()
		return cerr
	}
}

// Close leaves the group and closes the client. Offsets were committed by
// the acks. It is safe to call more than once.
func (s *kafkaSource) Close(context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	cl := s.cl
	s.cl = nil
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	if cl != nil {
		cl.CloseAllowingRebalance()
	}
	return nil
}
