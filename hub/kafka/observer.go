package kafka

import "time"

// Observer is told of the requests a Server answers, for metrics. Its
// methods are called from every connection's goroutines at once and must
// be quick; an adapter to a metrics library implements it (cmd/weir has
// the Prometheus one), so this package imports none.
type Observer interface {
	// ObserveRequest reports one request of API key and version, answered
	// (or, for acks=0 produces, handled) took after it was read.
	ObserveRequest(key, version int16, took time.Duration)
}

// Rejected counts the connections closed at once because MaxConnections
// were open.
func (s *Server) Rejected() int64 { return s.rejected.Load() }

// observe reports a request to the Observer, if there is one.
func (c *conn) observe(h *header, start time.Time) {
	if o := c.s.opts.Observer; o != nil && !start.IsZero() {
		o.ObserveRequest(h.key, h.version, time.Since(start))
	}
}
