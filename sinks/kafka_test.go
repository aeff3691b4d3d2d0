package sinks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/internal/brokertest"
)

func TestKafkaConfigErrors(t *testing.T) {
	tests := []struct {
		src  string
		want string
	}{
		{"brokers: [x]\ntopic: t", `1:10: brokers: "x" is not host:port`},
		{"brokers: ['h:0']\ntopic: t", `1:10: brokers: "h:0" has no valid port`},
		{"brokers: [h:1]\ntopic: 'a b'", `2:8: topic: "a b": a topic name has only letters`},
		{"brokers: [h:1]\ntopic: 'x-{{ .nope }}'", `2:8: topic: {{ .nope }} at byte 2`},
		{"brokers: [h:1]\ntopic: t\nacks: leader", `3:7: acks: the idempotent producer needs acks: all`},
		{"brokers: [h:1]\ntopic: t\nsasl: {user: u}", `3:7: sasl: user and password need a mechanism`},
		{"brokers: [h:1]\ntopic: t\nsasl: {mechanism: PLAIN}", `3:7: sasl: PLAIN needs a user`},
		{"brokers: [h:1]\ntopic: t\ntls: {cert_file: c}", `3:6: tls: cert_file and key_file go together`},
		{"brokers: [h:1]\ntopic: t\ntimeout: 0s", `3:10: timeout: must be at least 1ms`},
	}
	for _, tt := range tests {
		conf, err := parseOrErr(t, &kafkaSpec, tt.src)
		if err == nil {
			_, err = newKafka(conf, connectors.Resources{})
		}
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("newKafka(%q) = %v, want %s...", tt.src, err, tt.want)
		}
	}
	for _, src := range []string{"brokers: [h:1]\ntopic: t\nsasl: {mechanism: SCRAM-SHA-512, user: u, password: p}",
		"brokers: [h:1]\ntopic: t\nacks: none\nidempotent: false\ncompression: lz4"} {
		if _, err := newKafka(parseConfig(t, &kafkaSpec, src), connectors.Resources{}); err != nil {
			t.Errorf("newKafka(%q) = %v, want no error", src, err)
		}
	}
}

