package sinks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fastjson"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/internal/kafkaconf"
)

var datasetSpec = connectors.Spec{
	Kind:    connectors.SinkKind,
	Name:    "dataset",
	Summary: "Write records to another hub dataset, keeping key, headers and time; a write returns once they are durable.",
	Doc: "Records go to the dataset through the pipeline's hub client: in-process for the embedded hub, over the Kafka " +
		"protocol with hub.kafka. Each keeps its key (or takes it from the field named by key), headers and time; a " +
		"record with a key goes to the partition the key hashes to (Kafka's murmur2, like every producer), the others " +
		"of one write to one partition, round robin across writes. A write returns once the records are stored as the " +
		"dataset's fsync policy says (fsync: always means on disk), so the pipeline commits only what is stored.\n\n" +
		"dataset may be a template like the file sink's path: {{ .dataset }}, {{ .partition }}, {{ .key }}, {{ .date }} " +
		"and the other time parts, {{ .field \"name\" }}. A fixed dataset must exist when the pipeline starts (declare it " +
		"under datasets, or set hub.auto_create): the sink waits for it. A record whose template gives a name that is " +
		"not a valid dataset name (letters, digits, '.', '_', '-'), or a dataset that does not exist, goes to the " +
		"dead-letter dataset, as does a record larger than the dataset's max_message_bytes. A hub that is closed or out " +
		"of reach holds the pipeline back. Do not write to the dataset the pipeline reads: every record would come back.",
	Scalar: "dataset",
	Fields: []connectors.Field{
		{Name: "dataset", Type: connectors.TypeString, Required: true, Dataset: true, Doc: "The dataset to write to, or a template naming one per record.",
			Example: "errors-{{ .field \"service\" }}"},
		{Name: "key", Type: connectors.TypeString, Doc: "A field (dotted path) whose value becomes the key; records without it keep their key. Default: keep every key."},
		{Name: "compression", Type: connectors.TypeString, Default: "none", Enum: []string{"none", "gzip", "snappy", "lz4", "zstd"},
			Doc: "Compression of the record batches written."},
		{Name: "max_batch_bytes", Type: connectors.TypeSize, Default: "512KiB",
			Doc: "Most bytes of records in one record batch (keep it under the dataset's max_message_bytes); a write may store several."},
	},
	Example: `pipelines:
  errors:
    from: access
    processors:
      - parse: json
      - filter: 'status >= 500'
    to:
      - dataset: {dataset: access-errors, key: host, compression: zstd}`,
}

func init() { connectors.MustRegisterSink(datasetSpec, newDataset) }

// datasetSink writes to hub datasets. Write is called by one goroutine at
// a time (mu guards the buffers regardless); Close may be called from any.
type datasetSink struct {
	client      hub.Client
	fixed       string        // the dataset, when the template is fixed
	tmpl        *pathTemplate // else the template
	keyField    []string
	compression codecs.Compression
	maxBatch    int
	log         *slog.Logger

	mu      sync.Mutex // held by Write
	fields  connectors.FieldReader
	parser  fastjson.Parser
	nameBuf []byte
	keyBuf  []byte
	parts   []*datasetPart // reused across writes
	sticky  uint32
	closed  atomic.Bool
}

// datasetPart is the records of one write going to one partition.
type datasetPart struct {
	dataset   string
	partition int32
	idx       []int  // indexes in the batch, in order
	batches   []byte // the built record batches, back to back
	b         codecs.Builder
	err       error
}

var (
	_ connectors.Sink      = (*datasetSink)(nil)
	_ connectors.Connector = (*datasetSink)(nil)
)

