package kafkaclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhub/weir/hub"
)

// Positions of a source elsewhere, kept on this cluster with the records
// written from it (exactly once from a hub to another cluster, as Kafka
// Connect's exactly-once source connectors keep their offsets): each
// transaction of a PositionTxn ends with one record per source partition
// in a compacted topic,
//
//	key   {"group":"copy","dataset":"in","partition":2}
//	value {"offset":1234}   (the next record to read)
//
// so the records and the positions they were read up to commit or abort
// together. ReadPositions reads them back (read_committed, last one per
// key wins): the only place the resume position is kept.

// positionKey and positionValue are a position record's JSON.
type positionKey struct {
	Group     string `json:"group"`
	Dataset   string `json:"dataset"`
	Partition int32  `json:"partition"`
}

type positionValue struct {
	Offset int64 `json:"offset"`
}

// PositionTxn returns a transactional producer (see TxnProducer: the id
// fences an earlier producer and aborts what it left open) whose
// SendOffsets writes the offsets as position records of group to topic
// in the open transaction, whatever client the consumer came from. It
// creates topic (one partition, compacted) if it is missing.
func (c *Client) PositionTxn(ctx context.Context, id, group, topic string, timeout time.Duration) (hub.TxnProducer, error) {
	if err := c.EnsureTopic(ctx, Topic{Name: topic, Partitions: 1, Configs: map[string]string{"cleanup.policy": "compact"}}); err != nil {
		return nil, err
	}
	tx, err := c.TxnProducer(ctx, id, timeout)
	if err != nil {
		return nil, err
	}
	return &positionTxn{kafkaTxn: tx.(*kafkaTxn), group: group, topic: topic}, nil
}

type positionTxn struct {
	*kafkaTxn
	group, topic string
}

// SendOffsets implements hub.TxnProducer: the position records go into
// the open transaction (opening one if needed, so positions move even
// when a poll wrote nothing).
func (t *positionTxn) SendOffsets(ctx context.Context, _ hub.Consumer, offsets map[hub.TopicPartition]int64) error {
	recs := make([]hub.Record, 0, len(offsets))
	for tp, off := range offsets {
		k, err := json.Marshal(positionKey{Group: t.group, Dataset: tp.Topic, Partition: tp.Partition})
		if err != nil {
			return err
		}
		v, err := json.Marshal(positionValue{Offset: off})
		if err != nil {
			return err
		}
		recs = append(recs, hub.Record{Key: k, Value: v})
	}
	if err := t.Produce(ctx, t.topic, recs, hub.ProduceOptions{}).FirstErr(); err != nil {
		return fmt.Errorf("kafkaclient: writing the positions of %s to %s in transaction %q: %w", t.group, t.topic, t.id, err)
	}
	return nil
}

// ReadPositions reads the positions of group kept in topic (see
// PositionTxn) up to its last stable offset: only committed transactions
// count. A missing topic holds none.
func (c *Client) ReadPositions(ctx context.Context, group, topic string) (map[hub.TopicPartition]int64, error) {
	out := map[hub.TopicPartition]int64{}
	ends, err := c.adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kafkaclient: end of %s: %w", topic, Translate(err))
	}
	want := map[int32]kgo.Offset{}
	left := map[int32]int64{} // partition → its last stable offset
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = kgo.NewOffset().AtStart()
			left[o.Partition] = o.Offset
		}
	})
	if len(want) == 0 {
		return out, nil
	}
	opts := append(append([]kgo.Opt(nil), c.base...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: want}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(), kgo.WithLogger(kgoLogger{c.opts.Logger}))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafkaclient: reading %s: %w", topic, err)
	}
	defer cl.Close()
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("kafkaclient: reading the positions in %s: %w", topic, ctx.Err())
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) { ferr = fmt.Errorf("%s/%d: %w", t, p, Translate(err)) })
		if ferr != nil {
			return nil, fmt.Errorf("kafkaclient: reading the positions in %s: %w", topic, ferr)
		}
		var bad error
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := left[r.Partition]; ok && r.Offset+1 >= end {
				delete(left, r.Partition)
			}
			if r.Attrs.IsControl() {
				return
			}
			var k positionKey
			var v positionValue
			if err := json.Unmarshal(r.Key, &k); err != nil || k.Dataset == "" {
				bad = fmt.Errorf("kafkaclient: %s/%d offset %d is not a position record (key %q)", topic, r.Partition, r.Offset, r.Key)
				return
			}
			if k.Group != group {
				return
			}
			tp := hub.TopicPartition{Topic: k.Dataset, Partition: k.Partition}
			if r.Value == nil { // a tombstone forgets the position
				delete(out, tp)
				return
			}
			if err := json.Unmarshal(r.Value, &v); err != nil {
				bad = fmt.Errorf("kafkaclient: %s/%d offset %d: a position record with value %q: %w", topic, r.Partition, r.Offset, r.Value, err)
				return
			}
			out[tp] = v.Offset
		})
		if bad != nil {
			return nil, bad
		}
	}
	return out, nil
}
