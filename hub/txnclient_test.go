package hub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// readCommitted reads every record of the dataset that a read_committed
// in-process consumer sees, as values.
func readCommitted(t *testing.T, c *LocalClient, dataset string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := c.Consume(ctx, ConsumeOptions{Datasets: []string{dataset}, Broadcast: true, ReadCommitted: true, MaxWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close(ctx)
	var got []string
	for idle := 0; idle < 3; {
		fs, err := cons.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) == 0 {
			idle++
		}
		for _, f := range fs {
			for _, r := range f.Records {
				got = append(got, string(r.Value))
			}
		}
	}
	slices.Sort(got)
	return got
}

// TestTxnProducer: records of an aborted transaction are invisible to a
// read_committed consumer, a committed one's visible with its group
// offsets applied, and a second producer with the same transactional id
// fences the first (its open transaction aborted, its writes refused).
func TestTxnProducer(t *testing.T) {
	h := openHub(t, testOptions(t.TempDir()))
	defer h.Close()
	if _, err := h.CreateDataset("out", DatasetConfig{Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.CreateDataset("in", DatasetConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c := NewLocalClient(h)
	recs := func(prefix string, n int) []Record {
		var rs []Record
		for i := range n {
			rs = append(rs, Record{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "%s-%02d", prefix, i)})
		}
		return rs
	}
	tx, err := c.TxnProducer(ctx, "copy", 0)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := c.Consume(ctx, ConsumeOptions{Datasets: []string{"in"}, Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close(ctx)
	for { // join the group: SendOffsets checks the membership
		if _, err := cons.Poll(ctx); err != nil {
			t.Fatal(err)
		}
		if len(cons.Assignment()) == 1 {
			break
		}
	}
	in := TopicPartition{Topic: "in", Partition: 0}

	if err := tx.Produce(ctx, "out", recs("aborted", 10), ProduceOptions{}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := tx.SendOffsets(ctx, cons, map[TopicPartition]int64{in: 5}); err != nil {
		t.Fatal(err)
	}
	if err := tx.End(ctx, false); err != nil {
		t.Fatal(err)
	}
	if got := h.FetchOffsets("g", nil); len(got) != 0 {
		t.Fatalf("an aborted transaction committed offsets %v", got)
	}
	// Two produces in one transaction: sequences go on per partition.
	for range 2 {
		if err := tx.Produce(ctx, "out", recs("committed", 10)[:5], ProduceOptions{}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.SendOffsets(ctx, cons, map[TopicPartition]int64{in: 7}); err != nil {
		t.Fatal(err)
	}
	if err := tx.End(ctx, true); err != nil {
		t.Fatal(err)
	}
	if got := h.FetchOffsets("g", nil)[in].Offset; got != 7 {
		t.Fatalf("committed offset %d, want 7", got)
	}
	got := readCommitted(t, c, "out")
	want := []string{"committed-00", "committed-00", "committed-01", "committed-01", "committed-02", "committed-02",
		"committed-03", "committed-03", "committed-04", "committed-04"}
	if !slices.Equal(got, want) {
		t.Fatalf("read_committed got %q, want %q", got, want)
	}

	// A new incarnation fences the old one.
	if err := tx.Produce(ctx, "out", recs("zombie", 4), ProduceOptions{}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	tx2, err := c.TxnProducer(ctx, "copy", 0)
	if err != nil {
		t.Fatal(err)
	}
	err = tx.Produce(ctx, "out", recs("zombie", 4), ProduceOptions{}).FirstErr()
	if !errors.Is(err, ErrInvalidProducerEpoch) && !errors.Is(err, ErrTxnDoomed) {
		t.Fatalf("a fenced producer's write: %v, want it refused", err)
	}
	select {
	case <-tx.Doomed():
	default:
		t.Fatal("a refused write did not doom the transaction")
	}
	if err := tx.End(ctx, true); !errors.Is(err, ErrTxnDoomed) {
		t.Fatalf("committing a doomed transaction: %v", err)
	}
	if err := tx.End(ctx, false); !errors.Is(err, ErrProducerFenced) {
		t.Fatalf("aborting the fenced producer's transaction: %v, want it fenced for good", err)
	}
	if err := tx2.Produce(ctx, "out", recs("second", 2), ProduceOptions{}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := tx2.End(ctx, true); err != nil {
		t.Fatal(err)
	}
	got = readCommitted(t, c, "out")
	if len(got) != 12 || slices.ContainsFunc(got, func(v string) bool { return v[0] == 'z' || v[0] == 'a' }) {
		t.Fatalf("read_committed got %q: want the 10 committed and 2 of the second producer", got)
	}
}
