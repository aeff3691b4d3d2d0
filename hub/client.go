package hub

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhub/weir/codecs"
)

// Client is how pipelines and tools reach a hub. LocalClient implements it
// in-process over a Hub, with no network hop; the pipelines package
// implements it over the Kafka protocol for external clusters. Both speak
// the same consumer group protocol ("consumer", range assignment), so
// members of either kind can share a group.
type Client interface {
	// Produce writes records to a dataset, each to the partition its key
	// hashes to (Kafka's murmur2) or, without a key, to one partition
	// per call, and returns once all are durable (acks=all) or failed:
	// one result per record, in the records' order. Records of one
	// partition keep their order; after a record of a partition failed,
	// the ones after it in that partition fail too (none is stored out
	// of order). Each implementation builds the record batches itself,
	// once. The records' bytes are not retained after Produce returns.
	Produce(ctx context.Context, dataset string, records []Record, opts ProduceOptions) RecordResults
	// Partitions returns the dataset's partition count.
	Partitions(ctx context.Context, dataset string) (int32, error)
	// Consume starts a consumer: a member of a group, or a broadcast
	// subscriber that reads every partition from its own position.
	Consume(ctx context.Context, opts ConsumeOptions) (Consumer, error)
	// Close releases the client.
	Close() error
}

// Consumer reads records. It is used from one goroutine.
type Consumer interface {
	// Poll returns the next records of the assigned partitions, waiting
	// until there are some or ctx ends (then it returns no records and
	// ctx's error). The records are valid until the next Poll.
	Poll(ctx context.Context) ([]Fetch, error)
	// Commit stores, for each partition, the offset of the next record
	// to read. For a group member it fails with ErrRebalanceInProgress,
	// ErrIllegalGeneration or ErrUnknownMemberID once the partitions may
	// have moved to another member; their records will be delivered
	// again (at least once).
	Commit(ctx context.Context, offsets map[TopicPartition]int64) error
	// Assignment returns the partitions currently assigned.
	Assignment() []TopicPartition
	// Lag returns, per assigned partition, the records between the
	// consumer's position and the high watermark.
	Lag() map[TopicPartition]int64
	// Close calls OnRevoked for the assigned partitions, leaves the group
	// and stops the consumer.
	Close(ctx context.Context) error
}

// ProduceOptions tune one Produce call; the zero value is the default.
type ProduceOptions struct {
	// Compression is the codec of the batches built: none, gzip,
	// snappy, lz4 or zstd. Default "": the dataset's (see
	// DatasetConfig.Compression; lz4 where it keeps the producer's).
	Compression string
	// MaxBatchBytes bounds one record batch: records beyond go in the
	// next batch of the partition, and a record that does not fit alone
	// fails with ErrBatchTooLarge. Default, and upper bound: the dataset's
	// max_message_bytes.
	MaxBatchBytes int
}

// RecordResult is what became of one record of a Produce call.
type RecordResult struct {
	Partition int32 // -1 when the dataset could not be reached
	Offset    int64 // -1 when Err is set
	Err       error
}

// RecordResults are the results of one Produce call, one per record, in
// the records' order.
type RecordResults []RecordResult

// FirstErr returns the first record's error, or nil when all are stored.
func (rs RecordResults) FirstErr() error {
	for i := range rs {
		if rs[i].Err != nil {
			return rs[i].Err
		}
	}
	return nil
}

// FailAll returns results that fail every one of n records with err, for
// Client implementations that cannot reach the dataset at all.
func FailAll(n int, err error) RecordResults {
	rs := make(RecordResults, n)
	for i := range rs {
		rs[i] = RecordResult{Partition: -1, Offset: -1, Err: err}
	}
	return rs
}

// Record is a record to produce.
type Record struct {
	Key       []byte
	Value     []byte
	Headers   []codecs.RecordHeader
	Timestamp time.Time // zero means now
}

// Fetch is the records Poll returned from one partition, in offset order.
type Fetch struct {
	Dataset       string
	Partition     int32
	HighWatermark int64
	Records       []codecs.Record
}

// StartFrom says where a consumer starts in a partition that has no
// committed offset: Earliest, Latest, an Offset or a Time.
type StartFrom struct {
	Kind   StartKind
	Offset int64     // for StartOffset
	Time   time.Time // for StartTime
}

