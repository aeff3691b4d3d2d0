package kafkaclient

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhub/weir/hub"
)

var _ hub.Transactor = (*Client)(nil)

// TxnProducer implements hub.Transactor: a kgo client with the
// transactional id, initialised at once (InitProducerID), which fences an
// earlier producer with the id and aborts its open transaction. It
// compresses with the client's codec whatever a Produce asks for. Offsets
// go into the transaction with AddOffsetsToTxn and TxnOffsetCommit
// carrying the consumer's member id and generation (KIP-447), so a member
// that lost its partitions cannot commit them.
func (c *Client) TxnProducer(ctx context.Context, id string, timeout time.Duration) (hub.TxnProducer, error) {
	if timeout <= 0 {
		timeout = hub.DefaultTxnTimeout
	}
	t := &kafkaTxn{c: c, id: id, timeout: timeout}
	if err := t.connect(ctx); err != nil {
		return nil, err
	}
	return t, nil
}

// kafkaTxn is a hub.TxnProducer over a Kafka-compatible cluster.
type kafkaTxn struct {
	c       *Client
	id      string
	timeout time.Duration

	mu       sync.Mutex // one call at a time: kgo's transactions are not for concurrent use
	cl       *kgo.Client
	open     bool // BeginTransaction was called
	produced bool // a record was stored in the open transaction
	doom     hub.TxnDoom
}

// connect makes the transactional kgo client and loads its producer id.
func (t *kafkaTxn) connect(ctx context.Context) error {
	c := t.c
	opts := append(append([]kgo.Opt(nil), c.base...), kgo.TransactionalID(t.id), kgo.TransactionTimeout(t.timeout),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchMaxBytes(c.opts.MaxBatchBytes), kgo.ProducerBatchCompression(Codec(c.comp)),
		kgo.AllowAutoTopicCreation(), kgo.WithLogger(kgoLogger{c.opts.Logger}))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafkaclient: transactional producer %q: %w", t.id, err)
	}
	if _, _, err := cl.ProducerID(ctx); err != nil {
		cl.Close()
		return fmt.Errorf("kafkaclient: initialising transactional id %q: %w", t.id, Translate(err))
	}
	t.cl, t.open, t.produced = cl, false, false
	t.doom.Reset()
	return nil
}

// Doomed implements hub.TxnProducer.
func (t *kafkaTxn) Doomed() <-chan struct{} { return t.doom.Done() }

