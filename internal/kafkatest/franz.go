package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// admin is the franz-go client a case uses to set up and inspect the broker:
// create topics, produce to explicit partitions, read end and committed
// offsets. Client-under-test traffic uses clients of its own.
type admin struct {
	cl  *kgo.Client
	adm *kadm.Client
}

// newAdmin makes the case's admin client; the test's cleanup closes it.
func (e *env) newAdmin() *admin {
	cl := e.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	return &admin{cl: cl, adm: kadm.NewClient(cl)}
}

// client makes a franz-go client for the broker; cleanup closes it.
func (e *env) client(opts ...kgo.Opt) *kgo.Client {
	e.t.Helper()
	opts = append([]kgo.Opt{
		kgo.SeedBrokers(e.b.Addr),
		kgo.ClientID("kafkatest-franz-go"),
		kgo.RetryTimeout(opTimeout),
	}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		e.t.Fatalf("franz-go client: %v", err)
	}
	e.t.Cleanup(cl.Close)
	return cl
}

// createTopic creates a topic with franz-go and waits until metadata shows
// all of its partitions with a leader.
func (e *env) createTopic(topic string, partitions int32) {
	e.t.Helper()
	resp, err := e.franz.adm.CreateTopic(e.ctx(), partitions, 1, nil, topic)
	if err != nil {
		e.t.Fatalf("create topic %s with %d partitions: %v (%s)", topic, partitions, err, errMessage(resp.ErrMessage))
	}
	e.waitTopic(topic, int(partitions))
}

func errMessage(s string) string {
	if s == "" {
		return "no error message"
	}
	return s
}

// metadata asks the broker for metadata of topics, bypassing franz-go's
// metadata cache (kadm answers from it for up to five seconds), and never
// asking for auto-creation.
func (e *env) metadata(ctx context.Context, topics ...string) (*kmsg.MetadataResponse, error) {
	req := kmsg.NewPtrMetadataRequest()
	req.AllowAutoTopicCreation = false
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	return req.RequestWith(ctx, e.franz.cl)
}

// topicState is what metadata says of one topic: 0 partitions when it does
// not exist, else its partition count and the partitions without a leader.
func (e *env) topicState(topic string) (partitions int, leaderless []int32, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	resp, err := e.metadata(ctx, topic)
	if err != nil {
		return 0, nil, err
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		switch err := kerr.ErrorForCode(t.ErrorCode); {
		case errors.Is(err, kerr.UnknownTopicOrPartition):
			return 0, nil, nil
		case err != nil:
			return 0, nil, err
		}
		for _, p := range t.Partitions {
			if p.Leader < 0 || p.ErrorCode != 0 {
				leaderless = append(leaderless, p.Partition)
			}
		}
		return len(t.Partitions), leaderless, nil
	}
	return 0, nil, nil
}

// waitTopic waits until metadata shows topic with n partitions (n < 0: any
// number but 0), each with a leader.
func (e *env) waitTopic(topic string, n int) {
	e.t.Helper()
	var got int
	var leaderless []int32
	var err error
	e.waitFor(fmt.Sprintf("topic %s with %d partitions in metadata", topic, n),
		func() bool {
			got, leaderless, err = e.topicState(topic)
			return err == nil && (got == n || n < 0 && got > 0) && len(leaderless) == 0
		},
		func() string {
			if err == nil && got == 0 {
				return "metadata does not list the topic"
			}
			return fmt.Sprintf("last saw %d partitions, without a leader %v, error %v", got, leaderless, err)
		})
}

// waitNoTopic waits until metadata no longer shows topic.
func (e *env) waitNoTopic(topic string) {
	e.t.Helper()
	var got int
	var err error
	e.waitFor(fmt.Sprintf("topic %s to be gone from metadata", topic),
		func() bool {
			got, _, err = e.topicState(topic)
			return err == nil && got == 0
		},
		func() string { return fmt.Sprintf("last saw %d partitions, error %v", got, err) })
}

// produce writes records with the admin client (explicit partitions, acks
// all) and fails the test on any error. It returns the records with their
// offsets.
func (e *env) produce(recs ...*kgo.Record) []*kgo.Record {
	e.t.Helper()
	res := e.franz.cl.ProduceSync(e.ctx(), recs...)
	if err := res.FirstErr(); err != nil {
		e.t.Fatalf("franz-go produce %d records: %v", len(recs), err)
	}
	return recs
}

// endOffsets lists the high watermark of every partition of the topics.
func (e *env) endOffsets(topics ...string) map[string]map[int32]int64 {
	e.t.Helper()
	lo, err := e.franz.adm.ListEndOffsets(e.ctx(), topics...)
	if err == nil {
		err = lo.Error()
	}
	if err != nil {
		e.t.Fatalf("list end offsets of %v: %v", topics, err)
	}
	out := map[string]map[int32]int64{}
	lo.Each(func(o kadm.ListedOffset) {
		if out[o.Topic] == nil {
			out[o.Topic] = map[int32]int64{}
		}
		out[o.Topic][o.Partition] = o.Offset
	})
	return out
}