// StartKind is the kind of a StartFrom.
type StartKind int

// Start positions.
const (
	StartEarliest StartKind = iota
	StartLatest
	StartOffset
	StartTime
)

// ConsumeOptions configure a Consumer.
type ConsumeOptions struct {
	// Datasets to read.
	Datasets []string
	// Group is the consumer group. With Broadcast it only names where
	// positions are committed (no coordination); without a Group a
	// broadcast consumer keeps its positions in memory.
	Group string
	// Broadcast reads every partition of the datasets from the
	// consumer's own position instead of sharing them in a group.
	Broadcast bool
	// Start applies where there is no committed offset, and where the
	// committed one is out of range. Default earliest.
	Start StartFrom
	// SessionTimeout, RebalanceTimeout and HeartbeatInterval of group
	// membership. Defaults 10s, 60s, 3s.
	SessionTimeout    time.Duration
	RebalanceTimeout  time.Duration
	HeartbeatInterval time.Duration
	// MaxPollBytes bounds the bytes one Poll reads, and the bytes of
	// keys and values it returns: records of compressed batches take
	// more room decoded than stored, and a Poll stops after the batch
	// that reaches this many (the rest are returned by the next Poll).
	// Default 4 MiB.
	MaxPollBytes int32
	// MinBytes makes Poll wait until this many bytes are available (or
	// MaxWait passes): batching done by the hub, on disk, not in memory.
	// Default 1.
	MinBytes int32
	// MaxWait bounds how long one Poll waits for MinBytes. Default 500ms.
	MaxWait time.Duration
	// ClientID names the consumer in group descriptions.
	ClientID string
	// SkipCorrupt moves past a stored batch that cannot be decoded: Poll
	// returns its *CorruptBatchError once (the records before it first)
	// and the next Poll reads on after its last offset; the caller
	// reports and dead-letters the range. Default false: Poll fails at
	// the batch every time.
	SkipCorrupt bool
	// ReadCommitted reads only records of committed transactions (and
	// records outside transactions), up to each partition's last stable
	// offset: Kafka's read_committed. Default false: every stored record.
	ReadCommitted bool
	// OnAssigned is called from Poll after partitions are assigned.
	OnAssigned func(ctx context.Context, partitions []TopicPartition)
	// OnRevoked is called from Poll (or Close) before assigned partitions
	// are taken away: the place to commit what was processed.
	OnRevoked func(ctx context.Context, partitions []TopicPartition)
	// OnLost is called instead of OnRevoked when the group took
	// partitions away without one (this member was fenced: its session
	// expired), so a commit is refused: the place to drop what was held
	// of them. Over Kafka it runs in the client's goroutine, while no
	// Poll's records are in hand; the in-process consumer, which rejoins
	// from Poll, calls OnRevoked in both cases.
	OnLost func(ctx context.Context, partitions []TopicPartition)
}

func (o *ConsumeOptions) setDefaults() {
	if o.SessionTimeout <= 0 {
		o.SessionTimeout = 10 * time.Second
	}
	if o.RebalanceTimeout <= 0 {
		o.RebalanceTimeout = 60 * time.Second
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = 3 * time.Second
	}
	if o.MaxPollBytes <= 0 {
		o.MaxPollBytes = 4 << 20
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 500 * time.Millisecond
	}
	if o.ClientID == "" {
		o.ClientID = "weir"
	}
}

// LocalClient is a Client over an in-process Hub.
type LocalClient struct {
	h *Hub

	rr    atomic.Uint32 // round robin for records without a key
	parts sync.Pool     // of *localPart
}

var _ Client = (*LocalClient)(nil)

// NewLocalClient returns a client of h.
func NewLocalClient(h *Hub) *LocalClient { return &LocalClient{h: h} }

// Hub is the hub the client talks to.
func (c *LocalClient) Hub() *Hub { return c.h }

// Close does nothing: the hub belongs to its opener.
func (c *LocalClient) Close() error { return nil }

// Partitions returns the dataset's partition count, creating the dataset
// if auto creation is on.
func (c *LocalClient) Partitions(ctx context.Context, dataset string) (int32, error) {
	ds, err := c.h.DatasetOrCreate(dataset)
	if err != nil {
		return 0, err
	}
	return ds.NumPartitions(), nil
}

