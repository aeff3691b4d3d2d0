package sinks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/hub/kafkaclient"
	"github.com/weirhub/weir/internal/brokertest"
	"github.com/weirhub/weir/internal/kafkaconf"
)

// openHub opens a hub in a temporary directory, closed at the end.
func openHub(t *testing.T, opts hub.Options) *hub.Hub {
	t.Helper()
	opts.DataDir = t.TempDir()
	if opts.Defaults.Fsync == "" {
		opts.Defaults.Fsync = "always"
	}
	h, err := hub.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// newDatasetSink builds and connects a dataset sink over client.
func newDatasetSink(t *testing.T, client hub.Client, src string) *datasetSink {
	t.Helper()
	s, err := newDataset(parseConfig(t, &datasetSpec, src), connectors.Resources{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.(*datasetSink).Connect(ctx); err != nil {
		t.Fatal(err)
	}
	return s.(*datasetSink)
}

func TestDatasetConfigErrors(t *testing.T) {
	tests := []struct {
		src  string
		want string
	}{
		{"dataset: 'a/b'", `1:10: dataset: "a/b": a dataset name has only letters`},
		{"dataset: 'x-{{ .what }}'", `1:10: dataset: {{ .what }} at byte 2`},
		{"dataset: x\nmax_batch_bytes: 10", `2:18: max_batch_bytes: must be from 1KiB to 256MiB, not 10`},
	}
	for _, tt := range tests {
		conf, err := parseOrErr(t, &datasetSpec, tt.src)
		if err == nil {
			_, err = newDataset(conf, connectors.Resources{})
		}
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("newDataset(%q) = %v, want %s...", tt.src, err, tt.want)
		}
	}
	// The shorthand names the dataset.
	if _, err := newDataset(parseConfig(t, &datasetSpec, "errors"), connectors.Resources{}); err != nil {
		t.Errorf("newDataset(errors) = %v", err)
	}
}

// TestDatasetSinkLocal writes through the in-process client, compressed or
// not and in batches cut by size: every record is stored once with its
// key (in the key's partition), headers and time.
func TestDatasetSinkLocal(t *testing.T) {
	for _, tt := range []struct{ compression, maxBatch string }{{"none", "512KiB"}, {"zstd", "4KiB"}, {"lz4", "1KiB"}} {
		t.Run(tt.compression, func(t *testing.T) {
			h := openHub(t, hub.Options{DisableAutoCreate: true})
			if _, err := h.CreateDataset("out", hub.DatasetConfig{Partitions: 3, MaxMessageBytes: 16 << 10}); err != nil {
				t.Fatal(err)
			}
			s := newDatasetSink(t, hub.NewLocalClient(h), fmt.Sprintf("dataset: out\ncompression: %s\nmax_batch_bytes: %s", tt.compression, tt.maxBatch))
			msgs := keyedMessages(1000)
			for i := 0; i < len(msgs); i += 250 {
				if err := s.Write(context.Background(), msgs[i:i+250]); err != nil {
					t.Fatal(err)
				}
			}
			checkStored(t, brokertest.ReadAll(t, h, "out", len(msgs), 10*time.Second), msgs, 3, recordKey)
		})
	}
}

// TestDatasetSinkFailures checks what fails for good (a record too large
// for the dataset, a templated name that is invalid or unknown) and that
// such records fail alone, the others being stored.
func TestDatasetSinkFailures(t *testing.T) {
	h := openHub(t, hub.Options{DisableAutoCreate: true})
	for _, name := range []string{"ev-a", "ev-b"} {
		if _, err := h.CreateDataset(name, hub.DatasetConfig{Partitions: 2, MaxMessageBytes: 2048}); err != nil {
			t.Fatal(err)
		}
	}
	s := newDatasetSink(t, hub.NewLocalClient(h), "dataset: 'ev-{{ .field \"kind\" }}'\nkey: user")
	batch := []*connectors.Message{
		{Value: []byte(`{"kind":"a","user":"u1","n":0}`)},
		{Value: []byte(`{"kind":"a","user":"u1","n":1,"pad":"` + strings.Repeat("x", 5000) + `"}`)}, // too large
		{Value: []byte(`{"kind":"b","user":"u2","n":2}`)},
		{Value: []byte(`{"kind":"no good","n":3}`)}, // invalid name
		{Value: []byte(`{"kind":"c","n":4}`)},       // unknown dataset
		{Value: []byte(`{"kind":"a","user":"u1","n":5}`)},
	}
	err := s.Write(context.Background(), batch)
	var we *connectors.WriteError
	if !errors.As(err, &we) {
		t.Fatalf("Write = %v, want a WriteError", err)
	}
	failed := map[int]bool{}
	for _, f := range we.Failures {
		if f.Retryable {
			t.Errorf("failure %d (%v) is retryable; want permanent", f.Index, f.Err)
		}
		failed[f.Index] = true
	}
	if len(failed) != 3 || !failed[1] || !failed[3] || !failed[4] {
		t.Fatalf("failures = %v, want records 1, 3 and 4", we)
	}
	a := brokertest.ReadAll(t, h, "ev-a", 2, 10*time.Second)
	if len(a) != 2 || string(a[0].Key) != "u1" || !strings.Contains(string(a[1].Value), `"n":5`) {
		t.Errorf("ev-a holds %d records (first key %q), want n 0 and 5 keyed u1", len(a), a[0].Key)
	}
	if n := brokertest.Count(h, "ev-b"); n != 1 {
		t.Errorf("ev-b holds %d records, want 1", n)
	}
}

// TestDatasetSinkUnavailable checks that a fixed dataset that does not
// exist fails Connect (the runtime waits), and a closed hub holds the
// pipeline back.
func TestDatasetSinkUnavailable(t *testing.T) {
	h := openHub(t, hub.Options{DisableAutoCreate: true})
	s, err := newDataset(parseConfig(t, &datasetSpec, "dataset: missing"), connectors.Resources{Client: hub.NewLocalClient(h)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.(*datasetSink).Connect(context.Background()); !errors.Is(err, hub.ErrUnknownDataset) {
		t.Errorf("Connect = %v, want ErrUnknownDataset", err)
	}
	if _, err := h.CreateDataset("out", hub.DatasetConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	ok := newDatasetSink(t, hub.NewLocalClient(h), "dataset: out")
	h.Close()
	if err := ok.Write(context.Background(), messages("x")); !errors.Is(err, connectors.ErrUnavailable) {
		t.Errorf("Write to a closed hub = %v, want ErrUnavailable", err)
	}
}

// TestDatasetSinkOverKafka writes through the pipelines' Kafka client, as
// with hub.kafka, to Weir's own Kafka server.
func TestDatasetSinkOverKafka(t *testing.T) {
	w := brokertest.StartWeir(t, hub.Options{})
	if _, err := w.Hub.CreateDataset("out", hub.DatasetConfig{Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	kc, err := kafkaclient.New(kafkaclient.Options{Conn: kafkaconf.Conn{Brokers: []string{w.Addr}}})
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	s := newDatasetSink(t, kc, "dataset: out\ncompression: snappy")
	msgs := keyedMessages(300)
	if err := s.Write(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	checkStored(t, brokertest.ReadAll(t, w.Hub, "out", len(msgs), 10*time.Second), msgs, 3, recordKey)
}

// TestSinksKeepTombstones checks a keyed record without a value (a
// tombstone, for compacted datasets) stays one through both sinks.
func TestSinksKeepTombstones(t *testing.T) {
	w := brokertest.StartWeir(t, hub.Options{})
	tomb := func() []*connectors.Message {
		return []*connectors.Message{{Key: []byte("gone"), Value: nil}, {Key: []byte("kept"), Value: []byte{}}}
	}
	k := connectKafka(t, fmt.Sprintf("brokers: [%s]\ntopic: tk", w.Addr))
	if err := k.Write(context.Background(), tomb()); err != nil {
		t.Fatal(err)
	}
	d := newDatasetSink(t, hub.NewLocalClient(w.Hub), "dataset: td")
	if err := d.Write(context.Background(), tomb()); err != nil {
		t.Fatal(err)
	}
	for _, ds := range []string{"tk", "td"} {
		got := brokertest.ReadAll(t, w.Hub, ds, 2, 10*time.Second)
		if got[0].Value != nil || got[1].Value == nil {
			t.Errorf("%s: values %q and %q, want null then empty", ds, got[0].Value, got[1].Value)
		}
	}
}
