package hub

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// niceThreads counts the threads of this process whose nice value is
// nice (field 19 of /proc/self/task/TID/stat).
func niceThreads(t *testing.T, nice int) int {
	t.Helper()
	stats, err := filepath.Glob("/proc/self/task/*/stat")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // the thread ended
		}
		_, rest, _ := strings.Cut(string(b), ") ")
		f := strings.Fields(rest)
		if len(f) > 16 && f[16] == strconv.Itoa(nice) {
			n++
		}
	}
	return n
}

// TestSubscribeNice: the shared reader and writers of a dataset's
// subscriptions run on threads of their own at Options.SubscribeNice (10
// by default), which end with them; with a negative value, at the hub's
// own priority.
func TestSubscribeNice(t *testing.T) {
	for _, nice := range []int{0, -1} {
		opts := testOptions(t.TempDir())
		opts.SubscribeNice = nice
		h := openHub(t, opts)
		if _, err := h.CreateDataset("d", DatasetConfig{}); err != nil {
			t.Fatal(err)
		}
		before := niceThreads(t, 10)
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
		var got int
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			if got = niceThreads(t, 10) - before; got >= want || time.Now().After(deadline) {
				break
			}
		}
		if got != want {
			t.Errorf("SubscribeNice %d: %d threads at nice 10 while subscribed, want %d", nice, got, want)
		}
		cancel()
		<-done
		h.Close()
		// The fan-out ends with its last subscription: its threads too.
		for deadline := time.Now().Add(10 * time.Second); niceThreads(t, 10) > before; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("SubscribeNice %d: %d threads at nice 10 after the subscription ended", nice, niceThreads(t, 10)-before)
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
