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
// pile up. It also gives back the windows of zeros of SyncAlways logs that
// stopped growing (see prewrite.go), in rounds every second, again in
// place of a timer per log. Safe for concurrent use.
type Syncer struct {
	interval time.Duration
	work     chan syncWork

	mu    sync.Mutex
	dirty []*Log
	idle  []*Log // SyncAlways logs with a window to give back once idle
	stop  chan struct{}
	wg    sync.WaitGroup
}

// syncWork is one task of a Syncer's workers: an interval sync of l, or
// with idle, a check of its window (prewriteIdleCheck).
type syncWork struct {
	l    *Log
	idle bool
}

// NewSyncer starts a Syncer that syncs dirty logs every interval with up
// to workers fsyncs at once (at least 1). Close stops it.
func NewSyncer(interval time.Duration, workers int) *Syncer {
	s := &Syncer{interval: interval, work: make(chan syncWork), stop: make(chan struct{})}
	for range max(workers, 1) {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for w := range s.work {
				if !w.idle {
					w.l.intervalSync()
				} else if w.l.prewriteIdleCheck() {
					s.addIdle(w.l)
				}
			}
		}()
	}
	s.wg.Add(1)
	go s.loop(prewriteIdle)
	return s
}

// Interval is the period of the Syncer's fsyncs.
func (s *Syncer) Interval() time.Duration { return s.interval }

func (s *Syncer) loop(idlePeriod time.Duration) {
	defer s.wg.Done()
	defer close(s.work)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	it := time.NewTicker(idlePeriod)
	defer it.Stop()
	for {
		idle := false
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-it.C:
			idle = true
		}
		s.mu.Lock()
		logs := &s.dirty
		if idle {
			logs = &s.idle
		}
		round := *logs
		*logs = nil
		s.mu.Unlock()
		for _, l := range round {
			select {
			case s.work <- syncWork{l: l, idle: idle}:
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

// addIdle queues a log for the next idle round. Called by the log once
// its window is armed (see armPrewriteIdle), and again after each check
// that leaves it armed.
func (s *Syncer) addIdle(l *Log) {
	s.mu.Lock()
	s.idle = append(s.idle, l)
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
