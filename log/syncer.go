package log

import (
	"sync"
	"time"
)

// Syncer runs the interval fsyncs of many logs (SyncInterval) on a few
// goroutines of its own, in place of a timer per log: a hub of thousands
// of partitions shares one. Each log that has written since its last sync
// is synced once per interval; when the disk cannot keep up, a log's
// writes since its last sync are covered by its next one, so fsyncs never
// pile up. Safe for concurrent use.
type Syncer struct {
	interval time.Duration
	work     chan *Log

	mu    sync.Mutex
	dirty []*Log
	stop  chan struct{}
	wg    sync.WaitGroup
}

// NewSyncer starts a Syncer that syncs dirty logs every interval with up
// to workers fsyncs at once (at least 1). Close stops it.
func NewSyncer(interval time.Duration, workers int) *Syncer {
	s := &Syncer{interval: interval, work: make(chan *Log), stop: make(chan struct{})}
	for range max(workers, 1) {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for l := range s.work {
				l.intervalSync()
			}
		}()
	}
	s.wg.Add(1)
	go s.loop()
	return s
}

// Interval is the period of the Syncer's fsyncs.
func (s *Syncer) Interval() time.Duration { return s.interval }

func (s *Syncer) loop() {
	defer s.wg.Done()
	defer close(s.work)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		dirty := s.dirty
		s.dirty = nil
		s.mu.Unlock()
		for _, l := range dirty {
			select {
			case s.work <- l:
			case <-s.stop:
				return
			}
		}
	}
}

// add queues a log for the next round. Called by the log, once per sync.
func (s *Syncer) add(l *Log) {
	s.mu.Lock()
	s.dirty = append(s.dirty, l)
	s.mu.Unlock()
}

// Close stops the Syncer. Logs still using it are no longer synced on an
// interval; their Close still syncs them.
func (s *Syncer) Close() {
	s.mu.Lock()
	select {
	case <-s.stop:
		s.mu.Unlock()
		return
	default:
	}
	close(s.stop)
	s.mu.Unlock()
	s.wg.Wait()
}
