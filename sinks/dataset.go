package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

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
	Scalar:        "dataset",
	Transactional: true,
	Fields: []connectors.Field{
		{Name: "dataset", Type: connectors.TypeString, Required: true, Dataset: true, Doc: "The dataset to write to, or a template naming one per record.",
			Example: "errors-{{ .field \"service\" }}"},
		{Name: "key", Type: connectors.TypeString, Doc: "A field (dotted path) whose value becomes the key; records without it keep their key. Default: keep every key."},
		{Name: "compression", Type: connectors.TypeString, Default: "dataset", Enum: []string{"dataset", "none", "gzip", "snappy", "lz4", "zstd"},
			Doc: "Compression of the record batches written. dataset: the dataset's compression (lz4 where it keeps the producer's)."},
		{Name: "max_batch_bytes", Type: connectors.TypeSize, Default: "512KiB", Min: "1KiB", Max: "256MiB",
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
	client   hub.Client
	fixed    string        // the dataset, when the template is fixed
	tmpl     *pathTemplate // else the template
	keyField []string
	opts     hub.ProduceOptions
	log      *slog.Logger

	mu      sync.Mutex // held by Write
	fields  connectors.FieldReader
	parser  fastjson.Parser
	nameBuf []byte
	keyBuf  []byte
	targets []*datasetTarget // reused across writes
	closed  atomic.Bool
}

// datasetTarget is the records of one write going to one dataset.
type datasetTarget struct {
	dataset string
	idx     []int // indexes in the batch, in order
	recs    []hub.Record
	results hub.RecordResults
}

var (
	_ connectors.Sink      = (*datasetSink)(nil)
	_ connectors.Connector = (*datasetSink)(nil)
)

func newDataset(conf *connectors.Config, res connectors.Resources) (connectors.Sink, error) {
	s := &datasetSink{client: res.Client, log: res.Logger}
	s.opts.MaxBatchBytes = int(conf.Size("max_batch_bytes"))
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
	if c := conf.String("compression"); c != "dataset" {
		if _, err := codecs.ParseCompression(c); err != nil {
			return nil, conf.Errorf("compression", "%v", err)
		}
		s.opts.Compression = c
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

// Write stores the batch, every dataset at once, and returns when all of
// it is durable or failed. The hub client splits each dataset's records
// into per-partition batches and reports on each record.
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
	bad := map[string]error{} // datasets that cannot be written
	byName := map[string]*datasetTarget{}
	used := 0
	s.keyBuf = s.keyBuf[:0]
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
		t := byName[name]
		if t == nil {
			if _, err := s.client.Partitions(ctx, name); err != nil {
				switch {
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
			if used == len(s.targets) {
				s.targets = append(s.targets, &datasetTarget{})
			}
			t = s.targets[used]
			used++
			t.dataset, t.idx, t.recs, t.results = name, t.idx[:0], t.recs[:0], nil
			byName[name] = t
		}
		key := m.Key
		if s.keyField != nil {
			if v := s.fields.Get(m, s.keyField...); v != nil {
				at := len(s.keyBuf)
				s.keyBuf = connectors.AppendText(s.keyBuf, v)
				key = s.keyBuf[at:len(s.keyBuf):len(s.keyBuf)]
			}
		}
		t.idx = append(t.idx, i)
		t.recs = append(t.recs, hub.Record{Key: key, Value: m.Value, Headers: m.Headers, Timestamp: m.Time})
	}
	targets := s.targets[:used]
	if len(targets) == 1 {
		targets[0].results = s.client.Produce(ctx, targets[0].dataset, targets[0].recs, s.opts)
	} else {
		var wg sync.WaitGroup
		for _, t := range targets {
			wg.Go(func() { t.results = s.client.Produce(ctx, t.dataset, t.recs, s.opts) })
		}
		wg.Wait()
	}
	var unavailable error
	for _, t := range targets {
		var atFault []int // indexes in t of records refused as they are
		for j, r := range t.results {
			if r.Err == nil {
				continue
			}
			if ctx.Err() != nil {
				return fmt.Errorf("sinks: dataset: %w", ctx.Err())
			}
			err := fmt.Errorf("sinks: dataset %s: %w", t.dataset, r.Err)
			switch {
			case hub.RecordAtFault(r.Err):
				atFault = append(atFault, j)
			case hub.Unreachable(r.Err):
				unavailable = err
			default:
				fail(t.idx[j], err, true)
			}
		}
		if len(atFault) == 1 {
			j := atFault[0]
			fail(t.idx[j], fmt.Errorf("sinks: dataset %s: %w", t.dataset, t.results[j].Err), false)
			continue
		}
		// A batch refused as a whole (too large for the cluster) may hold
		// records that are fine alone: try each in a write of its own.
		for _, j := range atFault {
			err := s.client.Produce(ctx, t.dataset, t.recs[j:j+1], s.opts).FirstErr()
			if err != nil {
				fail(t.idx[j], fmt.Errorf("sinks: dataset %s: %w", t.dataset, err), !hub.RecordAtFault(err))
			}
		}
	}
	for _, t := range targets {
		clear(t.recs)
		t.results = nil
	}
	if unavailable != nil {
		return connectors.Unavailable(unavailable)
	}
	if len(failures) > 0 {
		return &connectors.WriteError{Failures: failures}
	}
	return nil
}

// Close marks the sink closed; the hub client belongs to the pipeline.
func (s *datasetSink) Close(context.Context) error {
	s.closed.Store(true)
	return nil
}
