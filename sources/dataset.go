package sources

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/internal/ackq"
)

var datasetSpec = connectors.Spec{
	Kind:    connectors.SourceKind,
	Name:    "dataset",
	Summary: "Read hub datasets into the source's dataset, in a consumer group or as a broadcast reader; positions are committed once the records are stored.",
	Doc: "Reads every partition of the datasets named by from through the hub client (in-process for the embedded hub, " +
		"over the Kafka protocol with hub.kafka), as a member of a consumer group: several `weir run` processes with " +
		"the same group share the partitions. With broadcast, this source reads every partition itself instead; the " +
		"group then only names where its positions are kept. A position is committed only after the runtime " +
		"acknowledged the batch, that is once the records are stored in the source's dataset: at least once, end to " +
		"end. After a batch failed (the source stopped while storing it), nothing more is committed; what follows is " +
		"read again at the next start.\n\n" +
		"Records keep their key, value, headers and time; the key picks the partition of the source's dataset (the " +
		"source's key setting can take one from a field). Batches are cut at max_batch_records and max_batch_bytes: " +
		"keep the bytes under the destination dataset's max_message_bytes.",
	Scalar: "from",
	Fields: []connectors.Field{
		{Name: "from", Type: connectors.TypeStrings, Required: true, Dataset: true, Doc: "Dataset(s) to read.", Example: []string{"access"}},
		{Name: "group", Type: connectors.TypeString, Doc: "Consumer group. Default: sources.<the source's name>."},
		{Name: "broadcast", Type: connectors.TypeBool, Default: false, Doc: "Read every partition here instead of sharing them in the group."},
		{Name: "start", Type: connectors.TypeString, Default: "earliest", Enum: []string{"earliest", "latest"},
			Doc: "Where to start in a partition without a committed position."},
		{Name: "max_batch_records", Type: connectors.TypeInt, Default: 10000, Min: 1, Doc: "Most records in one batch."},
		{Name: "max_batch_bytes", Type: connectors.TypeSize, Default: "512KiB", Min: "1B", Max: "1GiB", Doc: "Most bytes of keys and values in one batch (a larger record goes alone)."},
		{Name: "max_pending", Type: connectors.TypeInt, Default: 4, Min: 1, Doc: "Most batches handed over and not yet acknowledged."},
	},
	Example: `sources:
  copy:
    dataset: {from: [access], group: archive-copy}
    to: access-archive`,
}

func init() { connectors.MustRegisterSource(datasetSpec, newDataset) }

// datasetSource reads datasets through a hub.Consumer. Read and Close are
// called by one goroutine at a time; acks may come from any.
//
// The consumer is used under mu only (it is not safe for concurrent use).
// An ack records the batch's positions; they are committed at once if the
// consumer is free, else by the next Read, the consumer's OnRevoked, or
// Close, always in the order the batches were read.
type datasetSource struct {
	client     hub.Client
	opts       hub.ConsumeOptions
	maxRecords int
	maxBytes   int
	log        *slog.Logger
	acks       *ackq.Tracker[hub.TopicPartition, int64] // batches handed over, max_pending at most

	mu sync.Mutex // using the consumer

	pmu      sync.Mutex // the fields below
	consumer hub.Consumer
	queue    []*connectors.Message
	ready    map[hub.TopicPartition]int64 // acknowledged, not yet committed
	closed   bool
}

var (
	_ connectors.Source    = (*datasetSource)(nil)
	_ connectors.Connector = (*datasetSource)(nil)
)

