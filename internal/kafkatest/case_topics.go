package kafkatest

import (
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// retentionConfig is the topic config every create passes: a standard key
// a broker must accept (an hour, the value is irrelevant).
const retentionKey, retentionValue = "retention.ms", "3600000"

// caseCreateDeleteTopics: kadm, kafka-python's KafkaAdminClient and
// confluent's AdminClient each create a topic with a partition count and a
// config, see it, and delete it; franz-go metadata must show the topic with
// its partitions after the create and not at all after the delete. kadm
// also checks that a second create gets TOPIC_ALREADY_EXISTS, and that
// producing to the deleted topic with auto-creation requested does what
// Broker.AutoCreate declares: recreate it empty, or fail with
// UNKNOWN_TOPIC_OR_PARTITION. When the broker auto-creates, every producer
// also writes to a topic nobody created, as omkafka-style producers rely on
// (rsyslog's omkafka produces to a topic it never creates and retries on
// UNKNOWN_TOPIC_OR_PARTITION), and the records must be there exactly once.
func caseCreateDeleteTopics(e *env) {
	e.run("franz-go", func(e *env) {
		topic := e.name("franz-go")
		configs := map[string]*string{retentionKey: kadm.StringPtr(retentionValue)}
		resp, err := e.franz.adm.CreateTopic(e.ctx(), 3, 1, configs, topic)
		if err != nil {
			e.t.Fatalf("kadm CreateTopic(%s, 3 partitions, %s=%s): %v (%s)", topic, retentionKey, retentionValue, err, errMessage(resp.ErrMessage))
		}
		e.waitTopic(topic, 3)
		for p := int32(0); p < 3; p++ {
			e.produce(&kgo.Record{Topic: topic, Partition: p, Value: []byte("before-delete")})
		}
		_, err = e.franz.adm.CreateTopic(e.ctx(), 3, 1, configs, topic)
		if !errors.Is(err, kerr.TopicAlreadyExists) {
			e.t.Errorf("kadm CreateTopic(%s) a second time: err = %v, want %v", topic, err, kerr.TopicAlreadyExists)
		}
		dr, err := e.franz.adm.DeleteTopic(e.ctx(), topic)
		if err == nil {
			err = dr.Err
		}
		if err != nil {
			e.t.Fatalf("kadm DeleteTopic(%s): %v", topic, err)
		}
		e.waitNoTopic(topic)
		e.run("produce-after-delete", func(e *env) { produceToDeleted(e, topic) })
	})
	for _, c := range []struct {
		name, script string
		partitions   int
	}{
		{"kafka-python", kafkaPythonScript, 2},
		{"confluent", confluentScript, 5},
	} {
		e.run(c.name, func(e *env) {
			topic := e.name(c.name)
			r := e.py(c.script, "", "admin", "create", "--topic", topic,
				"--partitions", fmt.Sprint(c.partitions), "--config", retentionKey+"="+retentionValue)
			if r.err != nil {
				e.t.Fatalf("%s create_topics(%s, %d partitions, %s=%s): %s", c.name, topic, c.partitions, retentionKey, retentionValue, r.failure())
			}
			checkListed(e, c.name+" create", r.stdout, true)
			e.waitTopic(topic, c.partitions)

			r = e.py(c.script, "", "admin", "delete", "--topic", topic)
			if r.err != nil {
				e.t.Fatalf("%s delete_topics(%s): %s", c.name, topic, r.failure())
			}
			checkListed(e, c.name+" delete", r.stdout, false)
			e.waitNoTopic(topic)
		})
	}
	e.run("auto-create", func(e *env) {
		if !e.b.AutoCreate {
			e.t.Skip("the broker declares no auto-creation (Broker.AutoCreate); franz-go/produce-after-delete checks the refusal")
		}
		for _, client := range []string{"kcat", "kafka-python", "confluent", "franz-go"} {
			e.run(client, func(e *env) { produceToNew(e, client) })
		}
	})
}

// produceToNew produces to a topic that does not exist yet with one client,
// and checks that the broker created it and kept the records.
func produceToNew(e *env, client string) {
	topic := e.name("auto", client)
	want := values("auto-"+client, 5)
	switch client {
	case "franz-go":
		cl := e.client(kgo.AllowAutoTopicCreation())
		recs := make([]*kgo.Record, len(want))
		for i, v := range want {
			recs[i] = &kgo.Record{Topic: topic, Value: []byte(v)}
		}
		if err := cl.ProduceSync(e.ctx(), recs...).FirstErr(); err != nil {
			e.t.Fatalf("franz-go produce to new topic %s with auto-creation: %v", topic, err)
		}
	default:
		produceWith(e, client, "none", topic, want)
	}
	e.waitTopic(topic, -1)
	got, err := e.consumeFranz(e.fullRanges(topic))
	if err != nil {
		e.t.Error(err)
	}
	checkExactlyOnce(e.t, client+" into an auto-created topic, read by franz-go", want, got)
}

// checkListed checks an admin script's report that its own client lists the
// topic (after a create) or no longer does (after a delete).
func checkListed(e *env, what string, out []byte, want bool) {
	e.t.Helper()
	ls := e.parseLines(what, out)
	if len(ls) != 1 || ls[0].Listed == nil {
		e.t.Fatalf("%s: output %q, want one line with \"listed\"", what, out)
	}
	if *ls[0].Listed != want {
		e.t.Errorf("%s: the client's own topic list has the topic = %v, want %v (polled until its deadline)", what, *ls[0].Listed, want)
	}
}

// produceToDeleted produces to a deleted topic with a client that asks for
// auto-creation, and checks the outcome Broker.AutoCreate declares.
func produceToDeleted(e *env, topic string) {
	cl := e.client(
		kgo.AllowAutoTopicCreation(),
		kgo.UnknownTopicRetries(3),
		kgo.RecordDeliveryTimeout(opTimeout/2),
	)
	start := time.Now()
	res := cl.ProduceSync(e.ctx(), &kgo.Record{Topic: topic, Value: []byte("after-delete")})
	err := res.FirstErr()
	if !e.b.AutoCreate {
		if !errors.Is(err, kerr.UnknownTopicOrPartition) {
			e.t.Errorf("produce to deleted topic %s without auto-creation: err = %v, want %v", topic, err, kerr.UnknownTopicOrPartition)
		}
		if n, _, err := e.topicState(topic); err != nil || n != 0 {
			e.t.Errorf("produce to deleted topic %s without auto-creation: metadata shows %d partitions (err %v), want none", topic, n, err)
		}
		e.t.Logf("producing to the deleted topic failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
		return
	}
	if err != nil {
		e.t.Fatalf("produce to deleted topic %s with auto-creation: %v, want the topic recreated", topic, err)
	}
	e.waitTopic(topic, -1)
	// The recreated topic must hold only the new record: none of the three
	// the deleted topic held may come back.
	var total int64
	for _, end := range e.endOffsets(topic)[topic] {
		total += end
	}
	if total != 1 {
		e.t.Errorf("recreated topic %s: end offsets sum to %d, want 1 (only the record just produced)", topic, total)
	}
	r := res[0].Record
	if r.Offset != 0 {
		e.t.Errorf("recreated topic %s: first record got offset %d, want 0", topic, r.Offset)
	}
}
