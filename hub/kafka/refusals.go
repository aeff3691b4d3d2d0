package kafka

import (
	"errors"
	"sync"
	"syscall"
	"time"

	"github.com/weirhub/weir/hub"
	wlog "github.com/weirhub/weir/log"
)

// Refusals are counted, and logged at most once per refusalLogEvery per
// kind with the count since the last line: a flood of hostile
// connections must not become a flood of log lines.
type refusal int

const (
	refusedPerIP  refusal = iota // MaxConnectionsPerIP reached
	refusedFull                  // MaxConnections reached, every connection busy
	evictedFresh                 // closed to make room: no request yet
	closedOnError                // closed after a malformed request, a timeout, ...
	numRefusals
)

var refusalMessages = [numRefusals]string{
	refusedPerIP:  "kafka: refused connections: too many from one address (raise MaxConnectionsPerIP, --max-connections-per-ip)",
	refusedFull:   "kafka: refused connections: too many open (MaxConnections), all of them in use",
	evictedFresh:  "kafka: closed connections that had sent no request, to make room for new ones (MaxConnections)",
	closedOnError: "kafka: closed connections after a protocol error or timeout",
}

const refusalLogEvery = 10 * time.Second

// Stats counts the connections of a Server.
type Stats struct {
	Connections    int   // open now
	RefusedPerIP   int64 // refused: MaxConnectionsPerIP reached
	RefusedFull    int64 // refused: MaxConnections reached and every connection had sent a request
	EvictedIdle    int64 // closed to make room, having sent no request
	ClosedOnError  int64 // closed after a malformed request, a timeout or a failed write
	QueuedRequests int64 // bytes of request bodies held now (QueuedMaxRequestBytes)
}

// Stats returns the server's connection counters. It is safe for
// concurrent use.
func (s *Server) Stats() Stats {
	s.refusals.mu.Lock()
	defer s.refusals.mu.Unlock()
	c := &s.refusals.count
	return Stats{Connections: s.Connections(), RefusedPerIP: c[refusedPerIP], RefusedFull: c[refusedFull],
		EvictedIdle: c[evictedFresh], ClosedOnError: c[closedOnError], QueuedRequests: s.budget.inUse()}
}

type refusals struct {
	mu     sync.Mutex
	count  [numRefusals]int64
	logged [numRefusals]int64     // count when last logged
	last   [numRefusals]time.Time // when last logged
}

// refused counts one refusal of kind and logs it unless one was logged in
// the last refusalLogEvery; the line carries how many since.
func (s *Server) refused(kind refusal, remote string, args ...any) {
	r := &s.refusals
	r.mu.Lock()
	r.count[kind]++
	now := time.Now()
	if now.Sub(r.last[kind]) < refusalLogEvery {
		r.mu.Unlock()
		return
	}
	n := r.count[kind] - r.logged[kind]
	r.logged[kind], r.last[kind] = r.count[kind], now
	total := r.count[kind]
	r.mu.Unlock()
	attrs := append([]any{"count", n, "total", total, "last_remote", remote}, args...)
	if kind == closedOnError {
		s.opts.Logger.Info(refusalMessages[kind], attrs...)
		return
	}
	s.opts.Logger.Warn(refusalMessages[kind], attrs...)
}

// started takes c off the list of connections that have sent no request.
func (s *Server) started(c *conn) {
	s.mu.Lock()
	if c.freshElem != nil {
		s.fresh.Remove(c.freshElem)
		c.freshElem = nil
	}
	s.mu.Unlock()
}

// noteStorage logs a full disk (or another storage failure) once, at
// ERROR, with what to do: clients only see KAFKA_STORAGE_ERROR. It logs
// again after a produce has succeeded in between.
func (s *Server) noteStorage(err error) {
	if err == nil {
		if s.diskFull.Load() {
			s.diskFull.Store(false)
		}
		return
	}
	if !errors.Is(err, hub.ErrStorage) || s.diskFull.Swap(true) {
		return
	}
	if errors.Is(err, wlog.ErrTierFenced) {
		s.opts.Logger.Error("kafka: another server took over a cold store prefix; produces to its remote-storage partitions fail with KAFKA_STORAGE_ERROR: "+
			"stop one of the two servers sharing --cold-store, or give each its own prefix, then restart this one",
			"err", err)
		return
	}
	if errors.Is(err, syscall.ENOSPC) {
		s.opts.Logger.Error("kafka: the disk is full; produces fail with KAFKA_STORAGE_ERROR until space is freed: "+
			"free space under the data directory, lower retention.ms or retention.bytes of large datasets, or move the data directory",
			"err", err)
		return
	}
	s.opts.Logger.Error("kafka: storage failing; produces fail with KAFKA_STORAGE_ERROR: check the data directory's disk", "err", err)
}
