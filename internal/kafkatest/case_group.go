package kafkatest

import (
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupClients are the clients whose consumer groups the suite drives.
var groupClients = []string{"kafka-python", "confluent", "franz-go"}

// caseGroupCommitResume: per client, a group member processes the first
// records of each of three partitions (a different number in each),
// commits exactly those positions, and closes. franz-go's OffsetFetch must
// then show the commit, and a new member of the same group must read each
// partition from the committed offset to its end: no gap, no record before
// the commit. With Broker.Restart, a second run per client restarts the
// broker between the two members.
func caseGroupCommitResume(e *env) {
	for _, client := range groupClients {
		e.run(client, func(e *env) { groupResume(e, client, false) })
		if e.b.Restart != nil {
			e.run(client+"-restart", func(e *env) { groupResume(e, client, true) })
		}
	}
}

func groupResume(e *env, client string, restart bool) {
	name := client
	if restart {
		name += "-restart"
	}
	topic, group := e.name(name), e.name(name, "group")
	e.createTopic(topic, 3)
	const perPartition = 30
	stop := map[int32]int64{0: 10, 1: 17, 2: 23}
	end := map[int32]int64{0: perPartition, 1: perPartition, 2: perPartition}
	zero := map[int32]int64{0: 0, 1: 0, 2: 0}
	var recs []*kgo.Record
	for p := int32(0); p < 3; p++ {
		for i := 0; i < perPartition; i++ {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(fmt.Sprintf("%s-p%d-%03d", name, p, i))})
		}
	}
	e.produce(recs...)

	got, err := e.groupConsume(client, group, topic, stop, nil)
	if err != nil {
		e.t.Fatalf("%s first member: %v", client, err)
	}
	if !checkResume(e.t, client+" first member (new group, from the earliest offset)", got, zero, stop) {
		e.t.FailNow()
	}
	e.checkCommitted(client, group, topic, stop)

	if restart {
		start := time.Now()
		e.b.Restart(e.t)
		e.t.Logf("broker restarted in %v", time.Since(start).Round(time.Millisecond))
		e.waitTopic(topic, 3)
		e.checkCommitted(client+" after the restart", group, topic, stop)
	}

	got, err = e.groupConsume(client, group, topic, nil, end)
	if err != nil {
		e.t.Errorf("%s resumed member: %v", client, err)
	}
	checkResume(e.t, client+" resumed member", got, stop, end)
}

// checkCommitted checks with franz-go's OffsetFetch that group committed
// want on topic.
func (e *env) checkCommitted(what, group, topic string, want map[int32]int64) {
	e.t.Helper()
	resp, err := e.franz.adm.FetchOffsets(e.ctx(), group)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		e.t.Fatalf("%s: fetch committed offsets of group %s: %v", what, group, err)
	}
	for p, o := range want {
		got, ok := resp.Lookup(topic, p)
		if !ok || got.At != o {
			e.t.Errorf("%s: group %s committed %s/%d = %d (found %v), want %d", what, group, topic, p, got.At, ok, o)
		}
	}
}

// groupConsume runs one group member of client on topic. With stop, it
// processes only offsets below stop[p], then commits stop and leaves; with
// end, it reads from the committed offsets until offset end[p]-1 of every
// partition, then leaves. It returns the records it processed.
func (e *env) groupConsume(client, group, topic string, stop, end map[int32]int64) ([]rec, error) {
	e.t.Helper()
	if client == "franz-go" {
		return e.franzGroupConsume(group, topic, stop, end)
	}
	script := kafkaPythonScript
	if client == "confluent" {
		script = confluentScript
	}
	args := []string{"group", "--group", group, "--topic", topic}
	if stop != nil {
		args = append(args, "--stop", offsetsArg(stop))
	} else {
		args = append(args, "--end", offsetsArg(end))
	}
	r := e.py(script, "", args...)
	ls := e.parseLines(client+" group", r.stdout)
	if r.err != nil {
		return records(ls), fmt.Errorf("%s", r.failure())
	}
	if stop != nil {
		var committed map[string]int64
		for _, l := range ls {
			if l.Committed != nil {
				committed = l.Committed
			}
		}
		if committed == nil {
			return records(ls), fmt.Errorf("%s group: exited 0 without reporting its commit", client)
		}
	}
	return records(ls), nil
}

// franzGroupConsume is groupConsume for franz-go.
func (e *env) franzGroupConsume(group, topic string, stop, end map[int32]int64) ([]rec, error) {
	e.t.Helper()
	cl := e.client(
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SessionTimeout(10*time.Second),
		kgo.HeartbeatInterval(500*time.Millisecond),
		kgo.FetchMaxWait(500*time.Millisecond),
	)
	defer cl.Close() // leaves the group
	limits := end
	if stop != nil {
		limits = stop
	}
	var rs []tpRange
	for p, o := range limits {
		rs = append(rs, tpRange{topic, p, 0, o})
	}
	pr := newProgress(rs)
	ctx := e.ctx()
	var got []rec
	var lastErr error
	for !pr.done() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return got, fmt.Errorf("franz-go group %s: deadline passed; %s; last error %v", group, pr.pending(), lastErr)
		}
		fs.EachError(func(t string, p int32, err error) { lastErr = fmt.Errorf("%s/%d: %w", t, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if stop != nil && r.Offset >= stop[r.Partition] {
				return // fetched, not processed: the commit says where to resume
			}
			got = append(got, fromKgo(r))
			pr.see(r.Topic, r.Partition, r.Offset)
		})
	}
	if stop == nil {
		return got, nil
	}
	offsets := map[string]map[int32]kgo.EpochOffset{topic: {}}
	for p, o := range stop {
		offsets[topic][p] = kgo.EpochOffset{Epoch: -1, Offset: o}
	}
	var commitErr error
	cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			commitErr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil && commitErr == nil {
					commitErr = fmt.Errorf("commit %s/%d: %w", t.Topic, p.Partition, err)
				}
			}
		}
	})
	return got, commitErr
}
