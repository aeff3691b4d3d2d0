package pipelines

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/weirhub/weir/connectors"
)

// testRegistry is the default registry (the real processors) plus memory
// components under names the tests own.
var (
	testRegOnce sync.Once
	memSources  sync.Map // name -> *memSource
	memSinks    sync.Map // name -> *memSink
)

func testRegistry(t testing.TB) *connectors.Registry {
	testRegOnce.Do(func() {
		connectors.MustRegisterSource(connectors.Spec{Name: "memory", Summary: "test source",
			Fields: []connectors.Field{{Name: "id", Type: connectors.TypeString, Required: true}}},
			func(c *connectors.Config, _ connectors.Resources) (connectors.Source, error) {
				v, ok := memSources.Load(c.String("id"))
				if !ok {
					return nil, fmt.Errorf("no memory source %q", c.String("id"))
				}
				return v.(*memSource), nil
			})
		connectors.MustRegisterSink(connectors.Spec{Name: "memory", Summary: "test sink",
			Fields: []connectors.Field{{Name: "id", Type: connectors.TypeString, Required: true}}},
			func(c *connectors.Config, _ connectors.Resources) (connectors.Sink, error) {
				v, ok := memSinks.Load(c.String("id"))
				if !ok {
					return nil, fmt.Errorf("no memory sink %q", c.String("id"))
				}
				return v.(*memSink), nil
			})
	})
	return connectors.Default
}

// memSource hands out the values it is given, in batches, then ends.
type memSource struct {
	mu      sync.Mutex
	batches [][]string
	acked   int
	errs    []error
	closed  bool
}

func newMemSource(t testing.TB, id string, batches ...[]string) *memSource {
	s := &memSource{batches: batches}
	memSources.Store(id, s)
	t.Cleanup(func() { memSources.Delete(id) })
	return s
}

func (s *memSource) Read(ctx context.Context) ([]*connectors.Message, connectors.AckFunc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.batches) == 0 {
		return nil, nil, connectors.ErrEndOfInput
	}
	b := s.batches[0]
	s.batches = s.batches[1:]
	msgs := make([]*connectors.Message, len(b))
	for i, v := range b {
		msgs[i] = &connectors.Message{Value: []byte(v)}
	}
	return msgs, func(_ context.Context, err error) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil {
			s.errs = append(s.errs, err)
		} else {
			s.acked++
		}
		return nil
	}, nil
}

func (s *memSource) Close(context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

// memSink records what it gets; fail decides per message whether that
// message fails, failAll fails whole writes.
type memSink struct {
	mu      sync.Mutex
	got     []string
	writes  int
	fail    func(value string) error // per-message failure (non-retryable)
	failAll func(n int) error        // whole-write failure on write n
	// per-message transient failure: retryable
	failRetryable func(value string) error
}

func newMemSink(t testing.TB, id string) *memSink {
	s := &memSink{}
	memSinks.Store(id, s)
	t.Cleanup(func() { memSinks.Delete(id) })
	return s
}

func (s *memSink) Write(ctx context.Context, batch []*connectors.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	if s.failAll != nil {
		if err := s.failAll(s.writes); err != nil {
			return err
		}
	}
	var we connectors.WriteError
	for i, m := range batch {
		if s.fail != nil {
			if err := s.fail(string(m.Value)); err != nil {
				we.Failures = append(we.Failures, connectors.Failure{Index: i, Err: err})
				continue
			}
		}
		if s.failRetryable != nil {
			if err := s.failRetryable(string(m.Value)); err != nil {
				we.Failures = append(we.Failures, connectors.Failure{Index: i, Err: err, Retryable: true})
				continue
			}
		}
		s.got = append(s.got, string(m.Value))
	}
	if len(we.Failures) > 0 {
		return &we
	}
	return nil
}

func (s *memSink) Close(context.Context) error { return nil }

func (s *memSink) values() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var errTest = errors.New("test failure")
