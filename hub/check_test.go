package hub

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"testing"
	"time"

	"github.com/weirhub/weir/codecs"
)

// TestCorruptStoredBatchIsClassified: a batch stored before records were
// checked (or damaged on disk) makes Poll fail with a *CorruptBatchError
// that says which offsets it covers, so a consumer can dead-letter them.
func TestCorruptStoredBatchIsClassified(t *testing.T) {
	h := openHub(t, testOptions(t.TempDir()))
	defer h.Close()
	ds, err := h.CreateDataset("old", DatasetConfig{Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ds.Partition(0)
	c := NewLocalClient(h)
	ctx := context.Background()
	if err := c.Produce(ctx, "old", []Record{{Value: []byte("a")}, {Value: []byte("b")}}, ProduceOptions{}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// Five records of 0xff bytes with a valid CRC, appended below the
	// produce check as an old log would hold them.
	bad := make([]byte, codecs.HeaderSize, codecs.HeaderSize+100)
	bad[16] = codecs.Magic
	binary.BigEndian.PutUint32(bad[23:], 4)
	binary.BigEndian.PutUint64(bad[43:], ^uint64(0))
	binary.BigEndian.PutUint32(bad[57:], 5)
	bad = append(bad, bytes.Repeat([]byte{0xff}, 100)...)
	binary.BigEndian.PutUint32(bad[8:], uint32(len(bad)-codecs.LengthPrefix))
	binary.BigEndian.PutUint32(bad[17:], crc32.Checksum(bad[21:], crc32.MakeTable(crc32.Castagnoli)))
	if _, err := p.Produce(bytes.Clone(bad), false); !errors.Is(err, ErrCorruptBatch) {
		t.Fatalf("Produce of a poison batch = %v, want ErrCorruptBatch", err)
	}
	if _, err := p.Log().Append(bad); err != nil {
		t.Fatal(err)
	}
	cons, err := c.Consume(ctx, ConsumeOptions{Datasets: []string{"old"}, Group: "g", MaxWait: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close(ctx)
	var got []string
	for range 50 {
		var fs []Fetch
		fs, err = cons.Poll(ctx)
		if err != nil {
			break
		}
		for _, f := range fs {
			for _, r := range f.Records {
				got = append(got, string(r.Value))
			}
		}
	}
	if len(got) != 2 {
		t.Errorf("polled %q before the poison batch, want a and b", got)
	}
	var cbe *CorruptBatchError
	if !errors.Is(err, ErrCorruptBatch) || !errors.As(err, &cbe) {
		t.Fatalf("Poll over a poison batch = %v, want a *CorruptBatchError", err)
	}
	if cbe.Dataset != "old" || cbe.Partition != 0 || cbe.Batch.BaseOffset != 2 || cbe.Batch.LastOffset != 6 || !errors.Is(err, codecs.ErrCorrupt) {
		t.Fatalf("error %+v (batch %+v), want old/0 offsets 2 to 6", cbe, cbe.Batch)
	}
}

// TestSkipCorruptMovesPast: with SkipCorrupt, Poll reports the bad batch
// once, with its offsets, and goes on with the records after it.
func TestSkipCorruptMovesPast(t *testing.T) {
	h := openHub(t, testOptions(t.TempDir()))
	defer h.Close()
	ds, err := h.CreateDataset("old", DatasetConfig{Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ds.Partition(0)
	c := NewLocalClient(h)
	ctx := context.Background()
	if err := c.Produce(ctx, "old", []Record{{Value: []byte("a")}}, ProduceOptions{}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Log().Append(poisonForTest()); err != nil {
		t.Fatal(err)
	}
	if err := c.Produce(ctx, "old", []Record{{Value: []byte("b")}}, ProduceOptions{}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cons, err := c.Consume(ctx, ConsumeOptions{Datasets: []string{"old"}, Group: "g", MaxWait: 20 * time.Millisecond, SkipCorrupt: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close(ctx)
	var got []string
	var corrupt []*CorruptBatchError
	for range 50 {
		fs, err := cons.Poll(ctx)
		var cbe *CorruptBatchError
		if errors.As(err, &cbe) {
			corrupt = append(corrupt, cbe)
		} else if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			for _, r := range f.Records {
				got = append(got, string(r.Value))
			}
		}
		if len(got) == 2 {
			break
		}
	}
	if len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("polled %q, want a and b", got)
	}
	if len(corrupt) != 1 || corrupt[0].Batch.BaseOffset != 1 || corrupt[0].Batch.LastOffset != 5 {
		t.Fatalf("corrupt batches reported: %v, want one covering offsets 1 to 5", corrupt)
	}
}

// poisonForTest is five records of 0xff bytes with a valid CRC.
func poisonForTest() []byte {
	bad := make([]byte, codecs.HeaderSize, codecs.HeaderSize+100)
	bad[16] = codecs.Magic
	binary.BigEndian.PutUint32(bad[23:], 4)
	binary.BigEndian.PutUint64(bad[43:], ^uint64(0))
	binary.BigEndian.PutUint32(bad[57:], 5)
	bad = append(bad, bytes.Repeat([]byte{0xff}, 100)...)
	binary.BigEndian.PutUint32(bad[8:], uint32(len(bad)-codecs.LengthPrefix))
	binary.BigEndian.PutUint32(bad[17:], crc32.Checksum(bad[21:], crc32.MakeTable(crc32.Castagnoli)))
	return bad
}

// TestCorruptBatchKeepsOtherPartitions: a poll that meets a corrupt batch
// in one partition after reading records of another returns those records
// (their position has moved) and reports the batch on a later poll,
// instead of dropping them with the error.
func TestCorruptBatchKeepsOtherPartitions(t *testing.T) {
	h := openHub(t, testOptions(t.TempDir()))
	defer h.Close()
	ds, err := h.CreateDataset("two", DatasetConfig{Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	p0, _ := ds.Partition(0)
	if _, err := p0.Log().Append(poisonForTest()); err != nil {
		t.Fatal(err)
	}
	p1, _ := ds.Partition(1)
	b := &codecs.Builder{}
	for i := range 10 {
		b.Append(0, nil, fmt.Appendf(nil, "r%d", i), nil)
	}
	batch, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p1.Log().Append(bytes.Clone(batch)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cons, err := NewLocalClient(h).Consume(ctx, ConsumeOptions{Datasets: []string{"two"}, Group: "g", MaxWait: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close(ctx)
	got, corrupt := 0, 0
	for range 20 {
		fs, err := cons.Poll(ctx)
		if errors.Is(err, ErrCorruptBatch) {
			corrupt++
		} else if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			if f.Partition != 1 {
				t.Fatalf("records of partition %d", f.Partition)
			}
			got += len(f.Records)
		}
	}
	if got != 10 || corrupt == 0 {
		t.Fatalf("polled %d records of partition 1 and %d corrupt-batch errors; want all 10 and the error", got, corrupt)
	}
}