// Produce implements hub.Client within the open transaction.
func (t *kafkaTxn) Produce(ctx context.Context, dataset string, records []hub.Record, opts hub.ProduceOptions) hub.RecordResults {
	if len(records) == 0 {
		return nil
	}
	n, err := t.c.Partitions(ctx, dataset)
	if err != nil {
		return hub.FailAll(len(records), err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.doom.Doomed() {
		return hub.FailAll(len(records), hub.ErrTxnDoomed)
	}
	if !t.open {
		if err := t.cl.BeginTransaction(); err != nil {
			t.doom.Doom()
			return hub.FailAll(len(records), fmt.Errorf("kafkaclient: beginning a transaction of %q: %w", t.id, Translate(err)))
		}
		t.open = true
	}
	rs := t.c.send(ctx, t.cl, dataset, n, records, opts)
	for i := range rs {
		if rs[i].Err != nil {
			t.doom.Doom()
		} else {
			t.produced = true
		}
	}
	return rs
}

// SendOffsets implements hub.TxnProducer. When nothing was produced in
// the transaction, the offsets are committed at once, outside it: there is
// nothing for them to commit with.
func (t *kafkaTxn) SendOffsets(ctx context.Context, c hub.Consumer, offsets map[hub.TopicPartition]int64) error {
	kc, ok := c.(*consumer)
	if !ok {
		return errors.New("kafkaclient: SendOffsets needs a consumer of the same client")
	}
	group := kc.opts.Group
	if group == "" {
		return errors.New("kafkaclient: SendOffsets needs a consumer with a group")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.doom.Doomed() {
		return hub.ErrTxnDoomed
	}
	if !t.produced {
		return kc.Commit(ctx, offsets)
	}
	member, gen := "", int32(-1)
	if kc.group {
		member, gen = kc.cl.GroupMetadata()
	}
	pid, epoch, err := t.cl.ProducerID(ctx)
	if err != nil {
		t.doom.Doom()
		return fmt.Errorf("kafkaclient: producer id of %q: %w", t.id, Translate(err))
	}
	add := kmsg.NewPtrAddOffsetsToTxnRequest()
	add.TransactionalID, add.ProducerID, add.ProducerEpoch, add.Group = t.id, pid, epoch, group
	addResp, err := add.RequestWith(ctx, t.cl)
	if err == nil {
		err = kerr.ErrorForCode(addResp.ErrorCode)
	}
	if err != nil {
		t.doom.Doom()
		return fmt.Errorf("kafkaclient: adding the offsets of %s to transaction %q: %w", group, t.id, Translate(err))
	}
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch = t.id, group, pid, epoch
	req.Generation, req.MemberID = gen, member
	byTopic := map[string]int{}
	for tp, off := range offsets {
		i, ok := byTopic[tp.Topic]
		if !ok {
			i = len(req.Topics)
			byTopic[tp.Topic] = i
			rt := kmsg.NewTxnOffsetCommitRequestTopic()
			rt.Topic = tp.Topic
			req.Topics = append(req.Topics, rt)
		}
		rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset, rp.LeaderEpoch = tp.Partition, off, -1
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, rp)
	}
	resp, err := req.RequestWith(ctx, t.cl)
	if err == nil {
	check:
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				if err = kerr.ErrorForCode(rp.ErrorCode); err != nil {
					break check
				}
			}
		}
	}
	if err != nil {
		t.doom.Doom()
		return fmt.Errorf("kafkaclient: committing the offsets of %s in transaction %q: %w", group, t.id, Translate(err))
	}
	return nil
}

// End implements hub.TxnProducer. An abort that fails closes the kgo
// client and makes a new one: its InitProducerID aborts the transaction
// and fences what the old one wrote.
func (t *kafkaTxn) End(ctx context.Context, commit bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.open {
		t.doom.Reset()
		return nil
	}
	if commit && t.doom.Doomed() {
		return hub.ErrTxnDoomed
	}
	try := kgo.TryAbort
	if commit {
		try = kgo.TryCommit
	}
	err := t.cl.EndTransaction(ctx, try)
	if err == nil {
		t.open, t.produced = false, false
		t.doom.Reset()
		return nil
	}
	err = Translate(err)
	if commit {
		t.doom.Doom()
		return fmt.Errorf("kafkaclient: committing the transaction of %q: %w", t.id, err)
	}
	if errors.Is(err, hub.ErrProducerFenced) {
		return fmt.Errorf("kafkaclient: aborting the transaction of %q: %w", t.id, err)
	}
	t.cl.Close()
	if cerr := t.connect(ctx); cerr != nil {
		t.open = false
		return fmt.Errorf("kafkaclient: aborting the transaction of %q: %w (starting again: %w)", t.id, err, cerr)
	}
	return nil
}

// Partitions implements hub.Client.
func (t *kafkaTxn) Partitions(ctx context.Context, dataset string) (int32, error) {
	return t.c.Partitions(ctx, dataset)
}

// Consume implements hub.Client.
func (t *kafkaTxn) Consume(ctx context.Context, opts hub.ConsumeOptions) (hub.Consumer, error) {
	return t.c.Consume(ctx, opts)
}

// Close aborts an open transaction and closes the producer.
func (t *kafkaTxn) Close() error {
	err := t.End(context.Background(), false)
	t.mu.Lock()
	t.cl.Close()
	t.mu.Unlock()
	return err
}
