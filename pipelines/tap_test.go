package pipelines

import (
	"context"
	"strings"
	"testing"
	"time"
)

func drain(t *Tap) []string {
	var out []string
	for {
		select {
		case r := <-t.Records():
			out = append(out, string(r.Value))
		default:
			return out
		}
	}
}

// TestTap: taps see what the processors pass on, or what one sink is
// routed; a full tap drops and counts instead of holding the pipeline.
func TestTap(t *testing.T) {
	h := openTestHub(t)
	newMemSource(t, "tap-in", []string{`{"level":"info","n":1}`, `{"level":"debug","n":2}`, `{"level":"error","n":3}`, `{"level":"info","n":4}`})
	out := newMemSink(t, "tap-out")
	newMemSink(t, "tap-errors")
	cfg := loadTest(t, `
datasets:
  events: {partitions: 1}
sources:
  in:
    memory: {id: tap-in}
    to: events
pipelines:
  main:
    from: events
    processors:
      - parse: json
      - filter: 'level != "debug"'
      - set: {seen: 'true'}
      - route:
          rules: [{when: 'level == "error"', to: [errors]}]
          default: [all]
    to:
      - memory: {id: tap-out}
        name: all
      - memory: {id: tap-errors}
        name: errors
`)
	e, err := New(cfg, Options{Hub: h, UntilDrained: true, DrainTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Tap("nothing", 1); err == nil || !strings.Contains(err.Error(), "main, main.all, main.errors") {
		t.Fatalf("Tap(nothing) = %v; want an error listing the points", err)
	}
	all, err := e.Tap("main", 10)
	if err != nil {
		t.Fatal(err)
	}
	errs, _ := e.Tap("pipelines.main.to.errors", 10)
	small, _ := e.Tap("main.all", 1)
	closed, _ := e.Tap("main", 10)
	closed.Close()
	closed.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if got := drain(all); len(got) != 3 || !strings.Contains(got[0], `"seen":true`) || strings.Contains(strings.Join(got, ""), "debug") {
		t.Errorf("tap main got %q; want the 3 records after the filter, with seen", got)
	}
	if got := drain(errs); len(got) != 1 || !strings.Contains(got[0], `"n":3`) || errs.Point != "pipelines.main.to.errors" {
		t.Errorf("tap %s got %q; want the error record", errs.Point, got)
	}
	if got := drain(small); len(got) != 1 || small.Dropped() != 1 {
		t.Errorf("tap with a buffer of 1 got %q and dropped %d; want 1 and 1", got, small.Dropped())
	}
	if got := drain(closed); len(got) != 0 {
		t.Errorf("a closed tap got %q", got)
	}
	if got := out.values(); len(got) != 2 {
		t.Errorf("sink all got %q; the taps must not change delivery", got)
	}
}
