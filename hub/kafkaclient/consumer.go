package kafkaclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/hub"
)

// Consume implements hub.Client: a group member (range assignor, offsets
// committed by Commit only) or, with Broadcast, a reader of every
// partition, resuming from the group's commits when it names one.
func (c *Client) Consume(ctx context.Context, opts hub.ConsumeOptions) (hub.Consumer, error) {
	if len(opts.Datasets) == 0 {
		return nil, errors.New("kafkaclient: Consume needs at least one dataset")
	}
	kc := &consumer{opts: opts, hw: map[hub.TopicPartition]int64{}, pos: map[hub.TopicPartition]int64{},
		assigned: map[hub.TopicPartition]bool{}, committed: map[hub.TopicPartition]int64{}, logger: c.opts.Logger}
	reset := kgo.NewOffset().AtStart()
	switch opts.Start.Kind {
	case hub.StartLatest:
		reset = kgo.NewOffset().AtEnd()
	case hub.StartOffset:
		reset = kgo.NewOffset().At(opts.Start.Offset)
	case hub.StartTime:
		reset = kgo.NewOffset().AfterMilli(opts.Start.Time.UnixMilli())
	}
	kopts := append(append([]kgo.Opt(nil), c.base...), kgo.ConsumeTopics(opts.Datasets...), kgo.ConsumeResetOffset(reset),
		kgo.WithLogger(kgoLogger{c.opts.Logger}))
	if opts.ClientID != "" {
		kopts = append(kopts, kgo.ClientID(opts.ClientID))
	}
	if opts.MinBytes > 0 {
		kopts = append(kopts, kgo.FetchMinBytes(opts.MinBytes))
	}
	if opts.MaxWait > 0 {
		kopts = append(kopts, kgo.FetchMaxWait(max(opts.MaxWait, 10*time.Millisecond)))
	}
	if opts.MaxPollBytes > 0 {
		kopts = append(kopts, kgo.FetchMaxBytes(opts.MaxPollBytes))
	}
	if opts.ReadCommitted {
		kopts = append(kopts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	if opts.Group != "" && !opts.Broadcast {
		if opts.SessionTimeout <= 0 {
			opts.SessionTimeout = 10 * time.Second
		}
		kopts = append(kopts, kgo.ConsumerGroup(opts.Group), kgo.Balancers(kgo.RangeBalancer()), kgo.DisableAutoCommit(),
			kgo.BlockRebalanceOnPoll(), kgo.SessionTimeout(opts.SessionTimeout),
			kgo.OnPartitionsRevoked(func(ctx context.Context, _ *kgo.Client, gone map[string][]int32) {
				tps := flatten(gone)
				if opts.OnRevoked != nil {
					opts.OnRevoked(ctx, tps)
				}
				kc.unassign(tps)
			}),
			kgo.OnPartitionsLost(func(ctx context.Context, _ *kgo.Client, gone map[string][]int32) {
				tps := flatten(gone)
				if opts.OnLost != nil {
					opts.OnLost(ctx, tps)
				}
				kc.unassign(tps)
			}),
			kgo.OnPartitionsAssigned(func(ctx context.Context, _ *kgo.Client, got map[string][]int32) {
				// Called at every assignment, even one that adds nothing.
				tps := flatten(got)
				kc.assign(tps)
				if opts.OnAssigned != nil {
					opts.OnAssigned(ctx, tps)
				}
			}))
		kc.group = true
	}
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kafkaclient: consumer for %v: %w", c.opts.Conn.Brokers, err)
	}
	kc.cl = cl
	kc.adm = kadm.NewClient(cl)
	if opts.Group != "" && opts.Broadcast {
		// A named broadcast subscriber resumes from its own commits.
		fetched, err := kc.adm.FetchOffsets(ctx, opts.Group)
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

// consumer is a hub.Consumer over a kgo client.
type consumer struct {
	opts    hub.ConsumeOptions
	cl      *kgo.Client
	adm     *kadm.Client
	group   bool
	logger  *slog.Logger
	fetches []hub.Fetch
	left    []hub.Fetch // records fetched and not yet returned (over MaxPollBytes)

	mu       sync.Mutex // the fields below; the group callbacks run in kgo's goroutines
	assigned map[hub.TopicPartition]bool
	// settled is set once the group gave this member its assignment, and
	// cleared while a rebalance takes partitions away.
	settled bool
	hw      map[hub.TopicPartition]int64
	pos     map[hub.TopicPartition]int64
	// committed is the group's committed offset of a partition assigned
	// since its last records were returned (-1: none), looked up when its
	// first records arrive: where the group meant to read from.
	committed map[hub.TopicPartition]int64
	// skipped counts, per partition, the records retention deleted before
	// they were read: kgo resets an OFFSET_OUT_OF_RANGE position to the
	// log start on its own, and says so only in its log.
	skipped map[hub.TopicPartition]int64
}

func (k *consumer) assign(tps []hub.TopicPartition) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, tp := range tps {
		k.assigned[tp] = true
	}
	k.settled = true
}

// unassign forgets partitions taken away: the member waits for its next
// assignment.
func (k *consumer) unassign(tps []hub.TopicPartition) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.settled = false
	gone := map[hub.TopicPartition]bool{}
	for _, tp := range tps {
		gone[tp] = true
		delete(k.assigned, tp)
		delete(k.hw, tp)
		delete(k.pos, tp)
		delete(k.committed, tp)
	}
	kept := k.left[:0]
	for _, f := range k.left {
		if !gone[hub.TopicPartition{Topic: f.Dataset, Partition: f.Partition}] {
			kept = append(kept, f)
		}
	}
	clear(k.left[len(kept):])
	k.left = kept
}

// Poll implements hub.Consumer. Rebalances wait until a Poll that has no
// fetched records left to return: the runtime has processed and committed
// what the last one returned by then. A Poll returns at most MaxPollBytes
// of keys and values (and at least one record): the brokers bound a
// fetch by its compressed bytes, and records of compressed batches take
// more room decoded.
func (k *consumer) Poll(ctx context.Context) ([]hub.Fetch, error) {
	if len(k.left) > 0 {
		return k.take(), nil
	}
	k.cl.AllowRebalance()
	pctx, cancel := context.WithTimeout(ctx, max(k.opts.MaxWait, 10*time.Millisecond)+time.Second)
	defer cancel()
	fs := k.cl.PollFetches(pctx)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var errs []error
	var corrupt *hub.CorruptBatchError
	fs.EachError(func(t string, p int32, err error) {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return
		}
		if undecodable(err) {
			tp := hub.TopicPartition{Topic: t, Partition: p}
			cbe := k.corruptAt(ctx, tp, err)
			if k.opts.SkipCorrupt && corrupt == nil && cbe.Batch.LastOffset >= cbe.Batch.BaseOffset {
				// Reported once: the client reads on after it.
				k.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{t: {p: {Epoch: -1, Offset: cbe.Batch.LastOffset + 1}}})
				k.mu.Lock()
				k.pos[tp] = cbe.Batch.LastOffset + 1
				k.mu.Unlock()
				corrupt = cbe
				return
			}
			errs = append(errs, cbe)
			return
		}
		errs = append(errs, fmt.Errorf("%s/%d: %w", t, p, Translate(err)))
	})
	k.lookUpCommitted(ctx, fs)
	k.mu.Lock()
	defer k.mu.Unlock()
	var hdrs []codecs.RecordHeader // one array per fetch: records outlive this Poll in left
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		tp := hub.TopicPartition{Topic: p.Topic, Partition: p.Partition}
		if !k.group {
			k.assigned[tp] = true // a broadcast reader has every partition it fetches
		}
		k.hw[tp] = p.HighWatermark
		if len(p.Records) == 0 {
			// Nothing fetched: the position is the visible end (past
			// transaction markers and aborted records too). A member
			// assigned a partition its group had read to the end gets
			// no records from it, and no lag either.
			end := p.HighWatermark
			if k.opts.ReadCommitted && p.LastStableOffset >= 0 {
				end = p.LastStableOffset
			}
			if (k.assigned[tp] || !k.group) && end > k.pos[tp] {
				k.pos[tp] = end
			}
			return
		}
		k.noteGap(tp, p.Records[0].Offset, p.LogStartOffset)
		f := hub.Fetch{Dataset: p.Topic, Partition: p.Partition, HighWatermark: p.HighWatermark,
			Records: make([]codecs.Record, 0, len(p.Records))}
		for _, r := range p.Records {
			rec := codecs.Record{Offset: r.Offset, Timestamp: r.Timestamp.UnixMilli(), Key: r.Key, Value: r.Value}
			if len(r.Headers) > 0 {
				at := len(hdrs)
				for _, h := range r.Headers {
					hdrs = append(hdrs, codecs.RecordHeader{Key: []byte(h.Key), Value: h.Value})
				}
				rec.Headers = hdrs[at:len(hdrs):len(hdrs)]
			}
			f.Records = append(f.Records, rec)
		}
		k.left = append(k.left, f)
	})
	// The records of other partitions fetched with an error are kept for
	// the next Poll: the client has moved past them.
	if len(errs) > 0 {
		return nil, fmt.Errorf("kafkaclient: %w", errors.Join(errs...))
	}
	if corrupt != nil {
		return nil, corrupt
	}
	if len(k.left) == 0 {
		return nil, nil
	}
	return k.takeLocked(), nil
}