func newDataset(conf *connectors.Config, res connectors.Resources) (connectors.Source, error) {
	s := &datasetSource{
		client:     res.Client,
		maxRecords: conf.Int("max_batch_records"),
		maxBytes:   int(conf.Size("max_batch_bytes")),
		log:        res.Logger,
		ready:      map[hub.TopicPartition]int64{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	group := conf.String("group")
	if group == "" {
		group = res.Name
		if group == "" {
			group = "sources.dataset"
		}
	}
	s.opts = hub.ConsumeOptions{Datasets: conf.Strings("from"), Group: group, Broadcast: conf.Bool("broadcast"),
		ClientID: "weir-" + group, OnRevoked: s.onRevoked}
	if conf.String("start") == "latest" {
		s.opts.Start.Kind = hub.StartLatest
	}
	if len(s.opts.Datasets) == 0 {
		return nil, conf.Errorf("from", "needs at least one dataset")
	}
	for _, d := range s.opts.Datasets {
		if d == "" || strings.ContainsAny(d, "/ {}") {
			return nil, conf.Errorf("from", "%q is not a dataset name", d)
		}
	}
	s.acks = ackq.New[hub.TopicPartition, int64](conf.Int("max_pending"))
	s.opts.MaxPollBytes = int32(min(2*s.maxBytes, 64<<20))
	return s, nil
}

// Connect starts the consumer; a dataset that does not exist (and cannot be
// created) fails it. Calling it again once connected does nothing.
func (s *datasetSource) Connect(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isClosed() {
		return errSourceClosed
	}
	s.pmu.Lock()
	connected := s.consumer != nil
	s.pmu.Unlock()
	if connected {
		return nil
	}
	if s.client == nil {
		return errors.New("sources: dataset: no hub client")
	}
	c, err := s.client.Consume(ctx, s.opts)
	if err != nil {
		return fmt.Errorf("sources: dataset %v: %w", s.opts.Datasets, err)
	}
	s.pmu.Lock()
	s.consumer = c
	s.pmu.Unlock()
	return nil
}

func (s *datasetSource) isClosed() bool {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	return s.closed
}

// Read returns the next batch, polling the hub until there are records or
// ctx ends. It waits while max_pending batches are unacknowledged.
func (s *datasetSource) Read(ctx context.Context) ([]*connectors.Message, connectors.AckFunc, error) {
	if err := s.acks.Acquire(ctx); err != nil {
		return nil, nil, err
	}
	msgs, b, err := s.read(ctx)
	if err != nil || len(msgs) == 0 {
		s.acks.Release()
		return nil, nil, err
	}
	return msgs, s.ackFunc(b), nil
}

func (s *datasetSource) read(ctx context.Context) ([]*connectors.Message, *ackq.Batch[hub.TopicPartition, int64], error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pmu.Lock()
	c, closed := s.consumer, s.closed
	s.pmu.Unlock()
	if closed {
		return nil, nil, errSourceClosed
	}
	if c == nil {
		return nil, nil, errors.New("sources: dataset: not connected")
	}
	for {
		s.commitReady(ctx)
		if msgs, b := s.take(); len(msgs) > 0 {
			return msgs, b, nil
		}
		fetches, err := c.Poll(ctx)
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		if err != nil {
			return nil, nil, fmt.Errorf("sources: dataset %v: %w", s.opts.Datasets, err)
		}
		s.enqueue(fetches)
	}
}

// enqueue copies the records of a poll (valid only until the next Poll)
// into messages waiting to be handed over.
func (s *datasetSource) enqueue(fetches []hub.Fetch) {
	n, size, nh := 0, 0, 0
	for _, f := range fetches {
		n += len(f.Records)
		for i := range f.Records {
			r := &f.Records[i]
			size += len(r.Key) + len(r.Value)
			nh += len(r.Headers)
			for _, h := range r.Headers {
				size += len(h.Key) + len(h.Value)
			}
		}
	}
	if n == 0 {
		return
	}
	// One allocation each for the bytes, the headers and the messages of
	// the poll.
	buf := make([]byte, 0, size)
	hdrs := make([]codecs.RecordHeader, 0, nh)
	msgs := make([]connectors.Message, 0, n)
	cp := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		buf = append(buf, b...)
		return buf[len(buf)-len(b) : len(buf) : len(buf)]
	}
	s.pmu.Lock()
	defer s.pmu.Unlock()
	for _, f := range fetches {
		for i := range f.Records {
			r := &f.Records[i]
			m := connectors.Message{Key: cp(r.Key), Value: cp(r.Value), Time: time.UnixMilli(r.Timestamp),
				Dataset: f.Dataset, Partition: f.Partition, Offset: r.Offset}
			if len(r.Headers) > 0 {
				at := len(hdrs)
				for _, h := range r.Headers {
					hdrs = append(hdrs, codecs.RecordHeader{Key: cp(h.Key), Value: cp(h.Value)})
				}
				m.Headers = hdrs[at:len(hdrs):len(hdrs)]
			}
			msgs = append(msgs, m)
			s.queue = append(s.queue, &msgs[len(msgs)-1])
		}
	}
}

// take hands over the next batch from the queue and records it as pending.
func (s *datasetSource) take() ([]*connectors.Message, *ackq.Batch[hub.TopicPartition, int64]) {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if len(s.queue) == 0 {
		return nil, nil
	}
	end, size := 0, 0
	for end < len(s.queue) && end < s.maxRecords {
		sz := len(s.queue[end].Key) + len(s.queue[end].Value)
		if end > 0 && size+sz > s.maxBytes {
			break
		}
		size += sz
		end++
	}
	msgs := make([]*connectors.Message, end)
	copy(msgs, s.queue[:end])
	clear(s.queue[:end])
	s.queue = s.queue[end:]
	if len(s.queue) == 0 {
		s.queue = nil
	}
	offsets := map[hub.TopicPartition]int64{}
	for _, m := range msgs {
		offsets[hub.TopicPartition{Topic: m.Dataset, Partition: m.Partition}] = m.Offset + 1
	}
	return msgs, s.acks.Add(offsets)
}

// ackFunc returns the acknowledgement of batch b: its positions are ready
// to commit once every batch before it is acknowledged too; after a
// failure nothing more is. They are committed at once if the consumer is
// free, else by the next Read, OnRevoked or Close.
func (s *datasetSource) ackFunc(b *ackq.Batch[hub.TopicPartition, int64]) connectors.AckFunc {
	return func(ctx context.Context, err error) error {
		s.pmu.Lock()
		ready, poisoned, ok := b.Done(err)
		for tp, off := range ready {
			s.ready[tp] = max(s.ready[tp], off)
		}
		s.pmu.Unlock()
		if !ok {
			return nil
		}
		if poisoned {
			s.log.Warn("weir: a batch read from a dataset was not stored; nothing more is committed, the rest is read again at the next start",
				"err", err)
		}
		if s.mu.TryLock() {
			s.commitReady(ctx)
			s.mu.Unlock()
		}
		return nil
	}
}

// commitReady commits the acknowledged positions. The caller holds mu (or
// is the consumer, in OnRevoked).
func (s *datasetSource) commitReady(ctx context.Context) {
	s.pmu.Lock()
	c := s.consumer
	if len(s.ready) == 0 || c == nil {
		s.pmu.Unlock()
		return
	}
	offsets := s.ready
	s.ready = map[hub.TopicPartition]int64{}
	s.pmu.Unlock()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := c.Commit(cctx, offsets)
	switch {
	case err == nil:
	case errors.Is(err, hub.ErrRebalanceInProgress) || errors.Is(err, hub.ErrIllegalGeneration) || errors.Is(err, hub.ErrUnknownMemberID):
		s.log.Info("weir: commit refused after a rebalance; records will be read again", "err", err)
	default:
		s.log.Warn("weir: commit failed; retrying with the next one", "err", err)
		s.pmu.Lock()
		for tp, off := range offsets {
			s.ready[tp] = max(s.ready[tp], off)
		}
		s.pmu.Unlock()
	}
}

// onRevoked commits what was acknowledged before partitions move, and
// forgets batches not yet acknowledged: their records go to the partitions'
// next owner (or to this one again), read from the committed position.
func (s *datasetSource) onRevoked(ctx context.Context, revoked []hub.TopicPartition) {
	s.commitReady(ctx)
	s.pmu.Lock()
	defer s.pmu.Unlock()
	s.acks.Revoke()
	gone := map[hub.TopicPartition]bool{}
	for _, tp := range revoked {
		gone[tp] = true
	}
	kept := s.queue[:0]
	for _, m := range s.queue {
		if !gone[hub.TopicPartition{Topic: m.Dataset, Partition: m.Partition}] {
			kept = append(kept, m)
		}
	}
	clear(s.queue[len(kept):])
	s.queue = kept
}

// Close commits what was acknowledged and leaves the group. It is safe to
// call more than once.
func (s *datasetSource) Close(ctx context.Context) error {
	s.pmu.Lock()
	if s.closed {
		s.pmu.Unlock()
		return nil
	}
	s.closed = true
	s.pmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pmu.Lock()
	c := s.consumer
	s.pmu.Unlock()
	if c == nil {
		return nil
	}
	s.commitReady(ctx)
	err := c.Close(ctx)
	s.pmu.Lock()
	s.consumer = nil
	s.pmu.Unlock()
	return err
}
