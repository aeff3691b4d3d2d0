package kafkatest

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// caseIdempotentRetry: (a) confluent-kafka with enable.idempotence=true
// writes records that are read back exactly once, in order, all with a
// producer id; (b) a raw idempotent batch sent twice gets success twice
// with the same base offset and is stored once, and a replay of an older
// batch still in the broker's window of five does the same; (c) a batch
// whose sequence skips ahead gets OUT_OF_ORDER_SEQUENCE_NUMBER, is not
// stored, and leaves the producer's state intact.
func caseIdempotentRetry(e *env) {
	e.run("confluent", func(e *env) {
		topic := e.name("confluent")
		e.createTopic(topic, 3)
		want := values("confluent-idempotent", 300)
		r := e.py(confluentScript, lines(want), "produce", "--topic", topic, "--acks", "all", "--idempotent")
		if r.err != nil {
			e.t.Fatalf("confluent idempotent produce: %s", r.failure())
		}
		checkIdempotentTopic(e, "confluent enable.idempotence=true", topic, want)
	})
	e.run("replay", func(e *env) {
		topic := e.name("replay")
		e.createTopic(topic, 1)
		rp := e.newRawProducer(topic)
		first := values("replay-first", 3)
		second := values("replay-second", 2)
		b0, b1 := rp.batch(0, first), rp.batch(3, second)

		base := rp.mustProduce("batch seq 0-2", b0, -1)
		rp.mustProduce("the same batch again (a retry)", b0, base)
		rp.mustProduce("batch seq 3-4", b1, base+3)
		rp.mustProduce("batch seq 0-2 once more, now an older batch", b0, base)

		got, err := e.consumeFranz(e.fullRanges(topic))
		if err != nil {
			e.t.Error(err)
		}
		checkExactlyOnce(e.t, "replayed idempotent batches", append(first, second...), got)
	})
	e.run("out-of-order-sequence", func(e *env) {
		topic := e.name("ooo")
		e.createTopic(topic, 1)
		rp := e.newRawProducer(topic)
		first := values("ooo-first", 3)
		skipped := values("ooo-skipped", 2)
		next := values("ooo-next", 2)

		base := rp.mustProduce("batch seq 0-2", rp.batch(0, first), -1)
		p, err := rp.produce(rp.batch(8, skipped))
		if err != nil {
			e.t.Fatalf("produce a batch with sequence 8 after 0-2: %v", err)
		}
		e.t.Logf("sequence 8 after 0-2: error %v", kerr.ErrorForCode(p.ErrorCode))
		if got := kerr.ErrorForCode(p.ErrorCode); got != kerr.OutOfOrderSequenceNumber {
			e.t.Errorf("produce a batch with sequence 8 after 0-2: error %v (base offset %d), want %v",
				got, p.BaseOffset, kerr.OutOfOrderSequenceNumber)
		}
		rp.mustProduce("batch seq 3-4 after the rejected one", rp.batch(3, next), base+3)

		got, err := e.consumeFranz(e.fullRanges(topic))
		if err != nil {
			e.t.Error(err)
		}
		checkExactlyOnce(e.t, "idempotent batches around an out-of-order one", append(first, next...), got)
	})
}

// caseKcatIdempotent: kcat (librdkafka) with enable.idempotence=true and
// acks=all writes records read back exactly once, in order within each
// partition, each carrying a producer id.
func caseKcatIdempotent(e *env) {
	topic := e.name("t")
	e.createTopic(topic, 3)
	want := values("kcat-idempotent", 300)
	r := e.kcat(lines(want), "-P", "-b", e.b.Addr, "-t", topic, "-X", "enable.idempotence=true", "-X", "acks=all")
	if r.err != nil {
		e.t.Fatalf("kcat -X enable.idempotence=true produce: %s", r.failure())
	}
	checkIdempotentTopic(e, "kcat enable.idempotence=true", topic, want)
}

// checkIdempotentTopic reads topic back with franz-go: want exactly once,
// and every record from one idempotent producer.
func checkIdempotentTopic(e *env, what, topic string, want []string) {
	e.t.Helper()
	got, err := e.consumeFranz(e.fullRanges(topic))
	if err != nil {
		e.t.Error(err)
	}
	checkExactlyOnce(e.t, what+", read by franz-go", want, got)
	ids := map[int64]int{}
	for _, r := range got {
		ids[r.ProducerID]++
	}
	if len(ids) != 1 || ids[-1] > 0 {
		e.t.Errorf("%s: records by producer id %v, want all from one producer id >= 0", what, ids)
	}
}

