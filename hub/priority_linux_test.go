package hub

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// threadNices returns the nice values of this process's threads (field
// 19 of /proc/self/task/TID/stat) but its main thread (which the runtime
// keeps, idle, when a goroutine locked to it ends), and that one's.
func threadNices(t *testing.T) (nices []int, main int) {
	t.Helper()
	stats, err := filepath.Glob("/proc/self/task/*/stat")
	if err != nil {
		t.Fatal(err)
	}
	main = -100
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // the thread ended
		}
		_, rest, _ := strings.Cut(string(b), ") ")
		f := strings.Fields(rest)
		if len(f) <= 16 {
			continue
		}
		n, err := strconv.Atoi(f[16])
		if err != nil {
			t.Fatalf("%s: %q", path, b)
		}
		if filepath.Base(filepath.Dir(path)) == strconv.Itoa(os.Getpid()) {
			main = n
			continue
		}
		nices = append(nices, n)
	}
	return nices, main
}

// niceThreads counts the threads at nice.
func niceThreads(t *testing.T, nice int) int {
	nices, _ := threadNices(t)
	n := 0
	for _, x := range nices {
		if x == nice {
			n++
		}
	}
	return n
}

// TestSubscribeNice: the shared reader and writers of a dataset's
// subscriptions run on threads of their own whose nice value is the
// hub's own plus Options.SubscribeNice (10 by default, at most 19),
// which end with them; with a negative value, at the hub's own priority.
// A thread's priority is never raised (a hub run at nice 19 keeps every
// thread there).
func TestSubscribeNice(t *testing.T) {
	// The test's own thread's nice value: the hub's.
	runtime.LockOSThread()
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	base := 20 - prio
	for _, nice := range []int{0, -1} {
		opts := testOptions(t.TempDir())
		opts.SubscribeNice = nice
		h := openHub(t, opts)
		if _, err := h.CreateDataset("d", DatasetConfig{}); err != nil {
			t.Fatal(err)
		}
		at := min(19, base+10)
		before := niceThreads(t, at)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		caughtUp := make(chan struct{}, 1)
		go func() {
			done <- h.Subscribe(ctx, "d", SubscribeOptions{From: FromLatest, OnCaughtUp: func() error {
				select {
				case caughtUp <- struct{}{}:
				default:
				}
				return nil
			}}, func(*Event) error { return nil })
		}()
		<-caughtUp
		// The reader and every writer (one per processor).
		want := 0
		if nice >= 0 {
			h.fanMu.Lock()
			want = 1 + len(h.fanouts[mustDataset(t, h, "d")].writers)
			h.fanMu.Unlock()
		}
		if at > base {
			var got int
			start := time.Now()
			for ; ; time.Sleep(time.Millisecond) {
				got = niceThreads(t, at) - before
				if got >= want || got == want-1 && time.Since(start) > 200*time.Millisecond || time.Since(start) > 10*time.Second {
					break
				}
			}
			// One may run on the main thread, which is not counted.
			if got != want && got != want-1 {
				t.Errorf("SubscribeNice %d: %d threads at nice %d while subscribed, want %d", nice, got, at, want)
			}
		} else {
			time.Sleep(20 * time.Millisecond) // the threads have started
		}
		if nices, _ := threadNices(t); slices.Min(nices) < base {
			t.Errorf("SubscribeNice %d: threads at nice %v in a process at %d", nice, nices, base)
		}
		cancel()
		<-done
		h.Close()
		// The fan-out ends with its last subscription: its threads too.
		if at > base {
			for deadline := time.Now().Add(10 * time.Second); niceThreads(t, at) > before; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("SubscribeNice %d: %d threads at nice %d after the subscription ended", nice, niceThreads(t, at)-before, at)
				}
			}
		}
	}
}

func mustDataset(t *testing.T, h *Hub, name string) *Dataset {
	t.Helper()
	ds, err := h.Dataset(name)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// TestSubscribeThreadCap: the readers and writers of more subscribed
// datasets than 64 threads hold get at most maxBackgroundThreads niced
// threads between them (the rest run on the hub's threads) and deliver
// all the same; when the subscriptions end, the threads are given back,
// and a new subscription gets a niced thread again.
func TestSubscribeThreadCap(t *testing.T) {
	runtime.LockOSThread()
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	base := 20 - prio
	at := min(19, base+10)
	h := openHub(t, testOptions(t.TempDir()))
	before := niceThreads(t, at)
	// Each subscribed dataset has a reader and GOMAXPROCS writers.
	n := maxBackgroundThreads/(1+runtime.GOMAXPROCS(0)) + 2
	subs := make([]*testSub, n)
	for i := range subs {
		name := fmt.Sprintf("d%d", i)
		if _, err := h.CreateDataset(name, DatasetConfig{}); err != nil {
			t.Fatal(err)
		}
		subs[i] = startSub(t, h, name, SubscribeOptions{From: FromLatest})
	}
	for i, s := range subs {
		s.waitFor(t, fmt.Sprintf("subscription %d caught up", i), func() bool { return s.caughtUp })
	}
	for deadline := time.Now().Add(10 * time.Second); h.bgThreads.Load() < maxBackgroundThreads; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d niced threads after 10 s, want %d", h.bgThreads.Load(), maxBackgroundThreads)
		}
	}
	time.Sleep(100 * time.Millisecond) // every reader and writer has started
	if got := h.bgThreads.Load(); got != maxBackgroundThreads {
		t.Errorf("%d readers and writers: %d niced threads, want %d", n*(1+runtime.GOMAXPROCS(0)), got, maxBackgroundThreads)
	}
	if at > base {
		// One may run on the main thread, which is not counted.
		if got := niceThreads(t, at) - before; got != maxBackgroundThreads && got != maxBackgroundThreads-1 {
			t.Errorf("%d threads at nice %d, want %d", got, at, maxBackgroundThreads)
		}
	}
	for i := range subs {
		p, _ := mustDataset(t, h, fmt.Sprintf("d%d", i)).Partition(0)
		putKeyed(t, p, "k", strconv.Itoa(i))
	}
	for i, s := range subs {
		s.waitFor(t, fmt.Sprintf("subscription %d's event", i), func() bool { return len(s.events) > 0 })
		if got := s.records(); len(got) != 1 || string(got[0].Value) != strconv.Itoa(i) {
			t.Errorf("subscription %d got %v", i, got)
		}
	}
	for _, s := range subs {
		s.cancel()
		<-s.done
		s.done <- nil // for its cleanup
	}
	for deadline := time.Now().Add(10 * time.Second); h.bgThreads.Load() > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d niced threads after every subscription ended", h.bgThreads.Load())
		}
	}
	s := startSub(t, h, "d0", SubscribeOptions{From: FromLatest})
	s.waitFor(t, "a new subscription caught up", func() bool { return s.caughtUp })
	for deadline := time.Now().Add(10 * time.Second); h.bgThreads.Load() != int32(1+runtime.GOMAXPROCS(0)); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a new subscription: %d niced threads, want %d", h.bgThreads.Load(), 1+runtime.GOMAXPROCS(0))
		}
	}
}
