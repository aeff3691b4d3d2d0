package kafka

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func adminClient(t *testing.T, addr string) (*kadm.Client, *kgo.Client, context.Context) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RetryTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return kadm.NewClient(cl), cl, ctx
}

func describedConfig(t *testing.T, adm *kadm.Client, ctx context.Context, topic string) map[string]kadm.Config {
	t.Helper()
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On(topic, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		t.Fatalf("describe configs of %s: %v", topic, err)
	}
	m := map[string]kadm.Config{}
	for _, c := range rc.Configs {
		if c.Value == nil {
			c.Value = kadm.StringPtr("")
		}
		m[c.Key] = c
	}
	return m
}

// TestAlterConfigs: IncrementalAlterConfigs and AlterConfigs change a
// topic's retention, segment size and largest batch; DescribeConfigs shows
// the change with its source; the new limit applies to the next produce at
// once and survives a restart; unsafe or invalid changes are refused with
// the topic unchanged.
func TestAlterConfigs(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir, Options{})
	adm, cl, ctx := adminClient(t, b.addr)
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "alt"); err != nil {
		t.Fatal(err)
	}
	set := func(k, v string) kadm.AlterConfig {
		return kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: kadm.StringPtr(v)}
	}
	resps, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		set("retention.ms", "3600000"), set("retention.bytes", "1048576"), set("segment.bytes", "65536"), set("max.message.bytes", "2000"),
	}, "alt")
	if err == nil {
		_, err = resps.On("alt", nil)
	}
	if err != nil || resps[0].Err != nil {
		t.Fatalf("incremental alter: %v %v %s", err, resps[0].Err, resps[0].ErrMessage)
	}
	want := map[string]string{"retention.ms": "3600000", "retention.bytes": "1048576", "segment.bytes": "65536", "max.message.bytes": "2000"}
	check := func(when string) {
		t.Helper()
		got := describedConfig(t, adm, ctx, "alt")
		for k, v := range want {
			if *got[k].Value != v || got[k].Source.String() != "DYNAMIC_TOPIC_CONFIG" {
				t.Errorf("%s: %s = %q (source %v), want %q, dynamic topic config", when, k, *got[k].Value, got[k].Source, v)
			}
		}
	}
	check("after IncrementalAlterConfigs")
	// The new max.message.bytes applies to the next produce.
	big := make([]byte, 4000)
	rand.Read(big) // incompressible: the client compresses by default
	res := cl.ProduceSync(ctx, &kgo.Record{Topic: "alt", Value: big})
	if err := res.FirstErr(); !errors.Is(err, kerr.MessageTooLarge) {
		t.Errorf("a 4000-byte record after max.message.bytes=2000: %v, want MESSAGE_TOO_LARGE", err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "alt", Value: []byte("small")}).FirstErr(); err != nil {
		t.Errorf("a small record: %v", err)
	}

	// Invalid and unsafe changes are refused, naming the problem.
	for _, c := range []struct {
		cfg  kadm.AlterConfig
		code *kerr.Error
		msg  string
	}{
		{set("cleanup.policy", "compact"), kerr.InvalidConfig, "cleanup.policy"},
		{set("retention.ms", "soon"), kerr.InvalidConfig, "not a number"},
		{set("segment.bytes", "10"), kerr.InvalidConfig, "segment bytes"},
		{set("no.such.config", "1"), kerr.InvalidConfig, "unknown config"},
		{set("weir.fsync", "never"), kerr.InvalidConfig, "fixed while the dataset is open"},
		{set("min.insync.replicas", "2"), kerr.InvalidConfig, "no effect"},
		{set("compression.type", "brotli"), kerr.InvalidConfig, "compression.type"},
		{kadm.AlterConfig{Op: kadm.AppendConfig, Name: "retention.ms", Value: kadm.StringPtr("1")}, kerr.InvalidConfig, "list configs"},
	} {
		resps, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{c.cfg}, "alt")
		if err != nil {
			t.Fatal(err)
		}
		if r := resps[0]; !errors.Is(r.Err, c.code) || !strings.Contains(r.ErrMessage, c.msg) {
			t.Errorf("alter %s=%s: %v %q, want %v naming %q", c.cfg.Name, *c.cfg.Value, r.Err, r.ErrMessage, c.code, c.msg)
		}
	}
	check("after refused changes")
	dreq := kmsg.NewPtrDescribeConfigsRequest()
	dr := kmsg.NewDescribeConfigsRequestResource()
	dr.ResourceType, dr.ResourceName = kmsg.ConfigResourceTypeTopic, "alt"
	dreq.Resources = append(dreq.Resources, dr)
	dresp, err := dreq.RequestWith(ctx, cl)
	if err != nil || len(dresp.Resources) != 1 {
		t.Fatalf("DescribeConfigs: %v", err)
	}
	readOnly := map[string]bool{}
	for _, c := range dresp.Resources[0].Configs {
		readOnly[c.Name] = c.ReadOnly
	}
	if !readOnly["weir.fsync"] || readOnly["retention.ms"] {
		t.Errorf("DescribeConfigs read-only: weir.fsync %v, retention.ms %v; want true, false", readOnly["weir.fsync"], readOnly["retention.ms"])
	}

	// DELETE returns a config to the hub's default.
	resps, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.DeleteConfig, Name: "retention.bytes"}}, "alt")
	if err != nil || resps[0].Err != nil {
		t.Fatalf("delete retention.bytes: %v %v", err, resps[0].Err)
	}
	delete(want, "retention.bytes")
	check("after DELETE retention.bytes")
	if got := describedConfig(t, adm, ctx, "alt")["retention.bytes"]; *got.Value != "-1" || got.Source.String() != "DEFAULT_CONFIG" {
		t.Errorf("retention.bytes after DELETE = %q (%v), want -1 from the default", *got.Value, got.Source)
	}

	// Fewer partitions is refused; the legacy AlterConfigs replaces the set.
	if _, err := adm.UpdatePartitions(ctx, 1, "alt"); err == nil {
		rs, _ := adm.UpdatePartitions(ctx, 1, "alt")
		if rs["alt"].Err == nil {
			t.Errorf("shrinking to 1 partition was not refused")
		}
	}
	lresps, err := adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{set("retention.ms", "7200000")}, "alt")
	if err != nil || lresps[0].Err != nil {
		t.Fatalf("AlterConfigs: %v %v", err, lresps[0].Err)
	}
	want = map[string]string{"retention.ms": "7200000"}
	check("after AlterConfigs")
	if got := describedConfig(t, adm, ctx, "alt")["segment.bytes"]; got.Source.String() != "DEFAULT_CONFIG" {
		t.Errorf("AlterConfigs without segment.bytes left it %q (%v), want the default", *got.Value, got.Source)
	}

	// Persisted: the same after a restart.
	b.stop()
	b = startBroker(t, dir, Options{})
	adm, _, ctx = adminClient(t, b.addr)
	check("after a restart")
}