// localPart is the records of one Produce call going to one partition:
// their indexes and the batches built from them, back to back.
type localPart struct {
	p       int32
	idx     []int  // indexes of the records, in order
	batches []byte // sealed batches, when there is more than one
	last    []byte // the only batch, in b's buffer
	b       codecs.Builder
	err     error
	tx      *localTxn // a transactional produce: stamps each batch
	seq     int32     // with tx: the sequence of the next batch's first record
}

// seal builds the records appended since the last seal. The batches of
// a partition go back to back into one buffer, except a partition's only
// batch, which is stored from the builder's own (final: no record
// follows).
func (lp *localPart) seal(final bool) {
	if lp.b.NumRecords() == 0 || lp.err != nil {
		return
	}
	n := int32(lp.b.NumRecords())
	if lp.tx != nil {
		lp.b.SetProducer(lp.tx.pid, lp.tx.epoch, lp.seq)
	}
	built, err := lp.b.Build()
	if err == nil && lp.tx != nil {
		lp.seq += n
	}
	if err != nil {
		lp.err = err
		return
	}
	if final && len(lp.batches) == 0 {
		lp.last = built
		return
	}
	lp.batches = append(lp.batches, built...)
	lp.b.Reset()
}

// Produce implements Client. It builds each partition's batches once, in
// a builder reused across calls, and stores the partitions concurrently.
func (c *LocalClient) Produce(ctx context.Context, dataset string, records []Record, opts ProduceOptions) RecordResults {
	return c.produce(ctx, dataset, records, opts, nil)
}

// produce is Produce, within tx's open transaction when tx is not nil:
// the batches carry its producer id, epoch and sequences, and the
// partitions are added to the transaction before they are stored.
func (c *LocalClient) produce(ctx context.Context, dataset string, records []Record, opts ProduceOptions, tx *localTxn) RecordResults {
	if len(records) == 0 {
		return nil
	}
	ds, err := c.h.DatasetOrCreate(dataset)
	if err != nil {
		return FailAll(len(records), err)
	}
	cfg := ds.Config()
	comp := cfg.WriterCompression()
	if opts.Compression != "" {
		if comp, err = codecs.ParseCompression(opts.Compression); err != nil {
			return FailAll(len(records), fmt.Errorf("hub: produce to %s: %w", dataset, err))
		}
	}
	maxBatch := cfg.MaxMessageBytes
	if maxBatch <= 0 {
		maxBatch = 1 << 20
	}
	if opts.MaxBatchBytes > 0 {
		maxBatch = min(maxBatch, opts.MaxBatchBytes)
	}
	n := ds.NumPartitions()
	sticky := int32(c.rr.Add(1) % uint32(n))
	results := make(RecordResults, len(records))
	var parts []*localPart
	byPart := make(map[int32]*localPart, 1)
	now := time.Now().UnixMilli()
	for i := range records {
		r := &records[i]
		p := sticky
		if r.Key != nil {
			p = PartitionForKey(r.Key, n)
		}
		results[i] = RecordResult{Partition: p, Offset: -1}
		lp := byPart[p]
		if lp == nil {
			lp = c.part(p, comp)
			if tx != nil {
				lp.tx, lp.seq = tx, tx.seqs[TopicPartition{Topic: dataset, Partition: p}]
				lp.b.Attributes = codecs.AttrTransactional
			}
			byPart[p] = lp
			parts = append(parts, lp)
		}
		ts := now
		if !r.Timestamp.IsZero() {
			ts = r.Timestamp.UnixMilli()
		}
		size := lp.b.SizeWith(ts, r.Key, r.Value, r.Headers)
		if size > maxBatch && lp.b.NumRecords() > 0 {
			lp.seal(false)
			size = lp.b.SizeWith(ts, r.Key, r.Value, r.Headers)
		}
		if size > maxBatch {
			limit := fmt.Sprintf("the dataset %s's max_message_bytes (%d)", dataset, maxBatch)
			if opts.MaxBatchBytes > 0 && opts.MaxBatchBytes < cfg.MaxMessageBytes {
				limit = fmt.Sprintf("the writer's batch limit (%d bytes)", maxBatch)
			}
			results[i].Err = fmt.Errorf("%w: a record in a batch of %d bytes does not fit %s", ErrBatchTooLarge, size, limit)
			continue
		}
		lp.b.Append(ts, r.Key, r.Value, r.Headers)
		lp.idx = append(lp.idx, i)
	}
	if tx != nil {
		if err := tx.addPartitions(dataset, parts); err != nil {
			for _, lp := range parts {
				for _, i := range lp.idx {
					results[i].Err = err
				}
				c.release(lp)
			}
			return results
		}
	}
	store := func(lp *localPart) {
		lp.seal(true)
		if lp.err != nil || len(lp.idx) == 0 {
			return
		}
		batches := lp.batches
		if len(batches) == 0 {
			batches = lp.last
		}
		part, err := ds.Partition(lp.p)
		if err != nil {
			lp.err = err
			return
		}
		res, err := part.produce(batches, true, false) // built here: no need to check its records
		if err != nil {
			lp.err = err
			return
		}
		for j, i := range lp.idx {
			results[i].Offset = res.BaseOffset + int64(j)
		}
	}
	if len(parts) == 1 {
		store(parts[0])
	} else if len(parts) > 1 {
		// Every partition at once: each waits for its own durability.
		var wg sync.WaitGroup
		for _, lp := range parts {
			wg.Go(func() { store(lp) })
		}
		wg.Wait()
	}
	for _, lp := range parts {
		if lp.err != nil {
			for _, i := range lp.idx {
				results[i].Err = lp.err
			}
		}
		if tx != nil {
			tx.stored(dataset, lp)
		}
		c.release(lp)
	}
	return results
}

