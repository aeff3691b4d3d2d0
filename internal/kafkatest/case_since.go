package kafkatest

import (
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// caseGroupSince: per client, a new group member starts by time (the first
// record stamped at or after an hour ago), processes five records, commits
// and leaves. The commit must be the offset after the fifth record, not
// the timestamp: franz-go keeps a by-time start position as the offset it
// holds until it consumes, and committed it on leaving when the broker's
// leader epoch was -1 (unknown) instead of Kafka's 0. A new member of the
// group then resumes there, validating the committed epoch through
// OffsetForLeaderEpoch.
func caseGroupSince(e *env) {
	for _, client := range groupClients {
		e.run(client, func(e *env) { groupSince(e, client) })
	}
}

func groupSince(e *env, client string) {
	topic, group := e.name(client), e.name(client, "group")
	e.createTopic(topic, 1)
	const old, recent, count = 10, 10, 5
	now := time.Now()
	var recs []*kgo.Record
	for i := range old + recent {
		ts := now.Add(-2 * time.Hour)
		if i >= old {
			ts = now.Add(-time.Minute)
		}
		recs = append(recs, &kgo.Record{Topic: topic, Partition: 0, Timestamp: ts, Value: []byte(fmt.Sprintf("%s-%03d", client, i))})
	}
	e.produce(recs...)
	since := now.Add(-time.Hour).UnixMilli()
	first, stop, end := map[int32]int64{0: old}, map[int32]int64{0: old + count}, map[int32]int64{0: old + recent}

	var got []rec
	switch client {
	case "franz-go":
		// As `weir consume --group --since`, rpk and Redpanda Connect
		// do: autocommit on, the reset offset by time.
		cl := e.client(
			kgo.ConsumerGroup(group),
			kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AfterMilli(since)),
			kgo.SessionTimeout(10*time.Second),
			kgo.HeartbeatInterval(500*time.Millisecond),
			kgo.FetchMaxWait(500*time.Millisecond),
		)
		ctx := e.ctx()
		for len(got) < count && ctx.Err() == nil {
			fs := cl.PollRecords(ctx, count-len(got))
			fs.EachRecord(func(r *kgo.Record) { got = append(got, fromKgo(r)) })
		}
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			e.t.Errorf("franz-go commit: %v", err)
		}
		cl.Close() // leaves the group, committing what it holds
	default:
		script := kafkaPythonScript
		if client == "confluent" {
			script = confluentScript
		}
		r := e.py(script, "", "since", "--group", group, "--topic", topic,
			"--since-ms", strconv.FormatInt(since, 10), "--count", strconv.Itoa(count))
		got = records(e.parseLines(client+" since", r.stdout))
		if r.err != nil {
			e.t.Fatalf("%s since: %s", client, r.failure())
		}
	}
	if !checkResume(e.t, client+" member started an hour ago", got, first, stop) {
		e.t.FailNow()
	}
	e.checkCommitted(client+" after starting by time", group, topic, stop)

	got, err := e.groupConsume(client, group, topic, nil, end)
	if err != nil {
		e.t.Errorf("%s resumed member: %v", client, err)
	}
	checkResume(e.t, client+" resumed member", got, stop, end)
}
