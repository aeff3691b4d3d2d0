package pipelines

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/weirhub/weir/hub"
)

// TestRetryTopics: with retry: {mode: topics, delays: [...]}, records that
// fail transiently go through the retry datasets without holding back the
// others: a record that succeeds on its third try arrives after them, one
// that always fails reaches the dead-letter dataset after the last delay.
// The retry datasets are declared by the file (no auto-creation needed).
func TestRetryTopics(t *testing.T) {
	h, err := hub.Open(hub.Options{DataDir: t.TempDir(), Defaults: hub.DatasetConfig{Fsync: "never"}, DisableAutoCreate: true,
		Groups: hub.GroupOptions{MinSessionTimeout: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	newMemSource(t, "rt-in", []string{`a`, `bad`, `flaky`, `c`})
	s := newMemSink(t, "rt-out")
	tries := map[string]int{}
	s.failRetryable = func(v string) error {
		tries[v]++
		if v == "bad" || v == "flaky" && tries[v] < 3 {
			return fmt.Errorf("status 503 on %s: %w", v, errTest)
		}
		return nil
	}
	cfg := loadTest(t, `
datasets: {in: {}}
sources: {src: {memory: {id: rt-in}, to: in}}
pipelines:
  p:
    from: in
    to: [{memory: {id: rt-out}, name: out, retry: {mode: topics, delays: [50ms, 100ms]}}]
`)
	runEngine(t, cfg, h)
	got := s.values()
	if !slices.Equal(got, []string{"a", "c", "flaky"}) {
		t.Fatalf("sink got %q, want a and c at once, then flaky from a retry", got)
	}
	if tries["bad"] != 3 || tries["flaky"] != 3 {
		t.Fatalf("tries %v: want 3 each (the write, retry-1, retry-2)", tries)
	}
	dead, reasons, stages := readDead(t, h, "p-dead")
	if !slices.Equal(dead, []string{"bad"}) || stages[0] != "sink out" {
		t.Fatalf("dead letters %q (%q, %q), want bad after the last retry", dead, reasons, stages)
	}
	for _, ds := range []string{"p.out.retry-1", "p.out.retry-2"} {
		if _, err := h.Dataset(ds); err != nil {
			t.Errorf("retry dataset %s: %v", ds, err)
		}
	}
}