func (c *LocalClient) part(p int32, comp codecs.Compression) *localPart {
	lp, _ := c.parts.Get().(*localPart)
	if lp == nil {
		lp = &localPart{}
	}
	lp.p, lp.idx, lp.batches, lp.last, lp.err, lp.tx, lp.seq = p, lp.idx[:0], lp.batches[:0], nil, nil, nil, 0
	lp.b.Compression, lp.b.Attributes = comp, 0
	lp.b.SetProducer(-1, -1, -1)
	lp.b.Reset()
	return lp
}

func (c *LocalClient) release(lp *localPart) {
	if cap(lp.batches) > 16<<20 {
		lp.batches = nil
	}
	lp.last = nil
	c.parts.Put(lp)
}

// Consume implements Client.
func (c *LocalClient) Consume(ctx context.Context, opts ConsumeOptions) (Consumer, error) {
	opts.setDefaults()
	if len(opts.Datasets) == 0 {
		return nil, errors.New("hub: Consume needs at least one dataset")
	}
	if opts.Group == "" && !opts.Broadcast {
		return nil, errors.New("hub: Consume needs a Group, or Broadcast")
	}
	for _, name := range opts.Datasets {
		if _, err := c.h.DatasetOrCreate(name); err != nil {
			return nil, err
		}
	}
	lc := &localConsumer{h: c.h, opts: opts, pos: map[TopicPartition]int64{}, stop: make(chan struct{})}
	if opts.Broadcast {
		lc.assignAll()
	} else {
		lc.needJoin.Store(true)
		lc.wg.Add(1)
		go lc.heartbeats()
	}
	return lc, nil
}

// localConsumer is a Consumer over an in-process Hub: a group member that
// heartbeats in the background and rebalances from Poll, or a broadcast
// reader.
type localConsumer struct {
	h    *Hub
	opts ConsumeOptions

	mu         sync.Mutex // member identity, shared with the heartbeat loop
	memberID   string
	generation int32
	leader     bool
	partCount  int32 // partitions of the datasets at the last assignment
	pollCancel context.CancelFunc

	needJoin atomic.Bool
	closed   atomic.Bool
	stop     chan struct{}
	wg       sync.WaitGroup

	assigned []TopicPartition
	pos      map[TopicPartition]int64
	rot      int                      // the assigned partition the next Poll starts at
	skipped  map[TopicPartition]int64 // records jumped over since TakeSkipped

	// Buffers reused across polls.
	raw     []byte
	iters   []codecs.RecordIter
	fetches []Fetch
	recs    []codecs.Record // the Records of every Fetch of a poll
	hdrs    []codecs.RecordHeader
}

// Assignment implements Consumer.
func (c *localConsumer) Assignment() []TopicPartition {
	return append([]TopicPartition(nil), c.assigned...)
}

