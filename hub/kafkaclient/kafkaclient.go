// Package kafkaclient is the hub.Client over a Kafka-compatible cluster
// (a remote `weir serve`, Kafka, Redpanda), built on franz-go's kgo. The
// pipelines use it when a file says `hub: {kafka: …}`; the in-process
// hub.LocalClient is the other implementation.
//
// # What it owns
//
//   - Connection: seed brokers, client id, TLS and SASL, from the same
//     kafkaconf.Conn the kafka source and sink use.
//   - Produce: records become kgo records that point at the caller's
//     bytes (no decode, no copy, no second encoding); kgo builds the
//     batches once, compressed with the client's codec (lz4 by default,
//     like the hub's own writers).
//   - Errors: Kafka error codes and connection failures are translated
//     into hub errors (hub.ErrBatchTooLarge, hub.ErrUnavailable, …), so
//     callers test one set of errors whatever the client.
//   - Consumers: group members with the range assignor, like the
//     in-process ones, so members of both kinds can share a group; or
//     broadcast readers of every partition.
package kafkaclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/internal/kafkaconf"
)

// Options configure a Client. Conn.Brokers is required; the other fields
// have defaults.
type Options struct {
	// Conn is how to reach the cluster: brokers, client id (default
	// "weir"), dial timeout (default 10s), TLS and SASL.
	Conn kafkaconf.Conn
	// Compression is the codec of the batches Produce sends when the
	// call does not name one. Default hub.DefaultCompression (lz4).
	Compression *codecs.Compression
	// MaxBatchBytes bounds one produced record batch; keep it at most
	// the topics' max.message.bytes. Default 1 MiB.
	MaxBatchBytes int32
	// Logger receives the client's logs. Default: none.
	Logger *slog.Logger
}

// Client is a hub.Client over a Kafka-compatible cluster. It is safe for
// concurrent use.
type Client struct {
	opts  Options
	base  []kgo.Opt // connection options, shared by every kgo client made
	comp  codecs.Compression
	adm   *kadm.Client
	admCl *kgo.Client

	rr atomic.Uint32 // round robin for records without a key

	mu    sync.Mutex
	prods map[codecs.Compression]*kgo.Client // one producer per codec asked for
	parts map[string]int32
}

var _ hub.Client = (*Client)(nil)

// New makes a client; it connects lazily. It reads the TLS files of
// opts.Conn.
func New(opts Options) (*Client, error) {
	if len(opts.Conn.Brokers) == 0 {
		return nil, errors.New("kafkaclient: no brokers")
	}
	if opts.Conn.ClientID == "" {
		opts.Conn.ClientID = "weir"
	}
	if opts.Conn.DialTimeout <= 0 {
		opts.Conn.DialTimeout = 10 * time.Second
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = 1 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	base, err := opts.Conn.Opts()
	if err != nil {
		return nil, fmt.Errorf("kafkaclient: %w", err)
	}
	c := &Client{opts: opts, base: base, comp: hub.DefaultCompression, prods: map[codecs.Compression]*kgo.Client{},
		parts: map[string]int32{}}
	if opts.Compression != nil {
		c.comp = *opts.Compression
	}
	prod, err := c.producer(c.comp)
	if err != nil {
		return nil, err
	}
	c.admCl, c.adm = prod, kadm.NewClient(prod)
	return c, nil
}

// Codec maps a batch codec to franz-go's.
func Codec(c codecs.Compression) kgo.CompressionCodec {
	switch c {
	case codecs.Gzip:
		return kgo.GzipCompression()
	case codecs.Snappy:
		return kgo.SnappyCompression()
	case codecs.LZ4:
		return kgo.Lz4Compression()
	case codecs.Zstd:
		return kgo.ZstdCompression()
	}
	return kgo.NoCompression()
}

// producer returns the producer that compresses with comp, making it
// the first time.
func (c *Client) producer(comp codecs.Compression) (*kgo.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.prods[comp]; p != nil {
		return p, nil
	}
	opts := append(append([]kgo.Opt(nil), c.base...), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchMaxBytes(c.opts.MaxBatchBytes),
		kgo.ProducerBatchCompression(Codec(comp)), kgo.AllowAutoTopicCreation(), kgo.WithLogger(kgoLogger{c.opts.Logger}))
	p, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafkaclient: producer for %v: %w", c.opts.Conn.Brokers, err)
	}
	c.prods[comp] = p
	return p, nil
}

// Close closes the client's connections.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for comp, p := range c.prods {
		p.Close()
		delete(c.prods, comp)
	}
	return nil
}

