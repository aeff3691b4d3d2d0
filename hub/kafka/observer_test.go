package kafka

import (
	"reflect"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestResponseErrors(t *testing.T) {
	produce := kmsg.NewPtrProduceResponse()
	for _, code := range []int16{0, kerr.NotLeaderForPartition.Code, kerr.MessageTooLarge.Code} {
		tp := kmsg.NewProduceResponseTopic()
		p := kmsg.NewProduceResponseTopicPartition()
		p.ErrorCode = code
		tp.Partitions = append(tp.Partitions, p)
		produce.Topics = append(produce.Topics, tp)
	}
	meta := kmsg.NewPtrMetadataResponse()
	mt := kmsg.NewMetadataResponseTopic()
	mt.ErrorCode = kerr.UnknownTopicOrPartition.Code
	mp := kmsg.NewMetadataResponseTopicPartition()
	mp.ErrorCode = kerr.LeaderNotAvailable.Code
	mt.Partitions = append(mt.Partitions, mp)
	meta.Topics = append(meta.Topics, mt)
	join := kmsg.NewPtrJoinGroupResponse()
	join.ErrorCode = kerr.RebalanceInProgress.Code
	for _, tc := range []struct {
		resp kmsg.Response
		want []int16
	}{
		{produce, []int16{kerr.NotLeaderForPartition.Code, kerr.MessageTooLarge.Code}},
		{meta, []int16{kerr.UnknownTopicOrPartition.Code, kerr.LeaderNotAvailable.Code}},
		{join, []int16{kerr.RebalanceInProgress.Code}},
		{kmsg.NewPtrApiVersionsResponse(), nil},
	} {
		var got []int16
		responseErrors(reflect.ValueOf(tc.resp), func(c int16) { got = append(got, c) })
		if !slices.Equal(got, tc.want) {
			t.Errorf("responseErrors(%T) = %v, want %v", tc.resp, got, tc.want)
		}
	}
}