// TestDeleteRecordsGroupsAndOffsets: DeleteRecords moves the log start
// offset (ListOffsets and a fetch below it agree) across a restart;
// OffsetDelete and DeleteGroups forget committed offsets, and refuse while
// the group has members.
func TestDeleteRecordsGroupsAndOffsets(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir, Options{})
	adm, cl, ctx := adminClient(t, b.addr)
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "dr"); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "dr", Value: []byte{byte('0' + i)}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	os := kadm.Offsets{}
	os.Add(kadm.Offset{Topic: "dr", Partition: 0, At: 4})
	del, err := adm.DeleteRecords(ctx, os)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := del.Lookup("dr", 0); r.Err != nil || r.LowWatermark != 4 {
		t.Fatalf("DeleteRecords below 4: low watermark %d, %v", r.LowWatermark, r.Err)
	}
	os = kadm.Offsets{}
	os.Add(kadm.Offset{Topic: "dr", Partition: 0, At: 11})
	if del, err = adm.DeleteRecords(ctx, os); err != nil {
		t.Fatal(err)
	}
	if r, _ := del.Lookup("dr", 0); !errors.Is(r.Err, kerr.OffsetOutOfRange) {
		t.Errorf("DeleteRecords below 11 of 10: %v, want OFFSET_OUT_OF_RANGE", r.Err)
	}
	checkStart := func(when string) {
		t.Helper()
		starts, err := adm.ListStartOffsets(ctx, "dr")
		if err != nil {
			t.Fatal(err)
		}
		if s, _ := starts.Lookup("dr", 0); s.Offset != 4 {
			t.Errorf("%s: start offset %d, want 4", when, s.Offset)
		}
		c, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"dr": {0: kgo.NewOffset().AtStart()}}))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var got []int64
		for len(got) < 6 && ctx.Err() == nil {
			c.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got = append(got, r.Offset) })
		}
		if len(got) == 0 || got[0] != 4 {
			t.Errorf("%s: reading from the start got offsets %v, want 4..9", when, got)
		}
	}
	checkStart("after DeleteRecords")

	// Offsets of an empty group can be deleted per partition, then the group.
	commit := kadm.Offsets{}
	commit.Add(kadm.Offset{Topic: "dr", Partition: 0, At: 7, LeaderEpoch: -1})
	if r, err := adm.CommitOffsets(ctx, "g", commit); err != nil || r.Error() != nil {
		t.Fatalf("commit: %v %v", err, r.Error())
	}
	odel, err := adm.DeleteOffsets(ctx, "g", kadm.TopicsSet{"dr": {0: {}}})
	if err != nil || odel.Error() != nil {
		t.Fatalf("OffsetDelete: %v %v", err, odel.Error())
	}
	if f, err := adm.FetchOffsets(ctx, "g"); err != nil {
		t.Fatal(err)
	} else if o, ok := f.Lookup("dr", 0); ok && o.At >= 0 {
		t.Errorf("after OffsetDelete the group still has %d", o.At)
	}
	if r, err := adm.CommitOffsets(ctx, "g", commit); err != nil || r.Error() != nil {
		t.Fatalf("commit: %v %v", err, r.Error())
	}

	// A group with a member: both refuse.
	member, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.ConsumerGroup("busy"), kgo.ConsumeTopics("dr"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close()
	for n := 0; n == 0 && ctx.Err() == nil; {
		n = member.PollFetches(ctx).NumRecords()
	}
	if err := member.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	odel, err = adm.DeleteOffsets(ctx, "busy", kadm.TopicsSet{"dr": {0: {}}})
	if err == nil {
		err = odel.Error()
	}
	if !errors.Is(err, kerr.GroupSubscribedToTopic) {
		t.Errorf("OffsetDelete of a group with a member: %v, want GROUP_SUBSCRIBED_TO_TOPIC", err)
	}
	gdel, err := adm.DeleteGroups(ctx, "busy", "g", "nosuch")
	if err != nil {
		t.Fatal(err)
	}
	for g, want := range map[string]error{"busy": kerr.NonEmptyGroup, "g": nil, "nosuch": kerr.GroupIDNotFound} {
		if got := gdel[g].Err; !errors.Is(got, want) && !(want == nil && got == nil) {
			t.Errorf("DeleteGroups %s: %v, want %v", g, got, want)
		}
	}
	if f, err := adm.FetchOffsets(ctx, "g"); err != nil {
		t.Fatal(err)
	} else if o, ok := f.Lookup("dr", 0); ok && o.At >= 0 {
		t.Errorf("after DeleteGroups group g still has %d", o.At)
	}
	member.Close()

	b.stop()
	b = startBroker(t, dir, Options{})
	adm, _, ctx = adminClient(t, b.addr)
	checkStart("after a restart")
}

