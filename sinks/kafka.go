package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fastjson"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/hub/kafkaclient"
	"github.com/weirhub/weir/internal/kafkaconf"
)

var kafkaSpec = connectors.Spec{
	Kind:    connectors.SinkKind,
	Name:    "kafka",
	Summary: "Produce records to a topic of an external Kafka-compatible cluster (Kafka, Redpanda, another weir serve).",
	Doc: "Each record keeps its value, key (or takes it from the field named by key), headers and time. Records with " +
		"a key go to the partition the key hashes to (murmur2, as Kafka's own clients do); the others are spread " +
		"in sticky batches. A write returns once the brokers acknowledged every record (acks: all by default, with " +
		"the idempotent producer: a retried batch is stored once), so the pipeline commits only what the cluster " +
		"holds.\n\n" +
		"Under processing: exactly_once the sink is the pipeline's only sink: it produces in transactions of its own " +
		"cluster (transactional id: the pipeline's transactional_id, which fences a killed run and aborts what it left " +
		"open), and each transaction also writes the positions the pipeline read up to in positions_topic, so records " +
		"and positions commit or abort together and a run resumes where the last committed transaction ended " +
		"(Kafka Connect's exactly-once design). A read_committed consumer sees each record once. Dead letters go to " +
		"the hub outside that transaction (a crash may store one twice); retry: {mode: topics} is refused.\n\n" +
		"topic may be a template like the file sink's path: {{ .dataset }}, {{ .partition }}, {{ .key }}, {{ .date }} " +
		"and the other time parts, {{ .field \"name\" }}. A record whose topic is not a valid topic name, that is " +
		"larger than the topic accepts, or that the broker rejects as invalid goes to the dead-letter dataset. A " +
		"cluster out of reach (no connection, no answer within timeout) or refusing the credentials holds the pipeline " +
		"back until it answers; other broker errors are retried as the sink's retry policy says.",
	Fields: kafkaconf.Fields(
		connectors.Field{Name: "topic", Type: connectors.TypeString, Required: true, Doc: "The topic to produce to, or a template naming one per record.",
			Example: "logs-{{ .field \"service\" }}"},
		connectors.Field{Name: "key", Type: connectors.TypeString, Doc: "A field (dotted path) whose value becomes the key; records without it keep their key. Default: keep every key."},
		connectors.Field{Name: "acks", Type: connectors.TypeString, Default: "all", Enum: []string{"all", "leader", "none"},
			Doc: "Acknowledgements to wait for: all in-sync replicas, the leader only, or none (fire and forget)."},
		connectors.Field{Name: "idempotent", Type: connectors.TypeBool, Default: true,
			Doc: "Use the idempotent producer (needs acks: all): retries do not duplicate or reorder records."},
		connectors.Field{Name: "compression", Type: connectors.TypeString, Default: "none", Enum: []string{"none", "gzip", "snappy", "lz4", "zstd"},
			Doc: "Compression of the produced record batches."},
		connectors.Field{Name: "max_batch_bytes", Type: connectors.TypeSize, Default: "1MiB", Min: "1KiB", Max: "1GiB",
			Doc: "Largest record batch sent (Kafka's batch.size bound; keep it under the topic's max.message.bytes). A larger record fails."},
		connectors.Field{Name: "timeout", Type: connectors.TypeDuration, Default: "30s", Min: "1ms",
			Doc: "Longest a write waits for the brokers to acknowledge its records (like delivery.timeout.ms); then it counts as the cluster being out of reach."},
		connectors.Field{Name: "auto_create_topics", Type: connectors.TypeBool, Default: true,
			Doc: "Ask brokers to create a missing topic (they do if their auto.create.topics.enable is on)."},
		connectors.Field{Name: "positions_topic", Type: connectors.TypeString, Default: "weir-positions",
			Doc: "With processing: exactly_once, the compacted topic of this cluster where each transaction also writes the pipeline's source positions (created with one partition if missing); a run resumes from there."},
	),
	OwnTransactions: true,
	Example: `pipelines:
  to-kafka:
    from: access
    to:
      - kafka:
          brokers: [kafka-1.internal:9092, kafka-2.internal:9092]
          topic: access-logs
          key: host
          compression: zstd
          sasl: {mechanism: SCRAM-SHA-512, user: weir, password: "${KAFKA_PASSWORD}"}
          tls: {enabled: true}`,
}