// Topic is a topic EnsureTopic creates: a name, a partition count and
// Kafka topic configs (retention.ms, compression.type, …).
type Topic struct {
	Name       string
	Partitions int32
	Configs    map[string]string
}

// EnsureTopic creates a topic if it does not exist; an existing one is
// left as it is.
func (c *Client) EnsureTopic(ctx context.Context, t Topic) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cfg := make(map[string]*string, len(t.Configs))
	for k, v := range t.Configs {
		cfg[k] = &v
	}
	resp, err := c.adm.CreateTopic(ctx, t.Partitions, -1, cfg, t.Name)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("kafkaclient: creating topic %s on %v: %w", t.Name, c.opts.Conn.Brokers, Translate(err))
	}
	return nil
}

// Partitions implements hub.Client. A topic that does not exist is
// created with the cluster's defaults (where the cluster allows it).
func (c *Client) Partitions(ctx context.Context, dataset string) (int32, error) {
	c.mu.Lock()
	n, ok := c.parts[dataset]
	c.mu.Unlock()
	if ok {
		return n, nil
	}
	for attempt := 0; ; attempt++ {
		topics, err := c.adm.ListTopicsWithInternal(ctx, dataset)
		if err != nil {
			return 0, fmt.Errorf("kafkaclient: metadata of %s from %v: %w", dataset, c.opts.Conn.Brokers, Translate(err))
		}
		t, ok := topics[dataset]
		if ok && t.Err == nil && len(t.Partitions) > 0 {
			n = int32(len(t.Partitions))
			c.mu.Lock()
			c.parts[dataset] = n
			c.mu.Unlock()
			return n, nil
		}
		if ok && t.Err != nil && !errors.Is(t.Err, kerr.UnknownTopicOrPartition) {
			return 0, fmt.Errorf("kafkaclient: metadata of %s: %w", dataset, Translate(t.Err))
		}
		if attempt > 0 {
			return 0, fmt.Errorf("kafkaclient: %w: %s", hub.ErrUnknownDataset, dataset)
		}
		if _, err := c.adm.CreateTopic(ctx, -1, -1, nil, dataset); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return 0, fmt.Errorf("kafkaclient: %w: %s (%w)", hub.ErrUnknownDataset, dataset, Translate(err))
		}
	}
}

// Produce implements hub.Client. The kgo records point at the records'
// bytes; kgo encodes them once, into batches of at most the client's
// MaxBatchBytes. A record larger than opts.MaxBatchBytes (or the client's
// MaxBatchBytes) fails alone with hub.ErrBatchTooLarge, unsent.
func (c *Client) Produce(ctx context.Context, dataset string, records []hub.Record, opts hub.ProduceOptions) hub.RecordResults {
	if len(records) == 0 {
		return nil
	}
	n, err := c.Partitions(ctx, dataset)
	if err != nil {
		return hub.FailAll(len(records), err)
	}
	comp := c.comp
	if opts.Compression != "" {
		if comp, err = codecs.ParseCompression(opts.Compression); err != nil {
			return hub.FailAll(len(records), fmt.Errorf("kafkaclient: produce to %s: %w", dataset, err))
		}
	}
	prod, err := c.producer(comp)
	if err != nil {
		return hub.FailAll(len(records), err)
	}
	return c.send(ctx, prod, dataset, n, records, opts)
}

// send produces records to a dataset of n partitions with prod and waits
// for every result.
func (c *Client) send(ctx context.Context, prod *kgo.Client, dataset string, n int32, records []hub.Record, opts hub.ProduceOptions) hub.RecordResults {
	sticky := int32(c.rr.Add(1) % uint32(n))
	nh := 0
	for i := range records {
		nh += len(records[i].Headers)
	}
	krs := make([]kgo.Record, len(records))
	var hdrs []kgo.RecordHeader
	if nh > 0 {
		hdrs = make([]kgo.RecordHeader, 0, nh)
	}
	limit := int(c.opts.MaxBatchBytes)
	if opts.MaxBatchBytes > 0 {
		limit = min(limit, opts.MaxBatchBytes)
	}
	results := make(hub.RecordResults, len(records))
	var wg sync.WaitGroup
	for i := range records {
		r := &records[i]
		p := sticky
		if r.Key != nil {
			p = hub.PartitionForKey(r.Key, n)
		}
		if size := recordSize(r); size > limit {
			results[i] = hub.RecordResult{Partition: p, Offset: -1, Err: fmt.Errorf("kafkaclient: produce to %s/%d: %w: a record of about %d bytes, over the batch limit of %d",
				dataset, p, hub.ErrBatchTooLarge, size, limit)}
			continue
		}
		wg.Add(1)
		kr := &krs[i]
		*kr = kgo.Record{Topic: dataset, Partition: p, Key: r.Key, Value: r.Value, Timestamp: r.Timestamp}
		if len(r.Headers) > 0 {
			at := len(hdrs)
			for _, h := range r.Headers {
				hdrs = append(hdrs, kgo.RecordHeader{Key: string(h.Key), Value: h.Value})
			}
			kr.Headers = hdrs[at:len(hdrs):len(hdrs)]
		}
		prod.Produce(ctx, kr, func(kr *kgo.Record, err error) {
			res := hub.RecordResult{Partition: kr.Partition, Offset: kr.Offset}
			if err != nil {
				res.Offset, res.Err = -1, fmt.Errorf("kafkaclient: produce to %s/%d: %w", dataset, kr.Partition, Translate(err))
			}
			results[i] = res
			wg.Done()
		})
	}
	wg.Wait()
	return results
}

