package hub

import (
	"bytes"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhub/weir/codecs"
)

func headerBatch(t testing.TB, ts int64, value string, hdrs ...string) []byte {
	t.Helper()
	var b codecs.Builder
	var hs []codecs.RecordHeader
	for i := 0; i < len(hdrs); i += 2 {
		hs = append(hs, codecs.RecordHeader{Key: []byte(hdrs[i]), Value: []byte(hdrs[i+1])})
	}
	b.Append(ts, nil, []byte(value), hs)
	out, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(out)
}

// waitValues waits until the partition holds want (the mover runs on its
// own too, so a test only knows what is there, not who moved it).
func waitValues(t *testing.T, h *Hub, p *Partition, want ...string) {
	t.Helper()
	for range 200 {
		h.DeliverDue()
		if got := values(t, p); slices.Equal(got, want) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("partition holds %v, want %v", values(t, p), want)
}

// delayTestOptions is testOptions(dir) with delayed delivery on and a
// clock the test steps: now, in Unix milliseconds, starts at start (an
// hour ahead, on a whole second).
func delayTestOptions(dir string) (opts Options, now *atomic.Int64, start time.Time) {
	now = new(atomic.Int64)
	start = time.Now().Add(time.Hour).Truncate(time.Second)
	now.Store(start.UnixMilli())
	opts = testOptions(dir)
	opts.DelayedDelivery = true
	opts.Now = func() time.Time { return time.UnixMilli(now.Load()) }
	return opts, now, start
}

// TestDelayedDelivery: records with weir.delay or weir.deliver_at (Unix
// milliseconds or RFC 3339) are acknowledged at once, kept out of their
// dataset until due, then appended in due order without their delay
// headers, while records without them pass at once; pending records
// survive restarts and are delivered once.
func TestDelayedDelivery(t *testing.T) {
	dir := t.TempDir()
	opts, now, start := delayTestOptions(dir)
	h := openHub(t, opts)
	ds, _ := h.CreateDataset("d", DatasetConfig{Partitions: 1})
	p, _ := ds.Partition(0)
	ts := start.UnixMilli()
	produce := func(b []byte) {
		t.Helper()
		if _, err := p.Produce(b, true); err != nil {
			t.Fatal(err)
		}
	}
	produce(headerBatch(t, ts, "now1"))
	produce(headerBatch(t, ts, "late", HeaderDelay, "10s", "other", "kept"))
	produce(headerBatch(t, ts, "soon", HeaderDeliverAt, strconv.FormatInt(ts+5000, 10)))
	produce(headerBatch(t, ts, "rfc", HeaderDeliverAt, start.Add(7*time.Second).Format(time.RFC3339)))
	produce(headerBatch(t, ts, "past", HeaderDeliverAt, strconv.FormatInt(ts-5000, 10)))
	produce(headerBatch(t, ts, "now2"))
	// A batch mixing records due now and later: the first is not held back.
	var mixed codecs.Builder
	mixed.Append(ts, nil, []byte("mixed-now"), nil)
	mixed.Append(ts, nil, []byte("mixed-late"), []codecs.RecordHeader{{Key: []byte(HeaderDelay), Value: []byte("6s")}})
	mb, _ := mixed.Build()
	produce(bytes.Clone(mb))
	if _, err := p.Produce(headerBatch(t, ts, "bad", HeaderDelay, "soon"), true); err == nil {
		t.Fatal("a record with an unreadable weir.delay was accepted")
	}
	waitValues(t, h, p, "now1", "past", "now2", "mixed-now")
	if n, next := h.PendingDelayed("d"); n != 4 || !next.Equal(start.Add(5*time.Second)) {
		t.Fatalf("PendingDelayed = %d, %v; want 3, %v", n, next, start.Add(5*time.Second))
	}
	now.Add(4999)
	if n := h.DeliverDue(); n != 0 {
		t.Fatalf("delivered %d batches early", n)
	}
	now.Add(1)
	waitValues(t, h, p, "now1", "past", "now2", "mixed-now", "soon")
	h.Close()

	h = openHub(t, opts)
	ds, _ = h.Dataset("d")
	p, _ = ds.Partition(0)
	if n, _ := h.PendingDelayed("d"); n != 3 {
		t.Fatalf("%d batches pending after a restart, want 3", n)
	}
	now.Add(1000)
	waitValues(t, h, p, "now1", "past", "now2", "mixed-now", "soon", "mixed-late")
	now.Add(1000)
	waitValues(t, h, p, "now1", "past", "now2", "mixed-now", "soon", "mixed-late", "rfc")
	now.Add(3000)
	waitValues(t, h, p, "now1", "past", "now2", "mixed-now", "soon", "mixed-late", "rfc", "late")
	dds, _ := h.Dataset(DelayPrefix + "d")
	dp, _ := dds.Partition(0)
	for i := 0; i < 100 && dp.StartOffset() != dp.HighWatermark(); i++ {
		time.Sleep(10 * time.Millisecond) // the mover records deliveries every 100ms
	}
	if dp.StartOffset() != dp.HighWatermark() {
		t.Fatalf("the delay partition keeps delivered records: start %d, end %d", dp.StartOffset(), dp.HighWatermark())
	}
	it := p.Log().NewIterator(0)
	for it.Next() {
		r := it.Record()
		if string(r.Value) == "late" {
			if len(r.Headers) != 1 || string(r.Headers[0].Key) != "other" {
				t.Fatalf("a delivered record's headers: %v", r.Headers)
			}
		}
	}
	h.Close()

	h = openHub(t, opts)
	defer h.Close()
	ds, _ = h.Dataset("d")
	p, _ = ds.Partition(0)
	now.Add(time.Hour.Milliseconds())
	if n := h.DeliverDue(); n != 0 {
		t.Fatalf("delivered %d batches again after a restart", n)
	}
	if got := values(t, p); len(got) != 8 {
		t.Fatalf("after the last restart: %v", got)
	}

	// An idempotent producer's sequence goes on across delayed batches.
	pid, epoch, _ := h.InitProducerID("", -1, -1)
	var b codecs.Builder
	b.SetProducer(pid, epoch, 0)
	b.Append(now.Load(), nil, []byte("idem-late"), []codecs.RecordHeader{{Key: []byte(HeaderDelay), Value: []byte("1s")}})
	first, _ := b.Build()
	if _, err := p.Produce(bytes.Clone(first), true); err != nil {
		t.Fatal(err)
	}
	if r, err := p.Produce(bytes.Clone(first), true); err != nil || !r.Duplicate {
		t.Fatalf("a retried delayed batch: %+v, %v", r, err)
	}
	if _, err := p.Produce(idempotentBatch(t, pid, epoch, 1, "idem-now"), true); err != nil {
		t.Fatalf("the next batch of the sequence: %v", err)
	}
	now.Add(1000)
	waitValues(t, h, p, "now1", "past", "now2", "mixed-now", "soon", "mixed-late", "rfc", "late", "idem-now", "idem-late")
}
