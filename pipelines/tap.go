package pipelines

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirhub/weir/connectors"
)

// TapRecord is one record sampled by a Tap: a copy, safe to keep.
type TapRecord struct {
	Dataset   string
	Partition int32
	Offset    int64
	Time      time.Time
	Key       []byte
	Value     []byte
}

// Tap is a live sample of the records leaving a pipeline's processors
// (what its sinks are given), or of those given to one of its sinks. The
// pipeline copies records into a bounded buffer only while it has room;
// when the reader falls behind, samples are dropped and counted: a tap
// never slows the pipeline down. Records reads the buffer; Close detaches
// the tap. A Tap is safe for concurrent use.
type Tap struct {
	// Point is what the tap samples: "pipelines.NAME" or
	// "pipelines.NAME.to.SINK".
	Point   string
	ch      chan TapRecord
	sink    int // -1: every record; else the index of the sink
	dropped atomic.Int64
	p       *pipelineRunner
	once    sync.Once
}

// Records is the channel of sampled records; it is never closed.
func (t *Tap) Records() <-chan TapRecord { return t.ch }

// Dropped counts the samples dropped because the buffer was full.
func (t *Tap) Dropped() int64 { return t.dropped.Load() }

// Close detaches the tap from its pipeline. Calling it twice is harmless.
func (t *Tap) Close() {
	t.once.Do(func() { t.p.taps.remove(t) })
}

// TapPoints lists what Tap accepts: every pipeline, and every sink of each.
func (e *Engine) TapPoints() []string {
	var out []string
	for _, p := range e.pipelines {
		out = append(out, p.cfg.Name)
		for _, s := range p.sinks {
			out = append(out, p.cfg.Name+"."+s.cfg.Name)
		}
	}
	return out
}

// Tap attaches a tap to point: PIPELINE (the records its processors pass
// on) or PIPELINE.SINK (those routed to that sink). buffer is how many
// records it holds for a slow reader (at least 1).
func (e *Engine) Tap(point string, buffer int) (*Tap, error) {
	point = strings.TrimPrefix(point, "pipelines.")
	for _, p := range e.pipelines {
		sink := -1
		switch rest, ok := strings.CutPrefix(point, p.cfg.Name); {
		case !ok:
			continue
		case rest == "":
		case strings.HasPrefix(rest, "."):
			name := strings.TrimPrefix(strings.TrimPrefix(rest, "."), "to.")
			for i, s := range p.sinks {
				if s.cfg.Name == name {
					sink = i
				}
			}
			if sink < 0 {
				continue
			}
		default:
			continue
		}
		t := &Tap{Point: "pipelines." + p.cfg.Name, ch: make(chan TapRecord, max(buffer, 1)), sink: sink, p: p}
		if sink >= 0 {
			t.Point += ".to." + p.sinks[sink].cfg.Name
		}
		p.taps.add(t)
		return t, nil
	}
	return nil, fmt.Errorf("pipelines: nothing to tap at %q (taps: %s)", point, strings.Join(e.TapPoints(), ", "))
}

// tapSet is a pipeline's taps; offering to an empty set costs one atomic
// load.
type tapSet struct {
	mu   sync.Mutex
	list atomic.Pointer[[]*Tap]
}

func (s *tapSet) add(t *Tap) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var l []*Tap
	if p := s.list.Load(); p != nil {
		l = slices.Clone(*p)
	}
	l = append(l, t)
	s.list.Store(&l)
}

func (s *tapSet) remove(t *Tap) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.list.Load(); p != nil {
		l := slices.DeleteFunc(slices.Clone(*p), func(x *Tap) bool { return x == t })
		s.list.Store(&l)
	}
}

// offer copies records into every tap that has room.
func (s *tapSet) offer(msgs []*connectors.Message) {
	p := s.list.Load()
	if p == nil || len(*p) == 0 {
		return
	}
	for _, t := range *p {
		bit := uint64(1) << max(t.sink, 0)
		for _, m := range msgs {
			if t.sink >= 0 && m.Routes != 0 && m.Routes&bit == 0 {
				continue
			}
			if len(t.ch) == cap(t.ch) {
				t.dropped.Add(1)
				continue
			}
			r := TapRecord{Dataset: m.Dataset, Partition: m.Partition, Offset: m.Offset, Time: m.Time,
				Key: slices.Clone(m.Key), Value: slices.Clone(m.Value)}
			select {
			case t.ch <- r:
			default:
				t.dropped.Add(1)
			}
		}
	}
}
