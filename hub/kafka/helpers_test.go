package kafka

import (
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhub/weir/codecs"
)

func newBatch() *codecs.Builder { return &codecs.Builder{} }

// produceRequest is a Produce request (acks=all) of one record with value
// to partition 0 of topic.
func produceRequest(topic string, value []byte) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	bb := newBatch()
	bb.Append(time.Now().UnixMilli(), nil, value, nil)
	rp.Records, _ = bb.Build()
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}