// undecodable reports whether a partition's fetch error is the client
// failing to decode the stored batches (a corrupt compressed payload, a
// bad CRC or record count) rather than a Kafka error code, a network or a
// client state error: no retry reads past it.
func undecodable(err error) bool {
	var ke *kerr.Error
	var dl *kgo.ErrDataLoss
	switch {
	case errors.As(err, &ke), errors.As(err, &dl), Translate(err) != err:
		return false
	}
	var tooLarge *kgo.ErrDecompressTooLarge
	msg := err.Error()
	return errors.As(err, &tooLarge) || strings.Contains(msg, "decompress") || strings.Contains(msg, "crc") ||
		strings.Contains(msg, "invalid record batch") || strings.Contains(msg, "batch magic")
}

// corruptAt describes the batch of tp that the client could not decode,
// at the position it was reading from: its offsets come from the batch's
// header, fetched raw from the partition's leader (kgo's errors do not
// carry them). When they cannot be found, LastOffset stays below
// BaseOffset and the batch is not skipped.
func (k *consumer) corruptAt(ctx context.Context, tp hub.TopicPartition, cause error) *hub.CorruptBatchError {
	cbe := &hub.CorruptBatchError{Dataset: tp.Topic, Partition: tp.Partition,
		Batch: &codecs.BatchError{BaseOffset: -1, LastOffset: -2, Reason: cause.Error(), Err: codecs.ErrCorrupt}}
	k.mu.Lock()
	at, ok := k.pos[tp]
	if !ok {
		at, ok = k.committed[tp]
		ok = ok && at >= 0
	}
	k.mu.Unlock()
	if !ok {
		starts, err := k.adm.ListStartOffsets(ctx, tp.Topic)
		o, found := starts.Lookup(tp.Topic, tp.Partition)
		if err != nil || !found || o.Err != nil {
			return cbe
		}
		at = o.Offset
	}
	md, err := k.adm.Metadata(ctx, tp.Topic)
	if err != nil {
		return cbe
	}
	mt, ok := md.Topics[tp.Topic]
	if !ok {
		return cbe
	}
	mp, ok := mt.Partitions[tp.Partition]
	if !ok || mp.Leader < 0 {
		return cbe
	}
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID, req.MaxWaitMillis, req.MinBytes, req.MaxBytes = -1, 0, 1, 1<<20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = tp.Topic, mt.ID
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = tp.Partition, at, 1<<20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, k.cl.Broker(int(mp.Leader)))
	if err != nil || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return cbe
	}
	// The first batch that ends at or after the position is the one the
	// client stopped at: batches before it decoded.
	for b := resp.Topics[0].Partitions[0].RecordBatches; len(b) >= codecs.HeaderSize; {
		h, err := codecs.ParseHeader(b)
		if err != nil {
			break
		}
		if h.LastOffset() >= at {
			cbe.Batch.BaseOffset, cbe.Batch.LastOffset = h.BaseOffset, h.LastOffset()
			break
		}
		size := codecs.BatchSize(b)
		if size < codecs.HeaderSize || size > len(b) {
			break
		}
		b = b[size:]
	}
	return cbe
}

