package pipelines

import (
	"fmt"
	"strings"
	"testing"

	"github.com/weirhub/weir/connectors"
)

func statsOf(e *Engine, name string) Stats {
	for _, s := range e.Stats() {
		if s.Name == name {
			return s
		}
	}
	return Stats{Name: name + " (missing)"}
}

// TestTransientSinkErrorsRetriedWithoutLimit: a sink whose writes fail
// with a plain (transient) error, more times than any small bound, is
// retried until it takes the records: nothing goes to the dead-letter
// dataset by default (issue 10 item 3: five tries in a second used to).
func TestTransientSinkErrorsRetriedWithoutLimit(t *testing.T) {
	h := openTestHub(t)
	newMemSource(t, "transient-in", []string{`a`, `b`, `c`})
	s := newMemSink(t, "transient-out")
	s.failAll = func(n int) error {
		if n <= 12 {
			return fmt.Errorf("status 500: %w", errTest)
		}
		return nil
	}
	cfg := loadTest(t, `
datasets: {in: {}}
sources: {src: {memory: {id: transient-in}, to: in}}
pipelines:
  p:
    from: in
    to: [{memory: {id: transient-out}, retry: {backoff: 1ms, max_backoff: 2ms}}]
`)
	e := runEngine(t, cfg, h)
	if got := s.values(); len(got) != 3 {
		t.Fatalf("sink got %q, want the 3 records after the outage", got)
	}
	if dead, reasons, _ := readDead(t, h, "p-dead"); len(dead) != 0 {
		t.Fatalf("transient errors dead-lettered %q: %q", dead, reasons)
	}
	st := statsOf(e, "pipelines.p.to.memory")
	if st.Out != 3 || st.Dead != 0 || st.Retried != 3*12 || st.Failed != 12 {
		t.Fatalf("sink stats %+v; want out 3, dead 0, retried 36, failed 12", st)
	}
}

// TestPermanentAndBoundedSinkErrors: a permanent error dead-letters at
// once, on the first try; a bounded retry.attempts dead-letters transient
// errors after that many tries.
func TestPermanentAndBoundedSinkErrors(t *testing.T) {
	h := openTestHub(t)
	newMemSource(t, "perm-in", []string{`a`, `b`})
	perm := newMemSink(t, "perm-out")
	perm.failAll = func(int) error { return connectors.Permanent(fmt.Errorf("cannot encode: %w", errTest)) }
	bounded := newMemSink(t, "bounded-out")
	bounded.failAll = func(int) error { return fmt.Errorf("status 503: %w", errTest) }
	cfg := loadTest(t, `
datasets: {in: {}}
sources: {src: {memory: {id: perm-in}, to: in}}
pipelines:
  p:
    from: in
    to:
      - {memory: {id: perm-out}, name: perm}
      - {memory: {id: bounded-out}, name: bounded, retry: {attempts: 3, backoff: 1ms, max_backoff: 2ms}}
`)
	e := runEngine(t, cfg, h)
	if perm.writes != 1 {
		t.Errorf("permanent error: %d writes, want 1", perm.writes)
	}
	if bounded.writes != 3 {
		t.Errorf("retry.attempts 3: %d writes, want 3", bounded.writes)
	}
	dead, reasons, stages := readDead(t, h, "p-dead")
	if len(dead) != 4 {
		t.Fatalf("dead letters %q, want a and b from each sink", dead)
	}
	for i := range dead {
		want := map[string]string{"sink perm": "cannot encode", "sink bounded": "status 503"}[stages[i]]
		if want == "" || !strings.Contains(reasons[i], want) {
			t.Errorf("dead letter %d: stage %q reason %q", i, stages[i], reasons[i])
		}
	}
	if st := statsOf(e, "pipelines.p.to.perm"); st.Out != 0 || st.Dead != 2 || st.Retried != 0 {
		t.Errorf("perm sink stats %+v; want out 0, dead 2, retried 0", st)
	}
	if st := statsOf(e, "pipelines.p.to.bounded"); st.Out != 0 || st.Dead != 2 || st.Retried != 4 {
		t.Errorf("bounded sink stats %+v; want out 0, dead 2, retried 4", st)
	}
	if st := statsOf(e, "pipelines.p"); st.In != 2 || st.Out != 0 || st.Dead != 4 {
		t.Errorf("pipeline stats %+v; want in 2, out 0, dead 4", st)
	}
}

// TestCountersSeparateDroppedDeadDelivered: records a filter drops are
// counted per processor and apart from dead letters; a record a sink
// dead-letters is not counted as delivered (issue 10 item 8).
func TestCountersSeparateDroppedDeadDelivered(t *testing.T) {
	h := openTestHub(t)
	newMemSource(t, "count-in", []string{`{"l":"debug"}`, `{"l":"info"}`, `{"l":"info","bad":1}`, `nope`, `{"l":"debug"}`})
	s := newMemSink(t, "count-out")
	s.fail = func(v string) error {
		if strings.Contains(v, "bad") {
			return fmt.Errorf("mapping: %w", errTest)
		}
		return nil
	}
	cfg := loadTest(t, `
datasets: {in: {}}
sources: {src: {memory: {id: count-in}, to: in}}
pipelines:
  p:
    from: in
    processors:
      - parse: json
      - filter: 'l != "debug"'
    to: [{memory: {id: count-out}}]
`)
	e := runEngine(t, cfg, h)
	if st := statsOf(e, "pipelines.p"); st.In != 5 || st.Out != 1 || st.Dropped != 2 || st.Dead != 2 {
		t.Errorf("pipeline stats %+v; want in 5, out 1, dropped 2, dead 2", st)
	}
	if st := statsOf(e, "pipelines.p.processors[1].filter"); st.In != 4 || st.Out != 2 || st.Dropped != 2 || st.Dead != 0 {
		t.Errorf("filter stats %+v; want in 4, out 2, dropped 2", st)
	}
	if st := statsOf(e, "pipelines.p.processors[0].parse"); st.In != 5 || st.Out != 4 || st.Dead != 1 {
		t.Errorf("parse stats %+v; want in 5, out 4, dead 1", st)
	}
	if st := statsOf(e, "pipelines.p.to.memory"); st.Out != 1 || st.Dead != 1 {
		t.Errorf("sink stats %+v; want out 1 (delivered), dead 1", st)
	}
}