// connectKafka builds and connects a kafka sink from YAML, closing it at
// the end of the test.
func connectKafka(t *testing.T, src string) *kafkaSink {
	t.Helper()
	s, err := newKafka(parseConfig(t, &kafkaSpec, src), connectors.Resources{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.(*kafkaSink).Connect(ctx); err != nil {
		t.Fatal(err)
	}
	return s.(*kafkaSink)
}

// keyedMessages makes n messages: even ones keyed, every one with a header
// and a time of its own.
func keyedMessages(n int) []*connectors.Message {
	base := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	out := make([]*connectors.Message, n)
	for i := range out {
		m := &connectors.Message{Value: fmt.Appendf(nil, `{"id":%d,"user":"u%d","kind":"%s"}`, i, i%7, []string{"a", "b"}[i%2]),
			Time: base.Add(time.Duration(i) * time.Millisecond), Dataset: "in", Offset: int64(i),
			Headers: []codecs.RecordHeader{{Key: []byte("h"), Value: fmt.Appendf(nil, "v%d", i)}}}
		if i%2 == 0 {
			m.Key = fmt.Appendf(nil, "k%d", i%5)
		}
		out[i] = m
	}
	return out
}

// checkStored checks records read back against the messages written.
func checkStored(t *testing.T, got []brokertest.Record, msgs []*connectors.Message, partitions int32, key func(*connectors.Message) []byte) {
	t.Helper()
	if len(got) != len(msgs) {
		t.Fatalf("stored %d records, want %d", len(got), len(msgs))
	}
	byValue := map[string]*connectors.Message{}
	for _, m := range msgs {
		byValue[string(m.Value)] = m
	}
	for _, r := range got {
		m := byValue[string(r.Value)]
		if m == nil {
			t.Fatalf("stored %q, which was not written (or twice)", r.Value)
		}
		delete(byValue, string(r.Value))
		want := key(m)
		if !bytes.Equal(r.Key, want) {
			t.Errorf("record %s: key %q, want %q", r.Value, r.Key, want)
		}
		if want != nil && r.Partition != hub.PartitionForKey(want, partitions) {
			t.Errorf("record %s with key %q in partition %d, want %d", r.Value, want, r.Partition, hub.PartitionForKey(want, partitions))
		}
		if !r.Time.Equal(m.Time) {
			t.Errorf("record %s: time %v, want %v", r.Value, r.Time, m.Time)
		}
		if len(r.Headers) != 1 || string(r.Headers[0].Key) != "h" || !bytes.Equal(r.Headers[0].Value, m.Headers[0].Value) {
			t.Errorf("record %s: headers %q, want h=%s", r.Value, r.Headers, m.Headers[0].Value)
		}
	}
}

func recordKey(m *connectors.Message) []byte { return m.Key }

// TestKafkaSinkToWeir produces to Weir's own Kafka server with every
// compression and reads the topic back from its hub: values, keys (and the
// partitions they pick), headers and times arrive as written.
func TestKafkaSinkToWeir(t *testing.T) {
	w := brokertest.StartWeir(t, hub.Options{})
	for _, comp := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		t.Run(comp, func(t *testing.T) {
			topic := "out-" + comp
			if _, err := w.Hub.CreateDataset(topic, hub.DatasetConfig{Partitions: 3}); err != nil {
				t.Fatal(err)
			}
			s := connectKafka(t, fmt.Sprintf("brokers: [%s]\ntopic: %s\ncompression: %s", w.Addr, topic, comp))
			msgs := keyedMessages(500)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for i := 0; i < len(msgs); i += 100 {
				if err := s.Write(ctx, msgs[i:i+100]); err != nil {
					t.Fatal(err)
				}
			}
			checkStored(t, brokertest.ReadAll(t, w.Hub, topic, len(msgs), 10*time.Second), msgs, 3, recordKey)
		})
	}
}

// TestKafkaSinkTemplateAndKeyField routes records to topics by a field and
// keys them by another; a record whose topic is not a valid name fails
// for good, alone.
func TestKafkaSinkTemplateAndKeyField(t *testing.T) {
	w := brokertest.StartWeir(t, hub.Options{})
	for _, name := range []string{"ev-a", "ev-b"} {
		if _, err := w.Hub.CreateDataset(name, hub.DatasetConfig{Partitions: 4}); err != nil {
			t.Fatal(err)
		}
	}
	s := connectKafka(t, fmt.Sprintf("brokers: [%s]\ntopic: 'ev-{{ .field \"kind\" }}'\nkey: user", w.Addr))
	msgs := keyedMessages(200)
	bad := &connectors.Message{Value: []byte(`{"kind":"no good","user":"x"}`)}
	batch := append(append([]*connectors.Message{}, msgs[:100]...), bad)
	batch = append(batch, msgs[100:]...)
	err := s.Write(context.Background(), batch)
	var we *connectors.WriteError
	if !errors.As(err, &we) || len(we.Failures) != 1 || we.Failures[0].Index != 100 || we.Failures[0].Retryable {
		t.Fatalf("Write = %v, want one permanent failure at 100", err)
	}
	if !strings.Contains(we.Failures[0].Err.Error(), `"ev-no good"`) {
		t.Errorf("failure = %v, want it to name the topic", we.Failures[0].Err)
	}
	var as, bs []*connectors.Message
	for i, m := range msgs {
		if i%2 == 0 {
			as = append(as, m)
		} else {
			bs = append(bs, m)
		}
	}
	userKey := func(m *connectors.Message) []byte {
		var r connectors.FieldReader
		return []byte(connectors.String(r.Get(m, "user")))
	}
	checkStored(t, brokertest.ReadAll(t, w.Hub, "ev-a", len(as), 10*time.Second), as, 4, userKey)
	checkStored(t, brokertest.ReadAll(t, w.Hub, "ev-b", len(bs), 10*time.Second), bs, 4, userKey)
}

// TestKafkaSinkRecordTooLarge fails a record larger than a batch may be,
// for good, and delivers the others.
func TestKafkaSinkRecordTooLarge(t *testing.T) {
	w := brokertest.StartWeir(t, hub.Options{})
	s := connectKafka(t, fmt.Sprintf("brokers: [%s]\ntopic: big\nmax_batch_bytes: 4KiB", w.Addr))
	msgs := messages("a", strings.Repeat("x", 10000), "c")
	err := s.Write(context.Background(), msgs)
	var we *connectors.WriteError
	if !errors.As(err, &we) || len(we.Failures) != 1 || we.Failures[0].Index != 1 || we.Failures[0].Retryable {
		t.Fatalf("Write = %v, want one permanent failure at 1", err)
	}
	got := brokertest.ReadAll(t, w.Hub, "big", 2, 10*time.Second)
	if len(got) != 2 {
		t.Fatalf("stored %d records, want 2", len(got))
	}
}

// TestKafkaSinkUnavailable checks that a cluster out of reach fails
// Connect, and a cluster that goes away holds the pipeline back
// (ErrUnavailable) rather than failing records for good.
func TestKafkaSinkUnavailable(t *testing.T) {
	w := brokertest.StartWeir(t, hub.Options{})
	addr := w.Addr
	s := connectKafka(t, fmt.Sprintf("brokers: [%s]\ntopic: t\ntimeout: 1s\ndial_timeout: 500ms", addr))
	if err := s.Write(context.Background(), messages("before")); err != nil {
		t.Fatal(err)
	}
	w.Stop()
	start := time.Now()
	err := s.Write(context.Background(), messages("after"))
	if !errors.Is(err, connectors.ErrUnavailable) {
		t.Fatalf("Write with the broker gone = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Write took %v with a 1s timeout", d)
	}
	// Back on the same address: the sink connects again by itself.
	w.Restart(t)
	for i := 0; ; i++ {
		err := s.Write(context.Background(), messages("after"))
		if err == nil {
			break
		}
		if !errors.Is(err, connectors.ErrUnavailable) || i == 20 {
			t.Fatalf("Write after the broker came back = %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := brokertest.ReadAll(t, w.Hub, "t", 2, 10*time.Second); string(got[0].Value) != "before" || string(got[len(got)-1].Value) != "after" {
		t.Errorf("stored %q ... %q, want before ... after", got[0].Value, got[len(got)-1].Value)
	}
	w.Stop()

	s2, err := newKafka(parseConfig(t, &kafkaSpec, fmt.Sprintf("brokers: [%s]\ntopic: t\ndial_timeout: 500ms", addr)), connectors.Resources{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := s2.(*kafkaSink).Connect(ctx); err == nil {
		t.Fatal("Connect to a closed port succeeded")
	}
	if err := s2.Write(context.Background(), messages("x")); !errors.Is(err, connectors.ErrUnavailable) {
		t.Fatalf("Write before Connect = %v, want ErrUnavailable", err)
	}
}

// TestKafkaSinkSASLAndTLS produces to kfake clusters that want SASL
// (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) or TLS, and checks that bad
// credentials or an untrusted certificate fail Connect.
func TestKafkaSinkSASLAndTLS(t *testing.T) {
	consume := func(t *testing.T, opts ...kgo.Opt) int {
		t.Helper()
		cl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics("secure"))...)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n := 0
		for n < 3 && ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			n += fs.NumRecords()
		}
		return n
	}
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			addr := brokertest.StartKfake(t, kfake.EnableSASL(), kfake.Superuser(mech, "weir", "s3cret"), kfake.SeedTopics(1, "secure"))
			s := connectKafka(t, fmt.Sprintf("brokers: [%s]\ntopic: secure\nsasl: {mechanism: %s, user: weir, password: s3cret}", addr, mech))
			if err := s.Write(context.Background(), messages("a", "b", "c")); err != nil {
				t.Fatal(err)
			}
			if n := consume(t, kgo.SeedBrokers(addr), kgo.SASL(s.conn.SASL())); n != 3 {
				t.Errorf("consumed %d records, want 3", n)
			}
			bad, err := newKafka(parseConfig(t, &kafkaSpec, fmt.Sprintf("brokers: [%s]\ntopic: secure\nsasl: {mechanism: %s, user: weir, password: wrong}", addr, mech)), connectors.Resources{})
			if err != nil {
				t.Fatal(err)
			}
			defer bad.Close(context.Background())
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := bad.(*kafkaSink).Connect(ctx); err == nil {
				t.Error("Connect with a wrong password succeeded")
			}
		})
	}
	t.Run("TLS", func(t *testing.T) {
		srvTLS, caFile := brokertest.TLS(t)
		addr := brokertest.StartKfake(t, kfake.TLS(srvTLS), kfake.SeedTopics(1, "secure"))
		s := connectKafka(t, fmt.Sprintf("brokers: [%s]\ntopic: secure\ntls: {ca_file: %s}", addr, caFile))
		if err := s.Write(context.Background(), messages("a", "b", "c")); err != nil {
			t.Fatal(err)
		}
		tc, err := s.conn.TLSConfig()
		if err != nil {
			t.Fatal(err)
		}
		if n := consume(t, kgo.SeedBrokers(addr), kgo.DialTLSConfig(tc)); n != 3 {
			t.Errorf("consumed %d records, want 3", n)
		}
		// The system's authorities do not know the test's.
		bad, err := newKafka(parseConfig(t, &kafkaSpec, fmt.Sprintf("brokers: [%s]\ntopic: secure\ntls: {enabled: true}\ndial_timeout: 2s", addr)), connectors.Resources{})
		if err != nil {
			t.Fatal(err)
		}
		defer bad.Close(context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := bad.(*kafkaSink).Connect(ctx); err == nil {
			t.Error("Connect trusting only the system's authorities succeeded")
		}
	})
}