// Lag implements Consumer.
func (c *localConsumer) Lag() map[TopicPartition]int64 {
	lag := make(map[TopicPartition]int64, len(c.assigned))
	for _, tp := range c.assigned {
		if ds, err := c.h.Dataset(tp.Topic); err == nil {
			if p, err := ds.Partition(tp.Partition); err == nil {
				lag[tp] = max(p.HighWatermark()-c.pos[tp], 0)
			}
		}
	}
	return lag
}

func (c *localConsumer) partitionCount() int32 {
	var n int32
	for _, name := range c.opts.Datasets {
		if ds, err := c.h.Dataset(name); err == nil {
			n += ds.NumPartitions()
		}
	}
	return n
}

// assignAll gives a broadcast consumer every partition of its datasets.
func (c *localConsumer) assignAll() {
	var tps []TopicPartition
	for _, name := range c.opts.Datasets {
		if ds, err := c.h.Dataset(name); err == nil {
			for i := range ds.NumPartitions() {
				tps = append(tps, TopicPartition{name, i})
			}
		}
	}
	c.partCount = c.partitionCount()
	c.setAssignment(tps)
}

// setAssignment installs an assignment with its starting positions.
func (c *localConsumer) setAssignment(tps []TopicPartition) {
	c.assigned = tps
	c.pos = map[TopicPartition]int64{}
	var committed map[TopicPartition]CommittedOffset
	if c.opts.Group != "" {
		committed = c.h.FetchOffsets(c.opts.Group, tps)
	}
	for _, tp := range tps {
		if co, ok := committed[tp]; ok && co.Offset >= 0 {
			c.pos[tp] = co.Offset
		} else {
			c.pos[tp] = c.startOffset(tp)
		}
	}
}

// TakeSkipped returns, per partition, the records the consumer jumped
// over since the last call because its position had fallen below the
// partition's log start: retention deleted them before they were read.
func (c *localConsumer) TakeSkipped() map[TopicPartition]int64 {
	s := c.skipped
	c.skipped = nil
	return s
}

func (c *localConsumer) logStart(tp TopicPartition) int64 {
	if ds, err := c.h.Dataset(tp.Topic); err == nil {
		if p, err := ds.Partition(tp.Partition); err == nil {
			return p.StartOffset()
		}
	}
	return 0
}

func (c *localConsumer) startOffset(tp TopicPartition) int64 {
	ds, err := c.h.Dataset(tp.Topic)
	if err != nil {
		return 0
	}
	p, err := ds.Partition(tp.Partition)
	if err != nil {
		return 0
	}
	switch c.opts.Start.Kind {
	case StartLatest:
		return p.HighWatermark()
	case StartOffset:
		return min(max(c.opts.Start.Offset, p.StartOffset()), p.HighWatermark())
	case StartTime:
		off, _ := p.ListOffset(c.opts.Start.Time.UnixMilli())
		return off
	}
	return p.StartOffset()
}

// heartbeats keeps the membership alive and flags rebalances for Poll.
func (c *localConsumer) heartbeats() {
	defer c.wg.Done()
	t := time.NewTicker(c.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		if c.needJoin.Load() {
			continue
		}
		c.mu.Lock()
		id, gen, leader, count := c.memberID, c.generation, c.leader, c.partCount
		c.mu.Unlock()
		if id == "" {
			continue
		}
		err := c.h.Heartbeat(c.opts.Group, id, gen)
		if err == nil && leader && c.partitionCount() != count {
			err = ErrRebalanceInProgress // partitions were added: the leader reassigns
		}
		if err != nil {
			if errors.Is(err, ErrUnknownMemberID) {
				c.mu.Lock()
				c.memberID = ""
				c.mu.Unlock()
			}
			c.needJoin.Store(true)
			c.mu.Lock()
			if c.pollCancel != nil {
				c.pollCancel()
			}
			c.mu.Unlock()
		}
	}
}

