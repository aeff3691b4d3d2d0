package hub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhub/weir/codecs"
)

// putKeyed writes records with keys to p: pairs of key and value, a value
// "" writing a delete.
func putKeyed(t testing.TB, p *Partition, kv ...string) {
	t.Helper()
	var b codecs.Builder
	for i := 0; i < len(kv); i += 2 {
		var v []byte
		if kv[i+1] != "" {
			v = []byte(kv[i+1])
		}
		b.Append(time.Now().UnixMilli(), []byte(kv[i]), v, nil)
	}
	out, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Produce(bytes.Clone(out), false); err != nil {
		t.Fatal(err)
	}
}

// gotEvent is what a test subscriber keeps of an event.
type gotEvent struct {
	Event
	json *byte // the first byte of the shared JSON, nil if not shared
}

// testSub is a subscription run by a test: it keeps every event, and its
// emit waits while gate is held.
type testSub struct {
	mu        sync.Mutex
	events    []gotEvent
	caughtUp  bool
	caughtUps int // OnCaughtUp calls
	gate      sync.Mutex
	done      chan error
	cancel    context.CancelFunc
}

func startSub(t *testing.T, h *Hub, dataset string, opts SubscribeOptions) *testSub {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &testSub{done: make(chan error, 1), cancel: cancel}
	opts.OnCaughtUp = func() error {
		s.mu.Lock()
		s.caughtUp = true
		s.caughtUps++
		s.mu.Unlock()
		return nil
	}
	go func() {
		s.done <- h.Subscribe(ctx, dataset, opts, func(e *Event) error {
			s.gate.Lock()
			defer s.gate.Unlock()
			g := gotEvent{Event: *e}
			g.Key, g.Value, g.Headers, g.JSON = bytes.Clone(e.Key), bytes.Clone(e.Value), nil, nil
			if len(e.JSON) > 0 {
				g.json = &e.JSON[0]
			}
			s.mu.Lock()
			s.events = append(s.events, g)
			s.mu.Unlock()
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		s.gate.TryLock()
		s.gate.Unlock()
		<-s.done
	})
	return s
}

// waitFor polls cond, under s.mu, until it holds.
func (s *testSub) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		s.mu.Lock()
		ok := cond()
		s.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s", what)
		}
	}
}

func (s *testSub) records() []gotEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []gotEvent
	for _, e := range s.events {
		if e.Type == EventRecord || e.Type == EventDelete {
			out = append(out, e)
		}
	}
	return out
}

// state applies the events to a map of key to value.
func state(evs []gotEvent) map[string]string {
	m := map[string]string{}
	for _, e := range evs {
		switch e.Type {
		case EventRecord:
			m[string(e.Key)] = string(e.Value)
		case EventDelete:
			delete(m, string(e.Key))
		}
	}
	return m
}

// TestSubscribeSharedFanout: subscriptions of a dataset that are caught up
// get every record of every partition once, in order, as the same event:
// one JSON encoding and one token for all of them.
func TestSubscribeSharedFanout(t *testing.T) {
	h := openHub(t, testOptions(t.TempDir()))
	defer h.Close()
	ds, err := h.CreateDataset("d", DatasetConfig{Partitions: 3})
	if err != nil {
		t.Fatal(err)
	}
	subs := make([]*testSub, 4)
	for i := range subs {
		subs[i] = startSub(t, h, "d", SubscribeOptions{From: FromLatest})
	}
	for _, s := range subs {
		s.waitFor(t, "caught up", func() bool { return s.caughtUp })
	}
	const n = 300
	for i := 0; i < n; i += 10 {
		p, _ := ds.Partition(int32(i / 10 % 3))
		var kv []string
		for j := i; j < i+10; j++ {
			kv = append(kv, fmt.Sprintf("k%d", j), fmt.Sprintf("v%d", j))
		}
		putKeyed(t, p, kv...)
	}
	for _, s := range subs {
		s.waitFor(t, "every record", func() bool { return len(s.events) >= n })
	}
	first := subs[0].records()
	for i, s := range subs {
		got := s.records()
		if len(got) != n {
			t.Fatalf("subscriber %d: %d events, want %d", i, len(got), n)
		}
		next := map[int32]int64{}
		for j, e := range got {
			if e.Offset < next[e.Partition] {
				t.Fatalf("subscriber %d: %d/%d after %d/%d", i, e.Partition, e.Offset, e.Partition, next[e.Partition]-1)
			}
			next[e.Partition] = e.Offset + 1
			if e.json == nil {
				t.Fatalf("subscriber %d: event %d/%d has no shared JSON", i, e.Partition, e.Offset)
			}
			if e.json != first[j].json || e.Token != first[j].Token || e.Offset != first[j].Offset {
				t.Fatalf("subscriber %d: event %d is %d/%d %q, subscriber 0's %d/%d %q (not the same event)",
					i, j, e.Partition, e.Offset, e.Token, first[j].Partition, first[j].Offset, first[j].Token)
			}
		}
		if st := state(got); len(st) != n {
			t.Fatalf("subscriber %d: %d keys, want %d", i, len(st), n)
		}
	}
	// The last token resumes after the last record: only what follows.
	last := first[n-1].Token
	r := startSub(t, h, "d", SubscribeOptions{Token: last})
	p, _ := ds.Partition(1)
	putKeyed(t, p, "after", "x")
	r.waitFor(t, "the record after", func() bool { return len(r.events) > 0 })
	if got := r.records(); len(got) != 1 || string(got[0].Key) != "after" {
		t.Fatalf("resumed from %s: %+v, want only the record after", last, got)
	}
}

