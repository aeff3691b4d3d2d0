package pipelines

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/hub"
)

func loadTest(t *testing.T, src string) *Config {
	t.Helper()
	testRegistry(t)
	cfg, err := Load("test.yaml", []byte(src), LoadOptions{Env: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatalf("Load:\n%v", err)
	}
	return cfg
}

func runEngine(t *testing.T, cfg *Config, h *hub.Hub) *Engine {
	t.Helper()
	e, err := New(cfg, Options{Hub: h, UntilDrained: true, DrainTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("Run did not drain within 30s")
	}
	return e
}

func openTestHub(t *testing.T) *hub.Hub {
	t.Helper()
	h, err := hub.Open(hub.Options{DataDir: t.TempDir(), Defaults: hub.DatasetConfig{Fsync: "never"},
		Groups: hub.GroupOptions{MinSessionTimeout: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// deadLetters reads a dead-letter dataset: values and their error headers.
func readDead(t *testing.T, h *hub.Hub, dataset string) (values, reasons, stages []string) {
	t.Helper()
	ds, err := h.Dataset(dataset)
	if err != nil {
		return nil, nil, nil
	}
	for i := range ds.NumPartitions() {
		p, _ := ds.Partition(i)
		it := p.Log().NewIterator(0)
		for it.Next() {
			r := it.Record()
			values = append(values, string(r.Value))
			var reason, stage string
			for _, h := range r.Headers {
				switch string(h.Key) {
				case HeaderError:
					reason = string(h.Value)
				case HeaderStage:
					stage = string(h.Value)
				}
			}
			reasons = append(reasons, reason)
			stages = append(stages, stage)
		}
	}
	return values, reasons, stages
}

func TestEngineEndToEnd(t *testing.T) {
	h := openTestHub(t)
	newMemSource(t, "e2e-in", []string{`{"level":"info","n":1}`, `{"level":"debug","n":2}`, `not json`},
		[]string{`{"level":"error","n":3,"latency_ms":1500}`})
	out := newMemSink(t, "e2e-out")
	errs := newMemSink(t, "e2e-errors")
	cfg := loadTest(t, `
datasets:
  events: {partitions: 2}
sources:
  in:
    memory: {id: e2e-in}
    to: events
pipelines:
  main:
    from: events
    processors:
      - parse: json
      - filter: 'level != "debug"'
      - set: {env: '"prod"', slow: '(latency_ms ?? 0) > 1000'}
      - route:
          rules: [{when: 'level == "error"', to: [errors, all]}]
          default: [all]
    to:
      - memory: {id: e2e-out}
        name: all
      - memory: {id: e2e-errors}
        name: errors
`)
	e := runEngine(t, cfg, h)
	got := out.values()
	if len(got) != 2 || !strings.Contains(strings.Join(got, " "), `"env":"prod"`) {
		t.Fatalf("sink all got %q", got)
	}
	if ev := errs.values(); len(ev) != 1 || !strings.Contains(ev[0], `"slow":true`) {
		t.Fatalf("sink errors got %q", ev)
	}
	dead, reasons, stages := readDead(t, h, "main-dead")
	if len(dead) != 1 || dead[0] != "not json" || !strings.Contains(reasons[0], "parse json") || stages[0] != "processor parse" {
		t.Fatalf("dead letters %q %q %q", dead, reasons, stages)
	}
	// Counts: in = delivered + dropped + dead.
	var in, outN, dn int64
	for _, s := range e.Stats() {
		if s.Name == "pipelines.main" {
			in, outN, dn = s.In, s.Out, s.Dead
		}
	}
	if in != 4 || outN != 2 || dn != 1 {
		t.Fatalf("pipeline stats in %d out %d dead %d; want 4, 2, 1 (1 dropped)", in, outN, dn)
	}
	// Everything was committed: the group has nothing left.
	offs := h.FetchOffsets("main", nil)
	var committed int64
	for _, o := range offs {
		committed += o.Offset
	}
	if committed != 4 {
		t.Fatalf("committed %d records of 4: %v", committed, offs)
	}
}

// TestFailingSinkDeadLetters: one sink fails some records for good and
// another write fails whole batches a few times: retried, then delivered;
// the counts add up: in = out + dead.
func TestFailingSinkDeadLetters(t *testing.T) {
	h := openTestHub(t)
	var vals []string
	for i := range 200 {
		vals = append(vals, fmt.Sprintf(`{"i":%d}`, i))
	}
	newMemSource(t, "fail-in", vals[:100], vals[100:])
	good := newMemSink(t, "fail-good")
	bad := newMemSink(t, "fail-bad")
	bad.fail = func(v string) error {
		if strings.HasSuffix(v, `7}`) {
			return fmt.Errorf("record ends in 7: %w", errTest)
		}
		return nil
	}
	flaky := newMemSink(t, "fail-flaky")
	flaky.failAll = func(n int) error {
		if n%2 == 1 && n < 6 {
			return fmt.Errorf("transient: %w", errTest)
		}
		return nil
	}
	cfg := loadTest(t, `
datasets: {in: {partitions: 3}}
sources: {src: {memory: {id: fail-in}, to: in}}
pipelines:
  p:
    from: in
    to:
      - memory: {id: fail-good}
        name: good
      - memory: {id: fail-bad}
        name: bad
        retry: {attempts: 2, backoff: 1ms}
      - memory: {id: fail-flaky}
        name: flaky
        retry: {attempts: 5, backoff: 1ms}
`)
	runEngine(t, cfg, h)
	if n := len(good.values()); n != 200 {
		t.Fatalf("good sink got %d of 200", n)
	}
	if n := len(flaky.values()); n != 200 {
		t.Fatalf("flaky sink got %d of 200 after retries", n)
	}
	dead, reasons, stages := readDead(t, h, "p-dead")
	if len(dead) != 20 || len(bad.values()) != 180 {
		t.Fatalf("bad sink: %d delivered, %d dead-lettered; want 180 and 20", len(bad.values()), len(dead))
	}
	for i := range dead {
		if !strings.HasSuffix(dead[i], "7}") || stages[i] != "sink bad" || !strings.Contains(reasons[i], "ends in 7") {
			t.Fatalf("dead letter %q stage %q reason %q", dead[i], stages[i], reasons[i])
		}
	}
}

// TestUnavailableSinkHoldsBack: a sink that is unavailable is retried
// without limit and nothing is committed meanwhile; once it comes back,
// everything is delivered.
func TestUnavailableSinkHoldsBack(t *testing.T) {
	h := openTestHub(t)
	newMemSource(t, "down-in", []string{`a`, `b`, `c`})
	s := newMemSink(t, "down-out")
	var up bool
	s.failAll = func(int) error {
		if !up {
			return connectors.Unavailable(errTest)
		}
		return nil
	}
	cfg := loadTest(t, `
datasets: {in: {}}
sources: {src: {memory: {id: down-in}, to: in}}
pipelines:
  p:
    from: in
    to: [{memory: {id: down-out}, retry: {attempts: 1, backoff: 1ms, max_backoff: 5ms}}]
`)
	e, err := New(cfg, Options{Hub: h, UntilDrained: true})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() { done <- e.Run(ctx) }()
	waitFor(t, "several failed writes", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.writes > 5 })
	if offs := h.FetchOffsets("p", nil); len(offs) != 0 {
		t.Fatalf("committed while the sink was down: %v", offs)
	}
	// The stats line's lag is the group's: the 3 records are not
	// committed (issue 10 item 8: it said 0 during an outage).
	if st := statsOf(e, "pipelines.p"); st.Lag != 3 {
		t.Fatalf("lag %d during the outage, want 3 (the group's)", st.Lag)
	}
	s.mu.Lock()
	up = true
	s.mu.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := s.values(); len(got) != 3 {
		t.Fatalf("after the sink came back: %q", got)
	}
	if dead, _, _ := readDead(t, h, "p-dead"); len(dead) != 0 {
		t.Fatalf("an unavailable sink sent records to the dead-letter dataset: %q", dead)
	}
}

func TestSourceProcessorsAndKeys(t *testing.T) {
	h := openTestHub(t)
	newMemSource(t, "keys-in", []string{`{"host":"a","v":1}`, `{"host":"b","v":2}`, `{"host":"a","v":3}`, `broken`})
	cfg := loadTest(t, `
datasets: {logs: {partitions: 4}}
sources:
  src:
    memory: {id: keys-in}
    to: logs
    key: host
    processors: [{parse: json}]
`)
	runEngine(t, cfg, h)
	ds, _ := h.Dataset("logs")
	byKey := map[string]int32{}
	var n int
	for i := range ds.NumPartitions() {
		p, _ := ds.Partition(i)
		it := p.Log().NewIterator(0)
		for it.Next() {
			r := it.Record()
			n++
			if prev, ok := byKey[string(r.Key)]; ok && prev != i {
				t.Fatalf("key %s on partitions %d and %d", r.Key, prev, i)
			}
			byKey[string(r.Key)] = i
			if want := hub.PartitionForKey(r.Key, 4); want != i {
				t.Fatalf("key %s on partition %d, want %d", r.Key, i, want)
			}
		}
	}
	if n != 3 || len(byKey) != 2 {
		t.Fatalf("%d records, keys %v", n, byKey)
	}
	if dead, _, _ := readDead(t, h, "logs-dead"); len(dead) != 1 || dead[0] != "broken" {
		t.Fatalf("source dead letters: %q", dead)
	}
}

// errSource hands over one batch in which some messages carry a read
// error, as a syslog source does for malformed input.
type errSource struct{ done bool }

func (s *errSource) Read(context.Context) ([]*connectors.Message, connectors.AckFunc, error) {
	if s.done {
		return nil, nil, connectors.ErrEndOfInput
	}
	s.done = true
	bad := &connectors.Message{Value: []byte("<999>garbage")}
	bad.Fail("syslog: byte 1: priority 999 is out of range")
	return []*connectors.Message{{Value: []byte("fine")}, bad}, func(context.Context, error) error { return nil }, nil
}

func (s *errSource) Close(context.Context) error { return nil }

func TestSourceReadErrorsAreDeadLettered(t *testing.T) {
	h := openTestHub(t)
	runSource(t, h, "errs", &errSource{}, true)
	dead, reasons, stages := readDead(t, h, "in-dead")
	if len(dead) != 1 || dead[0] != "<999>garbage" || !strings.Contains(reasons[0], "out of range") || stages[0] != "source errs" {
		t.Fatalf("dead letters %q %q %q", dead, reasons, stages)
	}
}

// drainSource holds what it took until Drain, as a syslog source holds
// its open batch: a stop must hand that on, not drop it.
type drainSource struct {
	held    chan []*connectors.Message
	drained chan struct{}
	once    sync.Once
}

func (s *drainSource) Read(ctx context.Context) ([]*connectors.Message, connectors.AckFunc, error) {
	select {
	case <-s.drained:
		select {
		case b := <-s.held:
			return b, func(context.Context, error) error { return nil }, nil
		default:
			return nil, nil, connectors.ErrEndOfInput
		}
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

func (s *drainSource) Drain()                      { s.once.Do(func() { close(s.drained) }) }
func (s *drainSource) Close(context.Context) error { return nil }

func TestStopDrainsDrainers(t *testing.T) {
	h := openTestHub(t)
	src := &drainSource{held: make(chan []*connectors.Message, 1), drained: make(chan struct{})}
	src.held <- []*connectors.Message{{Value: []byte("a")}, {Value: []byte("b")}}
	runSource(t, h, "held", src, false)
	if stored, _, _ := readDead(t, h, "in"); len(stored) != 2 {
		t.Fatalf("%q stored after a stop, want the 2 records the source held", stored)
	}
}

// bigSource hands over one batch larger than a record batch may be, with
// one record larger than max_message_bytes by itself.
type bigSource struct{ done bool }

func (s *bigSource) Read(context.Context) ([]*connectors.Message, connectors.AckFunc, error) {
	if s.done {
		return nil, nil, connectors.ErrEndOfInput
	}
	s.done = true
	var batch []*connectors.Message
	for i := range 3000 {
		v := bytes.Repeat([]byte{'a' + byte(i%26)}, 1000)
		if i == 1500 {
			v = bytes.Repeat([]byte("x"), 2<<20)
		}
		batch = append(batch, &connectors.Message{Value: v})
	}
	return batch, func(context.Context, error) error { return nil }, nil
}

func (s *bigSource) Close(context.Context) error { return nil }

func TestSourceBatchesLargerThanMaxMessageBytes(t *testing.T) {
	h := openTestHub(t)
	runSource(t, h, "big", &bigSource{}, true)
	stored, _, _ := readDead(t, h, "in")
	if len(stored) != 2999 {
		t.Fatalf("%d records stored, want 2999", len(stored))
	}
	dead, reasons, _ := readDead(t, h, "in-dead")
	// Cut to fit the dead-letter dataset, which has the same 1 MiB limit.
	if len(dead) != 1 || len(dead[0]) != 1<<20-64<<10 || !strings.Contains(reasons[0], "max_message_bytes") ||
		!strings.Contains(reasons[0], "2097152 bytes, is cut") {
		t.Fatalf("%d dead letters, reasons %q", len(dead), reasons)
	}
}

// runSource runs an engine whose one source, s, is src, storing into the
// dataset in: until drained, or (a stop with the source still running)
// for 200ms.
func runSource(t *testing.T, h *hub.Hub, name string, src connectors.Source, untilDrained bool) {
	t.Helper()
	reg := connectors.NewRegistry()
	reg.RegisterSource(connectors.Spec{Name: name}, func(*connectors.Config, connectors.Resources) (connectors.Source, error) {
		return src, nil
	})
	cfg, err := Load("t.yaml", []byte("datasets: {in: {}}\nsources: {s: {"+name+": {}, to: in}}\n"), LoadOptions{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(cfg, Options{Hub: h, Registry: reg, UntilDrained: untilDrained})
	if err != nil {
		t.Fatal(err)
	}
	timeout := 200 * time.Millisecond
	if untilDrained {
		timeout = 20 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := e.Run(ctx); err != nil {
		t.Fatal(err)
	}
}
