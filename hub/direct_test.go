package hub

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// directSink is a subscription's connection in the tests of direct
// delivery: TryWrite takes at most take bytes a call (all if take < 0,
// none while blocked), EmitFrames and emit write what is left, waiting
// while gate is held.
type directSink struct {
	mu       sync.Mutex
	out      bytes.Buffer
	take     int
	blocked  bool
	tried    int // TryWrite calls that wrote something
	emitted  int // EmitFrames calls
	idles    int
	gate     sync.Mutex
	inWriter atomic.Int32 // TryWrite calls in progress, to catch two at once
	caughtUp bool
}

func (k *directSink) tryWrite(bufs [][]byte) (int, error) {
	if k.inWriter.Add(1) != 1 {
		panic("TryWrite called by two goroutines at once")
	}
	defer k.inWriter.Add(-1)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.blocked {
		return 0, nil
	}
	n := 0
	for _, b := range bufs {
		if k.take >= 0 && n+len(b) > k.take {
			b = b[:k.take-n]
		}
		k.out.Write(b)
		n += len(b)
	}
	if n > 0 {
		k.tried++
	}
	return n, nil
}

func (k *directSink) write(b []byte) error {
	k.gate.Lock()
	defer k.gate.Unlock()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.out.Write(b)
	return nil
}

func (k *directSink) bytes() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.out.String()
}

// options are the subscription options of a subscription writing to k in
// framing fm.
func (k *directSink) options(fm *Framing, heartbeat time.Duration) SubscribeOptions {
	return SubscribeOptions{From: FromLatest, Framing: fm, Heartbeat: heartbeat,
		EmitFrames: func(b []byte, n int) error {
			k.mu.Lock()
			k.emitted++
			k.mu.Unlock()
			return k.write(b)
		},
		TryWrite: k.tryWrite,
		OnIdle: func() error {
			k.mu.Lock()
			k.idles++
			k.mu.Unlock()
			return k.write([]byte("idle\n"))
		}}
}

// start subscribes with opts until the test ends, every event going to
// k: the frames through TryWrite and EmitFrames, the other events framed
// by emit. It returns the subscription's end.
func (k *directSink) start(t *testing.T, h *Hub, opts SubscribeOptions) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	opts.OnCaughtUp = func() error {
		k.mu.Lock()
		k.caughtUp = true
		k.mu.Unlock()
		return nil
	}
	go func() {
		done <- h.Subscribe(ctx, "d", opts, func(e *Event) error {
			return k.write(testFraming.Append(nil, e))
		})
	}()
	t.Cleanup(func() {
		cancel()
		k.unblock()
		<-done
	})
	return done
}

// block makes the connection stuck: TryWrite takes nothing, and the
// subscription's own writes wait until unblock.
func (k *directSink) block() {
	k.gate.Lock()
	k.mu.Lock()
	k.blocked = true
	k.mu.Unlock()
}

func (k *directSink) unblock() {
	k.mu.Lock()
	was := k.blocked
	k.blocked = false
	k.mu.Unlock()
	if was {
		k.gate.Unlock()
	}
}

// waitFor polls cond, under k.mu, until it holds.
func (k *directSink) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		k.mu.Lock()
		ok := cond()
		k.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s; got\n%.300s", what, k.bytes())
		}
	}
}

// testFraming frames an event as "type token key=value\n".
var testFraming = &Framing{Append: func(dst []byte, e *Event) []byte {
	return fmt.Appendf(dst, "%s %s %s=%s\n", e.Type, e.Token, e.Key, e.Value)
}}