// rejoin revokes the current assignment and runs join and sync until the
// consumer has a new one.
func (c *localConsumer) rejoin(ctx context.Context) error {
	if len(c.assigned) > 0 && c.opts.OnRevoked != nil {
		c.opts.OnRevoked(ctx, c.Assignment())
	}
	c.assigned, c.pos = nil, map[TopicPartition]int64{}
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = append([]string(nil), c.opts.Datasets...)
	metaBytes := meta.AppendTo(nil)
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if c.closed.Load() {
			return ErrClosed
		}
		c.mu.Lock()
		id := c.memberID
		c.mu.Unlock()
		res := c.h.JoinGroup(ctx, JoinGroupRequest{
			Group: c.opts.Group, MemberID: id, ClientID: c.opts.ClientID, ClientHost: "in-process",
			ProtocolType: "consumer", Protocols: []GroupProtocol{{Name: "range", Metadata: metaBytes}},
			SessionTimeout: c.opts.SessionTimeout, RebalanceTimeout: c.opts.RebalanceTimeout,
			RequireKnownMemberID: true,
		})
		switch {
		case errors.Is(res.Err, ErrMemberIDRequired):
			c.setMember(res.MemberID, -1, false)
			continue
		case errors.Is(res.Err, ErrUnknownMemberID), errors.Is(res.Err, ErrRebalanceInProgress):
			if errors.Is(res.Err, ErrUnknownMemberID) {
				c.setMember("", -1, false)
			}
			if attempt > 100 {
				return res.Err
			}
			continue
		case res.Err != nil:
			return res.Err
		}
		leader := res.Leader == res.MemberID
		c.setMember(res.MemberID, res.Generation, leader)
		counts := c.partitionCount()
		var assignments map[string][]byte
		if leader {
			assignments = c.rangeAssign(res.Members)
		}
		sres := c.h.SyncGroup(ctx, SyncGroupRequest{Group: c.opts.Group, MemberID: res.MemberID, Generation: res.Generation,
			ProtocolType: "consumer", Protocol: res.Protocol, Assignments: assignments})
		if sres.Err != nil {
			if errors.Is(sres.Err, ErrRebalanceInProgress) || errors.Is(sres.Err, ErrIllegalGeneration) || errors.Is(sres.Err, ErrUnknownMemberID) {
				if errors.Is(sres.Err, ErrUnknownMemberID) {
					c.setMember("", -1, false)
				}
				continue
			}
			return sres.Err
		}
		var asg kmsg.ConsumerMemberAssignment
		var tps []TopicPartition
		if len(sres.Assignment) > 0 {
			if err := asg.ReadFrom(sres.Assignment); err != nil {
				return fmt.Errorf("hub: reading the group's assignment: %w", err)
			}
			for _, t := range asg.Topics {
				for _, p := range t.Partitions {
					tps = append(tps, TopicPartition{t.Topic, p})
				}
			}
		}
		c.mu.Lock()
		c.partCount = counts
		c.mu.Unlock()
		c.setAssignment(tps)
		c.needJoin.Store(false)
		if c.opts.OnAssigned != nil {
			c.opts.OnAssigned(ctx, c.Assignment())
		}
		return nil
	}
}

func (c *localConsumer) setMember(id string, gen int32, leader bool) {
	c.mu.Lock()
	c.memberID, c.generation, c.leader = id, gen, leader
	c.mu.Unlock()
}

// rangeAssign is Kafka's range assignor: per topic, the members subscribed
// to it in member id order each get a contiguous run of partitions, the
// first ones one more when they do not divide evenly.
func (c *localConsumer) rangeAssign(members []GroupMember) map[string][]byte {
	subs := map[string][]string{} // topic -> member ids
	for _, m := range members {
		var meta kmsg.ConsumerMemberMetadata
		if err := meta.ReadFrom(m.Metadata); err != nil {
			continue // a member we cannot read gets nothing
		}
		for _, t := range meta.Topics {
			subs[t] = append(subs[t], m.MemberID)
		}
	}
	plan := map[string]map[string][]int32{} // member -> topic -> partitions
	for topic, ids := range subs {
		ds, err := c.h.Dataset(topic)
		if err != nil {
			continue
		}
		sort.Strings(ids)
		n := ds.NumPartitions()
		per, extra := n/int32(len(ids)), n%int32(len(ids))
		next := int32(0)
		for i, id := range ids {
			k := per
			if int32(i) < extra {
				k++
			}
			for p := next; p < next+k; p++ {
				if plan[id] == nil {
					plan[id] = map[string][]int32{}
				}
				plan[id][topic] = append(plan[id][topic], p)
			}
			next += k
		}
	}
	out := make(map[string][]byte, len(members))
	for _, m := range members {
		asg := kmsg.NewConsumerMemberAssignment()
		topics := make([]string, 0, len(plan[m.MemberID]))
		for t := range plan[m.MemberID] {
			topics = append(topics, t)
		}
		sort.Strings(topics)
		for _, t := range topics {
			at := kmsg.NewConsumerMemberAssignmentTopic()
			at.Topic, at.Partitions = t, plan[m.MemberID][t]
			asg.Topics = append(asg.Topics, at)
		}
		out[m.MemberID] = asg.AppendTo(nil)
	}
	return out
}

