package hub

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirhub/weir/codecs"
)

// produceDelayedRecords produces n records, each due at its own time
// (from dues), in batches of 500: each becomes a batch of the delay
// partition. The value is "i@due".
func produceDelayedRecords(t testing.TB, p *Partition, ts int64, dues []int64) {
	t.Helper()
	for start := 0; start < len(dues); start += 500 {
		var b codecs.Builder
		for i := start; i < min(start+500, len(dues)); i++ {
			b.Append(ts, nil, fmt.Appendf(nil, "%d@%d", i, dues[i]),
				[]codecs.RecordHeader{{Key: []byte(HeaderDeliverAt), Value: strconv.AppendInt(nil, dues[i], 10)}})
		}
		out, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Produce(append([]byte(nil), out...), true); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDelayIndexWheel: records due over ten minutes go to the index on
// disk, of which only the seconds about to fall due are in memory; with
// the clock stepped by 250ms each is delivered once, never before it is
// due, in due order, across a restart of the hub and a crash (the index
// files and the delay partition as a kill leaves them).
func TestDelayIndexWheel(t *testing.T) {
	dir := t.TempDir()
	opts, now, start := delayTestOptions(dir)
	h := openHub(t, opts)
	ds, _ := h.CreateDataset("d", DatasetConfig{Partitions: 1})
	p, _ := ds.Partition(0)
	const n = 5000
	rng := rand.New(rand.NewPCG(1, 2))
	dues := make([]int64, n)
	for i := range dues {
		dues[i] = start.UnixMilli() + 5000 + rng.Int64N(10*time.Minute.Milliseconds())
	}
	produceDelayedRecords(t, p, start.UnixMilli(), dues)
	if got, _ := h.PendingDelayed("d"); got != n {
		t.Fatalf("PendingDelayed = %d, want %d", got, n)
	}
	q := h.delays.queues[p]
	q.mu.Lock()
	inMem, levels := len(q.idx.h), map[int]int{}
	for k := range q.idx.buckets {
		levels[k.level]++
	}
	q.mu.Unlock()
	if inMem != 0 || levels[1] == 0 || levels[0] == 0 {
		t.Fatalf("after the produce: %d entries in memory, buckets per level %v; want none in memory, buckets on both levels", inMem, levels)
	}
	seen := map[int]int{}
	var last, pos int64 // the latest due delivered, the next offset to read
	var fresh []int     // ids read by the last check
	allowed := map[int]bool{}
	check := func(upto int64) {
		t.Helper()
		fresh = fresh[:0]
		it := p.Log().NewIterator(pos)
		for it.Next() {
			r := it.Record()
			pos = r.Offset + 1
			v := string(r.Value)
			id, due, _ := strings.Cut(v, "@")
			idn, _ := strconv.Atoi(id)
			d, _ := strconv.ParseInt(due, 10, 64)
			if d > upto {
				t.Fatalf("record %s delivered at %d, before it is due", v, upto)
			}
			if d < last && !allowed[idn] {
				t.Fatalf("record %s delivered after one due at %d", v, last)
			}
			last = max(last, d)
			seen[idn]++
			fresh = append(fresh, idn)
			if seen[idn] > 1 && !allowed[idn] {
				t.Fatalf("record %s delivered twice", v)
			}
		}
		if it.Err() != nil {
			t.Fatal(it.Err())
		}
	}
	maxHeap := 0
	step := func(until int64) {
		for now.Load() < until {
			now.Add(250)
			h.DeliverDue()
			check(now.Load())
			q := h.delays.queues[p]
			q.mu.Lock()
			maxHeap = max(maxHeap, len(q.idx.h))
			q.mu.Unlock()
		}
	}
	step(start.Add(4 * time.Minute).UnixMilli())
	h.Close() // a restart
	h = openHub(t, opts)
	ds, _ = h.Dataset("d")
	p, _ = ds.Partition(0)
	step(start.Add(7 * time.Minute).UnixMilli())
	// A crash: the hub's files as they are, nothing flushed or closed.
	crashed := t.TempDir()
	if err := copyDir(dir, crashed); err != nil {
		t.Fatal(err)
	}
	h.Close()
	opts.DataDir = crashed
	h = openHub(t, opts)
	defer h.Close()
	ds, _ = h.Dataset("d")
	p, _ = ds.Partition(0)
	// Deliveries not recorded at the crash (those of its last step at
	// most) may come again: at least once.
	for _, id := range fresh {
		allowed[id] = true
	}
	clear(seen)
	last, pos = 0, 0
	check(now.Load()) // what the copy holds
	step(start.Add(11 * time.Minute).UnixMilli())
	for i := range n {
		if seen[i] != 1 && !(allowed[i] && seen[i] == 2) {
			t.Fatalf("record %d delivered %d times", i, seen[i])
		}
	}
	if pend, _ := h.PendingDelayed("d"); pend != 0 {
		t.Fatalf("%d still pending after all fell due", pend)
	}
	if maxHeap > n/100 {
		t.Fatalf("%d entries in memory at most; the seconds about to fall due hold about %d", maxHeap, n/600)
	}
}

// copyDir copies the files under src to dst as they are at the moment.
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		if de.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed meanwhile
		}
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
}

