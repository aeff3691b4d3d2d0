package kafka

import (
	"errors"
	"path"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhub/weir/hub"
)

// The transaction APIs: the coordinator is the hub (hub/txn.go); these
// handlers translate requests and errors.

// txnErrCode is errCode for the transaction APIs: before version
// fencedSince of an API, a fenced producer is told INVALID_PRODUCER_EPOCH
// (PRODUCER_FENCED came later).
func txnErrCode(err error, version, fencedSince int16) int16 {
	if errors.Is(err, hub.ErrProducerFenced) && version < fencedSince {
		return kerr.InvalidProducerEpoch.Code
	}
	return errCode(err)
}

func handleInitProducerID(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.InitProducerIDRequest)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	pid, epoch := int64(-1), int16(-1)
	if h.version >= 3 {
		pid, epoch = req.ProducerID, req.ProducerEpoch
	}
	id, ep := int64(-1), int16(-1)
	var err error
	if req.TransactionalID != nil && *req.TransactionalID != "" {
		id, ep, err = c.s.hub.InitTransactionalProducer(*req.TransactionalID, ms(req.TransactionTimeoutMillis), pid, epoch)
	} else {
		id, ep, err = c.s.hub.InitProducerID("", pid, epoch)
	}
	resp.ErrorCode, resp.ProducerID, resp.ProducerEpoch = txnErrCode(err, h.version, 4), id, ep
	return ready(resp)
}

func handleAddPartitionsToTxn(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.AddPartitionsToTxnRequest)
	resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	if h.version <= 3 {
		var tps []hub.TopicPartition
		for _, t := range req.Topics {
			for _, p := range t.Partitions {
				tps = append(tps, hub.TopicPartition{Topic: t.Topic, Partition: p})
			}
		}
		code := txnErrCode(c.s.hub.AddPartitionsToTxn(req.TransactionalID, req.ProducerID, req.ProducerEpoch, tps), h.version, 2)
		for _, t := range req.Topics {
			rt := kmsg.NewAddPartitionsToTxnResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p, code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return ready(resp)
	}
	// v4+: several transactions, each either added to or only verified
	// (a partition must already be in the transaction).
	for _, tx := range req.Transactions {
		var tps []hub.TopicPartition
		for _, t := range tx.Topics {
			for _, p := range t.Partitions {
				tps = append(tps, hub.TopicPartition{Topic: t.Topic, Partition: p})
			}
		}
		var err error
		if tx.VerifyOnly {
			err = verifyTxnPartitions(c.s.hub, tx.TransactionalID, tx.ProducerID, tx.ProducerEpoch, tps)
		} else {
			err = c.s.hub.AddPartitionsToTxn(tx.TransactionalID, tx.ProducerID, tx.ProducerEpoch, tps)
		}
		code := errCode(err)
		rtx := kmsg.NewAddPartitionsToTxnResponseTransaction()
		rtx.TransactionalID = tx.TransactionalID
		for _, t := range tx.Topics {
			rt := kmsg.NewAddPartitionsToTxnResponseTransactionTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewAddPartitionsToTxnResponseTransactionTopicPartition()
				rp.Partition, rp.ErrorCode = p, code
				rt.Partitions = append(rt.Partitions, rp)
			}
			rtx.Topics = append(rtx.Topics, rt)
		}
		resp.Transactions = append(resp.Transactions, rtx)
	}
	return ready(resp)
}

// verifyTxnPartitions checks that tps are in the open transaction of id at
// the producer's epoch.
func verifyTxnPartitions(hb *hub.Hub, id string, pid int64, epoch int16, tps []hub.TopicPartition) error {
	d, ok := hb.DescribeTransactions([]string{id})[id]
	switch {
	case !ok:
		return hub.ErrTransactionalIDNotFound
	case d.ProducerID != pid:
		return hub.ErrInvalidProducerIDMapping
	case epoch < d.Epoch:
		return hub.ErrProducerFenced
	case d.State != hub.TxnOngoing:
		return hub.ErrInvalidTxnState
	}
	for _, tp := range tps {
		if !slices.Contains(d.Partitions, tp) {
			return hub.ErrInvalidTxnState
		}
	}
	return nil
}