// Poll implements Consumer.
func (c *localConsumer) Poll(ctx context.Context) ([]Fetch, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if !c.opts.Broadcast && c.needJoin.Load() {
		if err := c.rejoin(ctx); err != nil {
			return nil, err
		}
	}
	if c.opts.Broadcast && c.partitionCount() != c.partCount {
		c.growBroadcast()
	}
	if len(c.assigned) == 0 {
		// Nothing assigned: wait for a rebalance or the context.
		t := time.NewTimer(c.opts.MaxWait)
		defer t.Stop()
		select {
		case <-t.C:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	req := FetchRequest{MinBytes: max(c.opts.MinBytes, 1), MaxBytes: c.opts.MaxPollBytes, MaxWait: c.opts.MaxWait,
		ReadCommitted: c.opts.ReadCommitted}
	// Each Poll starts at the next partition, so that one with a backlog
	// of MaxPollBytes does not keep the others waiting.
	c.rot = (c.rot + 1) % len(c.assigned)
	order := append(c.assigned[c.rot:len(c.assigned):len(c.assigned)], c.assigned[:c.rot]...)
	for _, tp := range order {
		req.Partitions = append(req.Partitions, FetchPartition{Dataset: tp.Topic, Partition: tp.Partition, Offset: c.pos[tp], MaxBytes: c.opts.MaxPollBytes})
	}
	pctx, cancel := context.WithCancel(ctx)
	c.mu.Lock()
	c.pollCancel = cancel
	c.mu.Unlock()
	results := c.h.Fetch(pctx, req)
	c.mu.Lock()
	c.pollCancel = nil
	c.mu.Unlock()
	cancel()
	defer ReleaseFetch(results)
	c.fetches = c.fetches[:0]
	c.recs = c.recs[:0]
	c.hdrs = c.hdrs[:0]
	c.raw = c.raw[:0]
	it := 0
	decoded := 0 // bytes of the keys and values returned
	for i, r := range results {
		tp := order[i]
		if decoded >= int(c.opts.MaxPollBytes) {
			break // the positions of the partitions left stay: read next time
		}
		if errors.Is(r.Err, ErrOffsetOutOfRange) {
			from := c.pos[tp]
			c.pos[tp] = c.startOffset(tp)
			if n := c.pos[tp] - from; n > 0 && from < c.logStart(tp) {
				if c.skipped == nil {
					c.skipped = map[TopicPartition]int64{}
				}
				c.skipped[tp] += n
			}
			continue
		}
		if r.Err != nil {
			return nil, fmt.Errorf("hub: fetching %s/%d: %w", tp.Topic, tp.Partition, r.Err)
		}
		if r.Bytes == 0 {
			continue
		}
		// One buffer holds the batches of every partition of the poll;
		// when it grows, records already decoded keep the old array.
		at := len(c.raw)
		for j := range r.Sections {
			var err error
			if c.raw, err = r.Sections[j].AppendTo(c.raw); err != nil {
				return nil, err
			}
		}
		raw := c.raw[at:]
		maxDecompressed := codecs.DefaultMaxDecompressed
		if ds, err := c.h.Dataset(tp.Topic); err == nil {
			maxDecompressed = max(maxDecompressed, codecs.MaxDecompressedFor(ds.Config().MaxMessageBytes))
		}
		f := Fetch{Dataset: tp.Topic, Partition: tp.Partition, HighWatermark: r.HighWatermark}
		// The records of every partition go into one buffer; when it
		// grows, those of earlier partitions keep the old array.
		first := len(c.recs)
		next := c.pos[tp]
		for b := raw; len(b) > 0 && decoded < int(c.opts.MaxPollBytes); {
			size := codecs.BatchSize(b)
			if size < codecs.HeaderSize || size > len(b) {
				return nil, fmt.Errorf("hub: fetching %s/%d: %w: bad batch framing", tp.Topic, tp.Partition, ErrCorruptBatch)
			}
			batch := b[:size]
			b = b[size:]
			if len(c.iters) <= it {
				c.iters = append(c.iters, codecs.RecordIter{})
			}
			ri := &c.iters[it]
			it++
			ri.MaxDecompressed = maxDecompressed
			recsBefore, nextBefore := len(c.recs), next
			err := ri.Reset(batch)
			h := ri.Header()
			if err == nil && (h.IsControl() || h.IsTransactional() && abortedBatch(r.Aborted, h)) {
				next = max(next, h.NextOffset())
				continue
			}
			for err == nil && ri.Next() {
				rec := *ri.Record()
				if rec.Offset < next {
					continue
				}
				hs := len(c.hdrs)
				c.hdrs = append(c.hdrs, rec.Headers...)
				rec.Headers = c.hdrs[hs:len(c.hdrs):len(c.hdrs)]
				c.recs = append(c.recs, rec)
				decoded += len(rec.Key) + len(rec.Value)
				next = rec.Offset + 1
			}
			if err == nil {
				err = ri.Err()
			}
			if err != nil {
				// Only a poll with nothing else to return reports the
				// batch: records before it, of this partition or of
				// others whose positions have moved, come first.
				if recsBefore == first && len(c.fetches) == 0 {
					err = corruptFetch(tp, err)
					var cbe *CorruptBatchError
					if c.opts.SkipCorrupt && errors.As(err, &cbe) && cbe.Batch.LastOffset >= cbe.Batch.BaseOffset {
						c.pos[tp] = max(next, cbe.Batch.LastOffset+1)
					}
					return nil, err
				}
				// Deliver the records before the bad batch; the next
				// poll starts at it and reports it.
				c.recs, next = c.recs[:recsBefore], nextBefore
				break
			}
			next = max(next, h.NextOffset())
		}
		c.pos[tp] = next
		if len(c.recs) > first {
			f.Records = c.recs[first:len(c.recs):len(c.recs)]
			c.fetches = append(c.fetches, f)
		}
	}
	if len(c.fetches) == 0 && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return c.fetches, nil
}

// growBroadcast adds partitions created since the broadcast consumer
// started, from their beginning.
func (c *localConsumer) growBroadcast() {
	have := map[TopicPartition]bool{}
	for _, tp := range c.assigned {
		have[tp] = true
	}
	for _, name := range c.opts.Datasets {
		ds, err := c.h.Dataset(name)
		if err != nil {
			continue
		}
		for i := range ds.NumPartitions() {
			tp := TopicPartition{name, i}
			if !have[tp] {
				c.assigned = append(c.assigned, tp)
				c.pos[tp] = 0
			}
		}
	}
	c.partCount = c.partitionCount()
}

// Commit implements Consumer.
func (c *localConsumer) Commit(ctx context.Context, offsets map[TopicPartition]int64) error {
	if c.opts.Group == "" {
		return nil // a nameless broadcast consumer keeps positions in memory
	}
	req := OffsetCommitRequest{Group: c.opts.Group, MemberID: "", Generation: -1, Offsets: make(map[TopicPartition]CommittedOffset, len(offsets))}
	if !c.opts.Broadcast {
		c.mu.Lock()
		req.MemberID, req.Generation = c.memberID, c.generation
		c.mu.Unlock()
	}
	for tp, off := range offsets {
		req.Offsets[tp] = CommittedOffset{Offset: off, LeaderEpoch: -1}
	}
	return c.h.CommitOffsets(req)
}

// Close implements Consumer.
func (c *localConsumer) Close(ctx context.Context) error {
	if c.closed.Swap(true) {
		return nil
	}
	close(c.stop)
	c.wg.Wait()
	if len(c.assigned) > 0 && c.opts.OnRevoked != nil && !c.opts.Broadcast {
		c.opts.OnRevoked(ctx, c.Assignment())
	}
	c.assigned = nil
	if !c.opts.Broadcast {
		c.mu.Lock()
		id := c.memberID
		c.mu.Unlock()
		if id != "" {
			c.h.LeaveGroup(c.opts.Group, []string{id}, nil)
		}
	}
	return nil
}
