package kafkatest

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// caseConsumeFromOffset: 100 keyed records in a one-partition topic; every
// consumer starts at offset 42 and must read exactly 42..99 in order with
// their keys and values. kcat also starts 58 from the end (-o -58), which
// goes through ListOffsets for the high watermark.
func caseConsumeFromOffset(e *env) {
	const n, from = 100, 42
	topic := e.name("t")
	e.createTopic(topic, 1)
	key := func(o int64) string { return fmt.Sprintf("key-%03d", o) }
	value := func(o int64) string { return fmt.Sprintf("value-%03d", o) }
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Partition: 0, Key: []byte(key(int64(i))), Value: []byte(value(int64(i)))}
	}
	for i, r := range e.produce(recs...) {
		if r.Offset != int64(i) {
			e.t.Fatalf("franz-go produce into a new topic: record %d got offset %d, want %d", i, r.Offset, i)
		}
	}
	rng := []tpRange{{topic, 0, from, n}}
	what := func(client string) string { return fmt.Sprintf("%s from offset %d", client, from) }

	for _, c := range []struct{ name, offset string }{
		{"kcat", fmt.Sprint(from)},
		{"kcat-from-end", fmt.Sprint(-(n - from))},
	} {
		e.run(c.name, func(e *env) {
			r := e.kcat("", "-C", "-b", e.b.Addr, "-t", topic, "-p", "0", "-o", c.offset, "-e", "-J", "-q")
			if r.err != nil {
				e.t.Errorf("kcat -o %s: %s", c.offset, r.failure())
			}
			checkRange(e.t, "kcat -o "+c.offset, records(e.parseLines("kcat -C -J", r.stdout)), 0, from, n, key, value)
		})
	}
	for _, c := range []struct{ name, script string }{
		{"kafka-python", kafkaPythonScript}, {"confluent", confluentScript},
	} {
		e.run(c.name, func(e *env) {
			r := e.py(c.script, "", append([]string{"consume"}, tpArgs(rng)...)...)
			if r.err != nil {
				e.t.Errorf("%s consume: %s", c.name, r.failure())
			}
			checkRange(e.t, what(c.name), records(e.parseLines(c.name+" consume", r.stdout)), 0, from, n, key, value)
		})
	}
	e.run("franz-go", func(e *env) {
		got, err := e.consumeFranz(rng)
		if err != nil {
			e.t.Error(err)
		}
		checkRange(e.t, what("franz-go"), got, 0, from, n, key, value)
	})
}
