package kafkatest

import (
	"fmt"
	"sort"

	"github.com/twmb/franz-go/pkg/kgo"
)

// produceCount is how many records each producer writes per codec.
const produceCount = 200

// kgoCodecs are franz-go's codecs by attribute value, as codecNames.
var kgoCodecs = []kgo.CompressionCodec{
	kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression(),
}

// caseProduceCodecs: every producer writes produceCount records with acks=all
// under every codec, each into a topic of its own with three partitions.
// Every consumer then reads every topic back, and each value must arrive
// exactly once and, within a partition, in produce order. Last, the batches
// as the broker serves them must carry the producer's codec: with the
// default compression.type=producer a broker keeps the producer's batches.
// (librdkafka 2.0.2 quietly sends gzip, snappy and lz4 uncompressed to a
// broker whose Produce versions do not start at 0; that check catches it.)
func caseProduceCodecs(e *env) {
	type job struct {
		client, codec, topic string
		want                 []string
	}
	var jobs []*job
	var topics []string
	for _, client := range []string{"kcat", "kafka-python", "confluent", "franz-go"} {
		for _, codec := range codecNames {
			j := &job{client: client, codec: codec, topic: e.name(client, codec)}
			j.want = values(client+"-"+codec, produceCount)
			jobs = append(jobs, j)
			topics = append(topics, j.topic)
		}
	}
	resps, err := e.franz.adm.CreateTopics(e.ctx(), 3, 1, nil, topics...)
	if err == nil {
		err = resps.Error()
	}
	if err != nil {
		e.t.Fatalf("create %d topics: %v", len(topics), err)
	}
	for _, tp := range topics {
		e.waitTopic(tp, 3)
	}

	produced := map[string]*job{} // topic -> job, for jobs that produced
	e.run("produce", func(e *env) {
		for _, j := range jobs {
			e.run(j.client+"-"+j.codec, func(e *env) {
				produceWith(e, j.client, j.codec, j.topic, j.want)
				if !e.t.Failed() {
					produced[j.topic] = j
				}
			})
		}
	})
	if len(produced) == 0 {
		e.t.Fatal("no producer succeeded; nothing to read back")
	}
	var ok []string
	for tp := range produced {
		ok = append(ok, tp)
	}
	sort.Strings(ok)
	ranges := e.fullRanges(ok...)

	check := func(e *env, reader string, got []rec) {
		byTopic := map[string][]rec{}
		for _, r := range got {
			byTopic[r.Topic] = append(byTopic[r.Topic], r)
		}
		for _, tp := range ok {
			j := produced[tp]
			checkExactlyOnce(e.t, fmt.Sprintf("%s %s, read by %s", j.client, j.codec, reader), j.want, byTopic[tp])
		}
	}
	e.run("read", func(e *env) {
		e.run("franz-go", func(e *env) {
			got, err := e.consumeFranz(ranges)
			if err != nil {
				e.t.Error(err)
			}
			check(e, "franz-go", got)
		})
		e.run("kcat", func(e *env) {
			var got []rec
			for _, tp := range ok {
				// -e ends at the end of every partition, which librdkafka
				// notices only from an empty fetch: wait 100ms, not 500ms.
				r := e.kcat("", "-C", "-b", e.b.Addr, "-t", tp, "-o", "beginning", "-e", "-J", "-q", "-X", "fetch.wait.max.ms=100")
				if r.err != nil {
					e.t.Errorf("kcat -C -t %s: %s", tp, r.failure())
				}
				got = append(got, records(e.parseLines("kcat -C -J", r.stdout))...)
			}
			check(e, "kcat", got)
		})
		for _, c := range []struct{ name, script string }{
			{"kafka-python", kafkaPythonScript}, {"confluent", confluentScript},
		} {
			e.run(c.name, func(e *env) {
				r := e.py(c.script, "", append([]string{"consume"}, tpArgs(ranges)...)...)
				if r.err != nil {
					e.t.Errorf("%s consume: %s", c.name, r.failure())
				}
				check(e, c.name, records(e.parseLines(c.name+" consume", r.stdout)))
			})
		}
	})

	e.run("wire-codec", func(e *env) {
		hook := &codecHook{codecs: map[string]map[uint8]int{}}
		if _, err := e.consumeFranz(ranges, kgo.WithHooks(hook)); err != nil {
			e.t.Fatal(err)
		}
		for _, tp := range ok {
			j := produced[tp]
			e.run(j.client+"-"+j.codec, func(e *env) {
				hook.mu.Lock()
				got := hook.codecs[tp]
				hook.mu.Unlock()
				var bad []string
				for c, n := range got {
					if codecName(c) != j.codec {
						bad = append(bad, fmt.Sprintf("%d %s", n, codecName(c)))
					}
				}
				if len(got) == 0 {
					e.t.Errorf("%s %s: franz-go read no batches", j.client, j.codec)
				} else if len(bad) > 0 {
					sort.Strings(bad)
					e.t.Errorf("%s %s: stored batches by codec %v, want all %s; %v have another codec",
						j.client, j.codec, codecCounts(got), j.codec, bad)
				}
			})
		}
	})
}

func codecCounts(m map[uint8]int) map[string]int {
	out := map[string]int{}
	for c, n := range m {
		out[codecName(c)] = n
	}
	return out
}

// produceWith writes want to topic with one client and codec, acks=all.
func produceWith(e *env, client, codec, topic string, want []string) {
	switch client {
	case "kcat":
		// -P reads stdin, one message per line (a file would be one message).
		r := e.kcat(lines(want), "-P", "-b", e.b.Addr, "-t", topic, "-z", codec, "-X", "acks=all")
		if r.err != nil {
			e.t.Fatalf("kcat produce %s: %s", codec, r.failure())
		}
	case "kafka-python", "confluent":
		script := kafkaPythonScript
		if client == "confluent" {
			script = confluentScript
		}
		r := e.py(script, lines(want), "produce", "--topic", topic, "--compression", codec, "--acks", "all")
		if r.err != nil {
			e.t.Fatalf("%s produce %s: %s", client, codec, r.failure())
		}
		ls := e.parseLines(client+" produce", r.stdout)
		if len(ls) != 1 || ls[0].Produced == nil || *ls[0].Produced != len(want) {
			e.t.Fatalf("%s produce %s: output %q, want {\"produced\": %d}", client, codec, r.stdout, len(want))
		}
	case "franz-go":
		cl := e.client(kgo.ProducerBatchCompression(kgoCodecs[codecIndex(codec)]), kgo.RequiredAcks(kgo.AllISRAcks()))
		recs := make([]*kgo.Record, len(want))
		for i, v := range want {
			recs[i] = &kgo.Record{Topic: topic, Value: []byte(v)}
		}
		if err := cl.ProduceSync(e.ctx(), recs...).FirstErr(); err != nil {
			e.t.Fatalf("franz-go produce %s: %v", codec, err)
		}
	default:
		e.t.Fatalf("unknown producer %q", client)
	}
}

func codecIndex(name string) int {
	for i, n := range codecNames {
		if n == name {
			return i
		}
	}
	return -1
}