// rawProducer sends hand-built idempotent batches to partition 0 of a topic,
// straight to its leader, with no client retries.
type rawProducer struct {
	e       *env
	topic   string
	topicID [16]byte
	leader  int32
	id      int64
	epoch   int16
}

func (e *env) newRawProducer(topic string) *rawProducer {
	e.t.Helper()
	md, err := e.metadata(e.ctx(), topic)
	if err != nil {
		e.t.Fatalf("metadata for %s: %v", topic, err)
	}
	var topicID [16]byte
	leader := int32(-1)
	for _, t := range md.Topics {
		if t.Topic != nil && *t.Topic == topic {
			topicID = t.TopicID
			for _, p := range t.Partitions {
				if p.Partition == 0 && p.ErrorCode == 0 {
					leader = p.Leader
				}
			}
		}
	}
	if leader < 0 {
		e.t.Fatalf("metadata for %s: partition 0 has no leader", topic)
	}
	req := kmsg.NewPtrInitProducerIDRequest() // no transactional id: idempotent only
	req.TransactionTimeoutMillis = 60000
	resp, err := req.RequestWith(e.ctx(), e.franz.cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.ErrorCode)
	}
	if err != nil {
		e.t.Fatalf("InitProducerId: %v", err)
	}
	e.t.Logf("InitProducerId: producer id %d epoch %d", resp.ProducerID, resp.ProducerEpoch)
	return &rawProducer{e: e, topic: topic, topicID: topicID, leader: leader, id: resp.ProducerID, epoch: resp.ProducerEpoch}
}

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// batch encodes values as an uncompressed v2 record batch with the
// producer's id and epoch and first sequence seq.
func (rp *rawProducer) batch(seq int32, vals []string) []byte {
	var recs []byte
	for i, v := range vals {
		r := kmsg.Record{OffsetDelta: int32(i), Value: []byte(v)}
		r.Length = int32(len(r.AppendTo(nil)) - 1) // body size; a 0 length encodes in 1 byte
		recs = r.AppendTo(recs)
	}
	now := time.Now().UnixMilli()
	b := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1,
		Magic:                2,
		LastOffsetDelta:      int32(len(vals) - 1),
		FirstTimestamp:       now,
		MaxTimestamp:         now,
		ProducerID:           rp.id,
		ProducerEpoch:        rp.epoch,
		FirstSequence:        seq,
		NumRecords:           int32(len(vals)),
		Records:              recs,
	}
	raw := b.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12))               // batchLength
	binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], crc32c)) // CRC-32C from attributes on
	return raw
}

// produce sends one batch with acks=all and returns the partition's response.
func (rp *rawProducer) produce(batch []byte) (kmsg.ProduceResponseTopicPartition, error) {
	req := kmsg.NewPtrProduceRequest()
	req.Acks = -1
	req.TimeoutMillis = 10000
	t := kmsg.NewProduceRequestTopic()
	t.Topic, t.TopicID = rp.topic, rp.topicID // the name up to v12, the id from v13
	p := kmsg.NewProduceRequestTopicPartition()
	p.Partition = 0
	p.Records = batch
	t.Partitions = append(t.Partitions, p)
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(rp.e.ctx(), rp.e.franz.cl.Broker(int(rp.leader)))
	if err != nil {
		return kmsg.ProduceResponseTopicPartition{}, err
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return kmsg.ProduceResponseTopicPartition{}, fmt.Errorf("produce v%d response has %d topics, want 1 with 1 partition", req.Version, len(resp.Topics))
	}
	return resp.Topics[0].Partitions[0], nil
}

// mustProduce sends a batch, requires success, and, when wantBase >= 0,
// that base offset. It returns the base offset.
func (rp *rawProducer) mustProduce(what string, batch []byte, wantBase int64) int64 {
	rp.e.t.Helper()
	p, err := rp.produce(batch)
	if err == nil {
		err = kerr.ErrorForCode(p.ErrorCode)
	}
	if err != nil {
		rp.e.t.Fatalf("produce %s (producer id %d): %v", what, rp.id, err)
	}
	if wantBase >= 0 && p.BaseOffset != wantBase {
		rp.e.t.Errorf("produce %s (producer id %d): base offset %d, want %d", what, rp.id, p.BaseOffset, wantBase)
	}
	return p.BaseOffset
}
