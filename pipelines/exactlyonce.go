package pipelines

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/weirhub/weir/hub"
)

// Exactly once (processing: exactly_once): each poll's records are written
// by the sinks, its dead letters and retries stored, and its offsets
// committed in one transaction of the hub:
//
//	poll ─► processors ─► sinks, dead letters, retry datasets ─┐ Produce in the
//	                                                           │ open transaction
//	        SendOffsets(consumer, next offsets) ◄──────────────┘
//	        End(commit) ─► markers on every partition written, offsets applied
//
// A failure in between (a sink write that failed, a commit refused, a
// crash) aborts the transaction: a read_committed reader never sees its
// records, the offsets stay where they were, and the poll is processed
// again. The transactional id is the pipeline's (transactional_id): a
// restarted run initialises it again, which aborts what the killed one
// left open and fences it.

// txnClient is the hub client of an exactly-once pipeline's sinks, dead
// letters and retry datasets: their writes go to the pipeline's
// transactional producer, set when the pipeline starts running (before any
// sink connects).
type txnClient struct {
	hub.Client // the engine's: Partitions, Consume
	tx         hub.TxnProducer
}

var errNoTxn = errors.New("pipelines: the pipeline's transactional producer is not started")

// Produce writes within the pipeline's open transaction.
func (c *txnClient) Produce(ctx context.Context, dataset string, records []hub.Record, opts hub.ProduceOptions) hub.RecordResults {
	if c.tx == nil {
		return hub.FailAll(len(records), errNoTxn)
	}
	return c.tx.Produce(ctx, dataset, records, opts)
}

// startTxn makes the pipeline's transactional producer, retrying until it
// succeeds or stop closes (then it returns false).
func (p *pipelineRunner) startTxn(ctx context.Context, stop <-chan struct{}) bool {
	for attempt := 0; ; attempt++ {
		var tx hub.TxnProducer
		var err error
		if p.ext != nil {
			var pos map[hub.TopicPartition]int64
			if tx, pos, err = p.ext.StartTxn(ctx, p.cfg.TransactionalID, p.cfg.Group); err == nil {
				if err = p.resumeAt(pos); err != nil {
					tx.Close()
				}
			}
		} else {
			tx, err = p.e.client.(hub.Transactor).TxnProducer(ctx, p.cfg.TransactionalID, 0) // checked by build
		}
		if err == nil {
			p.txc.tx = tx
			p.log.Info("weir: processing exactly once", "transactional_id", p.cfg.TransactionalID)
			return true
		}
		p.log.Error("weir: cannot start the transactional producer; retrying", "transactional_id", p.cfg.TransactionalID, "err", err)
		if !backoff(attempt, 200*time.Millisecond, 10*time.Second, stop) {
			return false
		}
	}
}

// resumeAt sets the group's committed offsets on the hub to the positions
// the sink's cluster keeps (exactly_once with a kafka sink): those are the
// truth, and a partition they lack starts over at the pipeline's start.
// The hub's offsets only follow them (commitTxn), for lag and retention
// checks.
func (p *pipelineRunner) resumeAt(pos map[hub.TopicPartition]int64) error {
	h := p.e.hub
	req := hub.OffsetCommitRequest{Group: p.cfg.Group, Generation: -1, Offsets: map[hub.TopicPartition]hub.CommittedOffset{}}
	var absent []hub.TopicPartition
	for _, name := range p.cfg.From {
		ds, err := h.Dataset(name)
		if err != nil {
			return fmt.Errorf("resuming from the positions kept with the output: %w", err)
		}
		for i := range ds.NumPartitions() {
			tp := hub.TopicPartition{Topic: name, Partition: i}
			if off, ok := pos[tp]; ok {
				req.Offsets[tp] = hub.CommittedOffset{Offset: off, LeaderEpoch: -1}
			} else {
				absent = append(absent, tp)
			}
		}
	}
	if len(absent) > 0 {
		if err := h.DeleteOffsets(p.cfg.Group, absent); err != nil && !errors.Is(err, hub.ErrGroupNotFound) {
			return fmt.Errorf("resuming from the positions kept with the output: %w", err)
		}
	}
	if len(req.Offsets) > 0 {
		if err := h.CommitOffsets(req); err != nil {
			return fmt.Errorf("resuming from the positions kept with the output: %w", err)
		}
	}
	p.log.Info("weir: resuming from the positions kept with the output", "group", p.cfg.Group, "partitions", len(req.Offsets))
	return nil
}

// abortTxn aborts the open transaction, logging a failure (the next
// transaction's start, or the hub's timeout, aborts it then). It returns
// an error when the producer was fenced: another run took the
// transactional id over, and this pipeline must stop.
func (p *pipelineRunner) abortTxn(ctx context.Context) error {
	err := p.txc.tx.End(context.WithoutCancel(ctx), false)
	if errors.Is(err, hub.ErrProducerFenced) {
		return fmt.Errorf("fenced: another run uses transactional id %s: %w", p.cfg.TransactionalID, err)
	}
	if err != nil {
		p.log.Warn("weir: aborting the transaction failed; it is aborted when the producer starts again or times out", "err", err)
	}
	return nil
}

// commitTxn stages the offsets and commits the open transaction.
func (p *pipelineRunner) commitTxn(ctx context.Context, offsets map[hub.TopicPartition]int64) error {
	if err := p.txc.tx.SendOffsets(ctx, p.consumer, offsets); err != nil {
		return err
	}
	if err := p.txc.tx.End(ctx, true); err != nil {
		return err
	}
	if p.ext != nil {
		// The hub's copy, for lag and retention checks; a run resumes
		// from the sink's cluster whatever becomes of it.
		if err := p.consumer.Commit(ctx, offsets); err != nil && !rebalanced(err) {
			p.log.Warn("weir: the group's offsets on the hub lag the positions kept with the output", "group", p.cfg.Group, "err", err)
		}
	}
	return nil
}

// eitherStop returns a channel closed once a or b is, and a function that
// releases it (the channel may then never close).
func eitherStop(a, b <-chan struct{}) (<-chan struct{}, func()) {
	if b == nil {
		return a, func() {}
	}
	out, quit := make(chan struct{}), make(chan struct{})
	go func() {
		select {
		case <-a:
		case <-b:
		case <-quit:
			return
		}
		close(out)
	}()
	return out, func() { close(quit) }
}

// rebalanced reports whether err says the partitions moved to another
// member: their records are the new owner's to process.
func rebalanced(err error) bool {
	return errors.Is(err, hub.ErrRebalanceInProgress) || errors.Is(err, hub.ErrIllegalGeneration) || errors.Is(err, hub.ErrUnknownMemberID)
}