// TestSubscribeDirectWriters: subscriptions that can write without
// blocking get their live events from the fan-out's writers: every
// event once, in order, with the shared tokens, byte for byte what a
// subscription woken for each batch gets; one whose connection takes a
// few bytes a write gets the rest from its own goroutine; one whose
// connection is stuck holds up neither the others nor the producer, and
// gets everything when it drains.
func TestSubscribeDirectWriters(t *testing.T) {
	h := openHub(t, testOptions(t.TempDir()))
	defer h.Close()
	ds, err := h.CreateDataset("d", DatasetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ds.Partition(0)
	putKeyed(t, p, "old", "0")
	// The reference: framed, without TryWrite (woken for each batch).
	ref := &directSink{take: -1}
	refOpts := ref.options(testFraming, time.Hour)
	refOpts.TryWrite = nil
	var dones []<-chan error
	dones = append(dones, ref.start(t, h, refOpts))
	fast := make([]*directSink, 4)
	for i := range fast {
		fast[i] = &directSink{take: -1}
		dones = append(dones, fast[i].start(t, h, fast[i].options(testFraming, time.Hour)))
	}
	partial := &directSink{take: 7}
	dones = append(dones, partial.start(t, h, partial.options(testFraming, time.Hour)))
	stuck := &directSink{take: -1}
	dones = append(dones, stuck.start(t, h, stuck.options(testFraming, time.Hour)))
	for _, k := range append(fast, ref, partial, stuck) {
		k.waitFor(t, "caught up", func() bool { return k.caughtUp })
	}
	stuck.block()
	const n = 3000
	for i := 0; i < n; i += 100 {
		var kv []string
		for j := i; j < i+100; j++ {
			kv = append(kv, "k"+strconv.Itoa(j), strconv.Itoa(j))
		}
		putKeyed(t, p, kv...)
		time.Sleep(time.Millisecond) // several passes
	}
	waitBytes := func(k *directSink, what string, lines int) string {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			got := k.bytes()
			if strings.Count(got, "\n") >= lines {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d events of %d after 30 s", what, strings.Count(got, "\n"), lines)
			}
		}
	}
	refOut := waitBytes(ref, "the reference", n)
	// Every record, in order, with tokens whose offsets grow.
	lines := strings.Split(strings.TrimSuffix(refOut, "\n"), "\n")
	if len(lines) != n {
		t.Fatalf("the reference got %d events, want %d", len(lines), n)
	}
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) != 3 || f[0] != EventRecord || f[2] != fmt.Sprintf("k%d=%d", i, i) ||
			!strings.HasSuffix(f[1], "-"+strconv.Itoa(i+2)) {
			t.Fatalf("reference event %d: %q", i, l)
		}
	}
	// The others get the same bytes, while stuck is stuck.
	for i, k := range append(fast, partial) {
		if got := waitBytes(k, fmt.Sprintf("subscription %d", i), n); got != refOut {
			t.Errorf("subscription %d got\n%.400s\nwant\n%.400s", i, got, refOut)
		}
	}
	for i, k := range fast {
		k.mu.Lock()
		if k.tried == 0 {
			t.Errorf("fast subscription %d: no event came from a writer (TryWrite)", i)
		}
		k.mu.Unlock()
	}
	partial.mu.Lock()
	if partial.tried == 0 || partial.emitted == 0 {
		t.Errorf("partial subscription: %d writes by writers, %d by its goroutine: want both", partial.tried, partial.emitted)
	}
	partial.mu.Unlock()
	if got := strings.Count(stuck.bytes(), "\n"); got >= n {
		t.Errorf("the stuck subscription got all %d events while stuck", got)
	}
	// Unstuck, it gets everything.
	stuck.unblock()
	if got := waitBytes(stuck, "the stuck subscription", n); got != refOut {
		t.Errorf("the stuck subscription got\n%.400s\nwant\n%.400s", got, refOut)
	}
	for _, done := range dones {
		select {
		case err := <-done:
			t.Fatalf("a subscription ended: %v", err)
		default:
		}
	}
}

// frameLines parses the output of testFraming: per line, the type, the
// token's last offset and "key=value".
func frameLines(t *testing.T, out string) (types []string, offs []int64, kvs []string) {
	t.Helper()
	for l := range strings.Lines(out) {
		f := strings.Fields(l)
		if len(f) == 1 && f[0] == "idle" {
			continue
		}
		if len(f) < 2 {
			t.Fatalf("line %q", l)
		}
		off, err := strconv.ParseInt(f[1][strings.LastIndexAny(f[1], "-.")+1:], 10, 64)
		if err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		kv := ""
		if len(f) > 2 {
			kv = f[2]
		}
		types, offs, kvs = append(types, f[0]), append(offs, off), append(kvs, kv)
	}
	return types, offs, kvs
}

