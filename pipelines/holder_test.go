package pipelines

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/hub"
)

var (
	holdRegOnce sync.Once
	holdSinks   sync.Map // id -> *holdSink
)

// holdSink is a connectors.Holder: it holds what it is given from the
// first offset not released, and can lose what it holds once.
type holdSink struct {
	mu       sync.Mutex
	got      []string
	held     map[int32]int64 // partition -> lowest held offset
	dataset  string
	flushed  int
	loseOn   int // the write that loses what is held (0: none)
	writes   int
	released bool // hold nothing from now on
}

func newHoldSink(t *testing.T, id string) *holdSink {
	testRegistry(t)
	holdRegOnce.Do(func() {
		connectors.MustRegisterSink(connectors.Spec{Name: "memhold", Summary: "test holder sink",
			Fields: []connectors.Field{{Name: "id", Type: connectors.TypeString, Required: true}}},
			func(c *connectors.Config, _ connectors.Resources) (connectors.Sink, error) {
				v, ok := holdSinks.Load(c.String("id"))
				if !ok {
					return nil, fmt.Errorf("no memhold sink %q", c.String("id"))
				}
				return v.(*holdSink), nil
			})
	})
	s := &holdSink{held: map[int32]int64{}}
	holdSinks.Store(id, s)
	t.Cleanup(func() { holdSinks.Delete(id) })
	return s
}

func (s *holdSink) Write(ctx context.Context, batch []*connectors.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	if s.writes == s.loseOn {
		clear(s.held)
		return connectors.Redeliver(fmt.Errorf("test: lost what was held"))
	}
	for _, m := range batch {
		s.got = append(s.got, string(m.Value))
		s.dataset = m.Dataset
		if _, ok := s.held[m.Partition]; !ok && !s.released {
			s.held[m.Partition] = m.Offset
		}
	}
	return nil
}

func (s *holdSink) Held(fn func(dataset string, partition int32, offset int64)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, o := range s.held {
		fn(s.dataset, p, o)
	}
}

func (s *holdSink) Flush(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushed++
	clear(s.held)
	return nil
}

func (s *holdSink) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.released = true
	clear(s.held)
}

func (s *holdSink) values() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

func (s *holdSink) Close(context.Context) error { return nil }

func committedOffset(h *hub.Hub, group, dataset string) int64 {
	return h.FetchOffsets(group, nil)[hub.TopicPartition{Topic: dataset, Partition: 0}].Offset
}

const holdConfig = `
datasets:
  events: {partitions: 1}
sources:
  in:
    memory: {id: %s-in}
    to: events
pipelines:
  p:
    from: events
    to:
      - memhold: {id: %[1]s-out}
        batching: {count: 2, period: 10ms}
`

// TestHolderCommitsOnlyWhatIsReleased: with a sink that holds the
// records it was given (as the parquet sink holds those of an unfinished
// file), the pipeline commits nothing past the first held offset; once
// released, an idle poll commits every record.
func TestHolderCommitsOnlyWhatIsReleased(t *testing.T) {
	h := openTestHub(t)
	newMemSource(t, "hold1-in", []string{"a", "b", "c"}, []string{"d", "e"})
	out := newHoldSink(t, "hold1-out")
	cfg := loadTest(t, fmt.Sprintf(holdConfig, "hold1"))
	e, err := New(cfg, Options{Hub: h, DrainTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	waitFor(t, "five records in the sink", func() bool { return len(out.values()) == 5 })
	time.Sleep(100 * time.Millisecond) // idle polls that must not commit
	if got := committedOffset(h, "p", "events"); got != 0 {
		t.Fatalf("committed offset %d while the sink holds offset 0 on; want 0 (nothing)", got)
	}
	out.release()
	waitFor(t, "the commit of five records", func() bool { return committedOffset(h, "p", "events") == 5 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestHolderFlushedOnStop: a graceful stop flushes what the sink holds
// and commits it all.
func TestHolderFlushedOnStop(t *testing.T) {
	h := openTestHub(t)
	newMemSource(t, "hold2-in", []string{"a", "b", "c"})
	out := newHoldSink(t, "hold2-out")
	runEngine(t, loadTest(t, fmt.Sprintf(holdConfig, "hold2")), h)
	if out.flushed == 0 {
		t.Fatalf("the sink was not flushed on the stop")
	}
	if got := committedOffset(h, "p", "events"); got != 3 {
		t.Fatalf("committed offset %d after the stop; want 3", got)
	}
}

// TestHolderRedeliver: a sink that loses what it held makes the pipeline
// read again from its committed offsets: every record reaches it after
// the loss, and all is committed in the end.
func TestHolderRedeliver(t *testing.T) {
	h := openTestHub(t)
	newMemSource(t, "hold3-in", []string{"a", "b"}, []string{"c", "d"}, []string{"e", "f"})
	out := newHoldSink(t, "hold3-out")
	out.loseOn = 2
	runEngine(t, loadTest(t, fmt.Sprintf(holdConfig, "hold3")), h)
	got := out.values()
	// The first write's records were held and lost: delivered again.
	if len(got) < 6 || got[0] != "a" || got[1] != "b" || got[2] != "a" || got[3] != "b" {
		t.Fatalf("sink got %q; want a, b, then a, b again and the rest", got)
	}
	seen := map[string]bool{}
	for _, v := range got {
		seen[v] = true
	}
	if len(seen) != 6 {
		t.Fatalf("sink got %q; want all of a..f", got)
	}
	if c := committedOffset(h, "p", "events"); c != 6 {
		t.Fatalf("committed offset %d; want 6", c)
	}
}

// budgetSink is a memory sink that declares a memory budget.
type budgetSink struct{ *memSink }

func (budgetSink) MemoryBudget() int64 { return 10 << 20 }

// TestEngineMemoryBudget: the budgets sinks declare plus each pipeline's
// poll; nothing when no sink declares one.
func TestEngineMemoryBudget(t *testing.T) {
	h := openTestHub(t)
	newMemSource(t, "budget-in", []string{"a"})
	newMemSink(t, "budget-out")
	cfg := loadTest(t, `
datasets:
  events: {partitions: 1}
sources:
  in:
    memory: {id: budget-in}
    to: events
pipelines:
  p:
    from: events
    to:
      - memory: {id: budget-out}
        batching: {bytes: 2MiB}
`)
	e, err := New(cfg, Options{Hub: h})
	if err != nil {
		t.Fatal(err)
	}
	defer e.closeComponents(context.Background())
	if got := e.MemoryBudget(); got != 0 {
		t.Fatalf("MemoryBudget without a declaring sink = %d, want 0", got)
	}
	s := e.pipelines[0].sinks[0]
	s.sink = budgetSink{s.sink.(*memSink)}
	if got, want := e.MemoryBudget(), int64(10<<20+2<<20+1<<20); got != want {
		t.Fatalf("MemoryBudget = %d, want %d (the sink's 10MiB, the 2MiB batch, 1MiB)", got, want)
	}
}