// TestSubscribeFollowsAddedPartitions: a subscription follows partitions
// added to its dataset after it started, and its tokens cover them.
func TestSubscribeFollowsAddedPartitions(t *testing.T) {
	h := openHub(t, testOptions(t.TempDir()))
	defer h.Close()
	ds, err := h.CreateDataset("d", DatasetConfig{Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	s := startSub(t, h, "d", SubscribeOptions{From: FromLatest})
	s.waitFor(t, "caught up", func() bool { return s.caughtUp })
	if err := h.AddPartitions("d", 3); err != nil {
		t.Fatal(err)
	}
	p2, _ := ds.Partition(2)
	putKeyed(t, p2, "new", "1")
	s.waitFor(t, "the record of partition 2", func() bool { return len(s.events) > 0 })
	got := s.records()
	if len(got) != 1 || got[0].Partition != 2 || string(got[0].Key) != "new" {
		t.Fatalf("got %+v, want new=1 of partition 2", got)
	}
	if tok := got[0].Token; !strings.HasSuffix(tok, "-0.0.1") {
		t.Fatalf("token %q, want the 3 partitions' positions 0.0.1", tok)
	}
}

// TestSubscribeSlowSubscriberCoalesced: a subscriber that stops taking
// events slows neither the producer nor another subscriber; once it takes
// them again, the window has moved past it and it gets only the latest
// value of each key it missed, ending in the same state.
func TestSubscribeSlowSubscriberCoalesced(t *testing.T) {
	opts := testOptions(t.TempDir())
	opts.SubscribeBuffer = 16 << 10 // a few dozen events
	h := openHub(t, opts)
	defer h.Close()
	ds, err := h.CreateDataset("d", DatasetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ds.Partition(0)
	fast := startSub(t, h, "d", SubscribeOptions{From: FromLatest})
	slow := startSub(t, h, "d", SubscribeOptions{From: FromLatest})
	for _, s := range []*testSub{fast, slow} {
		s.waitFor(t, "caught up", func() bool { return s.caughtUp })
	}
	slow.gate.Lock() // its next emit waits
	putKeyed(t, p, "k0", "first")
	model := map[string]string{"k0": "first"}
	const keys, n = 20, 2000
	for i := 0; i < n; i += keys {
		var kv []string
		for j := i; j < i+keys; j++ {
			k, v := fmt.Sprintf("k%d", j%keys), fmt.Sprintf("v%d", j)
			kv = append(kv, k, v)
			model[k] = v
		}
		putKeyed(t, p, kv...)
	}
	// (The fast one may be lapped too: the producer outruns it.)
	fast.waitFor(t, "the fast subscriber's state while the slow one waits", func() bool { return fmt.Sprint(state(fast.events)) == fmt.Sprint(model) })
	slow.gate.Unlock()
	slow.waitFor(t, "the slow subscriber's state", func() bool { return fmt.Sprint(state(slow.events)) == fmt.Sprint(model) })
	got := slow.records()
	if len(got) >= n+1 {
		t.Fatalf("slow subscriber got %d events: not coalesced", len(got))
	}
	last := map[string]int64{}
	for _, e := range got {
		if o, ok := last[string(e.Key)]; ok && e.Offset <= o {
			t.Fatalf("key %s: offset %d after %d", e.Key, e.Offset, o)
		}
		last[string(e.Key)] = e.Offset
	}
	// Its last token resumes after everything.
	r := startSub(t, h, "d", SubscribeOptions{Token: got[len(got)-1].Token})
	putKeyed(t, p, "after", "x")
	r.waitFor(t, "the record after", func() bool { return len(r.events) > 0 })
	if got := r.records(); len(got) != 1 || string(got[0].Key) != "after" {
		t.Fatalf("resumed: %+v, want only the record after", got)
	}
}

// TestSubscribeSlowSubscriberPastBound: a subscriber that missed more
// distinct keys than it may hold gets EventResume and ErrSlowSubscriber;
// resuming with that event's token delivers the rest, without a reset.
func TestSubscribeSlowSubscriberPastBound(t *testing.T) {
	opts := testOptions(t.TempDir())
	opts.SubscribeBuffer = 16 << 10
	h := openHub(t, opts)
	defer h.Close()
	ds, err := h.CreateDataset("d", DatasetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ds.Partition(0)
	slow := startSub(t, h, "d", SubscribeOptions{From: FromLatest, CoalesceBytes: 8 << 10})
	slow.waitFor(t, "caught up", func() bool { return slow.caughtUp })
	slow.gate.Lock()
	putKeyed(t, p, "k0", "v0")
	model := map[string]string{"k0": "v0"}
	const n = 500
	for i := 1; i <= n; i += 50 {
		var kv []string
		for j := i; j < i+50; j++ {
			k, v := fmt.Sprintf("k%d", j), fmt.Sprintf("v%d", j)
			kv = append(kv, k, v)
			model[k] = v
		}
		putKeyed(t, p, kv...)
	}
	slow.gate.Unlock()
	var err2 error
	select {
	case err2 = <-slow.done:
		slow.done <- err2 // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatal("the slow subscription did not end")
	}
	if !errors.Is(err2, ErrSlowSubscriber) {
		t.Fatalf("Subscribe = %v, want ErrSlowSubscriber", err2)
	}
	slow.mu.Lock()
	evs := slow.events
	slow.mu.Unlock()
	end := evs[len(evs)-1]
	if end.Type != EventResume {
		t.Fatalf("last event %s, want %s", end.Type, EventResume)
	}
	r := startSub(t, h, "d", SubscribeOptions{Token: end.Token})
	r.waitFor(t, "the rest", func() bool { return fmt.Sprint(state(append(cloneEvents(evs), r.events...))) == fmt.Sprint(model) })
	for _, e := range r.events {
		if e.Type == EventReset {
			t.Fatalf("resuming %s reset", end.Token)
		}
	}
}

func cloneEvents(evs []gotEvent) []gotEvent { return append([]gotEvent(nil), evs...) }

// TestSubscribeFramedFanout: subscriptions that share a Framing get the
// live events as frames that the fan-out encoded once, those of several
// events in one EmitFrames call, byte for byte what Framing.Append makes
// of the events that a subscription without framing is given, in order;
// events before they follow the window (the snapshot) still go to emit.
func TestSubscribeFramedFanout(t *testing.T) {
	h := openHub(t, testOptions(t.TempDir()))
	defer h.Close()
	ds, err := h.CreateDataset("d", DatasetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ds.Partition(0)
	putKeyed(t, p, "old", "1")
	var appended atomic.Int64
	fm := &Framing{Append: func(dst []byte, e *Event) []byte {
		appended.Add(1)
		dst = fmt.Appendf(dst, "%s %s ", e.Type, e.Token)
		dst = AppendEventJSON(dst, e, false)
		return append(dst, '\n')
	}}
	plain := startSub(t, h, "d", SubscribeOptions{})
	type framed struct {
		mu     sync.Mutex
		frames bytes.Buffer
		calls  []int
	}
	var subs [3]*framed
	var tss []*testSub
	for i := range subs {
		f := &framed{}
		subs[i] = f
		tss = append(tss, startSub(t, h, "d", SubscribeOptions{Framing: fm, EmitFrames: func(b []byte, n int) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.frames.Write(b)
			f.calls = append(f.calls, n)
			return nil
		}}))
	}
	// Following the window: caught up after the snapshot, then in it.
	for _, s := range append(tss, plain) {
		s.waitFor(t, "the snapshot", func() bool { return s.caughtUps >= 2 })
	}
	const n = 500
	for i := 0; i < n; i += 100 {
		var kv []string
		for j := i; j < i+100; j++ {
			kv = append(kv, fmt.Sprintf("k%d", j), fmt.Sprintf(`{"n":%d}`, j))
		}
		putKeyed(t, p, kv...)
	}
	plain.waitFor(t, "the records", func() bool { return len(plain.events) == n+2 }) // and snapshot_end
	var want []byte
	for _, e := range plain.records()[1:] {
		want = fm.Append(want, &e.Event)
	}
	for i, f := range subs {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			f.mu.Lock()
			got := f.frames.Len()
			f.mu.Unlock()
			if got >= len(want) || time.Now().After(deadline) {
				break
			}
		}
		f.mu.Lock()
		if !bytes.Equal(f.frames.Bytes(), want) {
			t.Errorf("subscription %d got frames\n%.300s\nwant\n%.300s", i, f.frames.Bytes(), want)
		}
		total, most := 0, 0
		for _, k := range f.calls {
			total, most = total+k, max(most, k)
		}
		if total != n || most < 2 {
			t.Errorf("subscription %d: EmitFrames calls %v: want %d events, several in a call", i, f.calls, n)
		}
		f.mu.Unlock()
	}
	// Each live event framed once for the three (plus the calls above).
	if got := appended.Load(); got != 2*n {
		t.Errorf("Framing.Append called %d times, want %d: once per event by the fan-out, once by the test", got, 2*n)
	}
}