// TestSubscribeDirectLapped: a parked subscription idles with heartbeats;
// when the window moves past it while its connection is stuck, it
// catches up from the log from just after the last event the writers
// gave it (no event twice, none missing: the latest value of every key),
// and its tokens resume where it stopped.
func TestSubscribeDirectLapped(t *testing.T) {
	opts := testOptions(t.TempDir())
	opts.SubscribeBuffer = 16 << 10
	h := openHub(t, opts)
	defer h.Close()
	ds, err := h.CreateDataset("d", DatasetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ds.Partition(0)
	k := &directSink{take: -1}
	done := k.start(t, h, k.options(testFraming, 20*time.Millisecond))
	k.waitFor(t, "a heartbeat while parked", func() bool { return k.idles >= 2 })
	want := map[string]string{}
	put := func(from, to, keys int) {
		for i := from; i < to; i += 10 {
			var kv []string
			for j := i; j < min(i+10, to); j++ {
				key, v := fmt.Sprintf("k%d", j%keys), strconv.Itoa(j)
				kv = append(kv, key, v)
				want[key] = v
			}
			putKeyed(t, p, kv...)
		}
	}
	for i := 0; i < 200; i += 10 {
		put(i, i+10, 1000)
		k.waitFor(t, "the first events", func() bool { return strings.Count(k.out.String(), "record") == i+10 })
	}
	k.mu.Lock()
	if k.tried == 0 {
		t.Error("no event came from a writer")
	}
	k.mu.Unlock()
	h.fanMu.Lock()
	f := h.fanouts[ds]
	h.fanMu.Unlock()
	p0 := f.published.Load()
	k.block()
	put(200, 5000, 100) // far more than the window holds
	// The shared reader must have read them all before the connection
	// comes unstuck: a reader that had not moved the window past the
	// subscription yet would let it keep up, every event delivered.
	for deadline := time.Now().Add(30 * time.Second); f.published.Load() < p0+4800; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the fan-out published %d events of 4800 in 30 s", f.published.Load()-p0)
		}
	}
	k.unblock()
	k.waitFor(t, "the latest values", func() bool { return strings.Contains(k.out.String(), "=4999\n") })
	types, offs, kvs := frameLines(t, k.bytes())
	got := map[string]string{}
	last := int64(0)
	for i, typ := range types {
		if typ != EventRecord {
			t.Fatalf("event %d is %s", i, typ)
		}
		if offs[i] <= last {
			t.Fatalf("event %d (%s) has offset %d after %d: an event twice or out of order", i, kvs[i], offs[i], last)
		}
		last = offs[i]
		kk, v, _ := strings.Cut(kvs[i], "=")
		got[kk] = v
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("state %v\nwant %v", got, want)
	}
	if len(types) >= 5000 {
		t.Errorf("%d events: the lapped subscription was not coalesced", len(types))
	}
	select {
	case err := <-done:
		t.Fatalf("the subscription ended: %v", err)
	default:
	}
	// Its last token resumes with nothing more to get, and then the next
	// record. Heartbeats ("idle") may follow the last record.
	var tok string
	for l := range strings.Lines(k.bytes()) {
		if f := strings.Fields(l); len(f) >= 2 {
			tok = f[1]
		}
	}
	r := &directSink{take: -1}
	ro := r.options(testFraming, time.Hour)
	ro.Token = tok
	r.start(t, h, ro)
	r.waitFor(t, "caught up", func() bool { return r.caughtUp })
	put(5000, 5001, 100)
	r.waitFor(t, "the next record", func() bool { return strings.Contains(r.out.String(), "=5000\n") })
	if types, _, kvs := frameLines(t, r.bytes()); len(types) != 1 || kvs[0] != "k0=5000" {
		t.Errorf("resumed with %s: got %v %v, want the one record after it", tok, types, kvs)
	}
}