func init() { connectors.MustRegisterSink(kafkaSpec, newKafka) }

// kafkaSink produces with a franz-go client made by Connect. Write is
// called by one goroutine at a time (mu guards its buffers regardless);
// Close may be called from any.
type kafkaSink struct {
	conn       *kafkaconf.Conn
	fixed      string        // the topic, when the template is fixed
	tmpl       *pathTemplate // else the template
	keyField   []string
	acks       kgo.Acks
	idempotent bool
	maxBatch   int32
	timeout    time.Duration
	autoCreate bool
	positions  string // positions_topic
	comp       codecs.Compression
	log        *slog.Logger

	// tx is the transactional producer under processing: exactly_once
	// (StartTxn): writes go through it.
	tx   hub.TxnProducer     // guarded by mu
	txcl *kafkaclient.Client // set under mu and clMu

	clMu   sync.Mutex
	cl     *kgo.Client
	closed atomic.Bool

	mu      sync.Mutex // held by Write
	fields  connectors.FieldReader
	parser  fastjson.Parser
	nameBuf []byte
}

var (
	_ connectors.Sink      = (*kafkaSink)(nil)
	_ connectors.Connector = (*kafkaSink)(nil)
	_ connectors.TxnSink   = (*kafkaSink)(nil)
)

func newKafka(conf *connectors.Config, res connectors.Resources) (connectors.Sink, error) {
	conn, err := kafkaconf.Parse(conf)
	if err != nil {
		return nil, err
	}
	s := &kafkaSink{conn: conn, idempotent: conf.Bool("idempotent"), maxBatch: int32(conf.Size("max_batch_bytes")),
		timeout: conf.Duration("timeout"), autoCreate: conf.Bool("auto_create_topics"), positions: conf.String("positions_topic"), log: res.Logger}
	if why := kafkaconf.ValidTopic(s.positions); why != "" {
		return nil, conf.Errorf("positions_topic", "%q: %s", s.positions, why)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	topic := conf.String("topic")
	if strings.Contains(topic, "{{") {
		t, err := parsePathTemplate(topic)
		if err != nil {
			return nil, conf.Errorf("topic", "%v", err)
		}
		s.tmpl = t
	} else if why := kafkaconf.ValidTopic(topic); why != "" {
		return nil, conf.Errorf("topic", "%q: %s", topic, why)
	} else {
		s.fixed = topic
	}
	if k := conf.String("key"); k != "" {
		s.keyField = strings.Split(k, ".")
	}
	switch conf.String("acks") {
	case "all":
		s.acks = kgo.AllISRAcks()
	case "leader":
		s.acks = kgo.LeaderAck()
	case "none":
		s.acks = kgo.NoAck()
	}
	if s.idempotent && conf.String("acks") != "all" {
		return nil, conf.Errorf("acks", "the idempotent producer needs acks: all; set idempotent: false for acks: %s", conf.String("acks"))
	}
	comp, err := codecs.ParseCompression(conf.String("compression"))
	if err != nil {
		return nil, conf.Errorf("compression", "%v", err)
	}
	s.comp = comp
	return s, nil
}

// StartTxn implements connectors.TxnSink: a transactional producer on the
// sink's cluster with id, whose SendOffsets writes group's positions to
// positions_topic, and the positions the last committed transaction left.
func (s *kafkaSink) StartTxn(ctx context.Context, id, group string) (hub.TxnProducer, map[hub.TopicPartition]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return nil, nil, errSinkClosed
	}
	if s.txcl == nil {
		comp := s.comp
		cl, err := kafkaclient.New(kafkaclient.Options{Conn: *s.conn, Compression: &comp, MaxBatchBytes: s.maxBatch, Logger: s.log})
		if err != nil {
			return nil, nil, fmt.Errorf("sinks: kafka: %w", err)
		}
		s.clMu.Lock()
		s.txcl = cl
		s.clMu.Unlock()
	}
	// Initialising the id first ends what a killed run left open, so
	// the positions read next are the last committed ones.
	tx, err := s.txcl.PositionTxn(ctx, id, group, s.positions, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("sinks: kafka: %w", err)
	}
	pos, err := s.txcl.ReadPositions(ctx, group, s.positions)
	if err != nil {
		tx.Close()
		return nil, nil, fmt.Errorf("sinks: kafka: %w", err)
	}
	if s.tx != nil {
		s.tx.Close()
	}
	s.tx = tx
	return tx, pos, nil
}