// tpRange is the offsets [Start, End) of one partition.
type tpRange struct {
	Topic     string
	Partition int32
	Start     int64
	End       int64
}

// fullRanges is [0, end) of every partition of the topics.
func (e *env) fullRanges(topics ...string) []tpRange {
	var rs []tpRange
	for t, parts := range e.endOffsets(topics...) {
		for p, end := range parts {
			rs = append(rs, tpRange{t, p, 0, end})
		}
	}
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Topic != rs[j].Topic {
			return rs[i].Topic < rs[j].Topic
		}
		return rs[i].Partition < rs[j].Partition
	})
	return rs
}

// tpArgs renders ranges as the scripts' --tp arguments.
func tpArgs(rs []tpRange) []string {
	var args []string
	for _, r := range rs {
		args = append(args, "--tp", fmt.Sprintf("%s:%d:%d:%d", r.Topic, r.Partition, r.Start, r.End))
	}
	return args
}

// progress tracks how far consumption of ranges got.
type progress struct {
	ranges []tpRange
	last   map[string]map[int32]int64 // highest offset seen
}

func newProgress(rs []tpRange) *progress {
	p := &progress{ranges: rs, last: map[string]map[int32]int64{}}
	for _, r := range rs {
		if p.last[r.Topic] == nil {
			p.last[r.Topic] = map[int32]int64{}
		}
		p.last[r.Topic][r.Partition] = r.Start - 1
	}
	return p
}

func (p *progress) see(topic string, partition int32, offset int64) {
	if m := p.last[topic]; m != nil {
		if last, ok := m[partition]; ok && offset > last {
			m[partition] = offset
		}
	}
}

func (p *progress) done() bool { return p.pending() == "" }

// pending describes the ranges not read to their end yet.
func (p *progress) pending() string {
	var parts []string
	for _, r := range p.ranges {
		if last := p.last[r.Topic][r.Partition]; r.Start < r.End && last < r.End-1 {
			parts = append(parts, fmt.Sprintf("%s/%d at %d of [%d,%d)", r.Topic, r.Partition, last, r.Start, r.End))
		}
	}
	return strings.Join(parts, ", ")
}

// consumeFranz reads ranges with a franz-go direct (groupless) consumer, until
// every range is read to its end or opTimeout passes; it returns what it
// read either way, and an error saying what is missing.
func (e *env) consumeFranz(rs []tpRange, opts ...kgo.Opt) ([]rec, error) {
	e.t.Helper()
	parts := map[string]map[int32]kgo.Offset{}
	for _, r := range rs {
		if r.Start >= r.End {
			continue
		}
		if parts[r.Topic] == nil {
			parts[r.Topic] = map[int32]kgo.Offset{}
		}
		parts[r.Topic][r.Partition] = kgo.NewOffset().At(r.Start)
	}
	var got []rec
	if len(parts) == 0 {
		return got, nil
	}
	cl := e.client(append([]kgo.Opt{kgo.ConsumePartitions(parts), kgo.FetchMaxWait(500 * time.Millisecond)}, opts...)...)
	defer cl.Close()
	ctx := e.ctx()
	pr := newProgress(rs)
	var lastErr error
	for !pr.done() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return got, fmt.Errorf("franz-go consume: deadline passed; %s; last error %v", pr.pending(), lastErr)
		}
		fs.EachError(func(t string, p int32, err error) { lastErr = fmt.Errorf("%s/%d: %w", t, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			got = append(got, fromKgo(r))
			pr.see(r.Topic, r.Partition, r.Offset)
		})
	}
	return got, nil
}

func fromKgo(r *kgo.Record) rec {
	out := rec{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Value: string(r.Value), ProducerID: r.ProducerID}
	if r.Key != nil {
		k := string(r.Key)
		out.Key = &k
	}
	return out
}

// codecHook records the codec of every batch franz-go reads, per topic.
type codecHook struct {
	mu     sync.Mutex
	codecs map[string]map[uint8]int // topic -> codec -> batches
}

var _ kgo.HookFetchBatchRead = (*codecHook)(nil)

func (h *codecHook) OnFetchBatchRead(_ kgo.BrokerMetadata, topic string, _ int32, m kgo.FetchBatchMetrics) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.codecs[topic] == nil {
		h.codecs[topic] = map[uint8]int{}
	}
	h.codecs[topic][m.CompressionType]++
}

// codecNames are the record batch codecs by attribute value.
var codecNames = []string{"none", "gzip", "snappy", "lz4", "zstd"}

func codecName(c uint8) string {
	if int(c) < len(codecNames) {
		return codecNames[c]
	}
	return fmt.Sprintf("codec(%d)", c)
}
