package sources

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/hub/kafkaclient"
	"github.com/weirhub/weir/internal/brokertest"
	"github.com/weirhub/weir/internal/kafkaconf"
)

func TestDatasetSourceConfigErrors(t *testing.T) {
	tests := []struct {
		src  string
		want string
	}{
		{"from: []", `1:7: from: needs at least one dataset`},
		{"from: 'a/b'", `1:7: from: "a/b" is not a dataset name`},
		{"from: a\nmax_pending: 0", `2:14: max_pending: must be at least 1`},
		{"from: a\nmax_batch_records: 0", `2:20: max_batch_records: must be at least 1`},
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
}

// hubOpen opens a hub in a temporary directory, closed at the end.
func hubOpen(t *testing.T) *hub.Hub {
	t.Helper()
	h, err := hub.Open(hub.Options{DataDir: t.TempDir(), DisableAutoCreate: true, Defaults: hub.DatasetConfig{Fsync: "never"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// hubFill creates dataset with partitions and writes n records: value
// {"id":i}, even ones keyed, each with a header and its own time.
func hubFill(t *testing.T, client hub.Client, h *hub.Hub, dataset string, partitions int32, n int) {
	t.Helper()
	if h != nil {
		if _, err := h.CreateDataset(dataset, hub.DatasetConfig{Partitions: partitions}); err != nil {
			t.Fatal(err)
		}
	}
	var recs []hub.Record
	for i := range n {
		r := hub.Record{Value: fmt.Appendf(nil, `{"id":%d}`, i), Timestamp: hubRecordTime(i),
			Headers: []codecs.RecordHeader{{Key: []byte("h"), Value: fmt.Appendf(nil, "v%d", i)}}}
		if i%2 == 0 {
			r.Key = fmt.Appendf(nil, "k%d", i%5)
		}
		recs = append(recs, r)
	}
	if err := client.Produce(context.Background(), dataset, recs, hub.ProduceOptions{}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func hubRecordTime(i int) time.Time {
	return time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)
}

// hubCheck checks a message read back against what hubFill wrote.
func hubCheck(t *testing.T, m *connectors.Message, dataset string) int {
	t.Helper()
	var id int
	if _, err := fmt.Sscanf(string(m.Value), `{"id":%d}`, &id); err != nil {
		t.Fatalf("value %q: %v", m.Value, err)
	}
	var wantKey []byte
	if id%2 == 0 {
		wantKey = fmt.Appendf(nil, "k%d", id%5)
	}
	if !bytes.Equal(m.Key, wantKey) {
		t.Errorf("record %d: key %q, want %q", id, m.Key, wantKey)
	}
	if !m.Time.Equal(hubRecordTime(id)) {
		t.Errorf("record %d: time %v, want %v", id, m.Time, hubRecordTime(id))
	}
	if len(m.Headers) != 1 || string(m.Headers[0].Key) != "h" || string(m.Headers[0].Value) != fmt.Sprintf("v%d", id) {
		t.Errorf("record %d: headers %q", id, m.Headers)
	}
	if m.Dataset != dataset {
		t.Errorf("record %d: from %q, want %q", id, m.Dataset, dataset)
	}
	return id
}

// hubBuild makes and connects a source, closing it at the end of the test.
func hubBuild(t *testing.T, spec *connectors.Spec, ctor connectors.SourceConstructor, res connectors.Resources, src string) connectors.Source {
	t.Helper()
	s, err := ctor(parseConfig(t, spec, src), res)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.(connectors.Connector).Connect(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

type hubBatch struct {
	msgs []*connectors.Message
	ack  connectors.AckFunc
}

// hubReadN reads batches until n messages, failing the test after timeout.
func hubReadN(t *testing.T, s connectors.Source, n int, timeout time.Duration) []hubBatch {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []hubBatch
	got := 0
	for got < n {
		msgs, ack, err := s.Read(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records in %v", got, n, timeout)
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, hubBatch{msgs, ack})
		got += len(msgs)
	}
	return out
}

// hubCommitted returns the group's hubCommitted offsets of a dataset's
// partitions (-1 where none).
func hubCommitted(h *hub.Hub, group, dataset string, partitions int32) []int64 {
	var tps []hub.TopicPartition
	for i := range partitions {
		tps = append(tps, hub.TopicPartition{Topic: dataset, Partition: i})
	}
	got := h.FetchOffsets(group, tps)
	out := make([]int64, partitions)
	for i, tp := range tps {
		out[i] = -1
		if co, ok := got[tp]; ok {
			out[i] = co.Offset
		}
	}
	return out
}

func hubHighWatermarks(t *testing.T, h *hub.Hub, dataset string) []int64 {
	t.Helper()
	ds, err := h.Dataset(dataset)
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for i := range ds.NumPartitions() {
		p, _ := ds.Partition(i)
		out = append(out, p.HighWatermark())
	}
	return out
}

// TestDatasetSourceLocal reads every partition of a dataset through the
// in-process client, in batches cut by count and size, and commits each
// batch only once acknowledged.
func TestDatasetSourceLocal(t *testing.T) {
	h := hubOpen(t)
	client := hub.NewLocalClient(h)
	hubFill(t, client, h, "in", 3, 1000)
	s := hubBuild(t, &datasetSpec, newDataset, connectors.Resources{Client: client, Name: "sources.copy"},
		"from: in\nmax_batch_records: 100\nmax_batch_bytes: 1KiB\nmax_pending: 1000")
	batches := hubReadN(t, s, 1000, 10*time.Second)
	seen := map[int]bool{}
	for _, b := range batches {
		if len(b.msgs) > 100 {
			t.Errorf("batch of %d records; max_batch_records is 100", len(b.msgs))
		}
		size := 0
		for _, m := range b.msgs {
			size += len(m.Key) + len(m.Value)
			id := hubCheck(t, m, "in")
			if seen[id] {
				t.Errorf("record %d read twice", id)
			}
			seen[id] = true
		}
		if size > 1024 {
			t.Errorf("batch of %d bytes; max_batch_bytes is 1KiB", size)
		}
	}
	if got := hubCommitted(h, "sources.copy", "in", 3); fmt.Sprint(got) != "[-1 -1 -1]" {
		t.Errorf("hubCommitted %v before any acknowledgement", got)
	}
	for _, b := range batches {
		if err := b.ack(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := hubCommitted(h, "sources.copy", "in", 3), hubHighWatermarks(t, h, "in"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("hubCommitted %v after every acknowledgement, want %v", got, want)
	}
}

// TestDatasetSourceCommitsInOrder acknowledges batches out of order and
// one with an error: positions are hubCommitted only up to the batches whose
// predecessors are all acknowledged, and nothing after a failure; a new
// source of the group starts from there.
func TestDatasetSourceCommitsInOrder(t *testing.T) {
	h := hubOpen(t)
	client := hub.NewLocalClient(h)
	hubFill(t, client, h, "in", 1, 40)
	conf := "from: in\ngroup: g\nmax_batch_records: 10"
	s := hubBuild(t, &datasetSpec, newDataset, connectors.Resources{Client: client}, conf)
	b := hubReadN(t, s, 40, 10*time.Second)
	if len(b) != 4 {
		t.Fatalf("read %d batches, want 4 of 10", len(b))
	}
	steps := []struct {
		batch int
		err   error
		want  int64
	}{{1, nil, -1}, {0, nil, 20}, {3, errors.New("stopped"), 20}, {2, nil, 20}}
	for _, st := range steps {
		b[st.batch].ack(context.Background(), st.err)
		if got := hubCommitted(h, "g", "in", 1)[0]; got != st.want {
			t.Fatalf("after acknowledging batch %d (err %v): hubCommitted %d, want %d", st.batch, st.err, got, st.want)
		}
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	again := hubBuild(t, &datasetSpec, newDataset, connectors.Resources{Client: client}, conf)
	rb := hubReadN(t, again, 20, 10*time.Second)
	if first := rb[0].msgs[0].Offset; first != 20 {
		t.Errorf("a new member starts at offset %d, want 20", first)
	}
}

// TestDatasetSourceBroadcast gives two broadcast readers every record,
// each resuming from its own positions.
func TestDatasetSourceBroadcast(t *testing.T) {
	h := hubOpen(t)
	client := hub.NewLocalClient(h)
	hubFill(t, client, h, "in", 2, 100)
	for _, group := range []string{"node-1", "node-2"} {
		s := hubBuild(t, &datasetSpec, newDataset, connectors.Resources{Client: client},
			"from: in\nbroadcast: true\ngroup: "+group)
		for _, b := range hubReadN(t, s, 100, 10*time.Second) {
			b.ack(context.Background(), nil)
		}
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got, want := hubCommitted(h, group, "in", 2), hubHighWatermarks(t, h, "in"); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s hubCommitted %v, want %v", group, got, want)
		}
	}
}

// TestDatasetSourceOverKafka reads through the pipelines' Kafka client, as
// with hub.kafka, from Weir's own Kafka server, committing to its groups.
func TestDatasetSourceOverKafka(t *testing.T) {
	w := brokertest.StartWeir(t, hub.Options{})
	if _, err := w.Hub.CreateDataset("in", hub.DatasetConfig{Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	kc, err := kafkaclient.New(kafkaclient.Options{Conn: kafkaconf.Conn{Brokers: []string{w.Addr}}})
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	hubFill(t, kc, nil, "in", 3, 500)
	s := hubBuild(t, &datasetSpec, newDataset, connectors.Resources{Client: kc, Name: "sources.remote"}, "from: in")
	seen := map[int]bool{}
	for _, b := range hubReadN(t, s, 500, 20*time.Second) {
		for _, m := range b.msgs {
			seen[hubCheck(t, m, "in")] = true
		}
		if err := b.ack(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != 500 {
		t.Errorf("read %d distinct records, want 500", len(seen))
	}
	if got, want := hubCommitted(w.Hub, "sources.remote", "in", 3), hubHighWatermarks(t, w.Hub, "in"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("hubCommitted %v, want %v", got, want)
	}
}