// topicKey returns the topic and key of m's record, or why the template
// gives no valid topic. The caller holds mu.
func (s *kafkaSink) topicKey(m *connectors.Message) (string, []byte, error) {
	topic := s.fixed
	if s.tmpl != nil {
		s.nameBuf = s.tmpl.appendPath(s.nameBuf[:0], m, &s.parser)
		if why := kafkaconf.ValidTopic(string(s.nameBuf)); why != "" {
			return "", nil, fmt.Errorf("sinks: kafka: the template gives topic %q: %s", s.nameBuf, why)
		}
		topic = string(s.nameBuf)
	}
	key := m.Key
	if s.keyField != nil {
		if v := s.fields.Get(m, s.keyField...); v != nil {
			key = connectors.AppendText(nil, v)
		}
	}
	return topic, key, nil
}

// writeTxn produces the batch in the open transaction, topic by topic.
func (s *kafkaSink) writeTxn(ctx context.Context, batch []*connectors.Message) error {
	var failures []connectors.Failure
	type target struct {
		idx  []int
		recs []hub.Record
	}
	byTopic := map[string]*target{}
	var order []string
	for i, m := range batch {
		topic, key, err := s.topicKey(m)
		if err != nil {
			failures = append(failures, connectors.Failure{Index: i, Err: err})
			continue
		}
		t := byTopic[topic]
		if t == nil {
			t = &target{}
			byTopic[topic] = t
			order = append(order, topic)
		}
		t.idx = append(t.idx, i)
		t.recs = append(t.recs, hub.Record{Key: key, Value: m.Value, Headers: m.Headers, Timestamp: m.Time})
	}
	var unavailable error
	for _, topic := range order {
		t := byTopic[topic]
		wctx, cancel := context.WithTimeout(ctx, s.timeout)
		rs := s.tx.Produce(wctx, topic, t.recs, hub.ProduceOptions{MaxBatchBytes: int(s.maxBatch)})
		cancel()
		for j, r := range rs {
			if r.Err == nil {
				continue
			}
			if ctx.Err() != nil {
				return fmt.Errorf("sinks: kafka: %w", ctx.Err())
			}
			err := fmt.Errorf("sinks: kafka: topic %s: %w", topic, r.Err)
			switch {
			case hub.Unreachable(r.Err):
				if unavailable == nil {
					unavailable = err
				}
			case hub.RecordAtFault(r.Err):
				failures = append(failures, connectors.Failure{Index: t.idx[j], Err: err})
			default:
				failures = append(failures, connectors.Failure{Index: t.idx[j], Err: err, Retryable: true})
			}
		}
	}
	if unavailable != nil {
		return connectors.Unavailable(unavailable)
	}
	if len(failures) > 0 {
		return &connectors.WriteError{Failures: failures}
	}
	return nil
}

