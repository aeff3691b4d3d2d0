package hub

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestProduceDurableCombinesWrites: with fsync always, acks=all produces
// from many producers to one partition share writes (and fdatasyncs):
// the partition's lock is not held while the log writes, so the produces
// that come meanwhile are staged into the next write. Every record is
// stored once, at the offset its produce returned.
func TestProduceDurableCombinesWrites(t *testing.T) {
	opts := testOptions(t.TempDir())
	opts.Defaults.Fsync = "always"
	h := openHub(t, opts)
	defer h.Close()
	ds, err := h.CreateDataset("d", DatasetConfig{Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ds.Partition(0)
	const producers, each = 32, 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	at := map[int64]string{}
	for pr := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				v := fmt.Sprintf("p%d.%d", pr, i)
				res, err := p.Produce(idempotentBatch(t, int64(1000+pr), 0, int32(i), v), true)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				at[res.BaseOffset] = v
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	st := p.Log().Stats()
	if st.Appends != producers*each {
		t.Fatalf("%d appends, want %d", st.Appends, producers*each)
	}
	if st.Writes*2 > st.Appends {
		t.Fatalf("%d produces took %d writes: concurrent acks=all produces were not combined", st.Appends, st.Writes)
	}
	it := p.Log().NewIterator(0)
	n := 0
	for ; it.Next(); n++ {
		r := it.Record()
		if at[r.Offset] != string(r.Value) {
			t.Fatalf("offset %d holds %q, its produce returned it for %q", r.Offset, r.Value, at[r.Offset])
		}
	}
	if it.Err() != nil || n != producers*each {
		t.Fatalf("read %d records, want %d: %v", n, producers*each, it.Err())
	}
	t.Logf("%d produces, %d writes, %d fdatasyncs", st.Appends, st.Writes, st.Fsyncs)
}

// TestProduceDurableWriteFailure: an idempotent batch whose write fails
// after the partition's lock was released is not remembered as stored: its
// retry, once there is room, is stored and read back, not answered as a
// duplicate of records that are not there.
func TestProduceDurableWriteFailure(t *testing.T) {
	disk := &diskFull{dataset: "d"}
	disk.opensLeft.Store(1 << 30)
	opts := testOptions(t.TempDir())
	opts.Defaults.Fsync = "always"
	opts.FS = disk.fs()
	h := openHub(t, opts)
	defer h.Close()
	ds, err := h.CreateDataset("d", DatasetConfig{Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ds.Partition(0)
	if _, err := p.Produce(idempotentBatch(t, 7, 0, 0, "first"), true); err != nil {
		t.Fatal(err)
	}
	disk.full.Store(true)
	if _, err := p.Produce(idempotentBatch(t, 7, 0, 1, "second"), true); !errors.Is(err, ErrStorage) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Produce on a full disk = %v, want ErrStorage wrapping ENOSPC", err)
	}
	disk.full.Store(false)
	type result struct {
		res ProduceResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := p.Produce(idempotentBatch(t, 7, 0, 1, "second"), true)
		done <- result{res, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		// Answered as a duplicate of the failed write, it waits for
		// offsets nothing will write.
		t.Fatal("the retry once there is room did not return within 10s")
	}
	if res, err := r.res, r.err; err != nil || res.Duplicate || res.BaseOffset != 1 {
		t.Fatalf("the retry once there is room = %+v, %v; want stored at offset 1, not a duplicate", res, err)
	}
	if got := values(t, p); fmt.Sprint(got) != "[first second]" {
		t.Fatalf("the partition holds %q, want first and second", got)
	}
}

// BenchmarkProduceDurable: acks=all produces with fsync always to one
// partition from 8 and 64 producers, batches of 16 records of 1 KiB:
// what durable acknowledgement costs a hub partition, with its writes per
// fdatasync. With idempotent, each producer has an id and a sequence (its
// batch is built for each produce, as a client builds it).
func BenchmarkProduceDurable(b *testing.B) {
	for _, c := range []struct {
		producers  int
		idempotent bool
	}{{8, false}, {64, false}, {8, true}, {64, true}} {
		producers := c.producers
		name := fmt.Sprintf("producers=%d", producers)
		if c.idempotent {
			name += "/idempotent"
		}
		b.Run(name, func(b *testing.B) {
			opts := testOptions(b.TempDir())
			opts.Defaults.Fsync = "always"
			opts.Defaults.SegmentBytes = 1 << 30
			h := openHub(b, opts)
			defer h.Close()
			ds, err := h.CreateDataset("d", DatasetConfig{Partitions: 1})
			if err != nil {
				b.Fatal(err)
			}
			p, _ := ds.Partition(0)
			value := make([]byte, 1024)
			for i := range value {
				value[i] = byte('a' + i%26)
			}
			vals := make([]string, 16)
			for i := range vals {
				vals[i] = string(value)
			}
			b.SetBytes(int64(len(vals) * len(value)))
			b.ReportAllocs()
			work := make(chan struct{}, producers)
			var wg sync.WaitGroup
			b.ResetTimer()
			for pr := range producers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := batch(b, vals...)
					seq := int32(0)
					for range work {
						if c.idempotent {
							buf = idempotentBatch(b, int64(1000+pr), 0, seq, vals...)
							seq += int32(len(vals))
						}
						if _, err := p.Produce(buf, true); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			for range b.N {
				work <- struct{}{}
			}
			close(work)
			wg.Wait()
			b.StopTimer()
			st := p.Log().Stats()
			b.ReportMetric(float64(st.Writes)/float64(max(st.Fsyncs, 1)), "writes/fsync")
			b.ReportMetric(float64(st.Appends)/float64(max(st.Fsyncs, 1)), "produces/fsync")
		})
	}
}

// TestProduceDurableWriteFailureSequence: when the write of an idempotent
// batch fails after the partition's lock was released, the producer's
// next batch, sent meanwhile (a producer with several requests in flight),
// is not stored after it: it is refused with ErrOutOfOrderSequence, the
// retry of the failed batch is stored, and then the retry of the next one,
// in sequence, as Kafka does. (Before, the next batch was stored, and the
// retry of the failed one was refused as out of sequence: the records
// were stored out of the producer's order and one batch never was.)
func TestProduceDurableWriteFailureSequence(t *testing.T) {
	disk := &diskFull{dataset: "d"}
	disk.opensLeft.Store(1 << 30)
	opts := testOptions(t.TempDir())
	opts.Defaults.Fsync = "always"
	opts.FS = disk.fs()
	h := openHub(t, opts)
	defer h.Close()
	ds, err := h.CreateDataset("d", DatasetConfig{Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ds.Partition(0)
	if _, err := p.Produce(idempotentBatch(t, 7, 0, 0, "first"), true); err != nil {
		t.Fatal(err)
	}
	type result struct {
		res ProduceResult
		err error
	}
	third := make(chan result, 1)
	var once sync.Once
	p.writeFailedHook = func() {
		once.Do(func() {
			// The failed write is known to the log, not yet to the
			// partition: the producer's next batch comes now.
			disk.full.Store(false)
			go func() {
				res, err := p.Produce(idempotentBatch(t, 7, 0, 2, "third"), true)
				third <- result{res, err}
			}()
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
				p.mu.Lock()
				waits := p.writeWaits
				p.mu.Unlock()
				if waits > 0 || len(third) > 0 {
					return
				}
				if time.Now().After(deadline) {
					t.Error("the next batch neither stored nor waiting within 10s")
					return
				}
			}
		})
	}
	disk.full.Store(true)
	if _, err := p.Produce(idempotentBatch(t, 7, 0, 1, "second"), true); !errors.Is(err, ErrStorage) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Produce on a full disk = %v, want ErrStorage wrapping ENOSPC", err)
	}
	if r := <-third; !errors.Is(r.err, ErrOutOfOrderSequence) {
		t.Fatalf("the batch after the failed one = %+v, %v; want ErrOutOfOrderSequence", r.res, r.err)
	}
	if res, err := p.Produce(idempotentBatch(t, 7, 0, 1, "second"), true); err != nil || res.Duplicate || res.BaseOffset != 1 {
		t.Fatalf("the retry of the failed batch = %+v, %v; want stored at offset 1", res, err)
	}
	if res, err := p.Produce(idempotentBatch(t, 7, 0, 2, "third"), true); err != nil || res.Duplicate || res.BaseOffset != 2 {
		t.Fatalf("the retry of the batch after it = %+v, %v; want stored at offset 2", res, err)
	}
	if got := values(t, p); fmt.Sprint(got) != "[first second third]" {
		t.Fatalf("the partition holds %q, want first, second and third", got)
	}
}
