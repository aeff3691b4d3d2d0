package kafkatest

import (
	"encoding/json"
	"net"
	"slices"
)

// caseMetadata: kcat, kafka-python and confluent each list the broker and a
// topic made with franz-go, with its three partitions, each led by a broker
// that metadata lists.
func caseMetadata(e *env) {
	topic := e.name("t")
	e.createTopic(topic, 3)
	want := []int32{0, 1, 2}

	e.run("kcat", func(e *env) {
		// All topics (no -t): a Metadata request with a null topic list.
		r := e.kcat("", "-L", "-b", e.b.Addr, "-J")
		if r.err != nil {
			e.t.Fatalf("kcat -L -J: %s", r.failure())
		}
		var md struct {
			Brokers []struct {
				ID   int32  `json:"id"`
				Name string `json:"name"`
			} `json:"brokers"`
			Topics []struct {
				Topic      string `json:"topic"`
				Error      string `json:"error"`
				Partitions []struct {
					Partition int32  `json:"partition"`
					Leader    int32  `json:"leader"`
					Error     string `json:"error"`
				} `json:"partitions"`
			} `json:"topics"`
		}
		if err := json.Unmarshal(r.stdout, &md); err != nil {
			e.t.Fatalf("kcat -L -J: output is not JSON (%v): %.300s", err, r.stdout)
		}
		var ids []int32
		for _, b := range md.Brokers {
			if _, _, err := net.SplitHostPort(b.Name); err != nil {
				e.t.Errorf("kcat -L: broker %d is named %q, want host:port", b.ID, b.Name)
			}
			ids = append(ids, b.ID)
		}
		if len(ids) == 0 {
			e.t.Fatalf("kcat -L: no brokers listed: %.300s", r.stdout)
		}
		var names []string
		for _, tp := range md.Topics {
			names = append(names, tp.Topic)
			if tp.Topic != topic {
				continue
			}
			if tp.Error != "" {
				e.t.Errorf("kcat -L: topic %s has error %q", topic, tp.Error)
			}
			var got []int32
			for _, p := range tp.Partitions {
				got = append(got, p.Partition)
				if p.Error != "" || !slices.Contains(ids, p.Leader) {
					e.t.Errorf("kcat -L: %s/%d has leader %d (brokers %v), error %q", topic, p.Partition, p.Leader, ids, p.Error)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				e.t.Errorf("kcat -L: %s has partitions %v, want %v", topic, got, want)
			}
			return
		}
		e.t.Errorf("kcat -L: topic %s not listed; topics %v", topic, names)
	})

	e.run("kafka-python", func(e *env) {
		r := e.py(kafkaPythonScript, "", "metadata", "--topic", topic)
		if r.err != nil {
			e.t.Fatalf("kafka-python metadata: %s", r.failure())
		}
		ls := e.parseLines("kafka-python metadata", r.stdout)
		if len(ls) != 1 {
			e.t.Fatalf("kafka-python metadata: got %d lines, want 1: %s", len(ls), r.stdout)
		}
		if !slices.Contains(ls[0].Topics, topic) {
			e.t.Errorf("kafka-python KafkaConsumer.topics() = %v, want it to include %s", ls[0].Topics, topic)
		}
		if !slices.Equal(ls[0].Partitions, want) {
			e.t.Errorf("kafka-python partitions_for_topic(%s) = %v, want %v", topic, ls[0].Partitions, want)
		}
	})

	e.run("confluent", func(e *env) {
		r := e.py(confluentScript, "", "metadata", "--topic", topic)
		if r.err != nil {
			e.t.Fatalf("confluent metadata: %s", r.failure())
		}
		ls := e.parseLines("confluent metadata", r.stdout)
		if len(ls) != 1 {
			e.t.Fatalf("confluent metadata: got %d lines, want 1: %s", len(ls), r.stdout)
		}
		md := ls[0]
		var ids []int32
		for _, b := range md.Brokers {
			if b.Host == "" || b.Port <= 0 {
				e.t.Errorf("confluent list_topics: broker %d at %q:%d, want a host and port", b.ID, b.Host, b.Port)
			}
			ids = append(ids, b.ID)
		}
		if len(ids) == 0 {
			e.t.Errorf("confluent list_topics: no brokers")
		}
		if md.Error != nil {
			e.t.Errorf("confluent list_topics: topic %s has error %s", topic, *md.Error)
		}
		if !slices.Equal(md.Partitions, want) {
			e.t.Errorf("confluent list_topics: %s has partitions %v, want %v (topics %v)", topic, md.Partitions, want, md.Topics)
		}
		for p, leader := range md.Leaders {
			if !slices.Contains(ids, leader) {
				e.t.Errorf("confluent list_topics: %s/%s has leader %d, not a listed broker %v", topic, p, leader, ids)
			}
		}
	})
}
