package pipelines

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/internal/brokertest"
)

// TestHubKafkaSASL runs a pipeline file against a cluster that wants
// SCRAM: hub.kafka takes the same TLS and SASL settings as the kafka
// connectors, and the records a source stores arrive there.
func TestHubKafkaSASL(t *testing.T) {
	addr := brokertest.StartKfake(t, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "weir", "s3cret"))
	reg := connectors.NewRegistry()
	reg.RegisterSource(connectors.Spec{Name: "three"}, func(*connectors.Config, connectors.Resources) (connectors.Source, error) {
		return &finiteSource{values: []string{"a", "b", "c"}}, nil
	})
	file := fmt.Sprintf(`
hub:
  kafka:
    brokers: [%s]
    sasl: {mechanism: SCRAM-SHA-256, user: weir, password: s3cret}
datasets: {secured: {partitions: 2, compression: zstd}}
sources:
  s: {three: {}, to: secured}
`, addr)
	cfg, err := Load("t.yaml", []byte(file), LoadOptions{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Hub.Kafka == nil || cfg.Hub.Kafka.Mechanism != "SCRAM-SHA-256" {
		t.Fatalf("hub.kafka = %+v, want SCRAM-SHA-256", cfg.Hub.Kafka)
	}
	e, err := New(cfg, Options{Registry: reg, UntilDrained: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Run(ctx); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.SASL(scram.Auth{User: "weir", Pass: "s3cret"}.AsSha256Mechanism()),
		kgo.ConsumeTopics("secured"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[string]bool{}
	for len(got) < 3 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got[string(r.Value)] = true })
	}
	if len(got) != 3 {
		t.Fatalf("read %v back from the cluster, want a, b and c", got)
	}
}

// TestHubKafkaConfigErrors checks that hub.kafka is checked like the
// kafka connectors' connection settings, at the right place.
func TestHubKafkaConfigErrors(t *testing.T) {
	for src, want := range map[string]string{
		"hub: {kafka: {brokers: [h:1], sasl: {mechanism: PLAIN}}}":    "t.yaml:1:37: sasl: PLAIN needs a user",
		"hub: {kafka: {brokers: [h:1], tls: {cert_file: c.pem}}}":     "t.yaml:1:36: tls: cert_file and key_file go together",
		"hub: {kafka: {brokers: [h:1], dial_timeout: 0s}}":            "t.yaml:1:45: dial_timeout: must be at least 1ms, not 0s",
		"hub: {kafka: {brokers: [h:1], sasl: {mechanism: KERBEROS}}}": `t.yaml:1:49: field "mechanism" is "KERBEROS"`,
	} {
		_, err := Load("t.yaml", []byte(src), LoadOptions{Registry: connectors.NewRegistry()})
		if err == nil || !containsLine(err.Error(), want) {
			t.Errorf("Load(%q) = %v, want %s", src, err, want)
		}
	}
}

func containsLine(s, prefix string) bool {
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, prefix) {
			return true
		}
	}
	return false
}

// finiteSource hands over its values in one batch, then ends.
type finiteSource struct {
	values []string
	done   bool
}

func (s *finiteSource) Read(context.Context) ([]*connectors.Message, connectors.AckFunc, error) {
	if s.done {
		return nil, nil, connectors.ErrEndOfInput
	}
	s.done = true
	var batch []*connectors.Message
	for _, v := range s.values {
		batch = append(batch, &connectors.Message{Value: []byte(v)})
	}
	return batch, func(context.Context, error) error { return nil }, nil
}

func (s *finiteSource) Close(context.Context) error { return nil }