func newDataset(conf *connectors.Config, res connectors.Resources) (connectors.Sink, error) {
	s := &datasetSink{client: res.Client, maxBatch: int(conf.Size("max_batch_bytes")), log: res.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	name := conf.String("dataset")
	if strings.Contains(name, "{{") {
		t, err := parsePathTemplate(name)
		if err != nil {
			return nil, conf.Errorf("dataset", "%v", err)
		}
		s.tmpl = t
	} else if why := kafkaconf.ValidTopic(name); why != "" {
		return nil, conf.Errorf("dataset", "%q: %s", name, strings.Replace(why, "topic", "dataset", 1))
	} else {
		s.fixed = name
	}
	if k := conf.String("key"); k != "" {
		s.keyField = strings.Split(k, ".")
	}
	c, err := codecs.ParseCompression(conf.String("compression"))
	if err != nil {
		return nil, conf.Errorf("compression", "%v", err)
	}
	s.compression = c
	if s.maxBatch < 1024 {
		return nil, conf.Errorf("max_batch_bytes", "must be at least 1KiB")
	}
	return s, nil
}

// Connect checks that a fixed dataset exists (or is created, with auto
// creation on), so that a missing one holds the pipeline back at the start
// instead of sending its records to the dead-letter dataset.
func (s *datasetSink) Connect(ctx context.Context) error {
	if s.client == nil {
		return errors.New("sinks: dataset: no hub client")
	}
	if s.fixed == "" {
		return nil
	}
	if _, err := s.client.Partitions(ctx, s.fixed); err != nil {
		return fmt.Errorf("sinks: dataset %s: %w", s.fixed, err)
	}
	return nil
}

// Write stores the batch, every partition at once, and returns when all
// of it is durable or failed.
func (s *datasetSink) Write(ctx context.Context, batch []*connectors.Message) error {
	if s.closed.Load() {
		return errSinkClosed
	}
	if s.client == nil {
		return errors.New("sinks: dataset: no hub client")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var failures []connectors.Failure
	fail := func(i int, err error, retry bool) {
		failures = append(failures, connectors.Failure{Index: i, Err: err, Retryable: retry})
	}
	// Which dataset and partition each record goes to.
	type target struct {
		dataset string
		p       int32
	}
	counts := map[string]int32{}
	bad := map[string]error{} // datasets that cannot be written
	byTarget := map[target]*datasetPart{}
	used := 0
	s.sticky++
	var unavailable error
	for i, m := range batch {
		name := s.fixed
		if s.tmpl != nil {
			s.nameBuf = s.tmpl.appendPath(s.nameBuf[:0], m, &s.parser)
			name = string(s.nameBuf)
			if why := kafkaconf.ValidTopic(name); why != "" {
				fail(i, fmt.Errorf("sinks: dataset: the template gives %q: %s", name, strings.Replace(why, "topic", "dataset", 1)), false)
				continue
			}
		}
		if err := bad[name]; err != nil {
			fail(i, err, false)
			continue
		}
		n, ok := counts[name]
		if !ok {
			var err error
			n, err = s.client.Partitions(ctx, name)
			switch {
			case err == nil:
				counts[name] = n
			case ctx.Err() != nil:
				return fmt.Errorf("sinks: dataset: %w", ctx.Err())
			case s.tmpl != nil && (errors.Is(err, hub.ErrUnknownDataset) || errors.Is(err, hub.ErrInvalidDatasetName)):
				bad[name] = fmt.Errorf("sinks: dataset %s: %w", name, err)
				fail(i, bad[name], false)
				continue
			default:
				// A fixed dataset gone, or the hub out of reach: hold back.
				return connectors.Unavailable(fmt.Errorf("sinks: dataset %s: %w", name, err))
			}
		}
		key := m.Key
		if s.keyField != nil {
			if v := s.fields.Get(m, s.keyField...); v != nil {
				s.keyBuf = connectors.AppendText(s.keyBuf[:0], v)
				key = s.keyBuf
			}
		}
		p := int32(s.sticky % uint32(n))
		if key != nil {
			p = hub.PartitionForKey(key, n)
		}
		dp := byTarget[target{name, p}]
		if dp == nil {
			if used == len(s.parts) {
				s.parts = append(s.parts, &datasetPart{})
			}
			dp = s.parts[used]
			used++
			dp.dataset, dp.partition, dp.idx, dp.batches, dp.err = name, p, dp.idx[:0], dp.batches[:0], nil
			dp.b.Compression = s.compression
			dp.b.Reset()
			byTarget[target{name, p}] = dp
		}
		dp.idx = append(dp.idx, i)
		s.appendRecord(dp, m, key)
	}
	parts := s.parts[:used]
	for _, dp := range parts {
		if err := s.flushBuilder(dp); err != nil {
			dp.err = err
		}
	}
	// Every partition at once: each waits for its own durability.
	var wg sync.WaitGroup
	for _, dp := range parts {
		if dp.err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, dp.err = s.client.ProduceBatch(ctx, dp.dataset, dp.partition, dp.batches)
		}()
	}
	wg.Wait()
	for _, dp := range parts {
		if dp.err == nil {
			continue
		}
		if ctx.Err() != nil {
			return fmt.Errorf("sinks: dataset: %w", ctx.Err())
		}
		err := fmt.Errorf("sinks: dataset %s/%d: %w", dp.dataset, dp.partition, dp.err)
		switch classifyProduce(dp.err) {
		case errPermanent:
			if len(dp.idx) == 1 {
				fail(dp.idx[0], err, false)
				continue
			}
			// One record may spoil the batch (too large): try each alone.
			for _, i := range dp.idx {
				if err := s.produceOne(ctx, dp, batch[i]); err != nil {
					fail(i, fmt.Errorf("sinks: dataset %s/%d: %w", dp.dataset, dp.partition, err), classifyProduce(err) == errRetryable)
				}
			}
		case errUnavailable:
			unavailable = err
		default:
			for _, i := range dp.idx {
				fail(i, err, true)
			}
		}
	}
	for _, dp := range parts {
		if cap(dp.batches) > 4*s.maxBatch {
			dp.batches = nil
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

// appendRecord adds m to dp's builder, sealing the batch first when m
// would take it past max_batch_bytes.
func (s *datasetSink) appendRecord(dp *datasetPart, m *connectors.Message, key []byte) {
	size := len(key) + len(m.Value) + 32
	for _, h := range m.Headers {
		size += len(h.Key) + len(h.Value) + 8
	}
	if dp.b.NumRecords() > 0 && dp.b.Size()+size > s.maxBatch {
		if err := s.flushBuilder(dp); err != nil {
			dp.err = err
		}
	}
	ts := time.Now().UnixMilli()
	if !m.Time.IsZero() {
		ts = m.Time.UnixMilli()
	}
	dp.b.Append(ts, key, m.Value, m.Headers)
}

// flushBuilder seals dp's builder into dp.batches.
func (s *datasetSink) flushBuilder(dp *datasetPart) error {
	if dp.b.NumRecords() == 0 {
		return nil
	}
	built, err := dp.b.Build()
	if err != nil {
		return err
	}
	dp.batches = append(dp.batches, built...)
	dp.b.Reset()
	return nil
}

// produceOne stores one record in a batch of its own.
func (s *datasetSink) produceOne(ctx context.Context, dp *datasetPart, m *connectors.Message) error {
	key := m.Key
	if s.keyField != nil {
		if v := s.fields.Get(m, s.keyField...); v != nil {
			key = connectors.AppendText(nil, v)
		}
	}
	var b codecs.Builder
	b.Compression = s.compression
	ts := time.Now().UnixMilli()
	if !m.Time.IsZero() {
		ts = m.Time.UnixMilli()
	}
	b.Append(ts, key, m.Value, m.Headers)
	built, err := b.Build()
	if err != nil {
		return err
	}
	_, err = s.client.ProduceBatch(ctx, dp.dataset, dp.partition, built)
	return err
}

// Close marks the sink closed; the hub client belongs to the pipeline.
func (s *datasetSink) Close(context.Context) error {
	s.closed.Store(true)
	return nil
}

// errClass sorts produce errors into what the runtime should do.
type errClass int

const (
	errRetryable   errClass = iota // try the records again, a bounded number of times
	errPermanent                   // the record itself is at fault: dead-letter it
	errUnavailable                 // the other end is out of reach: hold the pipeline back
)

// classifyProduce sorts an error from the hub (in-process or through
// franz-go) or from a Kafka producer.
func classifyProduce(err error) errClass {
	switch {
	case errors.Is(err, hub.ErrBatchTooLarge), errors.Is(err, hub.ErrInvalidRecord), errors.Is(err, hub.ErrCorruptBatch),
		errors.Is(err, hub.ErrInvalidDatasetName), errors.Is(err, codecs.ErrTooLarge),
		errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge), errors.Is(err, kerr.InvalidRecord),
		errors.Is(err, kerr.CorruptMessage), errors.Is(err, kerr.InvalidTopicException), errors.Is(err, kerr.InvalidTimestamp):
		return errPermanent
	case errors.Is(err, hub.ErrClosed), errors.Is(err, kgo.ErrClientClosed), errors.Is(err, kgo.ErrRecordTimeout),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, kerr.SaslAuthenticationFailed), errors.Is(err, kerr.UnsupportedSaslMechanism),
		errors.Is(err, kerr.IllegalSaslState), errors.Is(err, kerr.TopicAuthorizationFailed),
		errors.Is(err, kerr.ClusterAuthorizationFailed), errors.Is(err, kerr.BrokerNotAvailable),
		errors.Is(err, kerr.LeaderNotAvailable), errors.Is(err, kerr.NotLeaderForPartition),
		errors.Is(err, kerr.NetworkException), errors.Is(err, kerr.RequestTimedOut):
		return errUnavailable
	}
	if _, ok := errors.AsType[*net.OpError](err); ok {
		return errUnavailable
	}
	if _, ok := errors.AsType[*kgo.ErrFirstReadEOF](err); ok {
		return errUnavailable
	}
	return errRetryable
}
