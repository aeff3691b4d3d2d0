package pipelines

import (
	"testing"
)

// lagSource is a memory source that reports a lag.
type lagSource struct{ *memSource }

func (lagSource) Lag() int64 { return 42 }

func TestSourceLags(t *testing.T) {
	h := openTestHub(t)
	newMemSource(t, "lag-plain")
	cfg := loadTest(t, `
datasets: {events: {partitions: 1}}
sources:
  plain: {memory: {id: lag-plain}, to: events}
`)
	e, err := New(cfg, Options{Hub: h})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.SourceLags(); len(got) != 0 {
		t.Fatalf("SourceLags() = %v for a source without lag", got)
	}
	e.sources[0].src = lagSource{e.sources[0].src.(*memSource)}
	if got := e.SourceLags(); len(got) != 1 || got["sources.plain"] != 42 {
		t.Fatalf("SourceLags() = %v, want sources.plain: 42", got)
	}
}