// TestSubscribeDirectExtends: events published while a writer's pass is
// under way go, in the same write, to the subscriptions the pass has not
// written yet (one write where there were two): the first subscription's
// write of k1 waits until k2 is published; the second then gets k1 and
// k2 in one TryWrite.
func TestSubscribeDirectExtends(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1)) // one writer: both subscriptions are its
	opts := testOptions(t.TempDir())
	opts.SubscribeProcs = 2 // the writer waits in TryWrite for the reader to publish k2
	h := openHub(t, opts)
	defer h.Close()
	ds, err := h.CreateDataset("d", DatasetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ds.Partition(0)
	first, second := &directSink{take: -1}, &directSink{take: -1}
	var secondWrites []string
	var once sync.Once
	firstOpts := first.options(testFraming, time.Hour)
	firstOpts.TryWrite = func(bufs [][]byte) (int, error) {
		if bytes.Contains(bytes.Join(bufs, nil), []byte("k1=")) {
			once.Do(func() {
				putKeyed(t, p, "k2", "2")
				h.fanMu.Lock()
				f := h.fanouts[ds]
				h.fanMu.Unlock()
				for deadline := time.Now().Add(30 * time.Second); f.published.Load() < 2; time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						panic("k2 not published after 30 s")
					}
				}
			})
		}
		return first.tryWrite(bufs)
	}
	secondOpts := second.options(testFraming, time.Hour)
	secondOpts.TryWrite = func(bufs [][]byte) (int, error) {
		n, err := second.tryWrite(bufs)
		second.mu.Lock()
		secondWrites = append(secondWrites, string(bytes.Join(bufs, nil)))
		second.mu.Unlock()
		return n, err
	}
	parked := func(n int) {
		t.Helper()
		h.fanMu.Lock()
		f := h.fanouts[ds]
		h.fanMu.Unlock()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
			f.writers[0].mu.Lock()
			got := len(f.writers[0].subs)
			f.writers[0].mu.Unlock()
			if got == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d subscriptions parked, want %d", got, n)
			}
		}
	}
	first.start(t, h, firstOpts)
	first.waitFor(t, "caught up", func() bool { return first.caughtUp })
	parked(1)
	second.start(t, h, secondOpts)
	second.waitFor(t, "caught up", func() bool { return second.caughtUp })
	parked(2)
	putKeyed(t, p, "k1", "1")
	second.waitFor(t, "k2", func() bool { return strings.Contains(second.out.String(), "k2=2") })
	first.waitFor(t, "k2", func() bool { return strings.Contains(first.out.String(), "k2=2") })
	for i, k := range []*directSink{first, second} {
		if _, _, kvs := frameLines(t, k.bytes()); strings.Join(kvs, " ") != "k1=1 k2=2" {
			t.Errorf("subscription %d got %q, want k1=1 k2=2", i, kvs)
		}
	}
	second.mu.Lock()
	defer second.mu.Unlock()
	if len(secondWrites) != 1 {
		t.Errorf("the second subscription's writes: %q, want k1 and k2 in one", secondWrites)
	}
}