func handleAddOffsetsToTxn(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.AddOffsetsToTxnRequest)
	resp := req.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
	resp.ErrorCode = txnErrCode(c.s.hub.AddOffsetsToTxn(req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group), h.version, 2)
	return ready(resp)
}

func handleTxnOffsetCommit(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.TxnOffsetCommitRequest)
	resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	offsets := map[hub.TopicPartition]hub.CommittedOffset{}
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			offsets[hub.TopicPartition{Topic: t.Topic, Partition: p.Partition}] = hub.CommittedOffset{
				Offset: p.Offset, LeaderEpoch: p.LeaderEpoch, Metadata: deref(p.Metadata)}
		}
	}
	code := txnErrCode(c.s.hub.TxnOffsetCommit(req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group, offsets), h.version, 3)
	for _, t := range req.Topics {
		rt := kmsg.NewTxnOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return ready(resp)
}

func handleEndTxn(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.EndTxnRequest)
	return c.later(func() kmsg.Response {
		resp := req.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = txnErrCode(c.s.hub.EndTxn(req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit), h.version, 2)
		return resp
	})
}

func handleDescribeTransactions(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.DescribeTransactionsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeTransactionsResponse)
	found := c.s.hub.DescribeTransactions(req.TransactionalIDs)
	for _, id := range req.TransactionalIDs {
		st := kmsg.NewDescribeTransactionsResponseTransactionState()
		st.TransactionalID = id
		d, ok := found[id]
		if !ok {
			st.ErrorCode = kerr.TransactionalIDNotFound.Code
			resp.TransactionStates = append(resp.TransactionStates, st)
			continue
		}
		st.State, st.TimeoutMillis, st.ProducerID, st.ProducerEpoch = d.State, int32(d.TimeoutMs), d.ProducerID, d.Epoch
		st.StartTimestamp = -1
		if d.StartMs > 0 {
			st.StartTimestamp = d.StartMs
		}
		byTopic := map[string]int{}
		for _, tp := range d.Partitions {
			i, ok := byTopic[tp.Topic]
			if !ok {
				i = len(st.Topics)
				byTopic[tp.Topic] = i
				t := kmsg.NewDescribeTransactionsResponseTransactionStateTopic()
				t.Topic = tp.Topic
				st.Topics = append(st.Topics, t)
			}
			st.Topics[i].Partitions = append(st.Topics[i].Partitions, tp.Partition)
		}
		resp.TransactionStates = append(resp.TransactionStates, st)
	}
	return ready(resp)
}

var txnStates = []string{hub.TxnEmpty, hub.TxnOngoing, hub.TxnPrepareCommit, hub.TxnPrepareAbort, hub.TxnCompleteCommit, hub.TxnCompleteAbort}

func handleListTransactions(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.ListTransactionsRequest)
	resp := req.ResponseKind().(*kmsg.ListTransactionsResponse)
	for _, s := range req.StateFilters {
		if !slices.Contains(txnStates, s) {
			resp.UnknownStateFilters = append(resp.UnknownStateFilters, s)
		}
	}
	now := time.Now().UnixMilli()
	for _, d := range c.s.hub.ListTransactions() {
		if len(req.StateFilters) > 0 && !slices.Contains(req.StateFilters, d.State) {
			continue
		}
		if len(req.ProducerIDFilters) > 0 && !slices.Contains(req.ProducerIDFilters, d.ProducerID) {
			continue
		}
		if req.DurationFilterMillis > 0 && (d.StartMs == 0 || now-d.StartMs < req.DurationFilterMillis) {
			continue
		}
		if req.TransactionalIDPattern != nil {
			if ok, _ := path.Match(*req.TransactionalIDPattern, d.ID); !ok {
				continue
			}
		}
		st := kmsg.NewListTransactionsResponseTransactionState()
		st.TransactionalID, st.ProducerID, st.TransactionState = d.ID, d.ProducerID, d.State
		resp.TransactionStates = append(resp.TransactionStates, st)
	}
	return ready(resp)
}

// Delayed delivery's state, shown by DescribeConfigs (and so by weir topics
// describe) as read-only configs of a dataset with pending records.
const (
	delayPendingConfig = "weir.delayed.pending"  // batches waiting for their due time
	delayNextDueConfig = "weir.delayed.next_due" // the earliest due time, RFC 3339
)

func isDelayStat(k string) bool { return k == delayPendingConfig || k == delayNextDueConfig }