// TestLeaderEpochIsKafkas: every partition is at leader epoch 0, as a
// Kafka partition's first leader is: Metadata says so, fetched batches
// carry it, OffsetForLeaderEpoch ends it at the high watermark and does
// not know later epochs. (Epoch -1 made franz-go commit a by-time start
// timestamp as a group's offset.)
func TestLeaderEpochIsKafkas(t *testing.T) {
	b := startBroker(t, t.TempDir(), Options{})
	adm, cl, ctx := adminClient(t, b.addr)
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "ep"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "ep", Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	meta, err := adm.Metadata(ctx, "ep")
	if err != nil {
		t.Fatal(err)
	}
	if p := meta.Topics["ep"].Partitions[0]; p.LeaderEpoch != 0 {
		t.Errorf("Metadata leader epoch %d, want 0", p.LeaderEpoch)
	}
	c, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"ep": {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for n := 0; n < 3 && ctx.Err() == nil; {
		c.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			n++
			if r.LeaderEpoch != 0 {
				t.Errorf("record %d fetched with leader epoch %d, want 0", r.Offset, r.LeaderEpoch)
			}
		})
	}
	for _, tc := range []struct {
		current, epoch int32
		code           *kerr.Error
		end            int64
		endEpoch       int32
	}{
		{-1, 0, nil, 3, 0},
		{0, 0, nil, 3, 0},
		{0, 7, nil, -1, -1},
		{3, 0, kerr.UnknownLeaderEpoch, -1, -1},
	} {
		req := kmsg.NewPtrOffsetForLeaderEpochRequest()
		rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
		rt.Topic = "ep"
		rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
		rp.CurrentLeaderEpoch, rp.LeaderEpoch = tc.current, tc.epoch
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		req.ReplicaID = -1
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		p := resp.Topics[0].Partitions[0]
		if err := kerr.ErrorForCode(p.ErrorCode); !errors.Is(err, tc.code) && !(tc.code == nil && err == nil) || p.EndOffset != tc.end || p.LeaderEpoch != tc.endEpoch {
			t.Errorf("OffsetForLeaderEpoch(current %d, epoch %d) = end %d epoch %d %v, want end %d epoch %d %v",
				tc.current, tc.epoch, p.EndOffset, p.LeaderEpoch, err, tc.end, tc.endEpoch, tc.code)
		}
	}
}