// Connect makes the client and checks that a broker answers (and accepts
// the credentials). Calling it again once connected does nothing.
func (s *kafkaSink) Connect(ctx context.Context) error {
	s.clMu.Lock()
	defer s.clMu.Unlock()
	if s.closed.Load() {
		return errSinkClosed
	}
	if s.cl != nil {
		return nil
	}
	opts, err := s.conn.Opts()
	if err != nil {
		return fmt.Errorf("sinks: kafka: %w", err)
	}
	opts = append(opts, kgo.RequiredAcks(s.acks), kgo.ProducerBatchCompression(kafkaclient.Codec(s.comp)),
		kgo.ProducerBatchMaxBytes(s.maxBatch), kgo.ProduceRequestTimeout(max(s.timeout, time.Second)),
		kgo.ProducerLinger(0))
	if !s.idempotent {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	if s.autoCreate {
		opts = append(opts, kgo.AllowAutoTopicCreation())
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("sinks: kafka: %w", err)
	}
	if err := cl.Ping(ctx); err != nil {
		cl.Close()
		return fmt.Errorf("sinks: kafka: no broker of %v answers: %w", s.conn.Brokers, err)
	}
	s.cl = cl
	return nil
}

func (s *kafkaSink) client() *kgo.Client {
	s.clMu.Lock()
	defer s.clMu.Unlock()
	return s.cl
}

// Write produces the batch and waits for every record's acknowledgement.
func (s *kafkaSink) Write(ctx context.Context, batch []*connectors.Message) error {
	if s.closed.Load() {
		return errSinkClosed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tx != nil {
		return s.writeTxn(ctx, batch)
	}
	cl := s.client()
	if cl == nil {
		// Never connected, or the client was dropped after a write got
		// stuck: connect again.
		cctx, cancel := context.WithTimeout(ctx, s.timeout)
		err := s.Connect(cctx)
		cancel()
		if err != nil {
			return connectors.Unavailable(err)
		}
		if cl = s.client(); cl == nil {
			return errSinkClosed
		}
	}
	var failures []connectors.Failure
	recs := make([]kgo.Record, len(batch))
	ptrs := make([]*kgo.Record, 0, len(batch))
	idx := make(map[*kgo.Record]int, 0)
	for i, m := range batch {
		r := &recs[i]
		var err error
		if r.Topic, r.Key, err = s.topicKey(m); err != nil {
			failures = append(failures, connectors.Failure{Index: i, Err: err})
			continue
		}
		r.Value = m.Value // nil stays nil: a tombstone
		r.Timestamp = m.Time
		if len(m.Headers) > 0 {
			r.Headers = make([]kgo.RecordHeader, len(m.Headers))
			for j, h := range m.Headers {
				r.Headers[j] = kgo.RecordHeader{Key: string(h.Key), Value: h.Value}
			}
		}
		ptrs = append(ptrs, r)
	}
	var unavailable error
	if len(ptrs) > 0 {
		// Not kgo's RecordDeliveryTimeout: it counts from the record's
		// timestamp, which is the event's time here, often long past.
		results := s.produce(ctx, cl, ptrs)
		for _, res := range results {
			if res.Err == nil {
				continue
			}
			if ctx.Err() != nil {
				return fmt.Errorf("sinks: kafka: %w", ctx.Err())
			}
			if errors.Is(res.Err, context.DeadlineExceeded) {
				res.Err = fmt.Errorf("%w: not acknowledged within %v", kgo.ErrRecordTimeout, s.timeout)
			}
			if len(idx) == 0 {
				for i := range recs {
					idx[&recs[i]] = i
				}
			}
			i := idx[res.Record]
			herr := kafkaclient.Translate(res.Err)
			err := fmt.Errorf("sinks: kafka: topic %s: %w", res.Record.Topic, herr)
			switch {
			case hub.Unreachable(herr):
				if unavailable == nil {
					unavailable = err
				}
			case hub.RecordAtFault(herr):
				failures = append(failures, connectors.Failure{Index: i, Err: err})
			default:
				failures = append(failures, connectors.Failure{Index: i, Err: err, Retryable: true})
			}
		}
	}
	if unavailable != nil {
		// Part of the batch may be stored; all of it is tried again
		// (at least once), with no limit on attempts.
		return connectors.Unavailable(unavailable)
	}
	if len(failures) > 0 {
		return &connectors.WriteError{Failures: failures}
	}
	return nil
}

// produce produces the records and waits for them, at most timeout (and a
// grace second) before giving up on the client: kgo keeps retrying a batch
// it sent and got no answer for whatever the context says (failing it
// could break the idempotent producer's sequence), so when the cluster is
// gone the client is closed, which fails every record it holds, and the
// next Write connects again.
func (s *kafkaSink) produce(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) kgo.ProduceResults {
	wctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	done := make(chan kgo.ProduceResults, 1)
	go func() { done <- cl.ProduceSync(wctx, recs...) }()
	select {
	case res := <-done:
		return res
	case <-wctx.Done():
	}
	grace := time.NewTimer(time.Second)
	defer grace.Stop()
	select {
	case res := <-done:
		return res
	case <-grace.C:
	}
	s.clMu.Lock()
	if s.cl == cl {
		s.cl = nil
	}
	s.clMu.Unlock()
	s.log.Warn("weir: kafka cluster not answering; reconnecting", "brokers", s.conn.Brokers, "timeout", s.timeout)
	cl.Close()
	return <-done
}

// Close closes the client; records of a Write in progress fail. It is safe
// to call more than once.
func (s *kafkaSink) Close(context.Context) error {
	s.closed.Store(true)
	s.clMu.Lock()
	cl := s.cl
	s.cl = nil
	txcl := s.txcl
	s.clMu.Unlock()
	if cl != nil {
		cl.Close()
	}
	if txcl != nil {
		txcl.Close() // safe alongside a Write: it fails then
	}
	return nil
}
