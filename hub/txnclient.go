package hub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// TxnProducer produces records and commits a consumer group's offsets in
// one transaction: what a pipeline running exactly once writes. It is a
// Client (its Produce writes within the open transaction; Partitions and
// Consume are its parent client's), so sinks and dead letters write
// through it unchanged. A transaction opens with the first Produce or
// SendOffsets after the last End. It is safe for concurrent use; Produce
// calls are stored one at a time.
type TxnProducer interface {
	Client
	// SendOffsets stages, in the open transaction, the offsets (of the
	// next records to read) of the group that consumer c belongs to:
	// they are committed with the transaction, dropped if it aborts. c
	// must come from the parent client's Consume.
	SendOffsets(ctx context.Context, c Consumer, offsets map[TopicPartition]int64) error
	// End commits (commit true) or aborts the open transaction; without
	// one it does nothing. A failed commit leaves the outcome to the
	// caller's abort: call End(ctx, false) then, which re-initialises
	// the producer (a new epoch) if the transaction cannot be ended. An
	// error wrapping ErrProducerFenced means a newer producer with the
	// same id took over: this one can do nothing more.
	End(ctx context.Context, commit bool) error
	// Doomed is closed once the open transaction can only be aborted (a
	// produce in it failed): work in it should stop and End(ctx, false)
	// be called. Each transaction has its own channel.
	Doomed() <-chan struct{}
}

// Transactor is a Client that makes transactional producers.
type Transactor interface {
	// TxnProducer returns a producer with the transactional id: an
	// earlier producer with the same id is fenced (its open transaction
	// is aborted, its writes refused). timeout is the transaction
	// timeout (0: DefaultTxnTimeout).
	TxnProducer(ctx context.Context, id string, timeout time.Duration) (TxnProducer, error)
}

var _ Transactor = (*LocalClient)(nil)

// ErrTxnDoomed is returned by writes to a transaction that an earlier
// failure doomed: it must be aborted.
var ErrTxnDoomed = errors.New("hub: the transaction failed and must be aborted")

// TxnDoom is the Doomed signal of a TxnProducer: a channel closed once
// the open transaction failed, a new one for the next transaction. The
// zero value is ready; it is safe for concurrent use.
type TxnDoom struct {
	mu     sync.Mutex
	ch     chan struct{}
	closed bool
}

// Done returns the channel of the open transaction.
func (d *TxnDoom) Done() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ch == nil {
		d.ch = make(chan struct{})
	}
	return d.ch
}

// Doom closes the open transaction's channel.
func (d *TxnDoom) Doom() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ch == nil {
		d.ch = make(chan struct{})
	}
	if !d.closed {
		close(d.ch)
		d.closed = true
	}
}

// Doomed reports whether the open transaction failed.
func (d *TxnDoom) Doomed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

// Reset starts the next transaction's signal.
func (d *TxnDoom) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		d.ch, d.closed = make(chan struct{}), false
	}
}

// localTxn is a TxnProducer over an in-process hub: the hub's transaction
// API, with batches built by the LocalClient.
type localTxn struct {
	c       *LocalClient
	id      string
	timeout time.Duration

	prodMu sync.Mutex // one Produce at a time: sequences are per partition

	mu     sync.Mutex // guards what follows
	pid    int64
	epoch  int16
	seqs   map[TopicPartition]int32 // next sequence per partition, this epoch
	parts  []TopicPartition         // in the open transaction
	groups []string                 // in the open transaction
	open   bool
	doom   TxnDoom
}

// TxnProducer implements Transactor.
func (c *LocalClient) TxnProducer(ctx context.Context, id string, timeout time.Duration) (TxnProducer, error) {
	if timeout <= 0 {
		timeout = DefaultTxnTimeout
	}
	t := &localTxn{c: c, id: id, timeout: timeout}
	if err := t.init(-1, -1); err != nil {
		return nil, err
	}
	return t, nil
}

// init gets the id's producer id and next epoch, aborting an open
// transaction of an earlier incarnation (or of this one when it cannot
// be ended otherwise). With this producer's pid and epoch (KIP-360) it
// succeeds after the hub timed the transaction out, and fails with
// ErrProducerFenced once a newer incarnation took the id over.
func (t *localTxn) init(pid int64, epoch int16) error {
	p, e, err := t.c.h.InitTransactionalProducer(t.id, t.timeout, pid, epoch)
	if err != nil {
		return fmt.Errorf("hub: initialising transactional id %q: %w", t.id, err)
	}
	t.pid, t.epoch, t.seqs = p, e, map[TopicPartition]int32{}
	t.reset()
	return nil
}