// lookUpCommitted fetches the group's committed offsets when records
// arrive for a partition with no known position (newly assigned), so that
// noteGap knows where the group meant to start.
func (k *consumer) lookUpCommitted(ctx context.Context, fs kgo.Fetches) {
	if k.opts.Group == "" {
		return
	}
	k.mu.Lock()
	need := false
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		tp := hub.TopicPartition{Topic: p.Topic, Partition: p.Partition}
		if _, ok := k.pos[tp]; !ok && len(p.Records) > 0 {
			if _, ok := k.committed[tp]; !ok {
				need = true
			}
		}
	})
	k.mu.Unlock()
	if !need {
		return
	}
	got, err := k.adm.FetchOffsets(ctx, k.opts.Group)
	if err == nil {
		err = got.Error()
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		// Without it a gap below the log start is not counted: say so.
		k.logger.Warn("kafkaclient: cannot fetch the group's committed offsets; records retention deleted before they were read may go uncounted",
			"group", k.opts.Group, "err", Translate(err))
		return
	}
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		tp := hub.TopicPartition{Topic: p.Topic, Partition: p.Partition}
		if _, ok := k.committed[tp]; ok {
			return
		}
		k.committed[tp] = -1
		if o, ok := got.Lookup(p.Topic, p.Partition); ok && o.Err == nil && o.At >= 0 {
			k.committed[tp] = o.At
		}
	})
}

// noteGap counts the records between where tp was to be read from (the
// last record returned, or the committed offset) and the log start that
// the fetch reports, when the fetch starts past it: retention deleted
// them first. Gaps above the log start (compaction, transaction markers)
// are not losses.
func (k *consumer) noteGap(tp hub.TopicPartition, first, logStart int64) {
	from, ok := k.pos[tp]
	if !ok {
		from, ok = k.committed[tp]
		ok = ok && from >= 0
	}
	if !ok || logStart < 0 || from >= logStart || first <= from {
		return
	}
	if k.skipped == nil {
		k.skipped = map[hub.TopicPartition]int64{}
	}
	k.skipped[tp] += min(first, logStart) - from
}