// recordSize is about what r takes in a record batch alone: the batch
// header, the record's fields and their length varints.
func recordSize(r *hub.Record) int {
	n := codecs.HeaderSize + 20 + len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += 10 + len(h.Key) + len(h.Value)
	}
	return n
}

// Translate returns err wrapped in the hub error it stands for, so that
// errors.Is finds both: Kafka error codes (kerr), franz-go's client errors
// and connection failures. Other errors, and ctx's, come back as they are.
func Translate(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var to error
	switch {
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		to = hub.ErrBatchTooLarge
	case errors.Is(err, kerr.InvalidRecord), errors.Is(err, kerr.InvalidTimestamp):
		to = hub.ErrInvalidRecord
	case errors.Is(err, kerr.CorruptMessage):
		to = hub.ErrCorruptBatch
	case errors.Is(err, kerr.InvalidTopicException):
		to = hub.ErrInvalidDatasetName
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		to = hub.ErrUnknownDataset
	case errors.Is(err, kerr.TopicAlreadyExists):
		to = hub.ErrDatasetExists
	case errors.Is(err, kerr.InvalidConfig), errors.Is(err, kerr.PolicyViolation):
		to = hub.ErrInvalidConfig
	case errors.Is(err, kerr.KafkaStorageError):
		to = hub.ErrStorage
	case errors.Is(err, kerr.RebalanceInProgress):
		to = hub.ErrRebalanceInProgress
	case errors.Is(err, kerr.IllegalGeneration):
		to = hub.ErrIllegalGeneration
	case errors.Is(err, kerr.UnknownMemberID):
		to = hub.ErrUnknownMemberID
	case errors.Is(err, kerr.ProducerFenced):
		to = hub.ErrProducerFenced
	case errors.Is(err, kerr.InvalidProducerEpoch):
		to = hub.ErrInvalidProducerEpoch
	case errors.Is(err, kgo.ErrClientClosed):
		to = hub.ErrClosed
	case errors.Is(err, kgo.ErrRecordTimeout), errors.Is(err, kgo.ErrRecordRetries),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, kerr.SaslAuthenticationFailed), errors.Is(err, kerr.UnsupportedSaslMechanism),
		errors.Is(err, kerr.IllegalSaslState), errors.Is(err, kerr.TopicAuthorizationFailed),
		errors.Is(err, kerr.ClusterAuthorizationFailed), errors.Is(err, kerr.GroupAuthorizationFailed),
		errors.Is(err, kerr.BrokerNotAvailable), errors.Is(err, kerr.LeaderNotAvailable),
		errors.Is(err, kerr.NotLeaderForPartition), errors.Is(err, kerr.NetworkException),
		errors.Is(err, kerr.RequestTimedOut), errors.Is(err, kerr.NotEnoughReplicas),
		errors.Is(err, kerr.NotEnoughReplicasAfterAppend), errors.Is(err, kerr.CoordinatorNotAvailable):
		to = hub.ErrUnavailable
	}
	if to == nil {
		if _, ok := errors.AsType[*net.OpError](err); ok {
			to = hub.ErrUnavailable
		} else if _, ok := errors.AsType[*kgo.ErrFirstReadEOF](err); ok {
			to = hub.ErrUnavailable
		}
	}
	if to == nil {
		return err
	}
	return fmt.Errorf("%w: %w", to, err)
}

// kgoLogger passes franz-go's warnings and errors to slog.
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	switch level {
	case kgo.LogLevelError:
		k.l.Error("kafka: "+msg, keyvals...)
	case kgo.LogLevelWarn:
		k.l.Warn("kafka: "+msg, keyvals...)
	}
}