// reset forgets the ended transaction; t.mu is held (or t is new).
func (t *localTxn) reset() {
	t.parts, t.groups, t.open = nil, nil, false
	t.doom.Reset()
}

// Doomed implements TxnProducer.
func (t *localTxn) Doomed() <-chan struct{} { return t.doom.Done() }

// Produce implements Client, within the open transaction.
func (t *localTxn) Produce(ctx context.Context, dataset string, records []Record, opts ProduceOptions) RecordResults {
	t.prodMu.Lock()
	defer t.prodMu.Unlock()
	if t.doom.Doomed() {
		return FailAll(len(records), ErrTxnDoomed)
	}
	return t.c.produce(ctx, dataset, records, opts, t)
}

// addPartitions adds the partitions of a produce to the transaction,
// opening it. Called by produce with prodMu held.
func (t *localTxn) addPartitions(dataset string, parts []*localPart) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var add []TopicPartition
	for _, lp := range parts {
		tp := TopicPartition{Topic: dataset, Partition: lp.p}
		if !slices.Contains(t.parts, tp) {
			add = append(add, tp)
		}
	}
	if len(add) == 0 {
		return nil
	}
	if err := t.c.h.AddPartitionsToTxn(t.id, t.pid, t.epoch, add); err != nil {
		t.doom.Doom()
		return err
	}
	t.parts = append(t.parts, add...)
	t.open = true
	return nil
}

// stored notes the sequences a produce used; a partition that failed
// dooms the transaction (whether its batches were stored is unknown, so
// its sequence is too). Called by produce with prodMu held.
func (t *localTxn) stored(dataset string, lp *localPart) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if lp.err != nil {
		t.doom.Doom()
		return
	}
	t.seqs[TopicPartition{Topic: dataset, Partition: lp.p}] = lp.seq
}

// SendOffsets implements TxnProducer.
func (t *localTxn) SendOffsets(ctx context.Context, c Consumer, offsets map[TopicPartition]int64) error {
	lc, ok := c.(*localConsumer)
	if !ok {
		return errors.New("hub: SendOffsets needs a consumer of the same hub client")
	}
	group := lc.opts.Group
	if group == "" {
		return errors.New("hub: SendOffsets needs a consumer with a group")
	}
	if !lc.opts.Broadcast {
		// A member that lost its partitions must not commit them: the
		// offsets of the group's current generation only (KIP-447).
		lc.mu.Lock()
		member, gen := lc.memberID, lc.generation
		lc.mu.Unlock()
		if err := t.c.h.checkMember(group, member, gen); err != nil {
			return err
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.doom.Doomed() {
		return ErrTxnDoomed
	}
	if !slices.Contains(t.groups, group) {
		if err := t.c.h.AddOffsetsToTxn(t.id, t.pid, t.epoch, group); err != nil {
			t.doom.Doom()
			return err
		}
		t.groups = append(t.groups, group)
		t.open = true
	}
	m := make(map[TopicPartition]CommittedOffset, len(offsets))
	for tp, off := range offsets {
		m[tp] = CommittedOffset{Offset: off, LeaderEpoch: -1}
	}
	if err := t.c.h.TxnOffsetCommit(t.id, t.pid, t.epoch, group, m); err != nil {
		t.doom.Doom()
		return err
	}
	return nil
}

// End implements TxnProducer.
func (t *localTxn) End(ctx context.Context, commit bool) error {
	t.prodMu.Lock()
	defer t.prodMu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.open {
		t.reset()
		return nil
	}
	if t.doom.Doomed() {
		if commit {
			return ErrTxnDoomed
		}
		// What a failed produce stored is unknown, and so are the
		// sequences: a new epoch aborts the transaction and starts them
		// again.
		return t.init(t.pid, t.epoch)
	}
	err := t.c.h.EndTxn(t.id, t.pid, t.epoch, commit)
	if err == nil {
		t.reset()
		return nil
	}
	if commit {
		t.doom.Doom()
		return fmt.Errorf("hub: committing the transaction of %q: %w", t.id, err)
	}
	// The abort failed: a new epoch aborts it and fences what was
	// written under the old one.
	if err := t.init(t.pid, t.epoch); err != nil {
		return err
	}
	return nil
}

// Partitions implements Client.
func (t *localTxn) Partitions(ctx context.Context, dataset string) (int32, error) {
	return t.c.Partitions(ctx, dataset)
}

// Consume implements Client.
func (t *localTxn) Consume(ctx context.Context, opts ConsumeOptions) (Consumer, error) {
	return t.c.Consume(ctx, opts)
}

// Close aborts an open transaction.
func (t *localTxn) Close() error {
	return t.End(context.Background(), false)
}