// TestDelayedDeliveryAcrossRestart: records with random delays, on the
// real clock, each appear in their dataset once, never before they are
// due, across a restart of the hub half way. It logs the lateness; with
// WEIR_DELAY_FULL=1 it is the full proof (100,000 records, delays up to a
// minute) and fails when the p99 lateness passes 100ms. The default is
// scaled down (5,000 records, up to 4s) for `make test`.
func TestDelayedDeliveryAcrossRestart(t *testing.T) {
	n, maxDelay := 5000, 4*time.Second
	full := os.Getenv("WEIR_DELAY_FULL") == "1"
	if full {
		n, maxDelay = 100_000, time.Minute
	}
	opts := testOptions(t.TempDir())
	opts.DelayedDelivery = true
	h := openHub(t, opts)
	ds, _ := h.CreateDataset("d", DatasetConfig{Partitions: 1})
	p, _ := ds.Partition(0)
	rng := rand.New(rand.NewPCG(3, 4))
	now := time.Now().UnixMilli()
	dues := make([]int64, n)
	for i := range dues {
		dues[i] = now + 1 + rng.Int64N(maxDelay.Milliseconds())
	}
	produceDelayedRecords(t, p, now, dues)
	late := make([]time.Duration, 0, n)
	seen := make([]int, n)
	var pos int64
	got := 0
	read := func() {
		it := p.Log().NewIterator(pos)
		for it.Next() {
			at := time.Now()
			r := it.Record()
			pos = r.Offset + 1
			id, _, _ := strings.Cut(string(r.Value), "@")
			i, _ := strconv.Atoi(id)
			seen[i]++
			if seen[i] > 1 {
				t.Fatalf("record %s delivered twice", r.Value)
			}
			if at.UnixMilli() < dues[i] {
				t.Fatalf("record %s appeared at %d, before it was due", r.Value, at.UnixMilli())
			}
			late = append(late, at.Sub(time.UnixMilli(dues[i])))
			got++
		}
		if it.Err() != nil {
			t.Fatal(it.Err())
		}
	}
	restartAt := time.UnixMilli(now).Add(maxDelay / 2)
	deadline := time.UnixMilli(now).Add(maxDelay + time.Minute)
	restarted := false
	var restartTook time.Duration
	for got < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d records delivered a minute after the last was due", got, n)
		}
		if !restarted && time.Now().After(restartAt) {
			t0 := time.Now()
			h.Close()
			h = openHub(t, opts)
			ds, _ = h.Dataset("d")
			p, _ = ds.Partition(0)
			restarted, restartTook = true, time.Since(t0)
		}
		read()
		time.Sleep(time.Millisecond) // polling the log; the wait bounds the lateness measured
	}
	h.Close()
	slices.Sort(late)
	p50, p99, worst := late[len(late)/2], late[len(late)*99/100], late[len(late)-1]
	t.Logf("%d records, delays up to %v, a restart at half way (%v): each delivered once, none early; lateness p50 %v, p99 %v, max %v",
		n, maxDelay, restartTook, p50, p99, worst)
	if full && p99 > 100*time.Millisecond {
		t.Fatalf("p99 lateness %v, over 100ms", p99)
	}
}