// TestSubscribeDirectNotLapped: when the writers are what holds delivery
// up (here a connection that takes everything, but 50 ms a write), the
// shared reader takes turns with them (Options.SubscribeProcs) instead
// of filling the window past the subscription: it gets every event, in
// order, and no resume, though the window holds a fraction of them.
func TestSubscribeDirectNotLapped(t *testing.T) {
	opts := testOptions(t.TempDir())
	opts.SubscribeBuffer = 1536 << 10
	opts.SubscribeProcs = 1
	h := openHub(t, opts)
	defer h.Close()
	ds, err := h.CreateDataset("d", DatasetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ds.Partition(0)
	k := &directSink{take: -1}
	so := k.options(testFraming, time.Hour)
	so.CoalesceBytes = 64 << 10
	so.TryWrite = func(bufs [][]byte) (int, error) {
		time.Sleep(50 * time.Millisecond)
		return k.tryWrite(bufs)
	}
	k.start(t, h, so)
	k.waitFor(t, "caught up", func() bool { return k.caughtUp })
	const n = 20000
	for i := 0; i < n; i += 100 {
		var kv []string
		for j := i; j < i+100; j++ {
			kv = append(kv, "k"+strconv.Itoa(j), strconv.Itoa(j))
		}
		putKeyed(t, p, kv...)
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		out := k.bytes()
		if strings.HasPrefix(out, EventResume+" ") || strings.Contains(out, "\n"+EventResume+" ") {
			t.Fatalf("the subscription was lapped: %s after %d events", EventResume, strings.Count(out, "\n")-1)
		}
		if strings.Count(out, "\n") >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events of %d after 60 s", strings.Count(k.bytes(), "\n"), n)
		}
	}
	types, offs, kvs := frameLines(t, k.bytes())
	for i := range types {
		if types[i] != EventRecord || offs[i] != int64(i+1) || kvs[i] != fmt.Sprintf("k%d=%d", i, i) {
			t.Fatalf("event %d: %s %d %s", i, types[i], offs[i], kvs[i])
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.tried == 0 {
		t.Error("no event came from a writer")
	}
}

// TestSubscribeInvalidatedAtWindowStart: a subscription sitting exactly
// at the start of the shared window (the window empty, or the
// subscription at its head) when the reader drops the window (records
// were deleted before it read them) gets a reset, as one behind it does,
// never a silent gap: a parked one (direct delivery) and one waiting in
// its own goroutine alike.
func TestSubscribeInvalidatedAtWindowStart(t *testing.T) {
	h := openHub(t, testOptions(t.TempDir()))
	ds, err := h.CreateDataset("d", DatasetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ds.Partition(0)
	plain := startSub(t, h, "d", SubscribeOptions{From: FromLatest})
	k := &directSink{take: -1}
	k.start(t, h, k.options(testFraming, time.Hour))
	resets := func(s string) int { return strings.Count("\n"+s, "\n"+EventReset+" ") }
	for round, next := 1, 0; round <= 2; round++ {
		plain.waitFor(t, "caught up", func() bool { return plain.caughtUp })
		// Parked with a writer.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			h.fanMu.Lock()
			f := h.fanouts[ds]
			h.fanMu.Unlock()
			parked := 0
			for _, w := range f.writers {
				w.mu.Lock()
				parked += len(w.subs)
				w.mu.Unlock()
			}
			if parked == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d subscriptions parked, want 1", round, parked)
			}
		}
		// The fan-out's reader and writers wait while the test holds
		// their processors: the records below are deleted before the
		// reader reads them.
		h.fanMu.Lock()
		cpu := h.fanCPU
		h.fanMu.Unlock()
		for range cap(cpu) {
			cpu <- struct{}{}
		}
		gone, kept := "gone"+strconv.Itoa(round), "kept"+strconv.Itoa(round)
		putKeyed(t, p, gone, "1")
		putKeyed(t, p, kept, "2")
		if _, err := p.DeleteRecords(p.HighWatermark() - 1); err != nil {
			t.Fatal(err)
		}
		last := "last" + strconv.Itoa(round)
		putKeyed(t, p, last, "3")
		plain.mu.Lock()
		plain.caughtUp = false
		plain.mu.Unlock()
		for range cap(cpu) {
			<-cpu
		}
		plain.waitFor(t, "round "+strconv.Itoa(round)+"'s last record", func() bool {
			for _, e := range plain.events[next:] {
				if string(e.Key) == last {
					return true
				}
			}
			return false
		})
		n := 0
		for _, e := range plain.events[next:] {
			if e.Type == EventReset {
				n++
			}
			if string(e.Key) == gone {
				t.Errorf("round %d: the subscription got %s, deleted", round, gone)
			}
		}
		if n != 1 {
			t.Errorf("round %d: the subscription got %d resets, want 1: %v", round, n, plain.events[next:])
		}
		plain.mu.Lock()
		next = len(plain.events)
		plain.mu.Unlock()
		k.waitFor(t, "round "+strconv.Itoa(round)+"'s last record", func() bool { return strings.Contains(k.out.String(), " "+last+"=3\n") })
		if got := resets(k.bytes()); got != round {
			t.Errorf("round %d: the parked subscription got %d resets, want %d:\n%s", round, got, round, k.bytes())
		}
		if strings.Contains(k.bytes(), " "+gone+"=") {
			t.Errorf("round %d: the parked subscription got %s, deleted:\n%s", round, gone, k.bytes())
		}
	}
}
