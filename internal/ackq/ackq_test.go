package ackq

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"
)

func add(t *testing.T, tr *Tracker[string, int64], pos map[string]int64) *Batch[string, int64] {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := tr.Acquire(ctx); err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	return tr.Add(pos)
}

func done(t *testing.T, b *Batch[string, int64], err error) map[string]int64 {
	t.Helper()
	ready, _, ok := b.Done(err)
	if !ok {
		t.Fatal("Done of a batch not acknowledged before = not ok")
	}
	return ready
}

func TestInOrderPrefix(t *testing.T) {
	tr := New[string, int64](10)
	b1 := add(t, tr, map[string]int64{"a": 10})
	b2 := add(t, tr, map[string]int64{"a": 20, "b": 5})
	b3 := add(t, tr, map[string]int64{"b": 9})
	if got := done(t, b2, nil); got != nil {
		t.Errorf("Done(b2) before b1 = %v, want nothing ready", got)
	}
	if got, want := done(t, b1, nil), map[string]int64{"a": 20, "b": 5}; !maps.Equal(got, want) {
		t.Errorf("Done(b1) = %v, want %v", got, want)
	}
	if got := tr.Pending(); got != 1 {
		t.Errorf("Pending = %d, want 1", got)
	}
	if got, want := done(t, b3, nil), map[string]int64{"b": 9}; !maps.Equal(got, want) {
		t.Errorf("Done(b3) = %v, want %v", got, want)
	}
	if _, _, ok := b3.Done(nil); ok {
		t.Error("a second Done = ok, want ignored")
	}
	if got := tr.Pending(); got != 0 {
		t.Errorf("Pending = %d, want 0", got)
	}
}

func TestFailurePoisons(t *testing.T) {
	tr := New[string, int64](10)
	b1 := add(t, tr, map[string]int64{"a": 1})
	b2 := add(t, tr, map[string]int64{"a": 2})
	b3 := add(t, tr, map[string]int64{"a": 3})
	if got, want := done(t, b1, nil), map[string]int64{"a": 1}; !maps.Equal(got, want) {
		t.Errorf("Done(b1) = %v, want %v", got, want)
	}
	ready, poisoned, _ := b2.Done(errors.New("not stored"))
	if ready != nil || !poisoned || !tr.Poisoned() {
		t.Errorf("Done(b2, err) = %v, poisoned %v, want nothing and poisoned", ready, poisoned)
	}
	if got := done(t, b3, nil); got != nil {
		t.Errorf("Done(b3) after a failure = %v, want nothing ever again", got)
	}
	b4 := add(t, tr, map[string]int64{"a": 4})
	if got, poisoned, _ := b4.Done(errors.New("again")); got != nil || poisoned {
		t.Errorf("a second failure = %v, poisoned %v, want nothing and not newly poisoned", got, poisoned)
	}
}

func TestRevokeDropsEarlierGenerations(t *testing.T) {
	tr := New[string, int64](10)
	b1 := add(t, tr, map[string]int64{"a": 1})
	tr.Revoke()
	b2 := add(t, tr, map[string]int64{"b": 7})
	if got, want := done(t, b2, nil), map[string]int64(nil); !maps.Equal(got, want) {
		t.Errorf("Done(b2) behind b1 = %v", got)
	}
	if got, want := done(t, b1, nil), map[string]int64{"b": 7}; !maps.Equal(got, want) {
		t.Errorf("Done(b1) = %v, want only the new generation's %v", got, want)
	}
}

func TestCapacity(t *testing.T) {
	tr := New[string, int64](2)
	b1 := add(t, tr, map[string]int64{"a": 1})
	add(t, tr, map[string]int64{"a": 2})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tr.Acquire(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire beyond capacity = %v, want it to wait (context.Canceled)", err)
	}
	done(t, b1, nil)
	if err := tr.Acquire(context.Background()); err != nil {
		t.Fatalf("Acquire after a Done: %v", err)
	}
	tr.Release()
	if err := tr.Acquire(context.Background()); err != nil {
		t.Fatalf("Acquire after a Release: %v", err)
	}
}

// TestConcurrentAcks acknowledges many batches from many goroutines in
// any order: the positions ready, merged, end at the last batch's.
func TestConcurrentAcks(t *testing.T) {
	const n = 1000
	tr := New[string, int64](n)
	bs := make([]*Batch[string, int64], n)
	for i := range bs {
		bs[i] = add(t, tr, map[string]int64{fmt.Sprint(i % 3): int64(i + 1)})
	}
	results := make(chan map[string]int64, n)
	for i := n - 1; i >= 0; i-- {
		go func() {
			r, _, _ := bs[i].Done(nil)
			results <- r
		}()
	}
	final := map[string]int64{}
	for range n {
		for k, v := range <-results {
			final[k] = max(final[k], v)
		}
	}
	if want := map[string]int64{"0": 1000, "1": 998, "2": 999}; !maps.Equal(final, want) {
		t.Errorf("committed %v, want %v", final, want)
	}
	if tr.Pending() != 0 {
		t.Errorf("Pending = %d, want 0", tr.Pending())
	}
}

func BenchmarkAddDone(b *testing.B) {
	tr := New[string, int64](4)
	pos := map[string]int64{"a": 1}
	b.ReportAllocs()
	for b.Loop() {
		_ = tr.Acquire(context.Background())
		tr.Add(pos).Done(nil)
	}
}