// TakeSkipped returns, and forgets, the records per partition that
// retention deleted before the consumer read them (its position fell
// below the log start and the client moved on to it), like the
// in-process consumer's.
func (k *consumer) TakeSkipped() map[hub.TopicPartition]int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := k.skipped
	k.skipped = nil
	return s
}

// take returns the next MaxPollBytes of the records fetched and not yet
// returned.
func (k *consumer) take() []hub.Fetch {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.takeLocked()
}

func (k *consumer) takeLocked() []hub.Fetch {
	budget := int(k.opts.MaxPollBytes)
	if budget <= 0 {
		budget = 4 << 20
	}
	k.fetches = k.fetches[:0]
	n := 0
	for len(k.left) > 0 && n < budget {
		f := &k.left[0]
		end := 0
		for end < len(f.Records) && (n < budget || end == 0 && len(k.fetches) == 0) {
			n += len(f.Records[end].Key) + len(f.Records[end].Value)
			end++
		}
		out := *f
		out.Records = f.Records[:end:end]
		k.fetches = append(k.fetches, out)
		tp := hub.TopicPartition{Topic: f.Dataset, Partition: f.Partition}
		if k.assigned[tp] || !k.group {
			k.pos[tp] = out.Records[end-1].Offset + 1
		}
		if end == len(f.Records) {
			k.left[0] = hub.Fetch{}
			k.left = k.left[1:]
		} else {
			f.Records = f.Records[end:]
		}
	}
	if len(k.left) == 0 {
		k.left = nil
	}
	return k.fetches
}

// Settled reports whether the consumer reads what it is meant to: a group
// member once the group assigned it its partitions (a member that joins
// while a dead one still holds them waits for its session to expire), a
// broadcast reader always. Until then, a Poll that returns nothing does
// not mean there is nothing to read.
func (k *consumer) Settled() bool {
	if !k.group {
		return true
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.settled
}

// Commit implements hub.Consumer.
func (k *consumer) Commit(ctx context.Context, offsets map[hub.TopicPartition]int64) error {
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
		if err != nil {
			return fmt.Errorf("kafkaclient: committing offsets of %s: %w", k.opts.Group, Translate(err))
		}
		return nil
	}
	m := map[string]map[int32]kgo.EpochOffset{}
	for tp, off := range offsets {
		if m[tp.Topic] == nil {
			m[tp.Topic] = map[int32]kgo.EpochOffset{}
		}
		m[tp.Topic][tp.Partition] = kgo.EpochOffset{Epoch: -1, Offset: off}
	}
	if err := CommitSync(ctx, k.cl, m); err != nil {
		return fmt.Errorf("kafkaclient: committing offsets of %s: %w", k.opts.Group, err)
	}
	return nil
}

// CommitSync commits a group client's offsets and returns the first
// error, of the request or of any partition, translated (Translate).
func CommitSync(ctx context.Context, cl *kgo.Client, offsets map[string]map[int32]kgo.EpochOffset) error {
	var cerr error
	cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			cerr = Translate(err)
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if e := kerr.ErrorForCode(p.ErrorCode); e != nil && cerr == nil {
					cerr = fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, Translate(e))
				}
			}
		}
	})
	return cerr
}

// Assignment implements hub.Consumer: the partitions assigned now, in
// topic and partition order.
func (k *consumer) Assignment() []hub.TopicPartition {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]hub.TopicPartition, 0, len(k.assigned))
	for tp := range k.assigned {
		out = append(out, tp)
	}
	slices.SortFunc(out, func(a, b hub.TopicPartition) int {
		if a.Topic != b.Topic {
			if a.Topic < b.Topic {
				return -1
			}
			return 1
		}
		return int(a.Partition - b.Partition)
	})
	return out
}

// Lag implements hub.Consumer, from the high watermarks of the last
// fetches of the partitions assigned now.
func (k *consumer) Lag() map[hub.TopicPartition]int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[hub.TopicPartition]int64, len(k.hw))
	for tp, hw := range k.hw {
		if k.assigned[tp] {
			out[tp] = max(hw-k.pos[tp], 0)
		}
	}
	return out
}

// Close implements hub.Consumer.
func (k *consumer) Close(ctx context.Context) error {
	if k.group && k.opts.OnRevoked != nil {
		if tps := k.Assignment(); len(tps) > 0 {
			k.opts.OnRevoked(ctx, tps)
		}
	}
	// A blocked rebalance would keep Close (which leaves the group)
	// waiting: the records last polled are processed by now.
	k.cl.AllowRebalance()
	k.cl.Close()
	return nil
}
